"""Carries one batch through its effects in the order that makes crashes harmless:

1. compute (``BatchProcessor.process``: reads state and profiles, writes nothing);
2. deliver predictions and dead letters and wait for the broker's acknowledgement, then index the
   predictions (and the partitions' watermarks) for the label join;
3. append the served feature rows to the offline log, then write them to the online store;
4. commit the window state (one atomic write) — from here on the batch's events are replays;
5. return; the caller acks the records, and Faust commits the offsets later.

A crash before 4 replays the batch from the old state: same features, same predictions (duplicates are
identical; the offline log gets identical rows again). A crash after 4 replays recognised events:
nothing is emitted twice and no aggregate counts an event twice.

Nothing escapes ``handle``: Faust acks a whole ``take_events`` batch when an exception escapes
(faust-streaming #527), which would lose it. A dependency that is down (ServiceUnavailableError) is
waited for with backoff, without acking; a user key another worker changed (StateConflictError) is
re-processed at once; labels ahead of their transactions (LabelsAheadError) are re-processed with the
same backoff; any other failure is retried, then the batch's records are dead-lettered with code
``internal`` so they are kept, not lost, and the worker goes on."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from stream_app.contract import DeadLetter, ErrorCode
from stream_app.errors import InvalidRecordError, LabelsAheadError, ServiceUnavailableError, StateConflictError
from stream_app.settings import WorkerSettings
from stream_app.worker.ports import (
    DeadLetterPort,
    OfflineLogPort,
    OnlineStorePort,
    PredictionIndexPort,
    PublisherPort,
    RawRecord,
    StatePort,
)
from stream_app.worker.processor import BatchProcessor, BatchResult

log = logging.getLogger(__name__)
R = TypeVar("R")
LATENCIES_KEPT = 100_000


async def run_with_retries(attempt: Callable[[], Awaitable[R]], settings: WorkerSettings, state: StatePort, *,
                           give_up: Callable[[Exception], Awaitable[R]], on_retry: Callable[[], None],
                           what: str) -> R:
    """``attempt()`` until it succeeds. A dependency that is down is waited for with exponential backoff
    (forever: nothing is acked meanwhile); a conflicting concurrent state write is retried at once from
    fresh state; labels ahead of their transactions are retried with the same backoff; any other error is
    retried ``poison_attempts`` times, then ``give_up(error)``. The three expected kinds are disjoint
    branches of the exception tree (errors.py), so the order of the clauses below does not matter."""
    delay = settings.retry_initial_s
    failures = 0
    while True:
        try:
            return await attempt()
        except StateConflictError as exc:  # another worker committed the same keys first: not an outage
            on_retry()
            state.invalidate()
            log.info("%s: state changed concurrently, re-processing: %s", what, exc)
            await asyncio.sleep(0)
        except LabelsAheadError as exc:  # the transactions side is behind: nothing is down
            on_retry()
            state.invalidate()
            log.info("%s held for its transactions, retrying in %.1f s: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.retry_max_s)
        except ServiceUnavailableError as exc:
            on_retry()
            state.invalidate()
            log.warning("dependency unavailable, retrying %s in %.1f s: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.retry_max_s)
        except Exception as exc:  # an escaping error would lose the batch (module docstring)
            failures += 1
            state.invalidate()
            log.exception("%s failed (%d/%d)", what, failures, settings.poison_attempts)
            if failures >= settings.poison_attempts:
                return await give_up(exc)


async def run_batch(records: Sequence[RawRecord], attempt: Callable[[], Awaitable[R]], *,
                    dead_lettered: Callable[[list[DeadLetter]], R], processor: DeadLetterPort,
                    publisher: PublisherPort, settings: WorkerSettings, state: StatePort,
                    on_retry: Callable[[], None], what: str) -> R:
    """``attempt()`` under ``run_with_retries``; when the batch is poisoned, every record becomes a dead
    letter with code ``internal``, delivered (retried until the broker takes them: they must not be
    dropped), and ``dead_lettered(letters)`` is the batch's result."""

    async def dead_letter_all(exc: Exception) -> R:
        letters = [processor.dead_letter(record, poisoned(settings, exc)) for record in records]
        await run_with_retries(lambda: publisher.publish([], letters), settings, state, give_up=reraise,
                               on_retry=on_retry, what=f"dead letters of {what}")
        return dead_lettered(letters)

    return await run_with_retries(attempt, settings, state, give_up=dead_letter_all, on_retry=on_retry, what=what)


@dataclass
class RunnerStats:
    records: int = 0
    predictions: int = 0
    replayed: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    # the latest predictions' latencies only: a list of every one grew ~200 MB/hour at 1.8k ev/s
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))

    def add(self, result: BatchResult) -> None:
        self.records += result.records
        self.predictions += len(result.predictions)
        self.replayed += result.replayed
        self.dead_letters.update(str(d.error.code) for d in result.dead_letters)
        self.latencies_ms.extend(p.latency_ms for p in result.predictions)


class BatchRunner:
    def __init__(self, *, processor: BatchProcessor, publisher: PublisherPort, online: OnlineStorePort,
                 offline: OfflineLogPort, state: StatePort, settings: WorkerSettings,
                 index: PredictionIndexPort | None = None) -> None:
        self.processor = processor
        self.index = index
        self.publisher = publisher
        self.online = online
        self.offline = offline
        self.state = state
        self.settings = settings
        self.stats = RunnerStats()

    async def handle(self, records: Sequence[RawRecord]) -> BatchResult:
        result = await run_batch(records, lambda: self._once(records),
                                 dead_lettered=lambda letters: BatchResult(dead_letters=letters, records=len(records)),
                                 processor=self.processor, publisher=self.publisher, settings=self.settings,
                                 state=self.state, on_retry=self._count_retry, what=f"batch of {len(records)}")
        self.stats.add(result)
        return result

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def _once(self, records: Sequence[RawRecord]) -> BatchResult:
        result = self.processor.process(records)
        await self.publisher.publish(result.predictions, result.dead_letters)
        if self.index is not None:
            # before the commit: a replay remembers them again
            self.index.remember(result.predictions, result.watermarks)
        if result.user_rows:
            identity = batch_id(records)
            self.offline.append_rows(result.user_rows, result.merchant_rows, identity)
            self.online.write_windows(result.user_rows, result.merchant_rows)
        self.state.commit(result.state)
        return result


def poisoned(settings: WorkerSettings, exc: Exception) -> InvalidRecordError:
    """The dead-letter reason of a batch that failed ``poison_attempts`` times."""
    return InvalidRecordError(ErrorCode.INTERNAL, f"processing failed {settings.poison_attempts} times: "
                              f"{type(exc).__name__}: {exc}"[:1000])


async def reraise(exc: Exception) -> None:
    """``give_up`` for work that must not be dropped: the error propagates."""
    raise exc


def batch_id(records: Sequence[RawRecord]) -> str:
    """Names the batch by its source positions, so a replayed identical batch rewrites the same part."""
    by_partition: dict[int, list[int]] = {}
    for r in records:
        by_partition.setdefault(r.partition, []).append(r.offset)
    return "_".join(f"p{p}-{min(o)}-{max(o)}" for p, o in sorted(by_partition.items()))

