"""Batch profile features: daily snapshots of each user and merchant, computed from history strictly
before the snapshot time (point-in-time correct), materialised to the online store by Feast.

A snapshot at midnight d has a row for every entity that is known or active during day d, even one
first seen that day, with the values of ``MISSING_PROFILE``. Pure pandas: no Feast, no files; the
backfill reads history, calls these, and writes parquet.
"""

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
# What a missing profile means, in serving and in snapshots alike: "nothing known" (counts 0, the rest
# missing). Snapshots give an entity first seen on day d these values, since without a row Feast's as-of
# join would drop that day's training rows for the entity instead of returning nulls.
MISSING_PROFILE: Final[dict[str, float | int | None]] = {
    "home_country": None,
    "user_account_age_days": float("nan"),
    "user_avg_amount_30d": float("nan"),
    "user_txn_count_30d": 0,
    "merchant_avg_amount_30d": float("nan"),
    "merchant_txn_count_30d": 0,
}
MISSING_USER_PROFILE: Final[dict[str, float | int | None]] = {
    name: MISSING_PROFILE[name] for name in USER_PROFILE_FEATURES}
MISSING_MERCHANT_PROFILE: Final[dict[str, float | int | None]] = {
    name: MISSING_PROFILE[name] for name in MERCHANT_PROFILE_FEATURES}
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
    """One row per (user, snapshot day d) for every user signed up before the end of day d.
    ``users`` needs user_id, home_country, signup_time; a user signed up during day d is unknown at d."""
    stats = _rolling_stats(transactions, "user_id", days)
    signup = pd.to_datetime(users["signup_time"], utc=True)
    rows = []
    for day in days:
        listed = (signup < day + pd.Timedelta(days=1)).to_numpy()
        known = (signup < day).to_numpy()[listed]
        age = ((day - signup[listed]).dt.total_seconds() / 86400.0).to_numpy()
        rows.append(pd.DataFrame({
            "user_id": users["user_id"].to_numpy()[listed],
            "home_country": pd.Series(users["home_country"].to_numpy()[listed]).where(known, None).to_numpy(),
            "user_account_age_days": np.where(known, age, np.nan),
            TIMESTAMP: day,
        }))
    base = pd.concat(rows, ignore_index=True)
    out = base.merge(stats[["user_id", TIMESTAMP, "n", "avg"]], on=["user_id", TIMESTAMP], how="left")
    out["user_txn_count_30d"] = out["n"].fillna(0).astype(np.int64)
    out["user_avg_amount_30d"] = out["avg"].astype(np.float64)
    out[TIMESTAMP] = out[TIMESTAMP].dt.as_unit("us")  # Feast's DuckDB store reads microseconds only
    return out[["user_id", TIMESTAMP, *USER_PROFILE_FEATURES]].sort_values([TIMESTAMP, "user_id"], ignore_index=True)


def merchant_profiles(transactions: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """One row per (merchant, snapshot day d) for merchants active in the 30 days before d or during d."""
    times = pd.to_datetime(transactions["event_time"], utc=True)
    seen = pd.DataFrame({"merchant_id": transactions["merchant_id"].to_numpy(), "day": times.dt.floor("D")})
    seen = seen.drop_duplicates()
    listed = []
    for day in days:
        active = seen[(seen["day"] >= day - pd.Timedelta(days=LOOKBACK_DAYS)) & (seen["day"] <= day)]
        listed.append(pd.DataFrame({"merchant_id": active["merchant_id"].unique(), TIMESTAMP: day}))
    base = pd.concat(listed, ignore_index=True)
    stats = _rolling_stats(transactions, "merchant_id", days)
    out = base.merge(stats[["merchant_id", TIMESTAMP, "n", "avg"]], on=["merchant_id", TIMESTAMP], how="left")
    frame = pd.DataFrame({
        "merchant_id": out["merchant_id"].astype(np.int64),
        TIMESTAMP: out[TIMESTAMP].dt.as_unit("us"),
        "merchant_avg_amount_30d": out["avg"].astype(np.float64),
        "merchant_txn_count_30d": out["n"].fillna(0).astype(np.int64),
    })
    return frame.sort_values([TIMESTAMP, "merchant_id"], ignore_index=True)
