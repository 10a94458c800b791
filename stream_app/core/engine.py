"""The feature engine: one transaction or label in, the window rows it produces out.

The stream worker and the offline backfill both drive ``FeatureEngine``, event by event, in arrival
order; that is the whole guarantee that training features equal served features. The user's state
decides whether an event is applied; merchant windows follow it and are served ``MERCHANT_LAG_S`` in
the past (docs/decisions/0010-merchant-windows-lagged.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from stream_app.core.window_spec import MERCHANT_LAG_S, Entity, Source, WindowSpec, windows_for
from stream_app.core.windows import KeyWindows, Observation, Outcome, Position

USER_TXN_SPECS = windows_for(Entity.USER, Source.TRANSACTION)
MERCHANT_TXN_SPECS = windows_for(Entity.MERCHANT, Source.TRANSACTION)
MERCHANT_LABEL_SPECS = windows_for(Entity.MERCHANT, Source.LABEL)
DEFAULT_MAX_FUTURE_SKEW_S = 300.0


def event_key(event_id: str) -> int:
    """The event's identity in window state: a non-zero int64 hash of its id (8 bytes per observation
    instead of up to 128; two ids of one user collide with probability ~n²/2⁶⁴)."""
    key = int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little", signed=True)
    return key or 1


def is_future(time: float, entered: float | None, max_future_skew_s: float) -> bool:
    """True if an event dated ``time`` is more than ``max_future_skew_s`` ahead of when its record
    entered Kafka (``entered``, epoch seconds; None = unknown, never future).

    Such an event would become its user's newest time and make every real event after it ``late``; it
    is refused instead. The record's timestamp, not the wall clock, decides: a replay, a catch-up and
    the backfill decide the same for the same record (docs/decisions/0012-future-skew-by-record-time.md)."""
    return entered is not None and time - entered > max_future_skew_s


@dataclass(frozen=True, slots=True)
class TransactionEvent:
    """The fields of a validated transaction the core needs (no wire types here)."""

    event_id: str
    user_id: int
    merchant_id: int
    amount: float
    time: float  # event_time, epoch seconds UTC
    position: Position
    entered: float | None = None  # when the record entered Kafka (its timestamp), epoch seconds; None: unknown


@dataclass(frozen=True, slots=True)
class LabelEvent:
    """A label already joined to its transaction's merchant."""

    event_id: str
    merchant_id: int
    is_fraud: bool
    time: float  # label_time, epoch seconds UTC
    position: Position


@dataclass(frozen=True, slots=True)
class WindowRows:
    """What one applied transaction serves: the user's and the merchant's window features at its time."""

    user: dict[str, float]
    merchant: dict[str, float]


@dataclass(slots=True)
class EngineStats:
    """Counts of what the engine did with the events it was given, by outcome."""

    applied: int = 0
    replayed: int = 0
    late: int = 0
    duplicates: int = 0
    future: int = 0
    merchant_not_applied: int = 0  # applied to the user, too late for the merchant's state
    merchant_beyond_lag: int = 0  # applied to the merchant at or before its latest - lag: possibly missed
    labels_applied: int = 0
    labels_replayed: int = 0
    labels_late: int = 0


@dataclass(slots=True)
class WindowState:
    """Per-key window state, one mapping per (entity, source). Plain dicts for the backfill; the worker
    may pass mappings backed by its state store."""

    users: MutableMapping[int, KeyWindows] = field(default_factory=dict)
    merchant_txns: MutableMapping[int, KeyWindows] = field(default_factory=dict)
    merchant_labels: MutableMapping[int, KeyWindows] = field(default_factory=dict)
    # When ``journal`` is set, the observations applied to each merchant in this unit of work, in order:
    # a state store can re-apply them onto a merchant state another worker changed meanwhile.
    journal: bool = False
    merchant_txns_applied: dict[int, list[Observation]] = field(default_factory=dict)
    merchant_labels_applied: dict[int, list[Observation]] = field(default_factory=dict)


class FeatureEngine:
    """Applies events to window state and returns the rows to serve.

    Authority for "has this event been processed" is the user's state: transactions are partitioned by
    user, so a user's windows see that user's events in partition order. A merchant's windows receive
    events from every partition; they apply an event the user's state applied (unless their own state
    finds it too late, counted in ``EngineStats.merchant_not_applied``).
    """

    def __init__(self, allowed_lateness_s: float, state: WindowState | None = None,
                 max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S) -> None:
        if allowed_lateness_s < MERCHANT_LAG_S:
            raise ValueError(f"allowed lateness {allowed_lateness_s:g} s must cover the merchant lag "
                             f"({MERCHANT_LAG_S} s): merchant windows are read that far in the past")
        if not max_future_skew_s >= 0:
            raise ValueError(f"max future skew must be >= 0, got {max_future_skew_s!r}")
        self.allowed_lateness_s = allowed_lateness_s
        self.max_future_skew_s = max_future_skew_s
        self.state = state if state is not None else WindowState()
        self.stats = EngineStats()
        self._no_labels = KeyWindows(MERCHANT_LABEL_SPECS, allowed_lateness_s).query(0.0)

    def _windows(self, table: MutableMapping[int, KeyWindows], key: int, specs: tuple[WindowSpec, ...]) -> KeyWindows:
        windows = table.get(key)
        if windows is None:
            windows = KeyWindows(specs, self.allowed_lateness_s)
            table[key] = windows
        return windows

    def on_transaction(self, event: TransactionEvent) -> WindowRows | Outcome:
        """APPLIED events return their rows; FUTURE, REPLAY, DUPLICATE and LATE return the outcome and
        change no window (a DUPLICATE or LATE event's position is recorded, so its redelivery is a REPLAY).

        Exactly once per event_id: the user's state remembers the event ids it applied within the
        lateness and its longest window; an event whose id is among them is a DUPLICATE (a re-sent
        record, or the same id with other content) and is counted nowhere
        (docs/decisions/0011-one-prediction-per-event-id.md)."""
        if is_future(event.time, event.entered, self.max_future_skew_s):
            self.stats.future += 1
            return Outcome.FUTURE
        values = {"amount": event.amount, "merchant_id": float(event.merchant_id)}
        user = self._windows(self.state.users, event.user_id, USER_TXN_SPECS)
        verdict = user.apply(Observation(event.time, values, event.position, event_key(event.event_id)))
        if verdict.outcome is Outcome.REPLAY:
            self.stats.replayed += 1
            return Outcome.REPLAY
        if verdict.outcome is not Outcome.APPLIED:
            if verdict.outcome is Outcome.LATE:
                self.stats.late += 1
            else:
                self.stats.duplicates += 1
            self.state.users[event.user_id] = user  # its position was recorded
            return verdict.outcome
        assert verdict.features is not None
        self.state.users[event.user_id] = user
        merchant = self._merchant_row(event, Observation(event.time, values, event.position))
        self.stats.applied += 1
        return WindowRows(user=verdict.features, merchant=merchant)

    def _merchant_row(self, event: TransactionEvent, obs: Observation) -> dict[str, float]:
        """Applies ``obs`` to the merchant's transaction windows and serves the merchant's transaction and
        label windows as of ``MERCHANT_LAG_S`` before the event: independent of how partitions and the
        label topic interleave, as long as they stay within the lag of each other. An event applied at or
        before ``latest - lag`` may have been missed by a value already served
        (``EngineStats.merchant_beyond_lag``)."""
        txns = self._windows(self.state.merchant_txns, event.merchant_id, MERCHANT_TXN_SPECS)
        latest = txns.latest_time
        if latest is not None and event.time <= latest - MERCHANT_LAG_S:
            self.stats.merchant_beyond_lag += 1
        if txns.apply(obs).features is not None:
            self.state.merchant_txns[event.merchant_id] = txns
            if self.state.journal:
                self.state.merchant_txns_applied.setdefault(event.merchant_id, []).append(obs)
        else:
            self.stats.merchant_not_applied += 1
        as_of = event.time - MERCHANT_LAG_S
        row = _safe_query(txns, as_of)
        labels = self.state.merchant_labels.get(event.merchant_id)
        if labels is None:
            row.update(self._no_labels)
        else:
            row.update(_safe_query(labels, as_of))
        return row

    def on_label(self, label: LabelEvent) -> Outcome:
        """Applies a label to its merchant's label windows (at label_time); APPLIED, REPLAY or LATE."""
        windows = self._windows(self.state.merchant_labels, label.merchant_id, MERCHANT_LABEL_SPECS)
        obs = Observation(label.time, {"is_fraud": 1.0 if label.is_fraud else 0.0}, label.position)
        outcome = windows.apply(obs).outcome
        self.state.merchant_labels[label.merchant_id] = windows
        if outcome is Outcome.APPLIED:
            self.stats.labels_applied += 1
            if self.state.journal:
                self.state.merchant_labels_applied.setdefault(label.merchant_id, []).append(obs)
        elif outcome is Outcome.REPLAY:
            self.stats.labels_replayed += 1
        else:
            self.stats.labels_late += 1
        return outcome


def _safe_query(windows: KeyWindows, time: float) -> dict[str, float]:
    """Windows at ``time``; a time older than the state can answer is served at the oldest time it can."""
    latest = windows.latest_time
    if latest is not None and time < latest - windows.allowed_lateness_s:
        time = latest - windows.allowed_lateness_s
    return windows.query(time)
