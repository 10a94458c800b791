"""Scale-out and consistency on the real broker, Redis and Feast, in one live run.

The same generated stream (transactions with some invalid records, and their fraud labels as they fall
due) is produced to two sets of 4-partition topics at once. One worker process consumes set A; two
worker processes in one consumer group consume set B. Event time runs 3x faster than the wall clock, so
the 40 s run covers two minutes of windows, merchant windows (served a minute late) and fraud labels
(delays scaled down); the workers must stay within 20 s of each other for the merchant lag to hold.

* Scale-out: B's predictions equal A's, event for event (score, decision, every feature).
* Consistency (>= 10k events): every window feature A served equals (1) ``get_historical_features`` for
  that entity and event_time from the offline log A's sink wrote from the predictions, (2) the shared core run over the
  raw events as the backfill runs it, and (3) a brute-force recomputation from the documented semantics.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from stream_app import backfill
from stream_app.adapters.feast_store import in_repo, open_store
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Label, Topics, TopicSpec, Transaction, decode_label, decode_transaction
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS
from stream_app.errors import InvalidRecordError
from stream_app.generator.live import PRODUCER_TUNING, stream_live
from stream_app.settings import KafkaSettings, RedisSettings, Settings, SinkSettings, WorkerSettings
from stream_app.worker.process import WorkerProcess
from tests.fixtures.kafka import Record, consume
from tests.fixtures.reference import same
from tests.fixtures.served import difference, frames, predictions_by_event, window_mismatches
from tests.fixtures.services import Services
from tests.fixtures.workers import StartSink, StartWorker, wait_for_sink
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4
RATE, DURATION_S, TIME_SCALE = 300.0, 40.0, 3.0
WINDOW_FEATURES = [s.name for s in USER_WINDOWS + MERCHANT_WINDOWS]


class Tee:
    """A producer that writes every record to its topic and to the twin topic (set A and set B)."""

    def __init__(self, producer: Producer, twins: dict[str, str]) -> None:
        self.producer = producer
        self.twins = twins

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        self.producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
        self.producer.produce(self.twins[topic], value=value, key=key, on_delivery=on_delivery)

    def poll(self, timeout: float) -> int:
        return int(self.producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        return int(self.producer.flush(timeout))


@dataclass
class Run:
    a: Settings
    b: Settings
    transactions: list[Transaction]
    labels: list[Label]
    served_a: dict[str, dict[str, Any]]
    served_b: dict[str, dict[str, Any]]


def _topics(prefix: str) -> Topics:
    return Topics(**{role: TopicSpec(name=f"{spec.name}-{prefix}", partitions=PARTITIONS) for role, spec in Topics()})


def _wait_for_group(settings: Settings, members: int, workers: list[WorkerProcess], log: Path,
                    timeout_s: float = 120.0) -> None:
    """Until the worker group is stable with ``members`` members, each owning transactions partitions."""
    admin = AdminClient(settings.kafka.confluent())
    deadline = time.monotonic() + timeout_s
    seen = "nothing"
    while time.monotonic() < deadline:
        for worker in workers:
            assert worker.alive(), log.read_text()[-3000:]
        try:
            group = admin.describe_consumer_groups([settings.worker.app_id], request_timeout=5)[
                settings.worker.app_id].result()
        except KafkaException as exc:  # the group or its coordinator does not exist yet
            seen = str(exc)
            time.sleep(0.5)
            continue
        owned = [sum(1 for tp in m.assignment.topic_partitions if tp.topic == settings.topics.transactions.name)
                 for m in group.members]
        seen = f"{group.state} {owned}"
        if str(group.state).endswith("STABLE") and len(owned) == members and all(owned) and \
                sum(owned) == PARTITIONS:
            return
        time.sleep(0.5)
    raise AssertionError(f"group {settings.worker.app_id} not stable with {members} members: {seen}\n"
                         + log.read_text()[-3000:])


@pytest.fixture(scope="module")
def run(live_services: Services, tmp_path_factory: pytest.TempPathFactory,
        worker_process: StartWorker, sink_process: StartSink) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("scale")
    unique = uuid.uuid4().hex[:10]
    base = Settings(kafka=KafkaSettings(bootstrap_servers=live_services.kafka_bootstrap),
                    redis=RedisSettings(url=live_services.redis_url), topics=_topics(f"a{unique}"),
                    data_dir=root / "data-a", models_dir=root / "registry",
                    worker=WorkerSettings(app_id=f"scale-a-{unique}", batch_size=200),
                    sink=SinkSettings(group_id=f"scale-sink-a-{unique}", part_max_age_s=1.0))
    a = prepare(base, root / "a", f"scale_{unique.lower()}")
    # B: the same Feast project and model (one registry, one online store), its own offline log and state
    b_repo = root / "b" / "feature_repo"
    shutil.copytree(a.feast.repo_path, b_repo)
    b = a.model_copy(update={"topics": _topics(f"b{unique}"), "data_dir": root / "data-b",
                             "feast": a.feast.model_copy(update={"repo_path": b_repo}),
                             "worker": a.worker.model_copy(update={"app_id": f"scale-b-{unique}"})})
    for s in (a, b):
        ensure_topics(s.kafka, s.topics.all())

    log = root / "workers.log"
    workers = [worker_process(a, log), worker_process(b, log), worker_process(b, log)]
    sink = sink_process(a, root / "sink.log")  # A's offline log (B's is not read)
    try:
        _wait_for_group(a, 1, workers[:1], log)
        _wait_for_group(b, 2, workers[1:], log)
        tee = Tee(Producer({**a.kafka.confluent(), **PRODUCER_TUNING}),
                  {a.topics.transactions.name: b.topics.transactions.name, a.topics.labels.name: b.topics.labels.name})
        counts = stream_live(a, rate=RATE, duration_s=DURATION_S, seed=SEED, users=USERS, merchants=MERCHANTS,
                             invalid_fraction=0.02, label_delay_scale=0.002, time_scale=TIME_SCALE,
                             producer=tee, report=None)
        assert counts.delivery_errors == 0 and counts.undelivered == 0
        transactions: list[Transaction] = []
        for key, value, _, _ in consume(a, a.topics.transactions.name, counts.valid + counts.invalid):
            try:
                transactions.append(decode_transaction(value, key))
            except InvalidRecordError:
                continue
        labels = [decode_label(v) for _, v, _, _ in consume(a, a.topics.labels.name, counts.labels)]
        def all_scored(records: list[Record]) -> bool:  # distinct events: a duplicate must not count twice
            return len({key for key, _, _, _ in records}) >= len(transactions)

        served_a = predictions_by_event(consume(a, a.topics.predictions.name, all_scored, timeout_s=180))
        served_b = predictions_by_event(consume(b, b.topics.predictions.name, all_scored, timeout_s=180))
        wait_for_sink(a, sink)
    finally:
        for process in (*workers, sink):
            process.terminate()
        for process in (*workers, sink):
            process.stop()
    transactions.sort(key=lambda t: t.event_time)  # the producer's order; one user's events stay in order
    yield Run(a, b, transactions, labels, served_a, served_b)


def test_two_workers_in_one_group_serve_exactly_what_one_worker_serves(run: Run) -> None:
    expected = {t.event_id for t in run.transactions}
    assert set(run.served_a) == expected, "one worker lost or invented an event"
    assert set(run.served_b) == expected, "two workers lost or invented an event"
    volatile = ("scored_at", "latency_ms")
    differing = [e for e in expected if {k: v for k, v in run.served_a[e].items() if k not in volatile}
                 != {k: v for k, v in run.served_b[e].items() if k not in volatile}]
    assert differing == [], f"{len(differing)} of {len(expected)} predictions differ between one and two " \
        f"workers, e.g. {differing[0]}: " + difference([run.served_a[differing[0]], run.served_b[differing[0]]])


def test_served_features_equal_historical_features_and_the_core_recomputation(run: Run) -> None:
    txns = run.transactions
    assert len(txns) >= 10_000
    served = run.served_a
    # not vacuous: merchant windows and label windows were non-trivial during the run
    assert max(served[t.event_id]["features"]["merchant_txn_count_1h"] for t in txns) > 0
    assert sum(1 for t in txns if served[t.event_id]["features"]["merchant_label_count_7d"]) > 0

    # (3) brute force from the documented semantics
    assert window_mismatches(txns, served, run.labels) == []

    # (2) the shared core over the raw events, as the backfill runs it
    frame, label_frame = frames(txns, run.labels)
    core = backfill.run(frame, label_frame, lateness_s=run.a.worker.allowed_lateness_s)
    assert core.late == 0 and len(core.user_rows) == len(txns)
    core_rows = pd.concat([core.user_rows[[s.name for s in USER_WINDOWS]],
                           core.merchant_rows[[s.name for s in MERCHANT_WINDOWS]]], axis=1)
    core_mismatches = [
        (t.event_id, name) for t, row in zip(txns, core_rows.to_dict("records"), strict=True)
        for name in WINDOW_FEATURES if not same(float(row[name]), _num(served[t.event_id]["features"][name]))]
    assert core_mismatches == []

    # (1) Feast's point-in-time join over the offline log the sink wrote
    store = open_store(run.a)
    entities = pd.DataFrame({"user_id": frame["user_id"], "merchant_id": frame["merchant_id"],
                             "event_timestamp": frame["event_time"].dt.as_unit("us")})
    refs = [f"user_windows:{s.name}" for s in USER_WINDOWS] + [f"merchant_windows:{s.name}" for s in MERCHANT_WINDOWS]
    with in_repo(store):
        historical = store.get_historical_features(entity_df=entities, features=refs).to_df()
    historical = historical.sort_values(["event_timestamp", "user_id"]).reset_index(drop=True)
    frame = frame.assign(event_timestamp=frame["event_time"].dt.as_unit("us")).sort_values(
        ["event_timestamp", "user_id"]).reset_index(drop=True)
    assert len(historical) == len(frame)
    feast_mismatches = [
        (eid, name) for eid, (_, row) in zip(frame["event_id"], historical.iterrows(), strict=True)
        for name in WINDOW_FEATURES if not same(_num(row[name]), _num(served[eid]["features"][name]))]
    assert feast_mismatches == []


def _num(value: Any) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)
