from __future__ import annotations

import math
from typing import Any

import pandas as pd

from stream_app.core import profiles


def _txns(rows: list[tuple[int, int, float, str]]) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [r[0] for r in rows], "merchant_id": [r[1] for r in rows],
                         "amount": [r[2] for r in rows], "event_time": pd.to_datetime([r[3] for r in rows], utc=True)})


def test_snapshots_only_see_history_strictly_before_their_day() -> None:
    txns = _txns([(1, 10, 10.0, "2026-10-01T08:00Z"), (1, 10, 30.0, "2026-10-02T09:00Z"),
                  (2, 11, 5.0, "2026-10-02T23:59Z")])
    users = pd.DataFrame({"user_id": [1, 2], "home_country": ["FR", "DE"],
                          "signup_time": pd.to_datetime(["2026-09-01T00:00", "2026-10-02T12:00"], utc=True)})
    days = profiles.snapshot_days(txns)
    assert list(days.strftime("%m-%d")) == ["10-01", "10-02", "10-03"]
    user: Any = profiles.user_profiles(txns, users, days).set_index(["user_id", "event_timestamp"])
    day = {d.strftime("%m-%d"): d for d in days}
    first = user.loc[(1, day["10-01"])]
    assert first["user_txn_count_30d"] == 0 and math.isnan(first["user_avg_amount_30d"])
    assert user.loc[(1, day["10-02"]), "user_avg_amount_30d"] == 10.0
    assert user.loc[(1, day["10-03"]), "user_avg_amount_30d"] == 20.0
    unknown = user.loc[(2, day["10-02"])]  # signed up during that day: listed, nothing known
    assert unknown["home_country"] is None and math.isnan(unknown["user_account_age_days"])
    assert unknown["user_txn_count_30d"] == 0
    assert (2, day["10-01"]) not in user.index
    assert user.loc[(2, day["10-03"]), "user_txn_count_30d"] == 1
    assert user.loc[(1, day["10-01"]), "user_account_age_days"] == 30.0
    merchant: Any = profiles.merchant_profiles(txns, days).set_index(["merchant_id", "event_timestamp"])
    assert merchant.loc[(10, day["10-03"]), "merchant_txn_count_30d"] == 2
    first_day = merchant.loc[(11, day["10-02"])]  # first seen that day: listed, no history yet
    assert first_day["merchant_txn_count_30d"] == 0 and math.isnan(first_day["merchant_avg_amount_30d"])
    assert (11, day["10-01"]) not in merchant.index


def test_the_thirty_day_lookback_drops_old_history() -> None:
    txns = _txns([(1, 10, 10.0, "2026-09-01T08:00Z"), (1, 10, 50.0, "2026-10-05T08:00Z")])
    days = pd.date_range("2026-10-05", "2026-10-06", freq="D", tz="UTC")
    merchant: Any = profiles.merchant_profiles(txns, days).set_index(["merchant_id", "event_timestamp"])
    assert merchant.loc[(10, days[1]), "merchant_avg_amount_30d"] == 50.0
    assert merchant.loc[(10, days[1]), "merchant_txn_count_30d"] == 1
