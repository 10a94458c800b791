"""Realistic live arrivals (history's per-user process in event time) and the drift modes, statistically
against history and against the default load-generator mode, without a broker."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stream_app.cli import main
from stream_app.contract import decode_label, decode_transaction
from stream_app.core.metrics import histogram_reference, psi
from stream_app.generator.arrivals import PopulationArrivals, expected_per_slot, start_for
from stream_app.generator.config import DAY_US, DRIFTS, SECOND_US, HistoryConfig, stream, to_us
from stream_app.generator.history import generate_history
from stream_app.generator.labels import FRAUD_DELAY_US, LEGIT_DELAY_US
from stream_app.generator.live import LiveCounts, LiveSource, realistic_start
from stream_app.generator.population import HOME_COUNTRIES, USER_ID_BASE, Population, build_population

START = datetime(2026, 11, 1, tzinfo=UTC)
USERS, MERCHANTS, DAYS = 2_000, 200, 3
Records = list[tuple[bytes, bytes, str | None]]


@pytest.fixture(scope="module")
def pop() -> Population:
    return build_population(stream(7, "population"), USERS, MERCHANTS)


def realistic(pop: Population, *, seed: int = 7, drift: str = "none", days: float = DAYS, per_call: int = 100,
              **kwargs: Any) -> Records:
    """Records of a realistic source until its event clock passes ``days``."""
    source = LiveSource(pop, seed=seed, start_us=to_us(START), realistic=True, drift=DRIFTS[drift], **kwargs)
    records: Records = []
    while source.clock_s < days * DAY_US / SECOND_US:
        records += source.next_transactions(per_call)
    return records


def frame(records: Records) -> pd.DataFrame:
    """Valid transactions within the first DAYS days as user_id, event_time, amount, country, pattern."""
    rows = []
    for key, value, pattern in records:
        if pattern is not None:
            txn = decode_transaction(value, key)
            rows.append((txn.user_id, txn.event_time, txn.amount, txn.country, pattern))
    out = pd.DataFrame(rows, columns=["user_id", "event_time", "amount", "country", "pattern"])
    return out[out["event_time"] < START + timedelta(days=DAYS)]


@pytest.fixture(scope="module")
def live(pop: Population) -> pd.DataFrame:
    return frame(realistic(pop))


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    config = HistoryConfig(days=DAYS, users=USERS, merchants=MERCHANTS, seed=7, start=START)
    return generate_history(config).transactions.rename(columns={"fraud_pattern": "pattern"})


def per_user_day(txns: pd.DataFrame) -> pd.Series:
    """Transactions per user and UTC day, zeros included."""
    days = txns["event_time"].dt.floor("D")
    counts = txns.groupby([txns["user_id"], days]).size()
    index = pd.MultiIndex.from_product([range(USER_ID_BASE, USER_ID_BASE + USERS), sorted(days.unique())])
    return counts.reindex(index, fill_value=0)


def quick_repeat_share(txns: pd.DataFrame, seconds: float) -> float:
    """Share of transactions that follow the same user's previous one within ``seconds``."""
    ordered = txns.sort_values(["user_id", "event_time"])
    gaps = ordered.groupby("user_id")["event_time"].diff().dt.total_seconds()
    return float((gaps < seconds).mean())


def test_per_user_rates_match_history(live: pd.DataFrame, history: pd.DataFrame) -> None:
    ours, theirs = per_user_day(live), per_user_day(history)
    assert abs(ours.mean() / theirs.mean() - 1) < 0.08  # about one purchase per user-day
    assert (ours <= 3).mean() >= 0.9  # most users a few transactions a day ...
    assert abs((ours <= 3).mean() - (theirs <= 3).mean()) < 0.02
    heavy, heavy_history = (ours >= 6).mean(), (theirs >= 6).mean()
    assert 0.005 < heavy < 0.05 and 0.6 < heavy / heavy_history < 1.6  # ... a few many
    assert abs((ours == 0).mean() - (theirs == 0).mean()) < 0.03
    for seconds in (600, 3600):  # bursts (sprees, card testing) and same-hour repeats as often as in history
        assert 0.7 < quick_repeat_share(live, seconds) / quick_repeat_share(history, seconds) < 1.4
    by_hour = [txns["event_time"].dt.hour.value_counts().reindex(range(24), fill_value=0) for txns in (live, history)]
    assert np.corrcoef(by_hour[0], by_hour[1])[0, 1] > 0.9  # the same daily rhythm


def test_the_default_mode_at_a_demo_rate_does_not(pop: Population, live: pd.DataFrame) -> None:
    """The contrast the realistic mode exists for: as many records in one minute of event time as the
    realistic source spreads over days pile each user's purchases minutes apart."""
    source = LiveSource(pop, seed=7, start_us=to_us(START), warm_rate=len(live) / 60)
    records: Records = []
    for step in range(600):
        records += source.transactions(len(live) // 600, step * 0.1)
    default = frame(records)
    assert quick_repeat_share(default, 600) > 0.5
    assert quick_repeat_share(live, 600) < 0.1


def test_fraud_rate_and_patterns_as_in_history(live: pd.DataFrame, history: pd.DataFrame) -> None:
    fraud = live["pattern"] != "none"
    assert 0.006 <= fraud.mean() <= 0.02
    assert abs(fraud.mean() - (history["pattern"] != "none").mean()) < 0.006
    assert {"card_testing", "account_takeover", "compromised_merchant"} <= set(live["pattern"])
    assert "gift_card_cashout" not in set(live["pattern"])


def test_same_seed_same_stream_however_it_is_requested(pop: Population) -> None:
    by_100 = realistic(pop, days=0.5)
    by_7 = realistic(pop, days=0.5, per_call=7)
    n = min(len(by_100), len(by_7))
    assert n > 300 and by_100[:n] == by_7[:n]
    assert realistic(pop, seed=8, days=0.5)[:n] != by_100[:n]


def test_event_times_strictly_increase_and_labels_follow_their_delay(pop: Population) -> None:
    scale = 1e-3
    source = LiveSource(pop, seed=7, start_us=to_us(START), realistic=True, label_delay_scale=scale,
                        invalid_fraction=0.05)
    records: Records = []
    while len(records) < 2_000:
        records += source.next_transactions(50)
    txns = {decode_transaction(v, k).event_id: (decode_transaction(v, k), p) for k, v, p in records if p is not None}
    times = [txn.event_time for txn, _ in txns.values()]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert source.clock_s >= (times[-1] - START).total_seconds() - 1e-6
    assert 0.03 < 1 - len(txns) / len(records) < 0.08  # the invalid records
    due = source.labels_due(source.clock_s)  # labels fall due on the source's own event clock
    assert due and source.pending_labels + len(due) == len(txns)
    for _, value in due + source.labels_due(1e12):
        label = decode_label(value)
        txn, pattern = txns[label.event_id]
        assert label.is_fraud == (pattern != "none")
        lo, hi = FRAUD_DELAY_US if label.is_fraud else LEGIT_DELAY_US
        delay_us = (label.label_time - txn.event_time).total_seconds() * SECOND_US / scale
        assert lo * 0.999 <= delay_us <= hi * 1.001


def test_start_for_plans_the_expected_number_of_purchases(pop: Population) -> None:
    per_day = float(expected_per_slot(pop).sum())
    end = to_us(START + timedelta(days=5))
    assert start_for(pop, end, per_day) == end - DAY_US and start_for(pop, end, 0) == end
    for purchases in (150.0, 1_000.0, 3_000.0):  # within a day the daily rhythm matters
        begin = start_for(pop, end, purchases)
        arrivals = PopulationArrivals(pop, stream(1, "test"), begin)
        seen = 0
        while True:
            _, when, _ = arrivals.next_slot()
            if when[0] >= end:
                break
            seen += int((when < end).sum())
        assert abs(seen - purchases) < 4 * np.sqrt(purchases) + 0.02 * purchases


def test_realistic_start_is_where_a_run_planned_to_end_by_then_starts(pop: Population) -> None:
    end = START + timedelta(days=5)
    rate, duration_s = 50.0, 20.0
    planned = rate * duration_s
    begin = realistic_start(rate, duration_s, seed=7, users=USERS, merchants=MERCHANTS, end=end)
    assert to_us(begin) == start_for(pop, to_us(end), planned + 3.0 * np.sqrt(planned))
    assert START < begin < end


def test_amount_drift_shifts_the_amount_distribution(pop: Population, live: pd.DataFrame) -> None:
    reference = histogram_reference(live["amount"].to_numpy())
    control = frame(realistic(pop, seed=8))
    drifted = frame(realistic(pop, seed=8, drift="amount"))
    assert psi(reference, control["amount"].to_numpy()) < 0.05
    assert psi(reference, drifted["amount"].to_numpy()) > 0.25  # "major shift"
    assert drifted["amount"].median() == pytest.approx(2 * control["amount"].median(), rel=0.1)
    assert abs((drifted["pattern"] != "none").mean() - (control["pattern"] != "none").mean()) < 0.005


def test_pattern_drift_adds_a_fraud_history_never_has(pop: Population, live: pd.DataFrame) -> None:
    drifted = frame(realistic(pop, drift="pattern"))
    cashout = drifted[drifted["pattern"] == "gift_card_cashout"]
    assert 0.006 < len(cashout) / len(drifted) < 0.02
    assert 0.015 < (drifted["pattern"] != "none").mean() < 0.035  # the fraud rate about doubles
    assert ((cashout["amount"] % 25) == 0).all() and (cashout["amount"] >= 25).all()
    home = {u: HOME_COUNTRIES[int(h)].code for u, h in zip(pop.users.id.tolist(), pop.users.home.tolist(), strict=True)}
    at_home = (cashout["country"] == cashout["user_id"].map(home)).mean()
    assert at_home > 0.8  # no foreign-country signal (a small world lacks shops in a few countries)
    assert psi(histogram_reference(live["amount"].to_numpy()), drifted["amount"].to_numpy()) < 0.05


def test_cli_passes_realistic_and_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def fake_stream_live(*args: Any, **kwargs: Any) -> LiveCounts:
        calls.append(kwargs)
        return LiveCounts()

    monkeypatch.setattr("stream_app.cli.generate.stream_live", fake_stream_live)
    assert main(["generate", "live", "--realistic", "--drift", "amount", "--duration", "1"]) == 0
    assert calls[-1]["realistic"] is True and calls[-1]["drift"] == DRIFTS["amount"]
    assert main(["generate", "live", "--duration", "1"]) == 0
    assert calls[-1]["realistic"] is False and calls[-1]["drift"] == DRIFTS["none"]
    with pytest.raises(SystemExit):
        main(["generate", "live", "--drift", "sideways"])
