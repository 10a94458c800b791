"""Sliding-window state of ONE key for the WindowSpecs that share one source (pure: no I/O).

``KeyWindows`` holds, e.g., a user's transaction windows, or a merchant's transaction windows, or a
merchant's label windows (a separate instance: labels arrive at label_time, on their own clock). Its
class docstring states the exact semantics the stream worker and the offline backfill rely on; the
private methods explain the algorithm where it is implemented. ``to_bytes``/``from_bytes`` give a
versioned binary snapshot (never pickle).
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from stream_app.core.window_spec import Function, WindowSpec

Position = tuple[int, int]  # (partition, offset) of the source record

_NAN = math.nan
_FORMAT_V1 = 1
_FORMAT_V2 = 2  # V1 + one int64 event key per observation
_HEADER = struct.Struct("<BBIIId")  # tag, n_fields, fields crc32, n_observations, n_partitions, max evicted
_LITTLE = sys.byteorder == "little"
# A lane keeps incremental aggregates only while its window holds many observations; the gap between
# the two thresholds keeps a lane from flapping between the modes.
_MATERIALIZE_ABOVE = 32
_RELEASE_BELOW = 8
_MAXQ_COMPACT_MIN = 16
# Times are epoch seconds; below 2**50 a float's spacing is < 1 s, so t - window_s < t always holds.
_MAX_ABS_TIME = 2.0**50
_PTR_BASE, _PTR_DEAD, _PTR_LANES = 0, 1, 2  # layout of KeyWindows._ptr

_NEEDS_FIELD = frozenset({Function.SUM, Function.MEAN, Function.MAX, Function.DISTINCT, Function.RATE})


@dataclass(frozen=True, slots=True)
class Observation:
    """One source record as the windows see it."""

    time: float  # epoch seconds (event_time for transactions, label_time for labels)
    values: Mapping[str, float]  # field -> value, e.g. {"amount": 12.5, "merchant_id": 42.0}
    position: Position
    event_key: int = 0  # identity of the source event (int64, e.g. a hash of its id); 0 = none


class Outcome(StrEnum):
    """What became of an event. KeyWindows decides APPLIED, REPLAY, LATE and DUPLICATE; the engine adds
    FUTURE (dated too far after it entered Kafka; no state looked at or changed)."""

    APPLIED = "applied"
    REPLAY = "replay"
    LATE = "late"
    DUPLICATE = "duplicate"
    FUTURE = "future"


@dataclass(frozen=True, slots=True)
class Applied:
    """What ``apply`` did; ``features`` (spec name -> value at the observation's time) only when APPLIED."""

    outcome: Outcome
    features: dict[str, float] | None


_REPLAYED = Applied(Outcome.REPLAY, None)
_LATE = Applied(Outcome.LATE, None)
_DUPLICATE = Applied(Outcome.DUPLICATE, None)


# --------------------------------------------------------------------------------------------- exact sums


def _padd(partials: list[float], x: float) -> None:
    """Add x to the exact sum held as non-overlapping partials (Shewchuk; the ``math.fsum`` recipe).

    Subtraction is adding -x and is exact too, which is what lets a running sum slide without drift;
    ``math.fsum(partials)`` is then the correctly rounded window sum.
    """
    i = 0
    for partial in partials:
        if abs(x) < abs(partial):
            big, small = partial, x
        else:
            big, small = x, partial
        hi = big + small
        lo = small - (hi - big)
        if lo:
            partials[i] = lo
            i += 1
        x = hi
    partials[i:] = [x]


# ------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True, slots=True)
class _Lane:
    """One distinct window length; slots index the flat result lists, columns the row layout."""

    window: float
    sum_slots: tuple[tuple[int, int], ...]  # (sum slot, column)
    max_slots: tuple[tuple[int, int], ...]  # (max slot, column)
    distinct_slots: tuple[tuple[int, int], ...]  # (distinct slot, column)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything derived from (specs, lateness), computed once and shared by every key using them."""

    specs: tuple[WindowSpec, ...]
    lateness: float
    horizon: float  # max window_s over all specs
    fields: tuple[str, ...]  # the columns, in row order
    lanes: tuple[_Lane, ...]
    n_sums: int
    n_maxes: int
    n_distincts: int
    template: dict[str, float]  # spec names in spec order (copied, never mutated)
    count_out: tuple[tuple[str, int], ...]  # (name, lane)
    sum_out: tuple[tuple[str, int], ...]  # (name, sum slot)
    mean_out: tuple[tuple[str, int, int], ...]  # (name, lane, sum slot)
    rate_out: tuple[tuple[str, int, int], ...]  # (name, lane, sum slot)
    max_out: tuple[tuple[str, int], ...]  # (name, max slot)
    distinct_out: tuple[tuple[str, int], ...]  # (name, distinct slot)
    since_out: tuple[str, ...]
    fingerprint: int  # crc32 of the field names: the row layout of serialized state

    @property
    def width(self) -> int:
        return len(self.fields)

    def empty_aggregates(self) -> _Aggregates:
        """Fresh (counts, sums, maxes, distincts) for one read: zero per lane and slot, NaN maxima."""
        return [0] * len(self.lanes), [0.0] * self.n_sums, [_NAN] * self.n_maxes, [0] * self.n_distincts


def _build_plan(specs: tuple[WindowSpec, ...], lateness: float) -> _Plan:
    if not specs:
        raise ValueError("KeyWindows needs at least one WindowSpec")
    if not math.isfinite(lateness) or lateness < 0:
        raise ValueError(f"allowed_lateness_s must be finite and >= 0, got {lateness!r}")
    if len({s.source for s in specs}) != 1 or len({s.entity for s in specs}) != 1:
        raise ValueError("the specs of one KeyWindows must share one entity and one source")
    if len({s.name for s in specs}) != len(specs):
        raise ValueError("spec names must be unique")
    for s in specs:
        if s.window_s <= 0:
            raise ValueError(f"{s.name}: window_s must be > 0")
        if (s.function in _NEEDS_FIELD) != (s.field is not None):
            raise ValueError(f"{s.name}: {s.function} {'needs a' if s.field is None else 'takes no'} field")
    fields = tuple(sorted({s.field for s in specs if s.field is not None}))
    column = {f: i for i, f in enumerate(fields)}
    windows = sorted({s.window_s for s in specs if s.function is not Function.SINCE_PREVIOUS})
    lane_of = {w: i for i, w in enumerate(windows)}
    sums: dict[tuple[int, str], int] = {}
    maxes: dict[tuple[int, str], int] = {}
    distincts: dict[tuple[int, str], int] = {}
    outs: dict[Function, list[tuple[str, int, int]]] = {f: [] for f in Function}
    for s in specs:
        lane = lane_of.get(s.window_s, -1)
        slot = -1
        if s.field is not None:
            table = maxes if s.function is Function.MAX else distincts if s.function is Function.DISTINCT else sums
            slot = table.setdefault((lane, s.field), len(table))
        outs[s.function].append((s.name, lane, slot))

    def slots(table: dict[tuple[int, str], int], lane: int) -> tuple[tuple[int, int], ...]:
        return tuple((slot, column[f]) for (ln, f), slot in table.items() if ln == lane)

    return _Plan(
        specs=specs,
        lateness=lateness,
        horizon=float(max(s.window_s for s in specs)),
        fields=fields,
        lanes=tuple(
            _Lane(float(w), slots(sums, i), slots(maxes, i), slots(distincts, i)) for i, w in enumerate(windows)
        ),
        n_sums=len(sums),
        n_maxes=len(maxes),
        n_distincts=len(distincts),
        template=dict.fromkeys((s.name for s in specs), _NAN),
        count_out=tuple((name, lane) for name, lane, _ in outs[Function.COUNT]),
        sum_out=tuple((name, slot) for name, _, slot in outs[Function.SUM]),
        mean_out=tuple(outs[Function.MEAN]),
        rate_out=tuple(outs[Function.RATE]),
        max_out=tuple((name, slot) for name, _, slot in outs[Function.MAX]),
        distinct_out=tuple((name, slot) for name, _, slot in outs[Function.DISTINCT]),
        since_out=tuple(name for name, _, _ in outs[Function.SINCE_PREVIOUS]),
        fingerprint=zlib.crc32("\x00".join(fields).encode()),
    )


# Tuples of specs (e.g. USER_WINDOWS) are looked up by identity, so that creating one of a million
# keys does not hash nine dataclasses; the entry keeps the tuple alive, so its id cannot be reused.
_PLANS: dict[tuple[int, float], tuple[tuple[WindowSpec, ...], _Plan]] = {}


@lru_cache(maxsize=64)
def _plan_by_value(specs: tuple[WindowSpec, ...], lateness: float) -> _Plan:
    return _build_plan(specs, lateness)


def _plan_for(specs: Sequence[WindowSpec], lateness: float) -> _Plan:
    if type(specs) is not tuple:  # a list may be mutated later: never cache it by identity
        return _plan_by_value(tuple(specs), lateness)
    entry = _PLANS.get((id(specs), lateness))
    if entry is not None and entry[0] is specs:
        return entry[1]
    plan = _plan_by_value(specs, lateness)
    if len(_PLANS) >= 256:
        _PLANS.clear()
    _PLANS[(id(specs), lateness)] = (specs, plan)
    return plan


_INT64 = range(-(2**63), 2**63)


def _check_position(partition: int, offset: int) -> None:
    """Positions are stored as int64; checking first keeps a bad one from half-updating the state."""
    if partition not in _INT64 or offset not in _INT64:
        raise ValueError(f"position ({partition}, {offset}) does not fit int64")


def _check_key(key: int) -> None:
    if key not in _INT64:
        raise ValueError(f"event_key {key} does not fit int64")


def _check_time(t: float, what: str) -> None:
    if not -_MAX_ABS_TIME <= t <= _MAX_ABS_TIME:  # also refuses NaN and infinities
        raise ValueError(f"{what} time must be finite epoch seconds within +-2**50, got {t!r}")


# ------------------------------------------------------------------------------------------- key windows

_Aggregates = tuple[list[int], list[float], list[float], list[int]]  # counts, sums, maxes, distincts


class _LaneAgg:
    """Incremental aggregates of one lane over its window, kept only while the window is large.

    While a lane's window holds few observations (<= _MATERIALIZE_ABOVE) its aggregates are computed
    from C-level slices of the columns (bounded work, no per-key objects). Once it holds more, the lane
    materialises incremental aggregates - Shewchuk non-overlapping partials per summed field (the
    ``math.fsum`` algorithm; adding -x removes x exactly), a monotonic deque of suffix maxima per MAX
    field, a value counter per DISTINCT field - and drops them again below _RELEASE_BELOW. Either way
    the cost per in-order observation does not grow with the window length.
    """

    __slots__ = ("distinct", "maxhead", "maxq", "sums")

    def __init__(self) -> None:
        self.sums: list[list[float]] = []  # exact partials, per sum slot of the lane
        self.maxq: list[array[int]] = []  # logical indices of the suffix maxima, from maxhead on
        self.maxhead: list[int] = []
        self.distinct: list[dict[float, int]] = []  # value -> occurrences in the window


class KeyWindows:
    """The windows of one key over one source.

    Semantics (exact; the stream worker and the offline backfill both rely on them):

    * Applying observation e at time t serves, for every spec of window W, the aggregate over e and every
      EARLIER-APPLIED observation of the key with time in (t - W, t]. COUNT; SUM(field); MEAN = sum/count;
      MAX; DISTINCT = number of distinct values; RATE = mean of a 0/1 field (0.0 on an empty window).
      SINCE_PREVIOUS = t - (max time among earlier-applied observations with time <= t), NaN if there is
      none; it stays right when that observation has been evicted (the max evicted time is kept).
    * ``query(t)`` is the same without adding an observation: it covers every applied observation with
      time in (t - W, t]; an empty window gives COUNT/SUM/DISTINCT 0, MEAN/MAX NaN, RATE 0.0.
      SINCE_PREVIOUS uses the applied observations with time <= t. A time older than
      ``latest_time - allowed_lateness_s`` raises ValueError: the state it needs may already be evicted.
    * Replay: the last recorded source offset is kept PER PARTITION; an observation whose offset is <= it
      is REPLAY and changes nothing. A LATE observation (time < latest_time - allowed_lateness_s) is not
      applied to any window, but its position is recorded, so its redelivery is REPLAY, not LATE again.
    * Identity: an observation may carry an ``event_key`` (a 64-bit hash of its event id, 0 = none). Once
      a key's state has seen one, it keeps each retained observation's event_key, and an observation
      whose event_key belongs to a live observation (time > latest_time - allowed_lateness_s -
      max(window_s), the ones kept anyway) is DUPLICATE: not applied, position recorded (checked after
      REPLAY, before LATE). Beyond that horizon a duplicate cannot be recognised; if its time is the
      original's, it is LATE. Observations out of order but within the lateness are applied exactly, at
      their own time; the value served for them counts only earlier-applied observations (rule above),
      never later-applied ones.
    * Sums are exact: the served sum is the correctly rounded sum of the window's values, i.e. equal bit
      for bit to ``math.fsum`` of them, however long the window has slid (no subtraction drift). Values
      must be finite and times finite epoch seconds (|t| <= 2**50); ValueError otherwise, with nothing
      changed.

    Layout: observations are kept sorted by time in an ``array('d')`` of times and one ``array('d')`` of
    the field values interleaved row by row (8 bytes per value), addressed by a logical index (physical
    position + base) so that trimming the front needs no renumbering. The integer bookkeeping (base, trim
    pointer, one window-start pointer per distinct window length, the "lanes") lives in one
    ``array('q')``. A key whose windows are all small holds 6 small objects, plus 8 * (1 + fields) bytes
    (and array over-allocation) per retained observation; ``approx_nbytes`` estimates the footprint.
    """

    __slots__ = ("_agg", "_ids", "_max_evicted", "_plan", "_positions", "_ptr", "_times", "_vals")

    def __init__(self, specs: Sequence[WindowSpec], allowed_lateness_s: float) -> None:
        plan = _plan_for(specs, float(allowed_lateness_s))
        self._plan = plan
        self._times: array[float] = array("d")  # sorted; physical index p is logical index base + p
        self._vals: array[float] = array("d")  # field values, row-major, plan.width per observation
        # [base, first logical index that may still be needed, window start (logical) per lane]
        self._ptr: array[int] = array("q", bytes(8 * (_PTR_LANES + len(plan.lanes))))
        self._positions: array[int] = array("q")  # partitions, then their last offsets (same order)
        self._max_evicted = _NAN  # max time of the trimmed observations (all older than retained ones)
        self._agg: list[_LaneAgg | None] | None = None  # per lane, only while some lane is materialised
        self._ids: array[int] | None = None  # event keys, aligned with _times; None until one is seen

    # ------------------------------------------------------------------------------------- inspection

    @property
    def specs(self) -> tuple[WindowSpec, ...]:
        return self._plan.specs

    @property
    def allowed_lateness_s(self) -> float:
        return self._plan.lateness

    @property
    def latest_time(self) -> float | None:
        """Max time of the applied observations (it is always retained), None before the first."""
        return self._times[-1] if self._times else None

    @property
    def is_empty(self) -> bool:
        """True until an observation is applied (LATE or REPLAY ones never make it non-empty)."""
        return not self._times

    @property
    def retained_count(self) -> int:
        """Observations physically held (live ones plus trimmable ones not trimmed yet)."""
        return len(self._times)

    @property
    def positions(self) -> dict[int, int]:
        """Partition -> last recorded source offset (a copy)."""
        half = len(self._positions) >> 1
        return dict(zip(self._positions[:half], self._positions[half:], strict=True))

    def approx_nbytes(self) -> int:
        """Rough in-memory footprint of this key's state (CPython object sizes), for sizing."""
        size = sys.getsizeof(self) + sys.getsizeof(self._max_evicted)
        size += sum(sys.getsizeof(a) for a in (self._times, self._vals, self._ptr, self._positions))
        size += 0 if self._ids is None else sys.getsizeof(self._ids)
        if self._agg is not None:
            size += sys.getsizeof(self._agg)
            for agg in self._agg:
                if agg is not None:
                    size += sys.getsizeof(agg) + sum(sys.getsizeof(p) + 24 * len(p) for p in agg.sums)
                    size += sum(sys.getsizeof(q) for q in agg.maxq) + 32 * len(agg.maxhead)
                    size += sum(sys.getsizeof(d) + 56 * len(d) for d in agg.distinct)
        return size

    def forget_positions(self) -> None:
        """Drop every recorded source position, keeping the windows and the event keys: for state carried
        over to another log (a backfill's state seeding a worker), whose offsets say nothing about the
        records this state saw. Redelivery is then recognised by event key only (DUPLICATE)."""
        del self._positions[:]

    def __repr__(self) -> str:
        names = ",".join(s.name for s in self._plan.specs)
        return f"KeyWindows([{names}], retained={len(self._times)}, latest={self.latest_time})"

    # ------------------------------------------------------------------------------------ processing

    def classify(self, obs: Observation) -> Outcome:
        """What ``apply`` would do with ``obs``, without changing anything."""
        partition, offset = obs.position
        _check_position(partition, offset)
        i = self._find(partition)
        if i >= 0 and offset <= self._positions[(len(self._positions) >> 1) + i]:
            return Outcome.REPLAY
        t = obs.time
        _check_time(t, "observation")
        if self._seen(obs.event_key):
            return Outcome.DUPLICATE
        times = self._times
        if times and t < times[-1] - self._plan.lateness:
            return Outcome.LATE
        return Outcome.APPLIED

    def apply(self, obs: Observation) -> Applied:
        """Apply ``obs`` and return the features at ``obs.time`` (obs included), or why it was not applied.

        Raises ValueError, changing nothing, if an observation to apply lacks a field or has a non-finite
        time or value, or a position beyond int64: records are validated upstream, so that is a
        programming error, not bad input.
        """
        partition, offset = obs.position
        _check_position(partition, offset)
        i = self._find(partition)
        if i >= 0 and offset <= self._positions[(len(self._positions) >> 1) + i]:
            return _REPLAYED
        t = obs.time
        _check_time(t, "observation")
        key = obs.event_key
        _check_key(key)
        if self._seen(key):
            self._record(i, partition, offset)
            return _DUPLICATE
        times = self._times
        if times and t < times[-1] - self._plan.lateness:
            self._record(i, partition, offset)
            return _LATE
        row = self._row(obs.values)
        if key and self._ids is None:
            self._ids = array("q", bytes(8 * len(times)))  # rows applied before: no identity known
        if not times or t >= times[-1]:
            since = t - times[-1] if times else _NAN
            if self._ids is not None:
                self._ids.append(key)
            features = self._assemble(self._append(t, row), since)
        else:
            features = self._insert(t, row, key)
        self._record(i, partition, offset)
        return Applied(Outcome.APPLIED, features)

    def query(self, time: float) -> dict[str, float]:
        """Features at ``time`` over the applied observations, without changing state.

        Raises ValueError for a time older than latest_time - allowed_lateness_s (state may be evicted).
        """
        _check_time(time, "query")
        times = self._times
        if not times:
            return self._assemble(self._scan(time), _NAN)
        latest = times[-1]
        if time >= latest:
            return self._assemble(self._read_ahead(time), time - latest)
        if time < latest - self._plan.lateness:
            raise ValueError(
                f"query time {time} is older than latest {latest} minus the allowed lateness "
                f"{self._plan.lateness}s; the state for it may be evicted"
            )
        pos = bisect_right(times, time)
        previous = times[pos - 1] if pos else self._max_evicted
        return self._assemble(self._scan(time), time - previous)

    def _seen(self, key: int) -> bool:
        """Whether a live observation (see the class docstring) carries event key ``key``."""
        ids = self._ids
        if not key or ids is None or not ids:
            return False
        plan = self._plan
        start = bisect_right(self._times, self._times[-1] - plan.lateness - plan.horizon)
        try:
            ids.index(key, start)
        except ValueError:
            return False
        return True

    # --------------------------------------------------------------------------------- serialization

    def to_bytes(self) -> bytes:
        """Compact versioned snapshot: header, positions, live times, live rows (all little-endian).

        A struct/array layout with a 1-byte format tag, not pickle: 22 bytes of header + 16 per partition
        seen + 8 * (1 + fields) per retained observation, + 8 more per observation for the event keys
        once the key has seen one (format 2). ``from_bytes`` rebuilds the lanes from the columns, which
        reproduces the exact sums.
        """
        plan = self._plan
        dead = self._ptr[_PTR_DEAD] - self._ptr[_PTR_BASE]
        max_evicted = self._times[dead - 1] if dead else self._max_evicted
        header = _HEADER.pack(_FORMAT_V1 if self._ids is None else _FORMAT_V2, plan.width, plan.fingerprint,
                              len(self._times) - dead, len(self._positions) >> 1, max_evicted)
        live_times = self._times[dead:]  # slices are copies: byteswapping them leaves the state alone
        live_vals = self._vals[dead * plan.width :]
        positions = array("q", self._positions)
        columns: list[array[int] | array[float]] = [positions, live_times, live_vals]
        if self._ids is not None:
            columns.append(self._ids[dead:])
        if not _LITTLE:
            for column in columns:
                column.byteswap()
        return b"".join((header, *(column.tobytes() for column in columns)))

    @classmethod
    def from_bytes(cls, specs: Sequence[WindowSpec], allowed_lateness_s: float, data: bytes) -> KeyWindows:
        """Rebuild a state written by ``to_bytes`` (lanes and exact sums are recomputed from the rows).

        Raises ValueError if the data is truncated, of an unknown format, or laid out for other fields.
        """
        self = cls(specs, allowed_lateness_s)
        plan = self._plan
        if len(data) < _HEADER.size:
            raise ValueError("window state truncated")
        tag, width, fingerprint, n_obs, n_parts, max_evicted = _HEADER.unpack_from(data)
        if tag not in (_FORMAT_V1, _FORMAT_V2):
            raise ValueError(f"unknown window state format {tag}")
        if width != plan.width or fingerprint != plan.fingerprint:
            raise ValueError(f"window state was written for other fields than {plan.fields}")
        with_ids = tag == _FORMAT_V2
        expected = _HEADER.size + 16 * n_parts + 8 * n_obs * (1 + width + with_ids)
        if len(data) != expected:
            raise ValueError(f"window state has {len(data)} bytes, expected {expected}")
        start = _HEADER.size
        columns: list[tuple[array[int] | array[float], int]] = [
            (self._positions, 16 * n_parts), (self._times, 8 * n_obs), (self._vals, 8 * n_obs * width)]
        if with_ids:
            self._ids = array("q")
            columns.append((self._ids, 8 * n_obs))
        for column, size in columns:
            column.frombytes(data[start : start + size])
            if not _LITTLE:
                column.byteswap()
            start += size
        self._max_evicted = max_evicted
        if n_obs:
            self._ptr[_PTR_DEAD] = bisect_right(self._times, self._times[-1] - plan.lateness - plan.horizon)
        self._rebuild_lanes()
        return self

    # ------------------------------------------------------------------------------------- internals

    def _find(self, partition: int) -> int:
        """Index of ``partition`` among the recorded ones, -1 if new. Keys mostly see one partition."""
        positions = self._positions
        half = len(positions) >> 1
        if half == 1:
            return 0 if positions[0] == partition else -1
        if not half:
            return -1
        try:
            return positions.index(partition, 0, half)
        except ValueError:
            return -1

    def _record(self, i: int, partition: int, offset: int) -> None:
        positions = self._positions
        half = len(positions) >> 1
        if i >= 0:
            positions[half + i] = offset
        else:
            positions.insert(half, partition)
            positions.append(offset)

    def _row(self, values: Mapping[str, float]) -> tuple[float, ...]:
        try:
            row = tuple([float(values[name]) for name in self._plan.fields])
        except KeyError as exc:
            raise ValueError(f"observation lacks field {exc.args[0]!r}") from None
        for value in row:
            if not math.isfinite(value):
                raise ValueError(f"observation has a non-finite value: {values!r}")
        return row

    def _append(self, t: float, row: tuple[float, ...]) -> _Aggregates:
        """In-order apply (t >= latest): append, slide every lane, read it; amortised O(1) per spec.

        Each lane's start pointer advances past what fell out of its window; a materialised lane
        (``_LaneAgg``) moves its aggregates by the rows that left and the one appended.
        """
        plan = self._plan
        times = self._times
        vals = self._vals
        ptr = self._ptr
        times.append(t)
        vals.extend(row)
        n = len(times)
        base = ptr[_PTR_BASE]
        width = plan.width
        counts, sums, maxes, distincts = plan.empty_aggregates()
        aggs = self._agg
        for li, lane in enumerate(plan.lanes):
            cutoff = t - lane.window
            lo = ptr[_PTR_LANES + li] - base
            hi = lo
            while times[hi] <= cutoff:  # stops at the new observation at the latest (t > cutoff)
                hi += 1
            if hi != lo:
                ptr[_PTR_LANES + li] = base + hi
            count = n - hi
            counts[li] = count
            agg = None if aggs is None else aggs[li]
            if agg is not None:
                if count < _RELEASE_BELOW:
                    self._release(li)
                    agg = None
                else:
                    self._slide(lane, agg, lo, hi, row)
            elif count > _MATERIALIZE_ABOVE:
                agg = self._materialize(li, hi)
            if agg is None:
                first = hi * width
                for slot, j in lane.sum_slots:
                    sums[slot] = math.fsum(vals[first + j :: width])
                for slot, j in lane.max_slots:
                    maxes[slot] = max(vals[first + j :: width])
                for slot, j in lane.distinct_slots:
                    distincts[slot] = len(set(vals[first + j :: width]))
            else:
                for k, (slot, _j) in enumerate(lane.sum_slots):
                    sums[slot] = math.fsum(agg.sums[k])
                for k, (slot, j) in enumerate(lane.max_slots):
                    maxes[slot] = vals[(agg.maxq[k][agg.maxhead[k]] - base) * width + j]
                for k, (slot, _j) in enumerate(lane.distinct_slots):
                    distincts[slot] = len(agg.distinct[k])
        self._trim(t)
        return counts, sums, maxes, distincts

    def _slide(self, lane: _Lane, agg: _LaneAgg, lo: int, hi: int, row: tuple[float, ...]) -> None:
        """Move a materialised lane's aggregates: drop physical rows [lo, hi), add the row just appended."""
        vals = self._vals
        width = self._plan.width
        base = self._ptr[_PTR_BASE]
        for k, (_slot, j) in enumerate(lane.sum_slots):
            partials = agg.sums[k]
            if hi != lo:
                for v in vals[lo * width + j : hi * width : width]:
                    _padd(partials, -v)
            _padd(partials, row[j])
        for k, (_slot, j) in enumerate(lane.distinct_slots):
            counter = agg.distinct[k]
            if hi != lo:
                for v in vals[lo * width + j : hi * width : width]:
                    left = counter[v] - 1
                    if left:
                        counter[v] = left
                    else:
                        del counter[v]
            v = row[j]
            counter[v] = counter.get(v, 0) + 1
        newest = base + len(self._times) - 1
        first = base + hi
        for k, (_slot, j) in enumerate(lane.max_slots):
            q = agg.maxq[k]
            head = agg.maxhead[k]
            x = row[j]
            while len(q) > head and vals[(q[-1] - base) * width + j] <= x:
                q.pop()
            q.append(newest)
            while q[head] < first:
                head += 1
            if head >= _MAXQ_COMPACT_MIN and 2 * head >= len(q):
                del q[:head]
                head = 0
            agg.maxhead[k] = head

    def _materialize(self, li: int, lo: int) -> _LaneAgg:
        """Build lane ``li``'s incremental aggregates over physical rows [lo, end) (O(window))."""
        lane = self._plan.lanes[li]
        vals = self._vals
        width = self._plan.width
        base = self._ptr[_PTR_BASE]
        n = len(self._times)
        agg = _LaneAgg()
        for _slot, j in lane.sum_slots:
            partials: list[float] = []
            for v in vals[lo * width + j :: width]:
                _padd(partials, v)
            agg.sums.append(partials)
        for _slot, j in lane.max_slots:
            q: array[int] = array("q")
            for p in range(lo, n):
                x = vals[p * width + j]
                while q and vals[(q[-1] - base) * width + j] <= x:
                    q.pop()
                q.append(base + p)
            agg.maxq.append(q)
            agg.maxhead.append(0)
        for _slot, j in lane.distinct_slots:
            counter: dict[float, int] = {}
            for v in vals[lo * width + j :: width]:
                counter[v] = counter.get(v, 0) + 1
            agg.distinct.append(counter)
        if self._agg is None:
            self._agg = [None] * len(self._plan.lanes)
        self._agg[li] = agg
        return agg

    def _release(self, li: int) -> None:
        aggs = self._agg
        if aggs is not None:
            aggs[li] = None
            if not any(aggs):
                self._agg = None

    def _trim(self, latest: float) -> None:
        """Advance past observations no future apply or allowed query can need; drop them in batches.

        Observations with time <= latest - allowed_lateness - max(window_s) can never be needed again
        (the max evicted time is kept for SINCE_PREVIOUS; SINCE_PREVIOUS specs count in max(window_s), as
        ``window_spec`` documents). They are deleted once they number a quarter of the live ones
        (amortised O(1)), so at most 1.25x what (max window + lateness) needs is held.
        """
        threshold = latest - self._plan.lateness - self._plan.horizon
        times = self._times
        ptr = self._ptr
        n = len(times)
        base = ptr[_PTR_BASE]
        dead = ptr[_PTR_DEAD] - base
        if dead >= n or times[dead] > threshold:
            return
        dead += 1
        while dead < n and times[dead] <= threshold:
            dead += 1
        if 4 * dead >= n - dead:  # batch the memmove: amortised O(1), at most 1.25x the live rows held
            self._max_evicted = times[dead - 1]
            del times[:dead]
            del self._vals[: dead * self._plan.width]
            if self._ids is not None:
                del self._ids[:dead]
            base += dead
            ptr[_PTR_BASE] = base
            dead = 0
        ptr[_PTR_DEAD] = base + dead

    def _insert(self, t: float, row: tuple[float, ...], key: int) -> dict[str, float]:
        """Out-of-order apply within the lateness (slow path, O(retained)): insert, serve, rebuild lanes.

        Serves from ``_scan`` and rebuilds the materialised lanes, proportional to the number of
        retained observations; out-of-order events are rare.
        """
        times = self._times
        width = self._plan.width
        pos = bisect_right(times, t)  # after equal times; never inside the trimmable prefix
        previous = times[pos - 1] if pos else self._max_evicted
        times.insert(pos, t)
        if self._ids is not None:
            self._ids.insert(pos, key)
        self._vals[pos * width : pos * width] = array("d", row)
        features = self._assemble(self._scan(t), t - previous)
        self._rebuild_lanes()
        return features

    def _rebuild_lanes(self) -> None:
        """Recompute every lane's start, and its aggregates if its window is large (O(retained))."""
        times = self._times
        ptr = self._ptr
        n = len(times)
        self._agg = None
        for li, lane in enumerate(self._plan.lanes):
            lo = bisect_right(times, times[-1] - lane.window) if n else 0
            ptr[_PTR_LANES + li] = ptr[_PTR_BASE] + lo
            if n - lo > _MATERIALIZE_ABOVE:
                self._materialize(li, lo)

    def _read_ahead(self, t: float) -> _Aggregates:
        """Aggregates for windows ending at t >= latest, from the lanes (cost ~ the part that slid out).

        Discounts only the observations between a lane's start and t - W, or re-aggregates the rest of
        the window in C when that is smaller.
        """
        plan = self._plan
        times = self._times
        vals = self._vals
        base = self._ptr[_PTR_BASE]
        width = plan.width
        n = len(times)
        counts, sums, maxes, distincts = plan.empty_aggregates()
        aggs = self._agg
        for li, lane in enumerate(plan.lanes):
            lo = self._ptr[_PTR_LANES + li] - base
            start = bisect_right(times, t - lane.window, lo, n)
            count = n - start
            counts[li] = count
            gap = start - lo
            agg = None if aggs is None else aggs[li]
            if agg is None or gap > count:
                first = start * width
                for slot, j in lane.sum_slots:
                    sums[slot] = math.fsum(vals[first + j :: width])
                if count:
                    for slot, j in lane.max_slots:
                        maxes[slot] = max(vals[first + j :: width])
                for slot, j in lane.distinct_slots:
                    distincts[slot] = len(set(vals[first + j :: width]))
                continue
            for k, (slot, j) in enumerate(lane.sum_slots):
                partials = agg.sums[k]
                if gap:
                    partials = list(partials)
                    for v in vals[lo * width + j : start * width : width]:
                        _padd(partials, -v)
                sums[slot] = math.fsum(partials)
            for k, (slot, j) in enumerate(lane.max_slots):  # count >= gap, and count >= 1 when gap == 0
                q = agg.maxq[k]
                maxes[slot] = vals[(q[bisect_left(q, base + start, agg.maxhead[k])] - base) * width + j]
            for k, (slot, j) in enumerate(lane.distinct_slots):
                counter = agg.distinct[k]
                distinct = len(counter)
                if gap:
                    gone: dict[float, int] = {}
                    for v in vals[lo * width + j : start * width : width]:
                        gone[v] = gone.get(v, 0) + 1
                    distinct -= sum(1 for v, c in gone.items() if counter[v] == c)
                distincts[slot] = distinct
        return counts, sums, maxes, distincts

    def _scan(self, t: float) -> _Aggregates:
        """Aggregates for windows ending at any allowed t, straight from the rows (bisect + C slices).

        The slow path for queries in the past and out-of-order applies: proportional to the window.
        """
        plan = self._plan
        times = self._times
        vals = self._vals
        width = plan.width
        counts, sums, maxes, distincts = plan.empty_aggregates()
        end = bisect_right(times, t)
        stop = end * width
        for li, lane in enumerate(plan.lanes):
            start = bisect_right(times, t - lane.window, 0, end)
            counts[li] = end - start
            first = start * width
            for slot, j in lane.sum_slots:
                sums[slot] = math.fsum(vals[first + j : stop : width])
            if end > start:
                for slot, j in lane.max_slots:
                    maxes[slot] = max(vals[first + j : stop : width])
            for slot, j in lane.distinct_slots:
                distincts[slot] = len(set(vals[first + j : stop : width]))
        return counts, sums, maxes, distincts

    def _assemble(self, aggregates: _Aggregates, since: float) -> dict[str, float]:
        counts, sums, maxes, distincts = aggregates
        plan = self._plan
        out = plan.template.copy()
        for name, lane in plan.count_out:
            out[name] = float(counts[lane])
        for name, slot in plan.sum_out:
            out[name] = sums[slot]
        for name, lane, slot in plan.mean_out:
            count = counts[lane]
            out[name] = sums[slot] / count if count else _NAN
        for name, lane, slot in plan.rate_out:
            count = counts[lane]
            out[name] = sums[slot] / count if count else 0.0
        for name, slot in plan.max_out:
            out[name] = maxes[slot]
        for name, slot in plan.distinct_out:
            out[name] = float(distincts[slot])
        for name in plan.since_out:
            out[name] = since
        return out
