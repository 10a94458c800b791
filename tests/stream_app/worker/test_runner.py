from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest

from stream_app.adapters.redis_writes import HashRead, SetValue, Write
from stream_app.contract import DeadLetter, ErrorCode, Prediction
from stream_app.core.engine import WindowState
from stream_app.core.records import LabelRow, WindowRow
from stream_app.errors import (
    BatchAbandonedError,
    LabelsAheadError,
    PermanentDeliveryError,
    RetryBatchError,
    ServiceUnavailableError,
    StateConflictError,
)
from stream_app.settings import WorkerSettings
from stream_app.worker.app import finish_even_if_cancelled
from stream_app.worker.lane import Lane
from stream_app.worker.processor import BatchProcessor
from stream_app.worker.runner import LATENCIES_KEPT, BatchRunner, RunnerStats, run_with_retries
from tests.fixtures.fakes import FakeModel, FakeOnline, FakeState, record, txn

FAST = WorkerSettings(retry_initial_s=0.001, retry_max_s=0.002, poison_attempts=2)


class Journal:
    """Every effect, in order, as the runner performs it."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.predictions: list[Prediction] = []
        self.dead: list[DeadLetter] = []


class Publisher:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        self.journal.effects.append("publish")
        self.journal.predictions.extend(predictions)
        self.journal.dead.extend(dead_letters)


class Online(FakeOnline):
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def window_writes(self, user_rows: Sequence[WindowRow], merchant_rows: Sequence[WindowRow]) -> list[Write]:
        self.journal.effects.append("online")
        return [SetValue(f"online:{user}", "row") for user, _, _ in user_rows]


class FlakyState(FakeState):
    """Redis away for the first ``outages`` commits."""

    def __init__(self, journal: Journal, outages: int = 0) -> None:
        super().__init__()
        self.journal = journal
        self.outages = outages

    def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
        if self.outages:
            self.outages -= 1
            self.journal.effects.append("commit failed")
            raise ServiceUnavailableError("redis down")
        self.journal.effects.append("commit")
        super().commit(state, also)


def runner(journal: Journal, state: FakeState, processor: BatchProcessor | None = None) -> BatchRunner:
    online = Online(journal)
    processor = processor or BatchProcessor(allowed_lateness_s=300, state=state, online=online, model=FakeModel())
    return BatchRunner(processor=processor, publisher=Publisher(journal), online=online,
                       state=state, settings=FAST)


def test_effects_happen_in_crash_safe_order() -> None:
    journal = Journal()
    state = FlakyState(journal)
    asyncio.run(runner(journal, state).handle([record(0, txn(0)), record(1, txn(1, minutes=1))]))
    assert journal.effects == ["publish", "online", "commit"]
    assert state.also == [SetValue("online:1", "row")] * 2  # the online rows are written by the commit


def test_a_dependency_outage_is_waited_out_and_repeated_predictions_are_identical() -> None:
    journal = Journal()
    state = FlakyState(journal, outages=2)
    the_runner = runner(journal, state)
    result = asyncio.run(the_runner.handle([record(i, txn(i, minutes=i)) for i in range(3)]))
    assert journal.effects.count("commit failed") == 2 and journal.effects[-1] == "commit"
    assert the_runner.stats.retries == 2 and len(result.predictions) == 3
    by_event: dict[str, set[str]] = {}
    for p in journal.predictions:
        by_event.setdefault(p.event_id, set()).add(p.model_dump_json(exclude={"scored_at", "latency_ms"}))
    assert sorted(by_event) == ["e0", "e1", "e2"]
    assert all(len(versions) == 1 for versions in by_event.values())
    # after the commit, the same records are replays: nothing more is emitted
    again = asyncio.run(the_runner.handle([record(i, txn(i, minutes=i)) for i in range(3)]))
    assert again.predictions == [] and again.replayed == 3


class Exploding(BatchProcessor):
    def process(self, records):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug")


def test_a_batch_that_keeps_failing_is_dead_lettered_not_lost() -> None:
    journal = Journal()
    state = FlakyState(journal)
    processor = Exploding(allowed_lateness_s=300, state=state, online=Online(journal), model=FakeModel())
    batch = [record(0, txn(0)), record(1, txn(1))]
    result = asyncio.run(runner(journal, state, processor).handle(batch))
    assert [d.offset for d in journal.dead] == [0, 1]
    assert {d.error.code for d in result.dead_letters} == {ErrorCode.INTERNAL}
    assert "a bug" in journal.dead[0].error.message


@pytest.mark.parametrize("outages", [1, 3])
def test_outages_never_commit_state_early(outages: int) -> None:
    journal = Journal()
    state = FlakyState(journal, outages=outages)
    asyncio.run(runner(journal, state).handle([record(0, txn(0))]))
    assert journal.effects.count("commit") == 1
    assert state.committed.users[1].positions == {0: 0}


def test_a_cancelled_batch_finishes_before_the_cancellation_propagates() -> None:
    done: list[str] = []

    async def batch() -> None:
        await asyncio.sleep(0.05)
        done.append("committed")

    async def scenario() -> None:
        agent = asyncio.ensure_future(finish_even_if_cancelled(batch()))
        await asyncio.sleep(0.01)
        agent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await agent
        assert done == ["committed"]

    asyncio.run(scenario())


def test_runner_stats_keep_only_the_latest_latencies(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LATENCIES_KEPT >= 10_000  # enough for percentiles, bounded for a worker that runs for weeks
    monkeypatch.setattr("stream_app.worker.runner.LATENCIES_KEPT", 5)
    stats, journal = RunnerStats(), Journal()
    state = FakeState()
    run = runner(journal, state)
    for batch in range(3):
        result = asyncio.run(run.handle([record(batch * 3 + i, txn(batch * 3 + i, user=i)) for i in range(3)]))
        stats.add(result)
    assert stats.predictions == 9 and len(stats.latencies_ms) == 5
    assert list(stats.latencies_ms) == [p.latency_ms for p in journal.predictions[-5:]]


def test_retry_kinds_are_separate_branches_of_the_tree() -> None:
    for kind in (StateConflictError, LabelsAheadError):
        assert issubclass(kind, RetryBatchError) and not issubclass(kind, ServiceUnavailableError)
    assert not issubclass(ServiceUnavailableError, RetryBatchError)


def _failing(errors: list[Exception]) -> Callable[[], Awaitable[str]]:
    """An attempt that raises ``errors`` one after the other, then succeeds."""
    async def attempt() -> str:
        if errors:
            raise errors.pop(0)
        return "done"
    return attempt


async def _never_give_up(exc: Exception) -> str:
    raise AssertionError(f"gave up on {exc!r}")


@pytest.mark.parametrize("error", [StateConflictError(["k"]), LabelsAheadError("ahead"),
                                   ServiceUnavailableError("down")])
def test_expected_retries_never_count_toward_poison(error: Exception) -> None:
    """More retries than ``poison_attempts`` of each expected kind: retried, never given up on."""
    retries: list[None] = []
    result = asyncio.run(run_with_retries(_failing([error] * 5), FAST, FakeState(), give_up=_never_give_up,
                                          on_retry=lambda: retries.append(None), what="batch"))
    assert result == "done" and len(retries) == 5


def test_a_state_conflict_is_retried_at_once_and_labels_ahead_after_the_backoff() -> None:
    slow = WorkerSettings(retry_initial_s=0.2, retry_max_s=0.2)
    started = time.monotonic()
    asyncio.run(run_with_retries(_failing([StateConflictError(["k"])] * 3), slow, FakeState(),
                                 give_up=_never_give_up, on_retry=lambda: None, what="batch"))
    assert time.monotonic() - started < 0.1
    started = time.monotonic()
    asyncio.run(run_with_retries(_failing([LabelsAheadError("ahead")]), slow, FakeState(),
                                 give_up=_never_give_up, on_retry=lambda: None, what="batch"))
    assert time.monotonic() - started >= 0.2


def test_early_labels_are_logged_as_held_not_as_an_unavailable_dependency(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="stream_app.worker.runner"):
        asyncio.run(run_with_retries(_failing([LabelsAheadError("2 labels ahead")]), FAST, FakeState(),
                                     give_up=_never_give_up, on_retry=lambda: None, what="label batch of 2"))
    assert "held for its transactions" in caplog.text and "2 labels ahead" in caplog.text
    assert "unavailable" not in caplog.text


def test_a_retry_after_a_successful_publish_sends_nothing_again() -> None:
    """The state commit fails twice after the outputs were acknowledged: the retries re-process the batch
    but publish none of its predictions or dead letters a second time."""
    journal = Journal()
    state = FlakyState(journal, outages=2)
    batch = [record(0, txn(0)), record(1, b"{bad"), record(2, txn(2, minutes=2))]
    result = asyncio.run(runner(journal, state).handle(batch))
    assert journal.effects.count("commit failed") == 2 and journal.effects[-1] == "commit"
    assert [p.event_id for p in journal.predictions] == ["e0", "e2"]
    assert [d.offset for d in journal.dead] == [1]
    assert [p.event_id for p in result.predictions] == ["e0", "e2"] and len(result.dead_letters) == 1


class Refusing(Publisher):
    """Refuses for good the predictions of the records at ``offsets`` (event_id e<offset>), and with
    ``stand_ins`` also the dead letters that replace them."""

    def __init__(self, journal: Journal, offsets: set[int], stand_ins: bool = False) -> None:
        super().__init__(journal)
        self.offsets = offsets
        self.stand_ins = stand_ins
        self.calls: list[tuple[list[str], list[tuple[int, str]]]] = []

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        self.calls.append(([p.event_id for p in predictions], [(d.offset, d.error.code) for d in dead_letters]))
        refused = {i: "MSG_SIZE_TOO_LARGE: too large" for i, p in enumerate(predictions)
                   if int(p.event_id[1:]) in self.offsets}
        refused |= {len(predictions) + i: "TOPIC_AUTHORIZATION_FAILED: no" for i, d in enumerate(dead_letters)
                    if self.stand_ins and d.offset in self.offsets and d.error.code == ErrorCode.UNDELIVERABLE}
        await super().publish([p for i, p in enumerate(predictions) if i not in refused],
                              [d for i, d in enumerate(dead_letters) if i + len(predictions) not in refused])
        if refused:
            raise PermanentDeliveryError(refused)


def test_a_prediction_refused_for_good_is_dead_lettered_and_the_batch_goes_on() -> None:
    journal = Journal()
    state = FlakyState(journal)
    the_runner = runner(journal, state)
    publisher = Refusing(journal, offsets={1})
    the_runner.outbox.publisher = publisher
    result = asyncio.run(the_runner.handle([record(i, txn(i, minutes=i)) for i in range(3)]))
    assert [p.event_id for p in journal.predictions] == ["e0", "e2"]
    (dead,) = journal.dead
    assert dead.offset == 1 and dead.error.code == ErrorCode.UNDELIVERABLE
    assert "MSG_SIZE_TOO_LARGE" in dead.error.message
    assert publisher.calls == [(["e0", "e1", "e2"], []), ([], [(1, ErrorCode.UNDELIVERABLE)])]
    assert [p.event_id for p in result.predictions] == ["e0", "e2"] and result.dead_letters == [dead]
    assert journal.effects[-1] == "commit" and state.committed.users[1].positions  # the events are applied
    assert the_runner.stats.retries == 0 and the_runner.stats.dropped == 0


def test_a_dead_letter_refused_for_good_is_counted_and_dropped_never_retried_forever() -> None:
    journal = Journal()
    state = FlakyState(journal)
    the_runner = runner(journal, state)
    # the prediction of offset 1 is refused, and so is the dead letter that stands in for it
    the_runner.outbox.publisher = publisher = Refusing(journal, offsets={1}, stand_ins=True)
    result = asyncio.run(the_runner.handle([record(i, txn(i, minutes=i)) for i in range(3)]))
    assert len(publisher.calls) == 2 and journal.dead == []
    assert the_runner.stats.dropped == 1 and journal.effects[-1] == "commit"
    assert [p.event_id for p in result.predictions] == ["e0", "e2"] and result.dead_letters == []


def test_shutdown_during_an_outage_gives_the_batch_up_at_once_without_committing() -> None:
    journal = Journal()
    state = FlakyState(journal, outages=10**6)
    slow = WorkerSettings(retry_initial_s=30.0, retry_max_s=30.0)
    the_runner = BatchRunner(processor=BatchProcessor(allowed_lateness_s=300, state=state, online=Online(journal),
                                                      model=FakeModel()),
                             publisher=Publisher(journal), online=Online(journal),
                             state=state, settings=slow)

    async def scenario() -> float:
        batch = asyncio.ensure_future(the_runner.handle([record(0, txn(0))]))
        await asyncio.sleep(0.1)  # in its 30 s backoff
        began = time.monotonic()
        the_runner.stop()
        with pytest.raises(BatchAbandonedError):
            await batch
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1.0
    assert "commit" not in journal.effects and state.committed.users == {}


def test_stopping_abandons_outage_retries_but_retries_held_labels_at_once() -> None:
    async def scenario(error: Exception) -> str:
        stopping = asyncio.Event()
        stopping.set()
        return await run_with_retries(_failing([error]), WorkerSettings(retry_initial_s=30.0), FakeState(),
                                      give_up=_never_give_up, on_retry=lambda: None, what="batch", stopping=stopping)

    with pytest.raises(BatchAbandonedError):
        asyncio.run(scenario(ServiceUnavailableError("down")))
    started = time.monotonic()
    assert asyncio.run(scenario(LabelsAheadError("ahead"))) == "done"
    assert time.monotonic() - started < 1.0


class _Message:
    def __init__(self) -> None:
        self.acked = False


class _Event:
    def __init__(self) -> None:
        self.message = _Message()


def test_a_batch_given_up_at_shutdown_withholds_its_acks() -> None:
    events = [_Event(), _Event()]
    stopping = asyncio.Event()

    async def batch() -> None:  # waits out an outage until told to stop
        await stopping.wait()
        raise BatchAbandonedError("given up")

    async def scenario() -> None:
        agent = asyncio.ensure_future(finish_even_if_cancelled(batch(), stopping.set, events))
        await asyncio.sleep(0.01)
        agent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await agent

    asyncio.run(scenario())
    # marked acked behind the consumer's back: Faust's own ack then records no offset to commit
    assert all(e.message.acked for e in events)


def test_a_batch_given_up_as_the_app_begins_to_stop_withholds_its_acks_and_the_agent_goes_on() -> None:
    """Faust waits for acks before it cancels agents: the runners are stopped first, without a cancel."""
    events = [_Event()]

    async def batch() -> None:
        raise BatchAbandonedError("given up")

    asyncio.run(finish_even_if_cancelled(batch(), None, events))
    assert events[0].message.acked


def test_with_a_lane_state_and_scoring_run_off_the_loop_on_one_thread_in_the_same_order() -> None:
    journal = Journal()
    threads: set[int] = set()

    class ThreadState(FlakyState):
        def load_with(self, user_ids: Sequence[int], merchant_ids: Sequence[int], reads: Sequence[HashRead],
                      ) -> tuple[WindowState, list[list[bytes | None]]]:
            threads.add(threading.get_ident())
            return super().load_with(user_ids, merchant_ids, reads)

        def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
            threads.add(threading.get_ident())
            super().commit(state, also)

    state = ThreadState(journal, outages=1)
    online = Online(journal)
    the_runner = BatchRunner(processor=BatchProcessor(allowed_lateness_s=300, state=state, online=online,
                                                      model=FakeModel()),
                             publisher=Publisher(journal), online=online, state=state, settings=FAST, lane=Lane())
    result = asyncio.run(the_runner.handle([record(0, txn(0)), record(1, txn(1, minutes=1))]))
    assert len(result.predictions) == 2
    assert journal.effects == ["publish", "online", "commit failed", "online", "commit"]
    assert len(threads) == 1 and threading.get_ident() not in threads
