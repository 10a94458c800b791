"""Batch profile features: daily snapshots of each user and merchant, computed from history strictly
before the snapshot time (point-in-time correct), materialised to the online store by Feast.

Pure pandas: no Feast, no files. The backfill CLI reads history, calls these, and writes parquet."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

# name -> kind; feature_repo maps kinds to Feast types. home_country feeds request features only.
USER_PROFILE_FEATURES: Final[dict[str, str]] = {
    "home_country": "str",
    "user_account_age_days": "float",
    "user_avg_amount_30d": "float",
    "user_txn_count_30d": "int",
}
MERCHANT_PROFILE_FEATURES: Final[dict[str, str]] = {
    "merchant_avg_amount_30d": "float",
    "merchant_txn_count_30d": "int",
}
LOOKBACK_DAYS: Final[int] = 30
TIMESTAMP: Final[str] = "event_timestamp"


def snapshot_days(transactions: pd.DataFrame, extra_days: int = 1) -> pd.DatetimeIndex:
    """Midnights (UTC) from the first transaction's day to one past the last: a snapshot at day d
    covers history before d, so the last one is what the live stream should be served."""
    times = pd.to_datetime(transactions["event_time"], utc=True)
    first = times.min().floor("D")
    last = times.max().floor("D") + pd.Timedelta(days=extra_days)
    return pd.date_range(first, last, freq="D", tz="UTC")


def _rolling_stats(transactions: pd.DataFrame, key: str, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Per key and snapshot day: count and mean amount over [d - 30d, d)."""
    times = pd.to_datetime(transactions["event_time"], utc=True)
    daily = (
        transactions.assign(day=times.dt.floor("D"))
        .groupby([key, "day"], sort=True)["amount"]
        .agg(["count", "sum"])
        .reset_index()
    )
    frames = []
    for day in days:
        window = daily[(daily["day"] >= day - pd.Timedelta(days=LOOKBACK_DAYS)) & (daily["day"] < day)]
        agg = window.groupby(key).agg(n=("count", "sum"), total=("sum", "sum")).reset_index()
        agg[TIMESTAMP] = day
        frames.append(agg)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[key, "n", "total", TIMESTAMP])
    out["avg"] = out["total"] / out["n"]
    return out


def user_profiles(transactions: pd.DataFrame, users: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """One row per (user, snapshot day) for every user known (signed up) by that day.
    ``users`` needs user_id, home_country, signup_time."""
    stats = _rolling_stats(transactions, "user_id", days)
    signup = pd.to_datetime(users["signup_time"], utc=True)
    rows = []
    for day in days:
        known = users[signup < day]
        rows.append(pd.DataFrame({
            "user_id": known["user_id"].to_numpy(),
            "home_country": known["home_country"].to_numpy(),
            "user_account_age_days": ((day - signup[signup < day]).dt.total_seconds() / 86400.0).to_numpy(),
            TIMESTAMP: day,
        }))
    base = pd.concat(rows, ignore_index=True)
    out = base.merge(stats[["user_id", TIMESTAMP, "n", "avg"]], on=["user_id", TIMESTAMP], how="left")
    out["user_txn_count_30d"] = out["n"].fillna(0).astype(np.int64)
    out["user_avg_amount_30d"] = out["avg"].astype(np.float64)
    return out[["user_id", TIMESTAMP, *USER_PROFILE_FEATURES]].sort_values([TIMESTAMP, "user_id"], ignore_index=True)


def merchant_profiles(transactions: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """One row per (merchant, snapshot day) for merchants seen in the 30 days before it."""
    stats = _rolling_stats(transactions, "merchant_id", days)
    out = pd.DataFrame({
        "merchant_id": stats["merchant_id"].astype(np.int64),
        TIMESTAMP: stats[TIMESTAMP],
        "merchant_avg_amount_30d": stats["avg"].astype(np.float64),
        "merchant_txn_count_30d": stats["n"].astype(np.int64),
    })
    return out.sort_values([TIMESTAMP, "merchant_id"], ignore_index=True)
