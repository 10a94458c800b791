"""One record must never stall a partition, on the real broker, Redis and Feast with the worker as a
process (``python -m stream_app worker``), against a Redis of its own so it can be stopped.

1. A poison record (a 1.5 MiB transaction, its ``event_id`` 1 MiB, produced lz4-compressed so the broker
   takes it) among valid events: its dead letter is over the producer's message size limit whole, so it
   is cut to fit; it gets exactly one dead letter (a prefix of the value, with the original's length and
   SHA-256), every other event exactly one prediction (no copies from retries), events after it included.
2. Redis stopped: the worker waits the outage out with backoff; SIGTERM then ends it within 10 s without
   acking the batch in hand; with Redis back, a restarted worker answers every event (nothing lost).

The topics have one partition, so the poison record sits between the valid events of one partition."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Topics, TopicSpec, user_key
from stream_app.settings import RedisSettings, Settings, WorkerSettings
from stream_app.worker.process import WorkerProcess, free_port
from tests.fixtures.kafka import Record, consume
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POISON_EVENT_ID_BYTES = 1024 * 1024


def transaction(i: int, at: datetime) -> dict[str, Any]:
    return {"event_id": f"ok-{i}", "user_id": i % 40, "merchant_id": i % 7, "amount": 10.0 + i, "currency": "EUR",
            "country": "FR", "channel": "web",
            "event_time": (at + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z")}


def produce(settings: Settings, values: list[tuple[bytes, bytes]]) -> None:
    """Each (key, value) in order, lz4-compressed, with a message size limit above the poison's."""
    producer = Producer({**settings.kafka.confluent(), "compression.type": "lz4", "message.max.bytes": 4_000_000,
                         "enable.idempotence": True, "linger.ms": 5})
    for key, value in values:
        producer.produce(settings.topics.transactions.name, key=key, value=value)
        producer.flush(30)  # one record per request: the poison travels alone
    assert producer.flush(30) == 0


def wait_ready(worker: WorkerProcess, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while "[^Worker]: Ready" not in worker.output():
        assert worker.alive() and time.monotonic() < deadline, "worker not ready\n" + worker.tail(60)
        time.sleep(0.2)


def answered(settings: Settings, event_ids: set[str], worker: WorkerProcess,
             timeout_s: float = 120.0) -> tuple[list[Record], list[Record]]:
    """(predictions, dead letters) once every event in ``event_ids`` has a prediction, plus a settle."""
    def enough(records: list[Record]) -> bool:
        assert worker.alive(), worker.tail(60)
        return event_ids <= {json.loads(v or b"{}")["event_id"] for _, v, _, _ in records}

    predictions = consume(settings, settings.topics.predictions.name, enough, timeout_s=timeout_s, settle_s=3.0)
    dead = consume(settings, settings.topics.transactions_dlq.name, 0, timeout_s=10, settle_s=2.0)
    return predictions, dead


def test_a_poison_record_gets_one_dead_letter_and_a_shutdown_in_an_outage_loses_nothing(
        settings: Settings, unique: str, tmp_path: Path, own_redis: RedisServer, worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "redis": RedisSettings(url=own_redis.url), "topics": single,
        "worker": WorkerSettings(app_id=f"poison-{unique}", batch_size=20, retry_initial_s=0.2, retry_max_s=1.0)})
    settings = prepare(settings, tmp_path, f"poison_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    web_port = free_port()  # the restart rejoins as the same static group member
    at = datetime.now(UTC).replace(microsecond=0)
    before = [transaction(i, at) for i in range(60)]
    after = [transaction(i, at) for i in range(60, 120)]
    poison_body = {**transaction(999, at), "event_id": "p" * POISON_EVENT_ID_BYTES, "user_id": 3}
    poison = json.dumps(poison_body).encode() + b" " * (512 * 1024)  # 1.5 MiB in all
    assert USERS > 40

    # 1. the poison record among valid events
    worker = worker_process(settings, tmp_path / "worker-1.log", web_port=web_port)
    try:
        wait_ready(worker)
        produce(settings, [(user_key(t["user_id"]), json.dumps(t).encode()) for t in before]
                + [(user_key(3), poison)]
                + [(user_key(t["user_id"]), json.dumps(t).encode()) for t in after])
        ids = {t["event_id"] for t in before + after}
        predictions, dead = answered(settings, ids, worker)
        counts = Counter(json.loads(v or b"{}")["event_id"] for _, v, _, _ in predictions)
        assert set(counts) == ids and set(counts.values()) == {1}, counts.most_common(3)
        (key, value, _, _), = dead
        letter = json.loads(value or b"{}")
        assert key == b"3" and letter["offset"] == len(before) and letter["error"]["code"] == "schema"
        assert letter["value_truncated"] is True and letter["value_length"] == len(poison)
        assert letter["value_sha256"] == hashlib.sha256(poison).hexdigest()
        prefix = base64.b64decode(letter["value"])
        assert poison.startswith(prefix) and len(prefix) > 500_000, len(prefix)
        assert len(value or b"") <= settings.worker.output_max_bytes

        # 2. Redis away, more events arrive, SIGTERM while the worker waits the outage out
        own_redis.stop()
        more = [transaction(i, at + timedelta(seconds=1)) for i in range(120, 160)]
        produce(settings, [(user_key(t["user_id"]), json.dumps(t).encode()) for t in more])
        deadline = time.monotonic() + 60
        while "dependency unavailable, retrying batch" not in worker.output():
            assert worker.alive() and time.monotonic() < deadline, "no outage seen\n" + worker.tail(60)
            time.sleep(0.2)
        time.sleep(2.0)  # well inside the backoff loop
        began = time.monotonic()
        worker.terminate()
        try:
            worker.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not end the worker within 10 s during an outage\n" + worker.tail(60))
        stopped_in = time.monotonic() - began
        assert "given up unacknowledged" in worker.output(), worker.tail(60)
    finally:
        worker.stop(timeout_s=5)

    own_redis.start()
    restarted = worker_process(settings, tmp_path / "worker-2.log", web_port=web_port)
    try:
        wait_ready(restarted)
        all_ids = ids | {t["event_id"] for t in more}
        predictions, dead = answered(settings, all_ids, restarted)
    finally:
        restarted.stop()
    versions: dict[str, set[str]] = {}
    for _, value, _, _ in predictions:
        body = json.loads(value or b"{}")
        body.pop("scored_at")
        body.pop("latency_ms")
        versions.setdefault(body["event_id"], set()).add(json.dumps(body, sort_keys=True))
    assert set(versions) == all_ids, "an event was lost"
    assert all(len(v) == 1 for v in versions.values()), "a repeated prediction differs from the first"
    assert len(dead) == 1, "the poison record was dead-lettered again"
    assert stopped_in < 10.0
