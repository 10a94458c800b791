"""Runs one batch of ``labels`` records through its effects, in the transactions runner's order
(``LabelRunner``), with the same retries, outbox and dead letters (``runner.run_batch``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from stream_app.core.online_quality import OnlineQuality
from stream_app.errors import LabelsAheadError
from stream_app.settings import WorkerSettings
from stream_app.worker.labels import LabelBatchResult, LabelProcessor
from stream_app.worker.lane import INLINE, Lane
from stream_app.worker.ports import PublisherPort, RawRecord, StatePort
from stream_app.worker.runner import Outbox, run_batch
from stream_app.worker.sensor import NULL_SENSOR, WorkerSensor, batch_seen

log = logging.getLogger(__name__)


@dataclass
class LabelStats:
    """What a LabelRunner has done since it started, by outcome."""

    records: int = 0
    applied: int = 0
    replayed: int = 0
    late: int = 0
    unjoined: int = 0
    early: int = 0  # of the unjoined: labels given up on after label_join_wait_s (transactions were behind)
    dead_letters: int = 0
    retries: int = 0


class LabelRunner:
    """Carries each ``labels`` batch through its effects: compute (join + label windows, writes nothing;
    labels early for their transactions hold the batch, see ``LabelProcessor``) → deliver the dead letters
    and the joined labels (to ``labels.joined``, which the sink writes to the label log) → commit the
    merchant label windows, with the removal of the joined labels' prediction index entries and the
    batch's offsets (from here on the labels are replays) → count them in the online quality
    measurement.

    A crash before the commit replays the batch: the same joined labels again (identical), the same
    windows, and the quality counts each label once because it is fed only after the commit. See
    docs/decisions/0013-crash-safe-batch-order.md.
    """

    def __init__(self, *, processor: LabelProcessor, publisher: PublisherPort, state: StatePort,
                 quality: OnlineQuality, settings: WorkerSettings, lane: Lane = INLINE,
                 sensor: WorkerSensor = NULL_SENSOR) -> None:
        self.processor = processor
        self.sensor = sensor
        self.lane = lane
        self.publisher = publisher
        self.state = state
        self.quality = quality
        self.settings = settings
        self.stats = LabelStats()
        self.outbox = Outbox(publisher, processor)
        self.stopping = asyncio.Event()
        self._held_since: float | None = None  # when the batch in hand was first held for its transactions
        self._holding = True  # False once shutting down: early labels are no longer held

    async def handle(self, records: Sequence[RawRecord]) -> LabelBatchResult:
        """The batch's result once its effects are done; BatchAbandonedError if ``stop`` was called while
        it waited out an outage (nothing acked). The sensor is told of the batch and the joined labels."""
        started = time.perf_counter()
        self._held_since = None
        result = await run_batch(records, lambda: self._once(records),
                                 dead_lettered=lambda letters: LabelBatchResult(dead_letters=letters,
                                                                                records=len(records)),
                                 processor=self.processor, outbox=self.outbox, settings=self.settings,
                                 state=self.state, on_retry=self._count_retry, what=f"label batch of {len(records)}",
                                 stopping=self.stopping, sensor=self.sensor)
        for row in result.joined:
            self.quality.add(row.model_version, row.score, row.is_fraud)
        for version, score, is_fraud in result.shadow_joined:  # the shadow, on the same labels
            self.quality.add(version, score, is_fraud)
        s = self.stats
        s.records += result.records
        s.applied += result.applied
        s.replayed += result.replayed
        s.late += result.late
        s.unjoined += result.unjoined
        s.early += result.early
        s.dead_letters += len(result.dead_letters)
        self.sensor.on_labels(result.delays_s)
        self.sensor.on_batch(batch_seen(records, time.perf_counter() - started, result.dead_letters))
        return result

    def stop_holding(self) -> None:
        """Shutting down: don't wait for transactions any longer; early labels count as unjoined (this batch
        and every later one)."""
        self._holding = False

    def stop(self) -> None:
        """Shutting down: stop holding early labels; a batch waiting out an outage is given up, unacked."""
        self.stop_holding()
        self.stopping.set()

    def _count_retry(self) -> None:
        self.stats.retries += 1

    async def _once(self, records: Sequence[RawRecord]) -> LabelBatchResult:
        now = time.monotonic()
        hold = self._holding and (self._held_since is None
                                  or now - self._held_since < self.settings.label_join_wait_s)
        try:
            result = await self.lane.run(lambda: self.processor.process(records, hold_early=hold))
        except LabelsAheadError:
            if self._held_since is None:
                self._held_since = now
            raise
        if result.early:
            log.warning("%d labels still had no prediction after %.0f s: counted as unjoined", result.early,
                        self.settings.label_join_wait_s)
        # a retry of the batch does not send again what an earlier attempt delivered (the outbox remembers)
        _, result.dead_letters = await self.outbox.deliver([], result.dead_letters, result.joined)
        await self.lane.run(lambda: self.state.commit(result.state, result.writes))
        return result
