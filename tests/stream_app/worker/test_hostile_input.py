"""Hostile input on the real broker, Redis and Feast: hypothesis-generated records on ``transactions`` -
arbitrary bytes (and tombstones), arbitrary JSON, and near-valid transactions with hostile field values,
keys and encodings (strategies in tests/fixtures/strategies.py) - interleaved with valid events,
consumed by the worker running as a process.

Expected outcome of each record, from the contract and the documented lateness rule: a record
``decode_transaction`` refuses gets exactly one dead letter with that code, a message, its source position
and its original key and value bytes; an accepted one older than its user's newest applied event minus
the allowed lateness gets one ``late`` dead letter, one dated more than the future skew after its record's
Kafka timestamp one ``future`` dead letter, one whose event_id its user already applied one ``duplicate``
dead letter; every other one exactly one prediction (valid events
around the hostile ones included). Afterwards the worker process is still running.

Hypothesis generates the records (one example = one hostile record and the valid events before it, no
shrinking); they are produced in one wave and the worker runs once over all of them, so a failure names
the records that went wrong instead of a shrunk example."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Topics, TopicSpec, Transaction, decode_transaction, user_key
from stream_app.errors import InvalidRecordError
from stream_app.settings import Settings, WorkerSettings
from tests.fixtures.kafka import TopicReader
from tests.fixtures.strategies import hostile_record, valid_fields
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOSTILE = 400  # hostile records, one hypothesis example each
Record = tuple[bytes | None, bytes | None]


class Oracle:
    """What the worker must emit for each record, in offset order (one partition = processing order)."""

    def __init__(self, allowed_lateness_s: float, max_future_skew_s: float) -> None:
        self.allowed_lateness_s = allowed_lateness_s
        self.max_future_skew_s = max_future_skew_s
        self.newest: dict[int, float] = {}  # user -> newest applied event time
        self.applied: dict[tuple[int, str], float] = {}  # (user, event_id) -> applied event time
        self.predicted: Counter[str] = Counter()  # event_id -> predictions expected
        self.dead: dict[int, str] = {}  # offset -> DLQ code expected
        self.records: dict[int, Record] = {}

    def expect(self, offset: int, key: bytes | None, value: bytes | None, timestamp_ms: int) -> None:
        self.records[offset] = (key, value)
        try:
            txn = decode_transaction(value, key)
        except InvalidRecordError as error:
            self.dead[offset] = error.code
            return
        t = txn.event_time.timestamp()
        if t - timestamp_ms / 1000 > self.max_future_skew_s:
            self.dead[offset] = "future"
            return
        newest = self.newest.get(txn.user_id)
        seen = self.applied.get((txn.user_id, txn.event_id))
        if seen is not None and newest is not None and seen > newest - self.allowed_lateness_s - 86_400:
            self.dead[offset] = "duplicate"
            return
        if newest is not None and t < newest - self.allowed_lateness_s:
            self.dead[offset] = "late"
            return
        self.applied[(txn.user_id, txn.event_id)] = t
        self.newest[txn.user_id] = t if newest is None else max(newest, t)
        self.predicted[txn.event_id] += 1


def valid_event(data: st.DataObject, serial: int, when: datetime) -> Record:
    fields = data.draw(valid_fields(serial))
    fields.update(event_id=f"valid-{serial}", user_id=data.draw(st.integers(0, 40)), event_time=when.isoformat())
    Transaction.model_validate(fields)  # really valid
    return user_key(fields["user_id"]), json.dumps(fields).encode()


def produce(settings: Settings, records: list[Record]) -> list[tuple[int, int]]:
    """Produce in order (the idempotent producer keeps it) to partition 0 and return the offsets and
    the records' Kafka timestamps (ms)."""
    producer = Producer({**settings.kafka.confluent(), "enable.idempotence": True, "linger.ms": 5})
    offsets: list[int | None] = [None] * len(records)
    timestamps = [0] * len(records)
    errors: list[str] = []

    def delivered(i: int) -> Any:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                offsets[i] = msg.offset()
                timestamps[i] = msg.timestamp()[1]
        return report

    for i, (key, value) in enumerate(records):
        producer.produce(settings.topics.transactions.name, key=key, value=value, partition=0,
                         on_delivery=delivered(i))
        producer.poll(0)
    assert producer.flush(30) == 0 and not errors, errors
    assert all(o is not None for o in offsets)
    assert offsets == sorted(offsets)  # type: ignore[type-var]
    return [(o, ts) for o, ts in zip(offsets, timestamps, strict=True) if o is not None]


def check_dead_letters(oracle: Oracle, dead: TopicReader, topic: str) -> None:
    letters: dict[int, list[dict[str, Any]]] = {}
    for _, value, _ in dead.records:
        body = json.loads(value or b"{}")
        letters.setdefault(body["offset"], []).append(body)
    unexpected = sorted(set(letters) - set(oracle.dead))
    assert not unexpected, [(o, oracle.records[o], letters[o]) for o in unexpected[:5]]
    for offset, code in oracle.dead.items():
        key, value = oracle.records[offset]
        found = letters.get(offset, [])
        assert len(found) == 1, (offset, key, value, code, found)
        letter = found[0]
        assert letter["error"]["code"] == code, (key, value, letter)
        assert letter["error"]["message"], letter
        assert (letter["source_topic"], letter["partition"]) == (topic, 0)
        assert letter["key"] == (None if key is None else base64.b64encode(key).decode()), (key, letter)
        assert letter["value"] == (None if value is None else base64.b64encode(value).decode()), (value, letter)


def hostile_wave(start: datetime) -> list[Record]:
    """HOSTILE hypothesis examples, one hostile record each, every one preceded by 0-2 valid events."""
    serials = itertools.count()
    records: list[Record] = []

    @hypothesis_settings(max_examples=HOSTILE, deadline=None, phases=[Phase.generate], database=None,
                         suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        for _ in range(data.draw(st.integers(0, 2), label="valid events before")):
            records.append(valid_event(data, next(serials), start + timedelta(milliseconds=len(records))))
        records.append(data.draw(hostile_record(next(serials)), label="hostile record"))

    collect()
    return records


def test_hostile_records_are_dead_lettered_with_reasons_and_valid_ones_around_them_scored(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "topics": single, "worker": WorkerSettings(app_id=f"hostile-{unique}", batch_size=100)})
    settings = prepare(settings, tmp_path, f"hostile_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    log = tmp_path / "worker.log"
    topic = settings.topics.transactions.name
    oracle = Oracle(settings.worker.allowed_lateness_s, settings.worker.max_future_skew_s)
    records = hostile_wave(datetime.now(UTC))
    predictions = TopicReader(settings, settings.topics.predictions.name)
    dead = TopicReader(settings, settings.topics.transactions_dlq.name)
    try:
        with worker_process(settings, log) as worker:
            deadline = time.monotonic() + 90
            while "[^Worker]: Ready" not in log.read_text():
                assert time.monotonic() < deadline and worker.alive(), log.read_text()[-3000:]
                time.sleep(0.2)
            for (offset, timestamp_ms), (key, value) in zip(produce(settings, records), records, strict=True):
                oracle.expect(offset, key, value, timestamp_ms)
            deadline = time.monotonic() + 60
            while len(predictions.records) < oracle.predicted.total() or len(dead.records) < len(oracle.dead):
                assert worker.alive(), "the worker died\n" + log.read_text()[-3000:]
                if time.monotonic() > deadline:
                    break  # the checks below say what is missing
                time.sleep(0.3)
                predictions.catch_up()
                dead.catch_up()
            time.sleep(1.5)  # anything emitted twice would arrive now
            predictions.catch_up()
            dead.catch_up()
            assert worker.alive(), "the worker died\n" + log.read_text()[-3000:]
    finally:
        predictions.close()
        dead.close()

    check_dead_letters(oracle, dead, topic)
    got = Counter(json.loads(value or b"{}")["event_id"] for _, value, _ in predictions.records)
    assert got == oracle.predicted, (got - oracle.predicted, oracle.predicted - got)
    for key, value, _ in predictions.records:
        assert key == json.loads(value or b"{}")["event_id"].encode()
    # the input was hostile and valid events got through it: not a vacuous pass
    valid = sum(1 for event_id in oracle.predicted if event_id.startswith("valid-"))
    codes = Counter(oracle.dead.values())
    assert valid >= HOSTILE // 2 and len(oracle.dead) >= HOSTILE // 2, (valid, codes)
    assert {"decode", "schema"} <= set(codes), codes
