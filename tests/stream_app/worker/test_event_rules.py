"""Per-event rules on the real broker, Redis and Feast, with the worker running as a process: an event
dated far ahead of when it entered Kafka is dead-lettered as ``future`` and silences no one; an event_id
already applied (the same record re-sent, or the id with other bytes) is dead-lettered as ``duplicate``
and every window equals the brute force over the distinct event ids."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Topics, TopicSpec, Transaction, user_key
from stream_app.settings import Settings, WorkerSettings
from tests.fixtures.kafka import Record, consume
from tests.fixtures.served import predictions_by_event, window_mismatches
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _event(event_id: str, user: int, when: datetime, amount: float = 25.0) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "merchant_id": 3, "amount": amount, "currency": "EUR",
            "country": "FR", "channel": "web", "event_time": when.isoformat().replace("+00:00", "Z")}


def _ready(settings: Settings, unique: str, tmp_path: Path) -> Settings:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "topics": single, "worker": WorkerSettings(app_id=f"rules-{unique}")})
    settings = prepare(settings, tmp_path, f"rules_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    return settings


def _produce(settings: Settings, records: Sequence[tuple[bytes, bytes]]) -> None:
    producer = Producer(settings.kafka.confluent())
    for key, value in records:
        producer.produce(settings.topics.transactions.name, key=key, value=value)
    assert producer.flush(30) == 0


def _run_worker(start: StartWorker, settings: Settings, tmp_path: Path, predictions: int, dead: int,
                ) -> tuple[list[Record], list[Record]]:
    """Start the worker over what is on ``transactions``; wait for that many predictions and dead letters
    (and a settle time that would catch extras), stop it."""
    worker = start(settings, tmp_path / "worker.log")
    try:
        served = consume(settings, settings.topics.predictions.name, predictions, timeout_s=120, settle_s=3.0)
        letters = consume(settings, settings.topics.transactions_dlq.name, dead, timeout_s=30)
        assert worker.alive(), worker.tail()
    finally:
        worker.stop()
    return served, letters


def _body(record: Record) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(record[1] or b"{}")
    return body


def test_a_far_future_event_is_dead_lettered_and_its_users_later_events_are_all_scored(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    settings = _ready(settings, unique, tmp_path)
    now = datetime.now(UTC).replace(microsecond=0)
    far = _event("far-2200", 7, datetime(2200, 1, 1, tzinfo=UTC), amount=999.0)
    normal = [_event(f"normal-{i}", 7, now - timedelta(seconds=30) + timedelta(seconds=i)) for i in range(5)]
    _produce(settings, [(user_key(7), json.dumps(e).encode()) for e in [far, *normal]])

    served, letters = _run_worker(worker_process, settings, tmp_path, predictions=len(normal), dead=1)

    assert [_body(r)["event_id"] for r in served] == [e["event_id"] for e in normal]
    for i, record in enumerate(served):  # the year-2200 event is counted nowhere
        assert _body(record)["features"]["user_txn_count_10m"] == i + 1
        assert _body(record)["features"]["user_amount_max_24h"] == 25.0
    assert len(letters) == 1
    letter = _body(letters[0])
    assert letter["error"]["code"] == "future", letter
    assert json.loads(base64.b64decode(letter["value"]))["event_id"] == "far-2200"


def test_a_re_sent_record_and_a_reused_event_id_change_no_window_and_are_dead_lettered_as_duplicates(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    settings = _ready(settings, unique, tmp_path)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    events = [_event(f"d-{i}", 9, start + timedelta(seconds=10 * i), amount=10.0 + i) for i in range(12)]
    resent = json.dumps(events[3]).encode()  # the same bytes again (a producer retry)
    reused = json.dumps({**events[6], "amount": 5000.0, "merchant_id": 4}).encode()  # the id, other bytes
    wire = [json.dumps(e).encode() for e in events]
    records = [*wire[:4], resent, *wire[4:8], reused, *wire[8:]]
    _produce(settings, [(user_key(9), value) for value in records])

    served_records, letters = _run_worker(worker_process, settings, tmp_path, predictions=len(events), dead=2)

    served = predictions_by_event(served_records)
    assert len(served_records) == len(events) and set(served) == {e["event_id"] for e in events}
    distinct = [Transaction.model_validate(e) for e in events]
    assert window_mismatches(distinct, served) == []
    assert served["d-11"]["features"]["user_txn_count_10m"] == 12  # not 14
    assert [_body(r)["error"]["code"] for r in letters] == ["duplicate", "duplicate"]
    assert [base64.b64decode(_body(r)["value"]) for r in letters] == [resent, reused]
