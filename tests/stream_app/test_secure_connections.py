"""Authenticated, encrypted connections for real (``secure_services``): the broker's SASL_SSL listener with
SCRAM-SHA-512 and Redis's TLS port with an ACL user (its default user off), every process configured from
``STREAMSCORE_*`` environment variables. The worker scores and dead-letters over them, the sink writes,
Feast reads online, ``create-topics`` and ``feast materialize-incremental`` work; a wrong password or an
untrusted CA ends the worker, the sink and the CLI at start-up with one line naming the dependency and the
cause; and no password ever shows in logs, metrics, dead letters, CLI output or exception texts."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pytest

from stream_app.adapters.feast_store import open_store
from stream_app.adapters.kafka_admin import wait_for_broker
from stream_app.adapters.preflight import check_redis
from stream_app.contract import decode_prediction
from stream_app.errors import AccessDeniedError
from stream_app.generator.live import stream_live
from stream_app.settings import Settings, settings_env
from stream_app.worker.process import free_port
from tests.fixtures.kafka import consume
from tests.fixtures.secure_services import SecureServices
from tests.fixtures.services import private_settings
from tests.fixtures.workers import StartSink, StartWorker, wait_for_sink
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_BOUND_S = 120.0  # a refused start ends well within this even on a loaded machine; a retry loop never does
WRONG = f"wrong-pw-{secrets.token_hex(6)}"  # a distinctive wrong password: it must not be echoed either


def cli(settings: Settings, *args: str, timeout_s: float = START_BOUND_S) -> subprocess.CompletedProcess[str]:
    """``python -m stream_app <args>`` configured only by the environment ``settings`` translate to."""
    return subprocess.run([sys.executable, "-m", "stream_app", *args], env={**os.environ, **settings_env(settings)},
                          capture_output=True, text=True, timeout=timeout_s, check=False)


@dataclass
class Run:
    """What one scenario over the secured services left behind, for the assertions and the secret search."""

    settings: Settings
    valid: int
    invalid: int
    predictions: list[bytes]
    dead_letters: list[bytes]
    texts: dict[str, str]  # name -> text that must not hold a secret (logs, CLI output, scrapes)


@pytest.fixture(scope="module")
def secured_run(secure_services: SecureServices, tmp_path_factory: pytest.TempPathFactory,
                worker_process: StartWorker, sink_process: StartSink) -> Run:
    """A Feast world prepared through the TLS Redis, the topics created by the CLI, a worker and a sink
    started as processes, generated events (5 % hostile) produced and scored; then /metrics of both
    scraped, everything they wrote collected, and the profiles materialised again by the Feast CLI."""
    root = tmp_path_factory.mktemp("secured")
    unique = uuid.uuid4().hex[:10]
    settings = prepare(private_settings(secure_services.kafka(), secure_services.redis(), unique, root), root,
                       f"secure_{unique}")
    texts: dict[str, str] = {}
    created = cli(settings, "create-topics")
    texts["create-topics"] = created.stdout + created.stderr
    assert created.returncode == 0, texts["create-topics"]
    assert settings.topics.transactions.name in created.stdout

    worker_port, sink_port = free_port(), free_port()
    sink = sink_process(settings, root / "sink.log", metrics_port=sink_port)
    worker = worker_process(settings, root / "worker.log", web_port=worker_port)
    counts = stream_live(settings, rate=300, duration_s=2.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         invalid_fraction=0.05, label_delay_scale=1e-6, report=None)
    predictions = consume(settings, settings.topics.predictions.name, counts.valid, timeout_s=180)
    dead = consume(settings, settings.topics.transactions_dlq.name, counts.invalid, timeout_s=60)
    assert worker.alive(), worker.tail(40)
    wait_for_sink(settings, sink)
    for name, port in (("worker /metrics", worker_port), ("sink /metrics", sink_port)):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            texts[name] = response.read().decode()
    texts["worker log"], texts["sink log"] = worker.output(), sink.output()
    now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    materialized = cli(settings, "feast", "materialize-incremental", now, "--views", "user_profile", timeout_s=300)
    texts["feast materialize"] = materialized.stdout + materialized.stderr
    assert materialized.returncode == 0, texts["feast materialize"][-3000:]
    return Run(settings, counts.valid, counts.invalid, [v for _, v, _, _ in predictions if v],
               [v for _, v, _, _ in dead if v], texts)


def test_the_worker_scores_and_dead_letters_over_sasl_ssl_and_redis_tls(secured_run: Run) -> None:
    events = {decode_prediction(value).event_id for value in secured_run.predictions}
    assert len(events) == secured_run.valid == len(secured_run.predictions)
    assert len(secured_run.dead_letters) == secured_run.invalid > 0
    assert all(json.loads(value)["error"]["code"] for value in secured_run.dead_letters)
    assert "streamscore_predictions_published_total" in secured_run.texts["worker /metrics"]


def test_the_sink_writes_the_offline_log_from_the_secured_broker(secured_run: Run) -> None:
    log_dir = secured_run.settings.feast.repo_path / "data" / "offline" / "user_windows"
    parts = [p for p in log_dir.glob("**/part-*.parquet") if "backfill" not in p.name]
    assert sum(len(pd.read_parquet(p)) for p in parts) == secured_run.valid


def test_feast_reads_online_through_tls_as_the_acl_user(secured_run: Run) -> None:
    latest = max((decode_prediction(v) for v in secured_run.predictions), key=lambda p: p.event_time)
    store = open_store(secured_run.settings)
    online = store.get_online_features(features=["user_windows:user_txn_count_24h", "user_profile:user_txn_count_30d"],
                                       entity_rows=[{"user_id": latest.user_id}]).to_dict()
    assert online["user_txn_count_24h"][0] is not None and online["user_txn_count_24h"][0] >= 1  # the worker's
    assert online["user_txn_count_30d"][0] is not None  # materialised by prepare


def _refused(run: Callable[[], object]) -> str:
    """The traceback of the AccessDeniedError ``run`` raises, its causes included."""
    with pytest.raises(AccessDeniedError) as raised:
        run()
    return "".join(traceback.format_exception(raised.value))


@pytest.fixture(scope="module")
def refusals(secure_services: SecureServices, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The worker started with each wrong password and untrusted CA, the sink and ``create-topics`` with a
    bad Kafka password and CA (each must exit 1 within the bound), and the start-up checks
    called in process: each one's output."""
    root = tmp_path_factory.mktemp("refused")
    good_kafka, good_redis = secure_services.kafka(), secure_services.redis()
    other = secure_services.certificates.other_ca
    cases = {
        "kafka password": (secure_services.kafka(password=WRONG), good_redis),
        "kafka ca": (secure_services.kafka(ca=other), good_redis),
        "redis password": (good_kafka, secure_services.redis(password=WRONG)),
        "redis ca": (good_kafka, secure_services.redis(ca=other)),
    }
    runs = [("worker", case) for case in cases] + [("sink", "kafka password"), ("create-topics", "kafka ca")]
    outputs: dict[str, str] = {}
    for command, case in runs:
        settings = private_settings(*cases[case], uuid.uuid4().hex[:10], root / f"{command}-{case.replace(' ', '-')}")
        done = cli(settings, command)
        name = f"{command} with a bad {case}"
        outputs[name] = done.stdout + done.stderr
        assert done.returncode == 1, f"{name}: exit {done.returncode}\n{outputs[name][-3000:]}"
    outputs["in-process check: kafka password"] = _refused(lambda: wait_for_broker(cases["kafka password"][0]))
    outputs["in-process check: redis password"] = _refused(lambda: check_redis(cases["redis password"][1]))
    return outputs


@pytest.mark.parametrize(("case", "dependency", "cause"), [
    ("kafka password", "Kafka", "SASL authentication error"),
    ("kafka ca", "Kafka", "certificate verify failed"),
    ("redis password", "Redis", "invalid username-password pair"),
    ("redis ca", "Redis", "CERTIFICATE_VERIFY_FAILED"),
])
def test_a_wrong_password_or_untrusted_ca_ends_the_start_with_one_clear_line(
        refusals: dict[str, str], case: str, dependency: str, cause: str) -> None:
    for name, output in refusals.items():
        if name.endswith(f"a bad {case}"):
            errors = [line for line in output.splitlines() if line.startswith("error: ")]
            assert len(errors) == 1, f"{name}:\n{output[-3000:]}"
            assert errors[0].startswith(f"error: {dependency} at 127.0.0.1:"), errors[0]
            assert cause in errors[0], errors[0]


def test_no_password_ever_shows(secure_services: SecureServices, secured_run: Run,
                                refusals: dict[str, str]) -> None:
    texts = {**secured_run.texts, **refusals,
             **{f"dead letter {i}": value.decode(errors="replace") for i, value in enumerate(secured_run.dead_letters)},
             "predictions": b"".join(secured_run.predictions).decode(errors="replace"),
             "settings repr": repr(secured_run.settings) + str(secured_run.settings.model_dump())}
    assert len(refusals) == 8 and secured_run.texts["worker log"]
    for secret in (secure_services.kafka_password, secure_services.redis_password, WRONG):
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"a password shows in {leaks}"
