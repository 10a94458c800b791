"""Runs one batch through its effects in a crash-safe order, with retries and dead letters.

``BatchRunner`` does it for ``transactions`` (``LabelRunner`` reuses ``run_batch`` and ``Outbox`` for
labels); ``run_with_retries`` is the retry policy; ``Outbox`` delivers a batch's outputs at most once
per process. Why this order and these rules: docs/decisions/0013-crash-safe-batch-order.md and
docs/decisions/0014-poison-never-stalls.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

from stream_app.adapters.redis_writes import Write
from stream_app.contract import DeadLetter, ErrorCode, Prediction
from stream_app.core.records import LabelRow
from stream_app.errors import (
    BatchAbandonedError,
    InvalidRecordError,
    LabelsAheadError,
    PermanentDeliveryError,
    ServiceUnavailableError,
    StateConflictError,
)
from stream_app.settings import WorkerSettings
from stream_app.worker.lane import INLINE, Lane
from stream_app.worker.ports import (
    DeadLetterPort,
    OnlineStorePort,
    PredictionIndexPort,
    PublisherPort,
    RawRecord,
    StatePort,
)
from stream_app.worker.processor import BatchProcessor, BatchResult
from stream_app.worker.sensor import NULL_SENSOR, WorkerSensor, batch_seen, scored_seen

log = logging.getLogger(__name__)
R = TypeVar("R")
LATENCIES_KEPT = 100_000


async def run_with_retries(attempt: Callable[[], Awaitable[R]], settings: WorkerSettings, state: StatePort, *,
                           give_up: Callable[[Exception], Awaitable[R]], on_retry: Callable[[], None],
                           what: str, stopping: asyncio.Event | None = None,
                           sensor: WorkerSensor = NULL_SENSOR) -> R:
    """``attempt()`` until it succeeds. A dependency that is down is waited for with exponential backoff
    (forever: nothing is acked meanwhile); a conflicting concurrent state write is retried at once from
    fresh state; labels ahead of their transactions are retried with the same backoff; any other error is
    retried ``poison_attempts`` times, then ``give_up(error)``. The three expected kinds are disjoint
    branches of the exception tree (errors.py), so the order of the clauses below does not matter.

    Once ``stopping`` is set, a retry wait ends at once with BatchAbandonedError (nothing acked: Kafka
    delivers the batch again after the restart, so shutdown does not wait out an outage), except for
    held labels, which are retried at once (the label runner stops holding them when it stops). See
    docs/decisions/0014-poison-never-stalls.md.

    ``sensor`` is told of every retry (with its reason) and of the time spent waiting for an unavailable
    dependency."""
    delay = settings.retry_initial_s
    failures = 0

    async def pause(seconds: float, abandon: bool = True) -> None:
        if stopping is None:
            await asyncio.sleep(seconds)
            return
        if not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), seconds)
        if stopping.is_set() and abandon:
            raise BatchAbandonedError(f"shutting down: {what} given up unacknowledged, to be redelivered")

    while True:
        try:
            return await attempt()
        except StateConflictError as exc:  # another worker committed the same keys first: not an outage
            on_retry()
            sensor.on_retry("conflict")
            state.invalidate()
            log.info("%s: state changed concurrently, re-processing: %s", what, exc)
            await pause(0)
        except LabelsAheadError as exc:  # the transactions side is behind: nothing is down
            on_retry()
            sensor.on_retry("labels_ahead")
            state.invalidate()
            log.info("%s held for its transactions, retrying in %.1f s: %s", what, delay, exc)
            await pause(delay, abandon=False)
            delay = min(delay * 2, settings.retry_max_s)
        except ServiceUnavailableError as exc:
            on_retry()
            sensor.on_retry("unavailable")
            state.invalidate()
            log.warning("dependency unavailable, retrying %s in %.1f s: %s", what, delay, exc)
            waited = time.monotonic()
            try:
                await pause(delay)
            finally:
                sensor.on_outage(time.monotonic() - waited)
            delay = min(delay * 2, settings.retry_max_s)
        except Exception as exc:  # an escaping error would lose the batch (BatchRunner's docstring)
            failures += 1
            state.invalidate()
            log.exception("%s failed (%d/%d)", what, failures, settings.poison_attempts)
            if failures >= settings.poison_attempts:
                return await give_up(exc)
            sensor.on_retry("error")
            await pause(0)


async def run_batch(records: Sequence[RawRecord], attempt: Callable[[], Awaitable[R]], *,
                    dead_lettered: Callable[[list[DeadLetter]], R], processor: DeadLetterPort,
                    outbox: Outbox, settings: WorkerSettings, state: StatePort,
                    on_retry: Callable[[], None], what: str, stopping: asyncio.Event | None = None,
                    sensor: WorkerSensor = NULL_SENSOR) -> R:
    """``attempt()`` under ``run_with_retries``, with ``outbox`` started afresh for the batch; when the
    batch is poisoned, every record not answered yet becomes a dead letter with code ``internal``,
    delivered (retried while the broker is unavailable: they must not be dropped), and
    ``dead_lettered(letters)`` is the batch's result."""
    outbox.start()

    async def dead_letter_all(exc: Exception) -> R:
        letters = [processor.dead_letter(record, poisoned(settings, exc)) for record in records]

        async def deliver() -> list[DeadLetter]:
            return (await outbox.deliver([], letters))[1]

        delivered = await run_with_retries(deliver, settings, state, give_up=reraise, on_retry=on_retry,
                                           what=f"dead letters of {what}", stopping=stopping, sensor=sensor)
        return dead_lettered(delivered)

    return await run_with_retries(attempt, settings, state, give_up=dead_letter_all, on_retry=on_retry, what=what,
                                  stopping=stopping, sensor=sensor)


Position = tuple[str, int, int]  # (topic, partition, offset) of the record an output answers


def record_position(record: RawRecord) -> Position:
    return record.topic, record.partition, record.offset


def letter_position(letter: DeadLetter) -> Position:
    return letter.source_topic, letter.partition, letter.offset


class Outbox:
    """Delivers one batch's outputs across its attempts (``start`` before each batch). An output the
    broker acknowledged, or refused for good, is not sent again by a later attempt of the batch (a retry
    after the state commit failed re-publishes nothing). A prediction refused for
    good is replaced by a dead letter of its record (code ``undeliverable``); a dead letter or a joined
    label refused for good is logged and counted in ``dropped``: retrying cannot deliver it, and no output may stall a
    partition.

    Shadow predictions go out in the same publish call as the champion's, so a batch replayed after a crash
    sends both again, identical. One refused for good is logged and counted in ``shadow_dropped``, nothing
    more: the champion's prediction of the same record is settled on its own, and a shadow never stalls
    nor dead-letters anything. A transient failure of either fails the whole delivery (retried)."""

    def __init__(self, publisher: PublisherPort, dead_letters: DeadLetterPort) -> None:
        self.publisher = publisher
        self.dead_letters = dead_letters
        self.dropped = 0
        self.shadow_dropped = 0
        self._settled_shadow: set[Position] = set()  # shadow predictions answered: delivered or refused for good
        self._settled: set[Position] = set()  # answered: delivered, or refused for good
        self._replaced: dict[Position, DeadLetter] = {}  # the dead letter standing in for a refused prediction
        self._dropped: set[Position] = set()  # dead letters refused for good
        self._settled_labels: set[str] = set()  # event ids of joined labels answered

    def start(self) -> None:
        """Forgets the previous batch's outputs."""
        self._settled.clear()
        self._settled_shadow.clear()
        self._replaced.clear()
        self._dropped.clear()
        self._settled_labels.clear()

    async def deliver(self, predictions: Sequence[tuple[Prediction, RawRecord]], dead_letters: Sequence[DeadLetter],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[tuple[Prediction, RawRecord]] = (),
                      ) -> tuple[list[tuple[Prediction, RawRecord]], list[DeadLetter]]:
        """Publishes what this batch has not delivered yet (joined labels are sent with the dead letters,
        shadow predictions with the predictions). Returns the batch's answers: the predictions (with their
        records) and the dead letters, the stand-ins for refused predictions included."""
        while True:
            todo_shadow = [(p, r) for p, r in shadow if record_position(r) not in self._settled_shadow]
            kept = [(p, r) for p, r in predictions if record_position(r) not in self._replaced]
            letters = [*dead_letters, *(self._replaced[record_position(r)] for _, r in predictions
                                        if record_position(r) in self._replaced)]
            todo = [(p, r) for p, r in kept if record_position(r) not in self._settled]
            todo_letters = [d for d in letters if letter_position(d) not in self._settled]
            todo_labels = [row for row in labels if row.event_id not in self._settled_labels]
            if todo or todo_letters or todo_labels or todo_shadow:
                try:
                    await self.publisher.publish([p for p, _ in todo], todo_letters, todo_labels,
                                                 [p for p, _ in todo_shadow])
                except PermanentDeliveryError as exc:
                    self._refused(todo, todo_letters, todo_labels, exc.refused)
                    self._refused_shadow(todo_shadow, len(todo) + len(todo_letters) + len(todo_labels),
                                         exc.refused)
                    continue  # the stand-ins of refused predictions are still to be sent
            self._settled.update(record_position(r) for _, r in todo)
            self._settled_shadow.update(record_position(r) for _, r in todo_shadow)
            self._settled.update(letter_position(d) for d in todo_letters)
            self._settled_labels.update(row.event_id for row in todo_labels)
            return kept, [d for d in letters if letter_position(d) not in self._dropped]

    def _refused_shadow(self, shadow: Sequence[tuple[Prediction, RawRecord]], start: int,
                        refused: dict[int, str]) -> None:
        for i, (_, record) in enumerate(shadow, start=start):
            self._settled_shadow.add(record_position(record))
            if i in refused:
                self.shadow_dropped += 1
                log.error("the shadow prediction of %s offset %d was refused for good, dropped: %s",
                          record.topic, record.offset, refused[i])

    def _refused(self, predictions: Sequence[tuple[Prediction, RawRecord]], letters: Sequence[DeadLetter],
                 labels: Sequence[LabelRow], refused: dict[int, str]) -> None:
        for i, (_, record) in enumerate(predictions):
            where = record_position(record)
            if i not in refused:
                self._settled.add(where)
                continue
            log.error("the prediction of %s offset %d was refused for good, dead-lettering it: %s",
                      record.topic, record.offset, refused[i])
            self._replaced[where] = self.dead_letters.dead_letter(record, InvalidRecordError(
                ErrorCode.UNDELIVERABLE, f"its prediction was refused by the broker: {refused[i]}"))
        for i, letter in enumerate(letters, start=len(predictions)):
            self._settled.add(letter_position(letter))
            if i in refused:
                self.dropped += 1
                self._dropped.add(letter_position(letter))
                log.error("the dead letter of %s partition %d offset %d was refused for good, dropped: %s",
                          letter.source_topic, letter.partition, letter.offset, refused[i])
        for i, row in enumerate(labels, start=len(predictions) + len(letters)):
            self._settled_labels.add(row.event_id)
            if i in refused:
                self.dropped += 1
                log.error("the joined label of %s was refused for good, dropped: %s", row.event_id, refused[i])


@dataclass
class RunnerStats:
    """What a BatchRunner has done since it started: records, outputs, retries, latencies."""

    records: int = 0
    predictions: int = 0
    replayed: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    dropped: int = 0  # dead letters the broker refused for good (logged)
    # the latest predictions' latencies only, so the memory they take stays bounded
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    def add(self, result: BatchResult) -> None:
        self.records += result.records
        self.predictions += len(result.predictions)
        self.replayed += result.replayed
        self.dead_letters.update(str(d.error.code) for d in result.dead_letters)
        self.latencies_ms.extend(p.latency_ms for p in result.predictions)


class BatchRunner:
    """Carries each ``transactions`` batch through its effects, in the order that makes crashes harmless:

    1. compute (``BatchProcessor.process``: reads state and profiles, writes nothing);
    2. deliver predictions and dead letters through the ``Outbox`` and wait for the broker's
       acknowledgement (the offline log is the sink's: it reads the rows back from the predictions);
    3. commit, in one atomic Redis step, the window state, the prediction index entries (and the
       partitions' watermarks) for the label join and the served rows to the online store: from here on
       the batch's events are replays;
    4. return; the caller acks the records, and Faust commits the offsets later.

    A crash before 3 replays the batch from the old state: same features, same predictions (duplicates
    are identical). A crash after 3 replays recognised events:
    nothing is emitted twice and no aggregate counts an event twice.

    Nothing escapes ``handle``: Faust acks a whole ``take_events`` batch when an exception escapes
    (faust-streaming #527), which would lose it. Failures are retried by ``run_with_retries``; a batch
    that keeps failing is dead-lettered with code ``internal`` (``run_batch``); after ``stop`` a batch
    waiting to be retried is given up unacked (BatchAbandonedError). See
    docs/decisions/0013-crash-safe-batch-order.md.
    """

    def __init__(self, *, processor: BatchProcessor, publisher: PublisherPort, online: OnlineStorePort,
                 state: StatePort, settings: WorkerSettings,
                 index: PredictionIndexPort | None = None, lane: Lane = INLINE,
                 sensor: WorkerSensor = NULL_SENSOR) -> None:
        self.processor = processor
        self.sensor = sensor
        self.lane = lane
        self.index = index
        self.publisher = publisher
        self.online = online
        self.state = state
        self.settings = settings
        self.stats = RunnerStats()
        self.outbox = Outbox(publisher, processor)
        self.stopping = asyncio.Event()

    async def handle(self, records: Sequence[RawRecord]) -> BatchResult:
        """The batch's result once its effects are done; BatchAbandonedError if ``stop`` was called while
        it waited to be retried (nothing acked: it must not be). The sensor is told of the batch and of
        its scoring."""
        started = time.perf_counter()
        try:
            result = await run_batch(
                records, lambda: self._once(records),
                dead_lettered=lambda letters: BatchResult(dead_letters=letters, records=len(records)),
                processor=self.processor, outbox=self.outbox, settings=self.settings, state=self.state,
                on_retry=self._count_retry, what=f"batch of {len(records)}", stopping=self.stopping,
                sensor=self.sensor)
        finally:
            self.stats.dropped = self.outbox.dropped
        self.stats.add(result)
        self.sensor.on_scored(scored_seen(result))
        self.sensor.on_batch(batch_seen(records, time.perf_counter() - started, result.dead_letters))
        return result

    def stop(self) -> None:
        """Shutting down: a batch waiting to be retried is given up, unacked, at once."""
        self.stopping.set()

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def _once(self, records: Sequence[RawRecord]) -> BatchResult:
        result = await self.lane.run(lambda: self.processor.process(records))
        answered, result.dead_letters = await self.outbox.deliver(
            list(zip(result.predictions, result.sources, strict=True)), result.dead_letters,
            shadow=list(zip(result.shadow, result.sources, strict=True)) if result.shadow else ())
        result.acked_at = time.time()
        result.predictions = [p for p, _ in answered]
        result.sources = [r for _, r in answered]
        await self.lane.run(lambda: self._commit(result))
        return result

    def _commit(self, result: BatchResult) -> None:
        writes: list[Write] = []  # committed with the state: one atomic step in Redis
        if self.index is not None:
            twins = {p.event_id: p for p in result.shadow} if result.shadow else None
            writes += self.index.writes(result.predictions, result.watermarks, twins)
        if result.user_rows:
            writes += self.online.window_writes(result.user_rows, result.merchant_rows)
        self.state.commit(result.state, writes)


def poisoned(settings: WorkerSettings, exc: Exception) -> InvalidRecordError:
    """The dead-letter reason of a batch that failed ``poison_attempts`` times."""
    return InvalidRecordError(ErrorCode.INTERNAL, f"processing failed {settings.poison_attempts} times: "
                              f"{type(exc).__name__}: {exc}"[:1000])


async def reraise(exc: Exception) -> NoReturn:
    """``give_up`` for work that must not be dropped: the error propagates."""
    raise exc

