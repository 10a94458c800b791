"""Event-time alignment of the partitions one worker consumes (pure: no Kafka here).

A merchant's transactions arrive from every partition, and merchant windows are served ``MERCHANT_LAG_S``
in the past (docs/decisions/0010-merchant-windows-lagged.md): the value served for an event is a function
of the events alone only while the partitions are consumed within the lag of each other in event time.
Live, they are; catching up a backlog, a partition with fewer records per second of event time (or one
the fetcher happens to favour) runs minutes ahead. ``partitions_to_pause`` says which partitions to stop
fetching so that the worker consumes its backlog in event-time order, as it would have consumed it live
(docs/decisions/0024-event-time-aligned-catch-up.md).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from stream_app.core.window_spec import MERCHANT_LAG_S

K = TypeVar("K", bound=Hashable)

DEFAULT_MAX_AHEAD_S = MERCHANT_LAG_S / 2
DEFAULT_MAX_IDLE_S = 5.0


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """How far one partition has been consumed."""

    time: float | None  # event time of the latest record handed to the worker (epoch s); None: none yet
    behind: bool  # records remain to be read (the next offset is below the high-water mark)
    idle_s: float = 0.0  # seconds since it last handed over a record (or was resumed, or assigned)


def partitions_to_pause(progress: Mapping[K, PartitionProgress], max_ahead_s: float,
                        max_idle_s: float = DEFAULT_MAX_IDLE_S) -> frozenset[K]:
    """The partitions to stop fetching: those whose latest event time is more than ``max_ahead_s`` past
    the *frontier* (``frontier``), the earliest latest-event-time among the partitions that still have
    records to read. The records a partition hands over next are, event time being nondecreasing within
    a partition up to small disorder, no earlier than its latest; so while the frontier partition has
    handed over everything up to the frontier, a partition paused past ``frontier + max_ahead_s`` cannot
    hand over a record more than ``max_ahead_s`` (plus what the fetches in hand span) ahead of a record not yet
    handed over.

    - Only a partition with records left can hold the others back: one that is caught up has nothing to
      consume, and its next records are whatever producers write next. It is still paused when it is
      ahead of the frontier (those next records would be ahead too).
    - A partition with records left whose event time is unknown (nothing handed over since it was
      assigned) holds every other one back until its first record comes: it may be the slowest, and one
      fetch can hold a partition's whole backlog (aiokafka hands it over before any other partition's).
    - A partition with records left that has handed over nothing for more than ``max_idle_s`` stops
      holding the others back (Kafka Streams' ``max.task.idle.ms``): a stuck fetch, or a high-water mark
      that counts records never delivered (transaction markers), must not stop the worker for good. It
      holds them again from its next record on.
    - A partition is paused only once its event time is known, and the frontier partition never is: some
      partition with records left can always be fetched, so the worker always makes progress.
    """
    if not max_ahead_s >= 0:
        raise ValueError(f"max_ahead_s must be >= 0, got {max_ahead_s!r}")
    start = frontier(progress, max_idle_s)
    if start is None:
        return frozenset()
    limit = start + max_ahead_s
    return frozenset(k for k, p in progress.items() if p.time is not None and p.time > limit)


def frontier(progress: Mapping[K, PartitionProgress], max_idle_s: float = DEFAULT_MAX_IDLE_S) -> float | None:
    """The earliest latest-event-time among the partitions that hold the others back (records left, not
    idle longer than ``max_idle_s``): ``-inf`` if one of them has not handed over a record yet, None when
    none holds."""
    holding = [p.time for p in progress.values() if p.behind and p.idle_s <= max_idle_s]
    if not holding:
        return None
    return min(-math.inf if t is None else t for t in holding)


@dataclass(slots=True)
class _Seen:
    time: float | None = None
    next_offset: int | None = None
    since: float = 0.0  # clock reading of its last record (or resume, or assignment)


class Alignment(Generic[K]):
    """What one consumer has handed to the worker, per partition, and which partitions to pause now.

    The adapter reports each record as it is handed over (``delivered``), the partitions it resumed and
    the assignment; ``decide`` turns that and the high-water marks into ``partitions_to_pause``. Times on
    ``now`` are any monotonic clock, in seconds."""

    def __init__(self, max_ahead_s: float = DEFAULT_MAX_AHEAD_S, max_idle_s: float = DEFAULT_MAX_IDLE_S) -> None:
        if not max_ahead_s >= 0 or not max_idle_s >= 0:
            raise ValueError(f"max_ahead_s and max_idle_s must be >= 0, got {max_ahead_s!r}, {max_idle_s!r}")
        self.max_ahead_s = max_ahead_s
        self.max_idle_s = max_idle_s
        self._seen: dict[K, _Seen] = {}
        self._started = False  # a record was handed over since the assignment: idle clocks run
        self.limit = -math.inf  # until the first decision, every record is worth a decision

    def assigned(self, partitions: set[K] | frozenset[K], now: float) -> None:
        """A new assignment: everything seen before is forgotten (the consumer starts again from the
        committed offsets, and nothing is paused). No partition is idle before the first record is handed
        over (the worker is still starting)."""
        self._seen = {p: _Seen(since=now) for p in partitions}
        self._started = False
        self.limit = -math.inf

    def delivered(self, partition: K, offset: int, time: float | None, now: float) -> None:
        """The record at ``offset`` was handed over; ``time`` is its event time (None: unreadable, which
        moves the offset but not the time)."""
        if not self._started:  # the consumer is fetching now; waiting for a partition starts here
            self._started = True
            self.busy(now)
        seen = self._seen.get(partition)
        if seen is None:
            seen = self._seen[partition] = _Seen()
        seen.next_offset = offset + 1
        seen.since = now
        if time is not None:
            seen.time = time

    def positioned(self, partition: K, offset: int) -> None:
        """The consumer will read ``partition`` from ``offset`` on (known before its first record: a
        partition with nothing to read must not hold the others back until ``max_idle_s``)."""
        seen = self._seen.get(partition)
        if seen is not None and seen.next_offset is None:
            seen.next_offset = offset

    def unpositioned(self) -> list[K]:
        """The partitions whose next offset is not known yet."""
        return [p for p, seen in self._seen.items() if seen.next_offset is None]

    def resumed(self, partitions: set[K] | frozenset[K], now: float) -> None:
        """These partitions were paused until now: their idle time starts again."""
        for p in partitions:
            if p in self._seen:
                self._seen[p].since = now

    def busy(self, now: float) -> None:
        """The worker still has records handed over to process: no partition is waiting on its fetch, so
        none is idle (a full buffer stops every fetch; that is no reason to stop holding the others)."""
        for seen in self._seen.values():
            seen.since = now

    def progress(self, highwaters: Mapping[K, int | None], now: float) -> dict[K, PartitionProgress]:
        """Each partition's progress; a partition without a known high-water mark or offset counts as
        behind."""
        out = {}
        for p, seen in self._seen.items():
            high = highwaters.get(p)
            behind = high is None or seen.next_offset is None or seen.next_offset < high
            out[p] = PartitionProgress(seen.time, behind, now - seen.since if self._started else 0.0)
        return out

    def partitions(self) -> list[K]:
        """The partitions assigned or seen since the last assignment."""
        return list(self._seen)

    def decide(self, highwaters: Mapping[K, int | None], now: float) -> frozenset[K]:
        """The partitions to pause now; ``limit`` becomes the event time past which a record calls for a new
        decision: past it, its partition is to be paused (``-inf`` while no partition holds the others back:
        any record may make its partition hold them)."""
        progress = self.progress(highwaters, now)
        start = frontier(progress, self.max_idle_s)
        self.limit = -math.inf if start is None else start + self.max_ahead_s
        return partitions_to_pause(progress, self.max_ahead_s, self.max_idle_s)
