"""A promotion while events stream through a real worker (broker, Redis, Feast; the worker as a process):
the new version takes over between two batches, every event is scored exactly once, and a promotion of a
corrupt model file is refused while the version serving keeps serving."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from models import promote
from stream_app.adapters import metrics_reader
from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.files import atomic_write_text
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.model_registry import AliasRecord, ModelRegistry
from stream_app.contract import Topics, TopicSpec, user_key
from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.process import free_port
from tests.fixtures.kafka import consume
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS_PER_WAVE, GAP_S = 150, 0.02
ROLLBACK_POLL_S = 1.0
CHECK_S = 3.0  # after the poll that sees the move: the load and canary check, then the next batch (shared cores)


def _produce(settings: Settings, wave: str, during: threading.Event | None = None,
             until: threading.Event | None = None) -> list[str]:
    """``EVENTS_PER_WAVE`` valid events (given ``until``: as many as it takes for it to be set), one every
    ``GAP_S``; sets ``during`` after ``EVENTS_PER_WAVE // 2``."""
    producer = Producer(settings.kafka.confluent())
    ids = []
    i = -1
    while (i + 1 < EVENTS_PER_WAVE) if until is None else not until.is_set():
        i += 1
        event_id = f"{wave}-{i}"
        user = i % USERS
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        producer.produce(settings.topics.transactions.name, key=user_key(user), value=json.dumps(
            {"event_id": event_id, "user_id": user, "merchant_id": i % MERCHANTS, "amount": 10.0 + i % 50,
             "currency": "EUR", "country": "FR", "channel": "web", "event_time": now}).encode())
        producer.poll(0)
        ids.append(event_id)
        if during is not None and i == EVENTS_PER_WAVE // 2:
            during.set()
        time.sleep(GAP_S)
    assert producer.flush(30) == 0
    return ids


def _predictions(settings: Settings, expected: int) -> list[dict[str, Any]]:
    """Every prediction, in offset order (one partition)."""
    records = consume(settings, settings.topics.predictions.name, expected, timeout_s=120, settle_s=2.0)
    return [json.loads(v or b"") for _, v, _, _ in records]


def _versions(settings: Settings, expected: int) -> list[tuple[str, str]]:
    """(event_id, model_version) of every prediction, in offset order (one partition)."""
    return [(p["event_id"], p["model_version"]) for p in _predictions(settings, expected)]


def _world(settings: Settings, tmp_path: Path, name: str, poll_s: float, *,
           copies: int) -> tuple[Settings, ModelRegistry, str, list[str]]:
    """A world on one-partition topics (Feast project and worker group ``name``, the model polled every
    ``poll_s``): its settings, its registry, the production version and ``copies`` more versions of the
    same model, registered but not promoted."""
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={"topics": single,
                                           "worker": WorkerSettings(app_id=name, model_poll_s=poll_s)})
    settings = prepare(settings, tmp_path, name)
    ensure_topics(settings.kafka, settings.topics.all())
    registry = ModelRegistry(settings.models_dir)
    first = registry.get_alias("production")
    assert first is not None
    served = registry.load(first)
    others = [registry.register(served.booster, served.metadata.model_copy(update={"version": None,
                                                                                   "model_sha256": None}))
              for _ in range(copies)]
    return settings, registry, first, others


def test_a_promotion_mid_stream_switches_versions_between_batches_and_a_corrupt_one_is_refused(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    settings, registry, first, (second, corrupt) = _world(settings, tmp_path, f"reload_{unique}", 0.3, copies=2)
    web_port = free_port()
    with worker_process(settings, tmp_path / "worker.log", web_port=web_port) as worker:
        produced = _produce(settings, "warm")
        assert {v for _, v in _versions(settings, len(produced))} == {first}, worker.tail(60)

        halfway = threading.Event()

        def promote_halfway() -> None:
            assert halfway.wait(30)
            registry.set_alias("production", second, forced=True)

        promoter = threading.Thread(target=promote_halfway)
        promoter.start()
        produced += _produce(settings, "promoted", during=halfway)
        promoter.join(30)
        predictions = _versions(settings, len(produced))
        assert [v for _, v in predictions][-1] == second, worker.tail(60)

        # a file corrupted after registration, promoted by hand-editing the alias (set_alias would refuse it)
        (settings.models_dir / "versions" / corrupt / "model.ubj").write_bytes(b"\x00corrupt")
        atomic_write_text(registry.aliases_dir / "production.json",
                          AliasRecord(alias="production", version=corrupt, previous=second).model_dump_json())
        time.sleep(1.0)  # several polls
        produced += _produce(settings, "refused")
        predictions = _versions(settings, len(produced))
        samples = metrics_reader.scrape(web_port)
        assert worker.alive(), worker.tail(60)

    counts = Counter(event_id for event_id, _ in predictions)
    assert counts == Counter(produced), "every event scored exactly once"
    versions = [v for _, v in predictions]
    switch = versions.index(second)
    assert versions == [first] * switch + [second] * (len(versions) - switch), "one switch, never back"
    assert 0 < switch - EVENTS_PER_WAVE < EVENTS_PER_WAVE, "the switch happened while the second wave streamed"
    assert metrics_reader.by_label(samples, m.MODEL_RELOADS, "result") == {"success": 1.0, "failure": 1.0}
    assert "refused" in worker.output() and corrupt in worker.output()


def test_a_rollback_restores_the_previous_version_in_the_running_worker_within_a_poll_interval(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    settings, registry, first, (second,) = _world(settings, tmp_path, f"rollback_{unique}", ROLLBACK_POLL_S,
                                                  copies=1)
    registry.set_alias("production", second, forced=True)  # `first` is now the version to roll back to
    web_port = free_port()
    with worker_process(settings, tmp_path / "worker.log", web_port=web_port) as worker:
        flowing, stop, produced = threading.Event(), threading.Event(), []
        producer = threading.Thread(target=lambda: produced.extend(_produce(settings, "rollback", flowing, stop)))
        producer.start()
        assert flowing.wait(60)
        scored = _versions(settings, EVENTS_PER_WAVE // 2)  # the worker is serving (`second`)
        assert promote.main(["--rollback", "--registry", str(settings.models_dir)]) == 0  # python -m models.promote
        moved_at = (registry.aliases_dir / "production.json").stat().st_mtime  # what the worker polls
        time.sleep(ROLLBACK_POLL_S + CHECK_S)  # events keep flowing
        stop.set()
        producer.join(60)
        predictions = _predictions(settings, len(produced))
        samples = metrics_reader.scrape(web_port)
        assert worker.alive(), worker.tail(60)

    assert {v for _, v in scored} == {second}
    assert registry.get_alias("production") == first
    assert Counter(p["event_id"] for p in predictions) == Counter(produced), "every event scored exactly once"
    versions = [p["model_version"] for p in predictions]
    switch = versions.index(first)
    assert switch >= len(scored) and versions == [second] * switch + [first] * (len(versions) - switch), \
        "one switch, after the rollback, never back"
    restored = datetime.fromisoformat(predictions[switch]["scored_at"].replace("Z", "+00:00")).timestamp()
    assert restored - moved_at <= ROLLBACK_POLL_S + CHECK_S, (restored - moved_at, worker.tail(30))
    reloads = metrics_reader.by_label(samples, m.MODEL_RELOADS, "result")
    assert (reloads["success"], reloads.get("failure", 0.0)) == (1.0, 0.0)
