from __future__ import annotations

import base64
import json
from datetime import timedelta

from stream_app.contract import ErrorCode
from stream_app.worker.ports import RawRecord
from stream_app.worker.processor import BatchProcessor
from tests.fixtures.fakes import FEATURES, T0, FakeModel, FakeOnline, FakeState, record, txn


def processor(state: FakeState | None = None) -> BatchProcessor:
    return BatchProcessor(allowed_lateness_s=300, state=state or FakeState(), online=FakeOnline(),
                          model=FakeModel(), clock=lambda: T0 + timedelta(milliseconds=5))


def test_valid_events_are_scored_once_and_invalid_ones_dead_lettered_with_their_bytes() -> None:
    batch = [record(0, txn(0)), record(1, b"{not json", key=b"1"), record(2, txn(2, minutes=1, country="IT")),
             record(3, {**txn(3), "amount": -5}), record(4, txn(4), key=b"999")]
    result = processor().process(batch)
    assert [p.event_id for p in result.predictions] == ["e0", "e2"]
    assert [(d.offset, d.error.code) for d in result.dead_letters] == [
        (1, ErrorCode.DECODE), (3, ErrorCode.SCHEMA), (4, ErrorCode.KEY_MISMATCH)]
    assert base64.b64decode(result.dead_letters[0].value or "") == b"{not json"
    second = result.predictions[1]
    assert list(second.features) == list(FEATURES)
    assert second.features["user_txn_count_10m"] == 2
    assert second.features["is_foreign_country"] == 1
    assert second.features["user_avg_amount_30d"] == 40.0
    assert second.model_version == "v0042" and second.latency_ms == 5.0
    assert len(result.user_rows) == len(result.merchant_rows) == 2


def test_replay_after_commit_emits_nothing_and_replay_before_commit_repeats_the_same_predictions() -> None:
    state = FakeState()
    batch = [record(i, txn(i, minutes=i)) for i in range(5)]
    first = processor(state).process(batch)
    again = processor(state).process(batch)  # crashed before commit: same state, same answers
    assert [p.model_dump(exclude={"scored_at", "latency_ms"}) for p in again.predictions] == \
        [p.model_dump(exclude={"scored_at", "latency_ms"}) for p in first.predictions]
    state.commit(first.state)
    replay = processor(state).process(batch)
    assert replay.predictions == [] and replay.replayed == 5
    follow = processor(state).process([record(5, txn(5, minutes=5))])
    assert follow.predictions[0].features["user_txn_count_10m"] == 6


def test_a_late_event_is_dead_lettered_as_late() -> None:
    an_hour_on = T0 + timedelta(minutes=60)
    result = processor().process([record(0, txn(0, minutes=60), entered=an_hour_on),
                                  record(1, txn(1, minutes=0), entered=an_hour_on)])
    assert [p.event_id for p in result.predictions] == ["e0"]
    assert [d.error.code for d in result.dead_letters] == [ErrorCode.LATE]
    assert "allowed lateness" in result.dead_letters[0].error.message


def test_an_event_dated_beyond_the_future_skew_is_dead_lettered_and_its_user_keeps_being_scored() -> None:
    state = FakeState()
    far = {**txn(0), "event_time": "2200-01-01T00:00:00Z"}  # record timestamp: T0
    just_ahead = txn(2, minutes=5)  # exactly the allowed 300 s ahead of its record timestamp
    result = processor(state).process([record(0, far), record(1, txn(1, minutes=1)), record(2, just_ahead)])
    assert [(d.offset, d.error.code) for d in result.dead_letters] == [(0, ErrorCode.FUTURE)]
    assert "ahead of the record's Kafka timestamp" in result.dead_letters[0].error.message
    assert [p.event_id for p in result.predictions] == ["e1", "e2"]
    assert result.predictions[1].features["user_txn_count_10m"] == 2  # the year-2200 event counts nowhere
    assert result.watermarks == {0: (T0 + timedelta(minutes=5)).timestamp()}


def test_a_record_without_timestamp_is_not_judged_future() -> None:
    far = RawRecord("transactions", 0, 0, b"1", json.dumps({**txn(0), "event_time": "2200-01-01T00:00:00Z"}).encode())
    result = processor().process([far])
    assert result.dead_letters == [] and len(result.predictions) == 1


def test_a_re_sent_event_id_is_dead_lettered_as_duplicate_and_counted_once() -> None:
    state = FakeState()
    first = processor(state).process([record(0, txn(0)), record(1, txn(1, minutes=1))])
    state.commit(first.state)
    again = processor(state).process([record(2, txn(0)), record(3, {**txn(1, minutes=2), "amount": 99.0}),
                                      record(4, txn(5, minutes=3))])
    assert [(d.offset, d.error.code) for d in again.dead_letters] == [(2, ErrorCode.DUPLICATE),
                                                                      (3, ErrorCode.DUPLICATE)]
    assert "already applied" in again.dead_letters[0].error.message
    assert [p.event_id for p in again.predictions] == ["e5"]
    assert again.predictions[0].features["user_txn_count_10m"] == 3
