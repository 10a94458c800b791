from __future__ import annotations

import math

from stream_app.core.engine import FeatureEngine, LabelEvent, TransactionEvent, WindowRows
from stream_app.core.windows import Outcome

T0 = 1_800_000_000.0


def txn(i: int, t: float, *, user: int = 1, merchant: int = 10, amount: float = 10.0, partition: int = 0,
        ) -> TransactionEvent:
    return TransactionEvent(f"e{i}", user, merchant, amount, t, (partition, i))


def test_rows_cover_the_event_and_earlier_ones_of_the_same_key() -> None:
    engine = FeatureEngine(allowed_lateness_s=60)
    engine.on_transaction(txn(0, T0, amount=5.0))
    engine.on_transaction(txn(1, T0 + 30, user=2, amount=7.0))
    rows = engine.on_transaction(txn(2, T0 + 60, amount=20.0))
    assert isinstance(rows, WindowRows)
    assert rows.user["user_txn_count_10m"] == 2
    assert rows.user["user_amount_sum_1h"] == 25.0
    assert rows.user["user_seconds_since_prev"] == 60.0
    assert rows.merchant["merchant_txn_count_1h"] == 3  # the merchant saw every user's events
    assert rows.merchant["merchant_label_count_7d"] == 0 and rows.merchant["merchant_fraud_rate_7d"] == 0.0


def test_first_event_has_no_previous() -> None:
    rows = FeatureEngine(60).on_transaction(txn(0, T0))
    assert isinstance(rows, WindowRows) and math.isnan(rows.user["user_seconds_since_prev"])


def test_a_replayed_event_changes_nothing_and_is_not_served_again() -> None:
    engine = FeatureEngine(60)
    first = engine.on_transaction(txn(0, T0))
    engine.on_transaction(txn(1, T0 + 10))
    assert engine.on_transaction(txn(0, T0)) is Outcome.REPLAY
    assert engine.on_transaction(txn(1, T0 + 10)) is Outcome.REPLAY
    after = engine.on_transaction(txn(2, T0 + 20))
    assert isinstance(first, WindowRows) and isinstance(after, WindowRows)
    assert after.user["user_txn_count_10m"] == 3
    assert after.merchant["merchant_txn_count_1h"] == 3
    assert engine.stats.replayed == 2


def test_a_late_event_is_routed_not_applied() -> None:
    engine = FeatureEngine(allowed_lateness_s=60)
    engine.on_transaction(txn(0, T0 + 1000))
    assert engine.on_transaction(txn(1, T0, amount=999.0)) is Outcome.LATE
    rows = engine.on_transaction(txn(2, T0 + 1001))
    assert isinstance(rows, WindowRows)
    assert rows.user["user_txn_count_24h"] == 2 and rows.user["user_amount_max_24h"] == 10.0
    assert engine.stats.late == 1
    # the late record redelivered is a replay, not a second late record
    assert engine.on_transaction(txn(1, T0, amount=999.0)) is Outcome.REPLAY


def test_labels_feed_the_merchant_fraud_rate_at_transaction_time() -> None:
    engine = FeatureEngine(60)
    engine.on_label(LabelEvent("x1", 10, True, T0, (0, 0)))
    engine.on_label(LabelEvent("x2", 10, False, T0 + 1, (0, 1)))
    engine.on_label(LabelEvent("x3", 10, True, T0 + 100, (0, 2)))  # after the transaction below
    rows = engine.on_transaction(txn(0, T0 + 50))
    assert isinstance(rows, WindowRows)
    assert rows.merchant["merchant_label_count_7d"] == 2
    assert rows.merchant["merchant_fraud_rate_7d"] == 0.5
    assert engine.on_label(LabelEvent("x1", 10, True, T0, (0, 0))) is Outcome.REPLAY
