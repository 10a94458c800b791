from __future__ import annotations

import base64
from datetime import timedelta

from stream_app.contract import ErrorCode
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
    result = processor().process([record(0, txn(0, minutes=60)), record(1, txn(1, minutes=0))])
    assert [p.event_id for p in result.predictions] == ["e0"]
    assert [d.error.code for d in result.dead_letters] == [ErrorCode.LATE]
    assert "allowed lateness" in result.dead_letters[0].error.message
