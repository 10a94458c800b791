from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from stream_app.adapters.redis_writes import Delete, RaiseScores, Write
from stream_app.contract import ErrorCode, Prediction
from stream_app.core.engine import WindowState
from stream_app.core.online_quality import OnlineQuality
from stream_app.core.records import Indexed, LabelRow
from stream_app.errors import LabelsAheadError, PermanentDeliveryError, ServiceUnavailableError
from stream_app.settings import WorkerSettings
from stream_app.worker.label_runner import LabelRunner
from stream_app.worker.labels import LabelProcessor
from stream_app.worker.ports import RawRecord
from tests.fixtures.fakes import FakeState

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class FakeIndex:
    """Entries and offsets in memory; ``apply`` applies the writes of ``label_writes`` (as the commit does)."""

    def __init__(self, known: dict[str, Indexed], watermarks: dict[int, float] | None = None) -> None:
        self.known = known
        self.marks = watermarks if watermarks is not None else {0: (T0 + timedelta(days=30)).timestamp()}
        self.offsets: dict[int, int] = {}

    def remember(self, predictions: Sequence[Prediction], watermarks: Mapping[int, float] | None = None) -> None:
        raise AssertionError("not used")

    def lookup(self, event_ids: Sequence[str]) -> list[Indexed | None]:
        return [self.known.get(e) for e in event_ids]

    def watermarks(self, partitions: Sequence[int]) -> list[float | None]:
        return [self.marks.get(p) for p in partitions]

    def label_writes(self, event_ids: Sequence[str], offsets: Mapping[int, int]) -> list[Write]:
        return [*(Delete(f"pred:{e}") for e in event_ids),
                RaiseScores("label_offsets", {str(p): float(o) for p, o in offsets.items()})]

    def committed_offsets(self, partitions: Sequence[int]) -> list[int | None]:
        return [self.offsets.get(p) for p in partitions]

    def apply(self, writes: Sequence[Write]) -> None:
        for w in writes:
            if isinstance(w, Delete):
                self.known.pop(str(w.key).removeprefix("pred:"), None)
            elif isinstance(w, RaiseScores):
                for p, o in w.scores.items():
                    self.offsets[int(p)] = max(int(o), self.offsets.get(int(p), -1))


def label_processor(state: object, index: FakeIndex, transaction_partitions: int = 1) -> LabelProcessor:
    return LabelProcessor(allowed_lateness_s=300, state=state, index=index,  # type: ignore[arg-type]
                          transaction_partitions=transaction_partitions, label_partitions=1)


def label(offset: int, event_id: str, fraud: bool, hours: float = 0) -> RawRecord:
    body = {"event_id": event_id, "user_id": 1, "is_fraud": fraud,
            "label_time": (T0 + timedelta(hours=hours)).isoformat()}
    return RawRecord("labels", 0, offset, b"1", json.dumps(body).encode())


def test_labels_join_feed_merchant_windows_and_online_quality() -> None:
    index = FakeIndex({"a": Indexed(7, 0.9, "v1"), "b": Indexed(7, 0.2, "v1"), "c": Indexed(8, 0.1, "v1")})
    state = FakeState()
    processor = label_processor(state, index)
    result = processor.process([label(0, "a", True), label(1, "b", False, 1), label(2, "c", False, 2),
                                label(3, "zzz", True, 3), RawRecord("labels", 0, 4, b"1", b"nope")])
    assert (result.applied, result.unjoined) == (3, 1)
    assert [d.error.code for d in result.dead_letters] == [ErrorCode.DECODE]
    windows = result.state.merchant_labels[7]
    assert windows.query((T0 + timedelta(hours=2)).timestamp())["merchant_fraud_rate_7d"] == 0.5
    assert [(r.event_id, r.merchant_id, r.is_fraud, r.score) for r in result.joined] == [
        ("a", 7, True, 0.9), ("b", 7, False, 0.2), ("c", 8, False, 0.1)]
    state.commit(result.state)
    again = processor.process([label(0, "a", True)])
    assert again.replayed == 1 and again.applied == 0 and again.joined == []


def test_online_auc_is_undefined_until_both_classes_are_seen() -> None:
    quality = OnlineQuality(window=3)
    quality.add("v1", 0.9, True)
    assert math.isnan(quality.roc_auc("v1"))
    for score in (0.1, 0.2, 0.95):
        quality.add("v1", score, False)
    assert quality.count("v1") == 3  # bounded: the oldest pair fell out
    assert math.isnan(quality.roc_auc("v1"))  # only negatives remain in the window


class Effects:
    """Publisher and state in one journal, in the order the runner uses them."""

    def __init__(self, commit_outages: int = 0) -> None:
        self.effects: list[str] = []
        self.logged: list[str] = []
        self.state = FakeState()
        self.outages = commit_outages

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[object],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        self.effects.append(f"publish {len(dead_letters)} dead {len(labels)} joined")
        self.logged.extend(r.event_id for r in labels)

    def load(self, user_ids: Sequence[int], merchant_ids: Sequence[int]) -> WindowState:
        return self.state.load(user_ids, merchant_ids)

    def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
        if self.outages:
            self.outages -= 1
            self.effects.append("commit failed")
            raise ServiceUnavailableError("redis down")
        self.effects.append("commit")
        self.state.commit(state, also)

    def invalidate(self) -> None:
        self.effects.append("invalidate")


def test_label_runner_publishes_joined_labels_before_commit_and_counts_quality_once_across_retries() -> None:
    effects, quality = Effects(commit_outages=1), OnlineQuality()
    index = FakeIndex({"a": Indexed(7, 0.9, "v1"), "b": Indexed(7, 0.2, "v1")})
    runner = LabelRunner(processor=label_processor(effects, index),
                         publisher=effects, state=effects, quality=quality,
                         settings=WorkerSettings(retry_initial_s=0.001, retry_max_s=0.002))
    batch = [label(10, "a", True), label(11, "b", False), RawRecord("labels", 0, 12, b"1", b"{")]
    asyncio.run(runner.handle(batch))
    assert effects.effects == ["publish 1 dead 2 joined", "commit failed", "invalidate",
                               "commit"]  # the retry publishes neither the dead letter nor the labels again
    assert effects.logged == ["a", "b"]
    assert quality.count("v1") == 2 and quality.roc_auc("v1") == 1.0  # once, although processed twice
    asyncio.run(runner.handle(batch))  # redelivered after the commit: replays, nothing counted again
    assert quality.count("v1") == 2 and runner.stats.replayed == 2 and runner.stats.retries == 1


def test_a_label_early_for_its_transaction_holds_the_batch_until_transactions_catch_up() -> None:
    index = FakeIndex({"a": Indexed(7, 0.9, "v1")}, watermarks={0: (T0 + timedelta(hours=1)).timestamp()})
    processor = label_processor(FakeState(), index)
    early = [label(0, "a", True), label(1, "b", True, hours=2)]  # b's transaction not scored yet: at 1 h
    with pytest.raises(LabelsAheadError, match="1 of 2 labels"):
        processor.process(early)
    index.marks[0] = (T0 + timedelta(hours=3)).timestamp()  # transactions passed b's label time: b is orphan
    result = processor.process(early)
    assert (result.applied, result.unjoined, result.early) == (1, 1, 0)
    index.marks[0] = (T0 + timedelta(hours=1)).timestamp()
    given_up = processor.process(early, hold_early=False)
    assert (given_up.applied, given_up.unjoined, given_up.early) == (1, 1, 1)


def test_with_other_partition_counts_labels_wait_for_the_slowest_transactions_partition() -> None:
    index = FakeIndex({}, watermarks={0: (T0 + timedelta(hours=5)).timestamp()})  # partition 1: nothing yet
    processor = label_processor(FakeState(), index, transaction_partitions=2)
    with pytest.raises(LabelsAheadError):
        processor.process([label(0, "x", False, hours=1)])
    index.marks[1] = (T0 + timedelta(hours=2)).timestamp()
    assert processor.process([label(0, "x", False, hours=1)]).unjoined == 1


def test_the_label_runner_gives_up_holding_after_the_join_wait() -> None:
    effects = Effects()
    index = FakeIndex({}, watermarks={0: T0.timestamp()})  # transactions stuck before the label
    runner = LabelRunner(processor=label_processor(effects, index), publisher=effects,
                         state=effects, quality=OnlineQuality(),
                         settings=WorkerSettings(retry_initial_s=0.01, retry_max_s=0.02, label_join_wait_s=0.1))
    started = time.monotonic()
    asyncio.run(runner.handle([label(0, "x", True, hours=1)]))
    assert time.monotonic() - started >= 0.1
    assert runner.stats.retries >= 2 and (runner.stats.unjoined, runner.stats.early) == (1, 1)


def test_stop_holding_lets_a_held_batch_finish_at_shutdown() -> None:
    effects = Effects()
    index = FakeIndex({}, watermarks={0: T0.timestamp()})
    runner = LabelRunner(processor=label_processor(effects, index), publisher=effects,
                         state=effects, quality=OnlineQuality(),
                         settings=WorkerSettings(retry_initial_s=0.01, retry_max_s=0.02, label_join_wait_s=3600))

    async def shutdown_soon() -> None:
        task = asyncio.ensure_future(runner.handle([label(0, "x", True, hours=1)]))
        await asyncio.sleep(0.1)
        assert not task.done()  # held: the transactions are behind
        runner.stop_holding()
        await asyncio.wait_for(task, timeout=1.0)

    asyncio.run(shutdown_soon())
    assert (runner.stats.unjoined, runner.stats.early) == (1, 1)


def test_after_stop_later_batches_are_not_held_either() -> None:
    """Shutting down, a batch that starts after ``stop`` must not be held: its retries would not wait (the
    runner is stopping) and would spin until the join wait ran out."""
    effects = Effects()
    index = FakeIndex({}, watermarks={0: T0.timestamp()})
    runner = LabelRunner(processor=label_processor(effects, index), publisher=effects,
                         state=effects, quality=OnlineQuality(),
                         settings=WorkerSettings(retry_initial_s=0.01, retry_max_s=0.02, label_join_wait_s=3600))
    runner.stop()
    # on a thread: a retry loop that never yields would block asyncio.wait_for's own timeout
    handled = threading.Thread(target=asyncio.run, args=(runner.handle([label(0, "x", True, hours=1)]),),
                               daemon=True)
    handled.start()
    handled.join(timeout=2.0)
    assert not handled.is_alive(), "the batch was held after stop"
    assert (runner.stats.unjoined, runner.stats.early, runner.stats.retries) == (1, 1, 0)


class RefusingLabels(Effects):
    """Refuses for good every joined label it is given (e.g. labels.joined not authorised)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[object],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        self.calls += 1
        await super().publish(predictions, dead_letters, [])
        if labels:
            first = len(predictions) + len(dead_letters)
            raise PermanentDeliveryError({first + i: "TOPIC_AUTHORIZATION_FAILED: no" for i in range(len(labels))})


def test_a_joined_label_refused_for_good_is_counted_and_dropped_and_the_batch_commits() -> None:
    effects = RefusingLabels()
    index = FakeIndex({"a": Indexed(7, 0.9, "v1")})
    runner = LabelRunner(processor=label_processor(effects, index), publisher=effects, state=effects,
                         quality=OnlineQuality(), settings=WorkerSettings(retry_initial_s=0.001, retry_max_s=0.002))
    asyncio.run(runner.handle([label(0, "a", True)]))
    assert effects.calls == 1 and runner.outbox.dropped == 1  # not sent again: retrying cannot deliver it
    assert effects.effects[-1] == "commit" and runner.stats.applied == 1


class IndexedEffects(Effects):
    """Effects whose commit also applies its other writes to the index, in the same step."""

    def __init__(self, index: FakeIndex) -> None:
        super().__init__()
        self.index = index

    def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
        super().commit(state, also)
        self.index.apply(also)


def test_a_committed_batch_removes_its_labels_entries_and_its_redelivery_is_recognised_without_them() -> None:
    index = FakeIndex({"a": Indexed(7, 0.9, "v1"), "b": Indexed(7, 0.2, "v1"), "late": Indexed(7, 0.3, "v1"),
                       "waiting": Indexed(8, 0.5, "v1")})
    effects, quality = IndexedEffects(index), OnlineQuality()
    runner = LabelRunner(processor=label_processor(effects, index), publisher=effects, state=effects,
                         quality=quality, settings=WorkerSettings(retry_initial_s=0.001, retry_max_s=0.002))
    batch = [label(10, "a", True, hours=2), label(11, "b", False, hours=2), label(12, "late", True),
             label(13, "zzz", True, hours=2), RawRecord("labels", 0, 14, b"1", b"{")]
    first = asyncio.run(runner.handle(batch))
    assert (first.applied, first.late, first.unjoined, len(first.dead_letters)) == (2, 1, 1, 1)
    assert set(index.known) == {"waiting"}  # every entry a label found is gone, applied or late
    assert index.offsets == {0: 14}

    again = asyncio.run(runner.handle(batch))  # redelivered after the commit: Kafka's offsets were not committed
    assert (again.replayed, again.applied, again.late, again.unjoined, again.joined) == (4, 0, 0, 0, [])
    assert effects.logged == ["a", "b"] and quality.count("v1") == 2  # not published or counted again
    assert not again.state.merchant_labels  # no label window loaded, nothing applied again
    assert [d.error.code for d in again.dead_letters] == [ErrorCode.DECODE]  # as before: at least once


def test_a_label_sent_again_for_a_joined_event_is_unjoined_and_the_first_label_counts() -> None:
    index = FakeIndex({"a": Indexed(7, 0.9, "v1"), "b": Indexed(7, 0.2, "v1")})
    effects = IndexedEffects(index)
    runner = LabelRunner(processor=label_processor(effects, index), publisher=effects, state=effects,
                         quality=OnlineQuality(), settings=WorkerSettings(retry_initial_s=0.001, retry_max_s=0.002))
    same_batch = asyncio.run(runner.handle([label(0, "a", True), label(1, "a", False), label(2, "b", False)]))
    assert (same_batch.applied, same_batch.unjoined, same_batch.early) == (2, 1, 0)
    assert [(r.event_id, r.is_fraud) for r in same_batch.joined] == [("a", True), ("b", False)]
    rate = effects.state.committed.merchant_labels[7].query((T0 + timedelta(hours=1)).timestamp())
    assert rate["merchant_fraud_rate_7d"] == 0.5  # a (fraud) and b (legit), once each
    later = asyncio.run(runner.handle([label(3, "b", True, hours=1)]))
    assert (later.applied, later.unjoined, later.replayed, later.joined) == (0, 1, 0, [])
    assert not later.state.merchant_labels  # b's windows untouched by the second label
