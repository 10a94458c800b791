"""Event-time-aligned catch-up: the Faust side of ``stream_app.core.alignment``.

``PartitionAligner`` sees every ``transactions`` record as the consumer hands it over to the agent's
stream buffer: Faust passes each fetch through its consumer scheduler (``ConsumerScheduler``, which picks
the order records of different partitions are handed over in), and ``scheduling`` wraps Faust's default
one to tell the aligner; the agent processes records in exactly that order. (Faust's sensors hear of a
record only when the agent takes it from the buffer, thousands of records later.) The aligner reads the
record's event time (``transaction_time_hint``), asks ``Alignment`` which partitions are too far ahead of
the slowest one with records left, and pauses them in aiokafka
(docs/decisions/0024-event-time-aligned-catch-up.md).

Pausing in aiokafka, not with Faust's ``Consumer.pause_partitions``, keeps this apart from Faust's own
flow control: Faust stops and restarts partitions in its own active set (a stream buffer filling up, a
rebalance), and re-adds a partition to that set when the buffer drains, whatever paused it. Faust's
aiokafka driver never pauses in aiokafka, so every partition paused there is the aligner's: it neither
resumes what Faust stopped nor is undone by Faust. A partition is handed over only when both allow it. A
partition paused in aiokafka is not fetched, and records already fetched for it are dropped and fetched
again from its position on resume, so nothing of it reaches the agent while paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import faust
from aiokafka.structs import TopicPartition
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from stream_app.contract import transaction_time_hint
from stream_app.core.alignment import Alignment

log = logging.getLogger(__name__)

RECHECK_S = 0.2  # how often the pause set is recomputed without new records (idle partitions, high-water marks)


class PartitionAligner(faust.Sensor):  # type: ignore[misc]
    """Pauses the partitions of ``topic`` that run ahead of the others in event time (one consumer's)."""

    def __init__(self, app: faust.App, topic: str, alignment: Alignment[TP],
                 on_paused: Callable[[int], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.topic = topic
        self.alignment = alignment
        self.on_paused = on_paused  # told how many partitions are paused for alignment after each change
        self.clock = clock
        self.paused: frozenset[TP] | None = frozenset()  # as applied in aiokafka; None: to be read again
        self._wanted: frozenset[TP] = frozenset()
        self._changed = asyncio.Event()
        self._generation = 0  # assignments seen
        self._pending = 0  # records handed over that the agent has not taken yet

    def fetched(self, tp: Any, offset: int, value: bytes | None) -> None:
        """A record is handed to the agent's buffer: its partition's event time moves on."""
        if tp.topic != self.topic:
            return
        when = transaction_time_hint(value)
        self._pending += 1
        self.alignment.delivered(tp, offset, when, self.clock())
        if when is not None and when > self.alignment.limit:  # pause now; resuming waits for the recheck
            self._recheck()

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        """The agent takes a record from its buffer."""
        if tp.topic == self.topic and self._pending > 0:
            self._pending -= 1

    def assigned(self, assigned: set[Any]) -> None:
        """A new assignment: what was seen is forgotten, and what is paused is set again (aiokafka's new
        assignment starts with nothing paused, but a pause still on its way may land in it)."""
        self._generation += 1
        self._pending = 0  # Faust drops what its buffers held
        self.alignment.assigned({tp for tp in assigned if tp.topic == self.topic}, self.clock())
        self._wanted = frozenset()
        self.paused = None
        self._changed.set()

    def _recheck(self) -> None:
        """The pause set now. While the agent has records to take, a partition that hands nothing over is
        not waiting on its fetch (the buffer is full, or the agent slow): no idle time counts."""
        now = self.clock()
        if self._pending > 0:
            self.alignment.busy(now)
        wanted = self.alignment.decide(self._highwaters(), now)
        if wanted != self._wanted:
            self._wanted = wanted
            self._changed.set()

    def _highwaters(self) -> dict[TP, int | None]:
        consumer = self.app.consumer
        out: dict[TP, int | None] = {}
        for tp in self.alignment.partitions():
            try:
                out[tp] = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 (aiokafka asserts the partition is assigned; a rebalance is on)
                out[tp] = None
        return out

    async def run(self) -> None:
        """Applies the wanted pause set whenever it changes, and recomputes it every ``RECHECK_S``."""
        positions = asyncio.ensure_future(self._positions())
        try:
            await self._align()
        finally:
            positions.cancel()

    async def _align(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), RECHECK_S)
            self._changed.clear()
            try:
                self._recheck()
                self._changed.clear()
                if self._wanted != self.paused:
                    await self._apply(self._wanted)
            except Exception:  # a partition left paused would never be consumed again: keep the loop alive
                log.exception("catch-up alignment failed; trying again")

    async def _positions(self) -> None:
        """Asks for positions every ``RECHECK_S``, apart from the pausing: aiokafka answers only once a
        partition's position is known, which takes a while after an assignment."""
        while True:
            await self._position()
            await asyncio.sleep(RECHECK_S)

    async def _position(self) -> None:
        """The consumer's position of each partition with nothing handed over yet (after an assignment)."""
        for tp in self.alignment.unpositioned():
            try:
                offset = await self.app.consumer.position(tp)
            except Exception as exc:  # noqa: BLE001 (a rebalance or a stop is on; the next recheck asks again)
                log.debug("no position for %s: %r", tp, exc)
                return
            if offset is not None:
                self.alignment.positioned(tp, offset)

    async def _apply(self, wanted: frozenset[TP]) -> None:
        thread = getattr(self.app.consumer, "_thread", None)  # Faust's aiokafka consumer runs in this thread
        if thread is None:
            return
        generation = self._generation
        try:
            resumed = await thread.call_thread(self._set_paused, thread._ensure_consumer(), wanted)
        except Exception as exc:  # noqa: BLE001 (a rebalance or a stop is on; the next recheck applies again)
            log.debug("could not apply the paused partitions %s: %r", sorted(map(_pair, wanted)), exc)
            return
        if generation != self._generation:  # a rebalance came in between: set it again
            self.paused = None
            return
        log.debug("paused for alignment: %s", sorted(map(_pair, wanted)))
        self.paused = wanted
        if resumed:
            self.alignment.resumed(resumed, self.clock())
        self._report()

    def _set_paused(self, consumer: Any, wanted: frozenset[TP]) -> frozenset[TP]:
        """On the consumer's thread: exactly ``wanted`` (those still assigned) of ``topic`` paused in aiokafka;
        returns those resumed."""
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        want = {TopicPartition(t, p) for t, p in (_pair(tp) for tp in wanted) if (t, p) in assigned}
        now = {tp for tp in consumer.paused() if tp.topic == self.topic}
        if want - now:
            consumer.pause(*(want - now))
        if now - want:
            consumer.resume(*(now - want))
        return frozenset(TP(tp.topic, tp.partition) for tp in now - want)

    def _report(self) -> None:
        if self.on_paused is not None:
            self.on_paused(len(self.paused or ()))


def scheduling(aligner: PartitionAligner) -> type[DefaultSchedulingStrategy]:
    """A Faust ``ConsumerScheduler`` that hands records over in Faust's default order and tells ``aligner``
    of each."""

    class AlignedScheduling(DefaultSchedulingStrategy):  # type: ignore[misc]
        def iterate(self, records: Mapping[TP, list[Any]]) -> Iterator[tuple[TP, Any]]:
            for tp, record in super().iterate(records):
                aligner.fetched(tp, record.offset, record.value)
                yield tp, record

    return AlignedScheduling


def _pair(tp: Any) -> tuple[str, int]:
    return tp.topic, tp.partition
