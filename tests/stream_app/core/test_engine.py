from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.engine import (
    USER_TXN_SPECS,
    FeatureEngine,
    LabelEvent,
    TransactionEvent,
    WindowRows,
    is_future,
)
from stream_app.core.window_spec import MERCHANT_LAG_S
from stream_app.core.windows import KeyWindows, Outcome

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
    # merchant windows are served as of MERCHANT_LAG_S earlier: nothing yet at T0 + 60 - 60 ... but T0 itself
    assert rows.merchant["merchant_txn_count_1h"] == 1
    assert rows.merchant["merchant_label_count_7d"] == 0 and rows.merchant["merchant_fraud_rate_7d"] == 0.0


def test_merchant_windows_lag_and_count_every_users_events() -> None:
    engine = FeatureEngine(allowed_lateness_s=300)
    for i, user in enumerate((1, 2, 3)):
        engine.on_transaction(txn(i, T0 + i, user=user))
    just_after = engine.on_transaction(txn(3, T0 + MERCHANT_LAG_S - 1, user=4))
    lagged = engine.on_transaction(txn(4, T0 + MERCHANT_LAG_S + 2, user=5))
    assert isinstance(just_after, WindowRows) and isinstance(lagged, WindowRows)
    assert just_after.merchant["merchant_txn_count_1h"] == 0
    assert lagged.merchant["merchant_txn_count_1h"] == 3  # every user's events up to t - lag, not later ones


def test_merchant_values_do_not_depend_on_how_partitions_interleave_within_the_lag() -> None:
    """Two partitions' events (users 1 and 2) in two different arrival orders, never more than the lag
    apart in event time: every event is served the same merchant features."""
    a = [txn(i, T0 + 7 * i, user=1, partition=0) for i in range(20)]
    b = [txn(100 + i, T0 + 5 * i + 3, user=2, partition=1) for i in range(20)]

    def served(order: list[TransactionEvent]) -> dict[str, dict[str, float]]:
        engine = FeatureEngine(allowed_lateness_s=300)
        out = {}
        for event in order:
            rows = engine.on_transaction(event)
            assert isinstance(rows, WindowRows)
            out[event.event_id] = rows.merchant
        assert engine.stats.merchant_beyond_lag == 0
        return out

    interleaved = sorted(a + b, key=lambda e: e.time)
    a_ahead = sorted(a + b, key=lambda e: e.time - (45 if e.position[0] == 0 else 0))  # partition 0 45 s ahead
    b_ahead = sorted(a + b, key=lambda e: e.time - (45 if e.position[0] == 1 else 0))
    assert a_ahead != interleaved != b_ahead
    assert served(interleaved) == served(a_ahead) == served(b_ahead)


def test_an_event_arriving_beyond_the_lag_is_counted() -> None:
    engine = FeatureEngine(allowed_lateness_s=300)
    engine.on_transaction(txn(0, T0 + 200, user=1))
    engine.on_transaction(txn(1, T0, user=2))  # another partition, 200 s behind: values served may miss it
    assert engine.stats.merchant_beyond_lag == 1


def test_lateness_must_cover_the_merchant_lag() -> None:
    with pytest.raises(ValueError, match="merchant lag"):
        FeatureEngine(allowed_lateness_s=MERCHANT_LAG_S - 1)


def test_first_event_has_no_previous() -> None:
    rows = FeatureEngine(60).on_transaction(txn(0, T0))
    assert isinstance(rows, WindowRows) and math.isnan(rows.user["user_seconds_since_prev"])


def test_a_replayed_event_changes_nothing_and_is_not_served_again() -> None:
    engine = FeatureEngine(60)
    first = engine.on_transaction(txn(0, T0))
    engine.on_transaction(txn(1, T0 + 10))
    assert engine.on_transaction(txn(0, T0)) is Outcome.REPLAY
    assert engine.on_transaction(txn(1, T0 + 10)) is Outcome.REPLAY
    after = engine.on_transaction(txn(2, T0 + 20 + MERCHANT_LAG_S))
    assert isinstance(first, WindowRows) and isinstance(after, WindowRows)
    assert after.user["user_txn_count_10m"] == 3
    assert after.merchant["merchant_txn_count_1h"] == 2  # e0 and e1 once each, as of 60 s earlier
    assert engine.stats.replayed == 2


def test_a_late_event_is_routed_not_applied() -> None:
    engine = FeatureEngine(allowed_lateness_s=MERCHANT_LAG_S)
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
    engine.on_label(LabelEvent("x4", 10, True, T0 + 80, (0, 3)))  # also within the lag before it
    rows = engine.on_transaction(txn(0, T0 + 50 + MERCHANT_LAG_S))
    assert isinstance(rows, WindowRows)
    assert rows.merchant["merchant_label_count_7d"] == 2
    assert rows.merchant["merchant_fraud_rate_7d"] == 0.5
    assert engine.on_label(LabelEvent("x1", 10, True, T0, (0, 0))) is Outcome.REPLAY


def test_is_future_compares_the_event_with_when_its_record_entered_kafka() -> None:
    assert not is_future(T0 + 300, T0, 300)  # exactly the allowed skew ahead
    assert is_future(T0 + 300.001, T0, 300)
    assert not is_future(T0 - 86_400, T0, 300)  # old events are the lateness rule's business
    assert not is_future(T0 + 10**9, None, 300)  # no record timestamp: nothing to compare with


def test_a_future_event_touches_no_state_and_does_not_silence_its_user() -> None:
    engine = FeatureEngine(allowed_lateness_s=300, max_future_skew_s=300)
    year_2200 = 7_258_118_400.0
    far = TransactionEvent("far", 1, 10, 99.0, year_2200, (0, 0), entered=T0)
    assert engine.on_transaction(far) is Outcome.FUTURE
    assert engine.state.users == {} and engine.state.merchant_txns == {}
    assert engine.stats.future == 1
    for i in range(1, 4):
        rows = engine.on_transaction(TransactionEvent(f"e{i}", 1, 10, 10.0, T0 + i, (0, i), entered=T0 + i))
        assert isinstance(rows, WindowRows)
        assert rows.user["user_txn_count_24h"] == i  # the future event is not counted
    assert engine.stats.late == 0


def test_max_future_skew_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="future skew"):
        FeatureEngine(allowed_lateness_s=300, max_future_skew_s=-1)


def test_an_event_late_for_its_merchant_but_not_its_user_is_served_the_merchant_at_newest_minus_lateness() -> None:
    """User 2's first event is on time for user 2 but more than the lateness behind merchant 10's newest
    event: the merchant no longer holds the state for t - lag, so the merchant window is read at the
    oldest time it can answer (merchant newest - lateness), and the event is not applied to it."""
    engine = FeatureEngine(allowed_lateness_s=300)
    for i, t in enumerate((T0 + 100, T0 + 600, T0 + 1000)):
        engine.on_transaction(txn(i, t, user=1, partition=0))
    rows = engine.on_transaction(txn(3, T0 + 500, user=2, partition=1))
    assert isinstance(rows, WindowRows)
    assert rows.user["user_txn_count_24h"] == 1
    merchant = engine.state.merchant_txns[10]
    at_floor = merchant.query(T0 + 1000 - 300)["merchant_txn_count_1h"]
    assert rows.merchant["merchant_txn_count_1h"] == at_floor == 2  # at t - lag (T0 + 440) it would be 1
    assert engine.stats.merchant_not_applied == 1 and engine.stats.merchant_beyond_lag == 1
    assert engine.state.merchant_txns[10].query(T0 + 1000)["merchant_txn_count_1h"] == 3  # not counted there


def test_an_event_id_already_applied_is_a_duplicate_counted_nowhere_and_its_redelivery_a_replay() -> None:
    engine = FeatureEngine(allowed_lateness_s=300)
    first = engine.on_transaction(TransactionEvent("a", 1, 10, 10.0, T0, (0, 0)))
    resent = TransactionEvent("a", 1, 10, 10.0, T0, (0, 1))  # the same bytes at another offset
    other_bytes = TransactionEvent("a", 1, 11, 99.0, T0 + 5, (0, 2))  # the same id, other content
    assert isinstance(first, WindowRows)
    assert engine.on_transaction(resent) is Outcome.DUPLICATE
    assert engine.on_transaction(other_bytes) is Outcome.DUPLICATE
    assert engine.on_transaction(resent) is Outcome.REPLAY  # its position was recorded
    rows = engine.on_transaction(TransactionEvent("b", 1, 10, 1.0, T0 + 10, (0, 3)))
    assert isinstance(rows, WindowRows)
    assert (rows.user["user_txn_count_24h"], rows.user["user_amount_sum_24h"]) == (2, 11.0)
    assert engine.state.merchant_txns[10].query(T0 + 600)["merchant_txn_count_1h"] == 2
    assert 11 not in engine.state.merchant_txns
    assert engine.stats.duplicates == 2


def test_a_duplicate_beyond_lateness_and_the_longest_window_is_late_not_remembered() -> None:
    engine = FeatureEngine(allowed_lateness_s=300)
    engine.on_transaction(TransactionEvent("a", 1, 10, 10.0, T0, (0, 0)))
    engine.on_transaction(TransactionEvent("b", 1, 10, 10.0, T0 + 2 * 86_400, (0, 1)))
    assert engine.on_transaction(TransactionEvent("a", 1, 10, 10.0, T0, (0, 2))) is Outcome.LATE


def test_event_ids_survive_serialisation_and_state_without_them_still_loads() -> None:
    engine = FeatureEngine(allowed_lateness_s=300)
    engine.on_transaction(TransactionEvent("a", 1, 10, 10.0, T0, (0, 0)))
    user = engine.state.users[1]
    engine.state.users[1] = KeyWindows.from_bytes(USER_TXN_SPECS, 300, user.to_bytes())
    assert engine.on_transaction(TransactionEvent("a", 1, 10, 10.0, T0, (0, 1))) is Outcome.DUPLICATE
    data = user.to_bytes()
    assert (data[0], len(data)) == (2, 22 + 16 + 8 * (1 + 2) + 8)  # format 2: one more int64 per observation
    merchant = engine.state.merchant_txns[10].to_bytes()
    assert merchant[0] == 1  # merchants keep no event ids: their state does not grow
    legacy = bytearray(data[: 22 + 16 + 8 * 3])
    legacy[0] = 1  # a state written before event ids: loads, and identities start from the next event
    old = KeyWindows.from_bytes(USER_TXN_SPECS, 300, bytes(legacy))
    assert old.retained_count == 1 and old.to_bytes()[0] == 1


_EVENTS = st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 900), st.sampled_from([1.0, 2.5, 40.0]),
                             st.integers(0, 2)), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None)
@given(events=_EVENTS, reload_every=st.integers(1, 5))
def test_windows_equal_the_brute_force_over_distinct_event_ids(
        events: list[tuple[str, int, float, int]], reload_every: int) -> None:
    """Any sequence of (event_id from a small pool, time, amount, merchant) for one user, state reloaded
    from bytes every few events as the worker does: each event is served exactly what a brute force over
    the distinct event ids applied before it gives, and a repeated id is a DUPLICATE."""
    lateness = 300
    engine = FeatureEngine(allowed_lateness_s=lateness)
    applied: list[tuple[str, float, float]] = []  # (event_id, time, amount) in processing order
    for offset, (event_id, dt, amount, merchant) in enumerate(events):
        if offset % reload_every == 0 and 1 in engine.state.users:
            engine.state.users[1] = KeyWindows.from_bytes(USER_TXN_SPECS, lateness,
                                                          engine.state.users[1].to_bytes())
        t = T0 + dt
        outcome = engine.on_transaction(TransactionEvent(event_id, 1, merchant, amount, t, (0, offset)))
        if event_id in {e for e, _, _ in applied}:
            assert outcome is Outcome.DUPLICATE
            continue
        if applied and t < max(time for _, time, _ in applied) - lateness:
            assert outcome is Outcome.LATE
            continue
        assert isinstance(outcome, WindowRows)
        applied.append((event_id, t, amount))
        in_10m = [a for _, time, a in applied if t - 600 < time <= t]
        in_24h = [a for _, time, a in applied if t - 86_400 < time <= t]
        before = [time for _, time, _ in applied[:-1] if time <= t]
        assert outcome.user["user_txn_count_10m"] == len(in_10m)
        assert outcome.user["user_txn_count_24h"] == len(in_24h)
        assert outcome.user["user_amount_sum_24h"] == math.fsum(in_24h)
        assert outcome.user["user_amount_max_24h"] == max(in_24h)
        since = outcome.user["user_seconds_since_prev"]
        assert (math.isnan(since) and not before) or since == t - max(before)
