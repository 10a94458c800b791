"""The window features, declared once. Feast's feature views (feature_repo/) build their schemas from
these specs and the window core computes them from these specs; nothing else names a window feature."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Entity(StrEnum):
    """Whose state a window lives in; the value is the Feast join key."""

    USER = "user_id"
    MERCHANT = "merchant_id"


class Source(StrEnum):
    """Which observations feed a window: transactions at event_time, or labels at label_time."""

    TRANSACTION = "transaction"
    LABEL = "label"


class Function(StrEnum):
    """The aggregate a window computes."""

    COUNT = "count"  # number of observations in the window
    SUM = "sum"  # sum of `field`
    MEAN = "mean"  # sum / count of `field`
    MAX = "max"  # maximum of `field`
    DISTINCT = "distinct"  # number of distinct values of `field`
    SINCE_PREVIOUS = "since_previous"  # seconds since the latest earlier observation (NaN if none)
    RATE = "rate"  # mean of a boolean `field` (0.0 when the window is empty)


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One served feature: ``function`` of ``field`` over the ``window_s`` seconds ending at the event.

    The value served for an event at time t covers that event and every earlier-processed observation
    of the same key with time in (t - window_s, t]. SINCE_PREVIOUS ignores ``window_s`` for its
    semantics but uses it as the horizon of state kept for late events.
    """

    name: str
    entity: Entity
    source: Source
    function: Function
    field: str | None
    window_s: int


MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR

USER_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("user_txn_count_10m", Entity.USER, Source.TRANSACTION, Function.COUNT, None, 10 * MINUTE),
    WindowSpec("user_txn_count_1h", Entity.USER, Source.TRANSACTION, Function.COUNT, None, HOUR),
    WindowSpec("user_txn_count_24h", Entity.USER, Source.TRANSACTION, Function.COUNT, None, DAY),
    WindowSpec("user_amount_sum_1h", Entity.USER, Source.TRANSACTION, Function.SUM, "amount", HOUR),
    WindowSpec("user_amount_sum_24h", Entity.USER, Source.TRANSACTION, Function.SUM, "amount", DAY),
    WindowSpec("user_amount_mean_24h", Entity.USER, Source.TRANSACTION, Function.MEAN, "amount", DAY),
    WindowSpec("user_amount_max_24h", Entity.USER, Source.TRANSACTION, Function.MAX, "amount", DAY),
    WindowSpec(
        "user_distinct_merchants_1h", Entity.USER, Source.TRANSACTION, Function.DISTINCT, "merchant_id", HOUR
    ),
    WindowSpec(
        "user_seconds_since_prev", Entity.USER, Source.TRANSACTION, Function.SINCE_PREVIOUS, None, DAY
    ),
)

# Merchant windows are served as of MERCHANT_LAG_S before the event: a merchant's transactions arrive
# from every partition (and its labels from another topic), so what has been processed "by now" depends
# on how partitions interleave. Everything with time <= t - lag has been processed on every partition as
# long as the partitions stay within the lag of each other in event time; then one worker, two workers,
# a replay and the backfill agree (docs/decisions/0010-merchant-windows-lagged.md).
MERCHANT_LAG_S = 60

MERCHANT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("merchant_txn_count_1h", Entity.MERCHANT, Source.TRANSACTION, Function.COUNT, None, HOUR),
    WindowSpec("merchant_label_count_7d", Entity.MERCHANT, Source.LABEL, Function.COUNT, None, 7 * DAY),
    WindowSpec("merchant_fraud_rate_7d", Entity.MERCHANT, Source.LABEL, Function.RATE, "is_fraud", 7 * DAY),
)

ALL_WINDOWS: tuple[WindowSpec, ...] = USER_WINDOWS + MERCHANT_WINDOWS


def windows_for(entity: Entity, source: Source | None = None) -> tuple[WindowSpec, ...]:
    """The specs kept in one entity's state, optionally only those fed by one source."""
    return tuple(s for s in ALL_WINDOWS if s.entity is entity and (source is None or s.source is source))
