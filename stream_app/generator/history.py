"""N days of history as DataFrames and Parquet files: the training/backfill set and the golden set.

``transactions`` carries the wire ``Transaction`` columns plus two evaluation-only columns,
``is_fraud`` and ``fraud_pattern``, which are NOT part of the wire schema (a producer must never send
them; the truth reaches the system only through ``labels``). ``labels`` has exactly the ``Label`` columns,
one per transaction; label_time may fall after the window's end (a chargeback not yet received when the
window closes), so point-in-time consumers must filter on label_time themselves.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stream_app.generator import patterns
from stream_app.generator.config import (
    DAY_US,
    GENERATOR_VERSION,
    HOUR_US,
    MINUTE_US,
    FraudConfig,
    HistoryConfig,
    stream,
    to_us,
)
from stream_app.generator.events import CHANNELS, HISTORY_PATTERNS, PATTERN_LABELS, EventBatch, Pattern
from stream_app.generator.labels import label_delay_us
from stream_app.generator.population import (
    CATEGORY_NAMES,
    COUNTRY_CODES,
    HOME_COUNTRIES,
    IntArray,
    Population,
    build_population,
    first_seen_us,
    signup_us,
)

EVALUATION_ONLY_COLUMNS: tuple[str, ...] = ("is_fraud", "fraud_pattern")
FILES: dict[str, str] = {
    "transactions": "transactions.parquet",
    "labels": "labels.parquet",
    "users": "users.parquet",
    "merchants": "merchants.parquet",
    "compromises": "compromised_merchants.parquet",
}
_META_KEY = b"streamscore.generator"
_TS = pa.timestamp("us", tz="UTC")
_EVAL_DOC = {b"wire": b"false", b"doc": b"evaluation only; not part of the Transaction wire schema"}

_SCHEMAS: dict[str, pa.Schema] = {
    "transactions": pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("merchant_id", pa.int64(), nullable=False),
            pa.field("amount", pa.float64(), nullable=False),
            pa.field("currency", pa.string(), nullable=False),
            pa.field("country", pa.string(), nullable=False),
            pa.field("channel", pa.string(), nullable=False),
            pa.field("event_time", _TS, nullable=False),
            pa.field("is_fraud", pa.bool_(), nullable=False, metadata=_EVAL_DOC),
            pa.field("fraud_pattern", pa.string(), nullable=False, metadata=_EVAL_DOC),
        ]
    ),
    "labels": pa.schema(
        [
            pa.field("event_id", pa.string(), nullable=False),
            pa.field("user_id", pa.int64(), nullable=False),
            pa.field("is_fraud", pa.bool_(), nullable=False),
            pa.field("label_time", _TS, nullable=False),
        ]
    ),
}

GOLDEN_START = datetime(2026, 9, 1, tzinfo=UTC)
GOLDEN_SEED = 12345  # the golden set every promotion is judged on


@dataclass(frozen=True)
class History:
    """A generated dataset. Frames are sorted: transactions by event_time, labels by label_time,
    users and merchants by id."""

    config: HistoryConfig
    transactions: pd.DataFrame
    labels: pd.DataFrame
    users: pd.DataFrame  # population incl. home_country and signup_time
    merchants: pd.DataFrame  # population incl. country, category and first_seen
    compromises: pd.DataFrame  # evaluation only: breached merchants; a breach may extend past the window

    def summary(self) -> dict[str, Any]:
        txns = self.transactions
        n = len(txns)
        by_pattern = txns["fraud_pattern"].value_counts()
        frauds = (p for p in HISTORY_PATTERNS if p is not Pattern.NONE)
        rates = {p.label: float(by_pattern.get(p.label, 0)) / max(n, 1) for p in frauds}
        return {
            "events": n,
            "labels": len(self.labels),
            "users": len(self.users),
            "active_users": int(txns["user_id"].nunique()),
            "merchants": len(self.merchants),
            "days": self.config.days,
            "fraud_rate": float(txns["is_fraud"].mean()) if n else 0.0,
            "fraud_rate_by_pattern": rates,
            "first_event": txns["event_time"].min(),
            "last_event": txns["event_time"].max(),
        }


def generate_history(config: HistoryConfig) -> History:
    """Simulate ``config.days`` days: legit calendar, look-alikes, then the three fraud patterns."""
    pop = build_population(stream(config.seed, "population"), config.users, config.merchants)
    cfg = config.fraud
    start_us = to_us(config.start)
    end_us = start_us + config.days * DAY_US
    trips = patterns.plan_trips(pop, stream(config.seed, "trips"), cfg, start_us, end_us)

    legit = _legit_calendar(pop, stream(config.seed, "legit"), cfg, config.days, start_us=start_us, trips=trips)
    sprees = _sprees(pop, stream(config.seed, "spree"), cfg, config.days, start_us)
    testing = _card_testing(pop, stream(config.seed, "card_testing"), cfg, config.days, start_us)
    takeover = _takeovers(pop, stream(config.seed, "takeover"), cfg, config.days, start_us)
    ordinary = patterns.friendly_fraud(stream(config.seed, "friendly"), cfg, EventBatch.concat([legit, sprees]))
    breached, compromises = _compromised(
        pop, stream(config.seed, "compromised"), cfg, ordinary, start_us=start_us, end_us=end_us
    )

    batch = EventBatch.concat([ordinary, testing, takeover, breached])
    inside = (batch.time_us >= start_us) & (batch.time_us < end_us)
    batch = batch.take(np.flatnonzero(inside).astype(np.int64)).sorted_by_time()

    transactions = _transactions_frame(pop, batch, config.seed)
    labels = _labels_frame(transactions, batch, stream(config.seed, "labels"))
    return History(
        config=config,
        transactions=transactions,
        labels=labels,
        users=_users_frame(pop, config.start),
        merchants=_merchants_frame(pop, config.start),
        compromises=_compromises_frame(pop, compromises, batch),
    )


def golden_config(seed: int = GOLDEN_SEED) -> HistoryConfig:
    """The fixed evaluation set for model promotion: one week, 5000 users (about 35k transactions and
    350 frauds, enough for a stable ROC-AUC). Changing it (or GENERATOR_VERSION) invalidates
    comparisons between models evaluated on different golden sets."""
    return HistoryConfig(days=7, users=5_000, merchants=500, seed=seed, start=GOLDEN_START, fraud=FraudConfig())


def golden_history(seed: int = GOLDEN_SEED) -> History:
    return generate_history(golden_config(seed))


# --- the calendar of each behaviour -------------------------------------------------------------------


def _legit_calendar(
    pop: Population, rng: np.random.Generator, cfg: FraudConfig, days: int, *, start_us: int, trips: patterns.Trips
) -> EventBatch:
    """Per user and day, Poisson counts around the user's rate, with a gamma day-to-day swing (busy and
    quiet days) so 24 h counts are over-dispersed like real ones."""
    n = len(pop.users)
    everyone = np.arange(n, dtype=np.int64)
    users: list[IntArray] = []
    times: list[IntArray] = []
    for day in range(days):
        swing = rng.gamma(2.0, 0.5, size=n)
        counts = rng.poisson(pop.users.events_per_day * swing)
        user = np.repeat(everyone, counts)
        users.append(user)
        times.append(start_us + day * DAY_US + patterns.time_of_day_us(pop, rng, user))
    return patterns.legit(pop, rng, cfg, np.concatenate(users), np.concatenate(times), trips=trips)


def _sprees(pop: Population, rng: np.random.Generator, cfg: FraudConfig, days: int, start_us: int) -> EventBatch:
    k = int(rng.poisson(cfg.spree_per_user_day * len(pop.users) * days))
    user = rng.integers(0, len(pop.users), size=k).astype(np.int64)
    day = rng.integers(0, days, size=k).astype(np.int64)
    return patterns.spree(pop, rng, user, start_us + day * DAY_US + patterns.time_of_day_us(pop, rng, user))


def _card_testing(pop: Population, rng: np.random.Generator, cfg: FraudConfig, days: int, start_us: int) -> EventBatch:
    """Bots run around the clock: bursts start uniformly over the window, on random cards."""
    k = int(rng.poisson(cfg.card_testing_per_user_day * len(pop.users) * days))
    victim = rng.integers(0, len(pop.users), size=k).astype(np.int64)
    start = start_us + (rng.random(k) * days * DAY_US).astype(np.int64)
    return patterns.card_testing(pop, rng, cfg, victim, start)


def _takeovers(pop: Population, rng: np.random.Generator, cfg: FraudConfig, days: int, start_us: int) -> EventBatch:
    """Takeovers start on a random day at the victim's off hours (while the owner is asleep)."""
    k = int(rng.poisson(cfg.takeover_per_user_day * len(pop.users) * days))
    victim = rng.integers(0, len(pop.users), size=k).astype(np.int64)
    day = rng.integers(0, days, size=k).astype(np.int64)
    start = start_us + day * DAY_US + patterns.unusual_time_of_day_us(pop, rng, victim)
    return patterns.account_takeover(pop, rng, cfg, victim, start)


@dataclass(frozen=True)
class _Breach:
    merchant: int
    start_us: int
    end_us: int
    fraction: float


def _compromised(
    pop: Population,
    rng: np.random.Generator,
    cfg: FraudConfig,
    ordinary: EventBatch,
    *,
    start_us: int,
    end_us: int,
) -> tuple[EventBatch, list[_Breach]]:
    """Each breached merchant, for 3-10 days, gets fraud amounting to ``fraction`` of its traffic then.
    Breaches overlap the window (some began before it, some outlast it), so the fraud share does not
    depend on the window length. Fraud instants copy the merchant's own legit instants (jittered), so
    the hour of day gives nothing away; at least three per breach so tiny runs still show the pattern."""
    lo_days, hi_days = cfg.compromised_days
    days = (end_us - start_us) / DAY_US
    chosen = patterns.choose_compromised(pop, rng, cfg, days + (lo_days + hi_days) / 2)
    breaches: list[_Breach] = []
    merchants: list[IntArray] = []
    times: list[IntArray] = []
    for m in chosen.tolist():
        length = int(rng.uniform(lo_days, hi_days) * DAY_US)
        # begin between (almost) `length` before the window and a day before its end: always overlapping
        earliest, latest = start_us - length + HOUR_US, end_us - DAY_US
        raw_start = earliest + int(rng.random() * (latest - earliest))
        b_start, b_end = max(start_us, raw_start), min(end_us, raw_start + length)
        fraction = float(rng.uniform(*cfg.compromised_fraud_fraction))
        there = ordinary.time_us[(ordinary.merchant == m) & (ordinary.time_us >= b_start) & (ordinary.time_us < b_end)]
        n_fraud = max(3, int(rng.poisson(len(there) * fraction / (1.0 - fraction))))
        if len(there):
            when = rng.choice(there, size=n_fraud) + rng.normal(0.0, 30 * MINUTE_US, size=n_fraud).astype(np.int64)
        else:
            when = b_start + (rng.random(n_fraud) * (b_end - b_start)).astype(np.int64)
        breaches.append(_Breach(m, raw_start, raw_start + length, fraction))
        merchants.append(np.full(n_fraud, m, dtype=np.int64))
        times.append(np.clip(when, b_start, b_end - 1).astype(np.int64))
    if not breaches:
        return ordinary.take(np.zeros(0, dtype=np.int64)), breaches
    batch = patterns.compromised_merchant_fraud(pop, rng, np.concatenate(merchants), np.concatenate(times))
    return batch, breaches


# --- frames --------------------------------------------------------------------------------------------

_COUNTRY = np.asarray(COUNTRY_CODES, dtype=object)
_CURRENCY_BY_HOME = np.asarray([c.currency for c in HOME_COUNTRIES], dtype=object)


def _timestamps(us: IntArray) -> pd.Series:
    return pd.Series(us.astype("datetime64[us]")).dt.tz_localize("UTC")


def event_ids(prefix: str, n: int) -> pd.Series:
    """Deterministic, unique within a run, and sorting like generation order."""
    return prefix + pd.Series(np.arange(n, dtype=np.int64)).astype(str).str.zfill(9)


def _transactions_frame(pop: Population, batch: EventBatch, seed: int) -> pd.DataFrame:
    users, merchants = pop.users, pop.merchants
    return pd.DataFrame(
        {
            "event_id": event_ids(f"h{seed}-", len(batch)),
            "user_id": users.id[batch.user],
            "merchant_id": merchants.id[batch.merchant],
            "amount": batch.amount,
            "currency": _CURRENCY_BY_HOME[users.home[batch.user]],
            "country": _COUNTRY[merchants.country[batch.merchant]],
            "channel": np.asarray(CHANNELS, dtype=object)[batch.channel],
            "event_time": _timestamps(batch.time_us),
            "is_fraud": batch.is_fraud,
            "fraud_pattern": np.asarray(PATTERN_LABELS, dtype=object)[batch.pattern],
        }
    )


def _labels_frame(transactions: pd.DataFrame, batch: EventBatch, rng: np.random.Generator) -> pd.DataFrame:
    label_us = batch.time_us + label_delay_us(rng, batch.is_fraud)
    order = np.lexsort((np.arange(len(batch)), label_us))  # by label_time, then event order
    return pd.DataFrame(
        {
            "event_id": transactions["event_id"].to_numpy()[order],
            "user_id": transactions["user_id"].to_numpy()[order],
            "is_fraud": batch.is_fraud[order],
            "label_time": _timestamps(label_us[order]),
        }
    )


def _users_frame(pop: Population, reference: datetime) -> pd.DataFrame:
    users = pop.users
    return pd.DataFrame(
        {
            "user_id": users.id,
            "home_country": _COUNTRY[users.home],
            "currency": _CURRENCY_BY_HOME[users.home],
            "utc_offset_h": users.utc_offset_h,
            "typical_amount": np.round(users.typical_amount, 2),
            "amount_sigma": users.amount_sigma,
            "events_per_day": users.events_per_day,
            "active_hour_local": users.active_hour,
            "active_hour_spread": users.active_spread,
            "signup_time": _timestamps(signup_us(users, reference)),
        }
    )


def _merchants_frame(pop: Population, reference: datetime) -> pd.DataFrame:
    merchants = pop.merchants
    cdf = merchants.channel_cdf
    return pd.DataFrame(
        {
            "merchant_id": merchants.id,
            "category": np.asarray(CATEGORY_NAMES, dtype=object)[merchants.category],
            "country": _COUNTRY[merchants.country],
            "base_risk": merchants.base_risk,
            "popularity": merchants.popularity,
            "p_pos": cdf[:, 0],
            "p_web": cdf[:, 1] - cdf[:, 0],
            "p_app": 1.0 - cdf[:, 1],
            "first_seen": _timestamps(first_seen_us(merchants, reference)),
        }
    )


def _compromises_frame(pop: Population, breaches: list[_Breach], batch: EventBatch) -> pd.DataFrame:
    m_idx = np.array([b.merchant for b in breaches], dtype=np.int64)
    is_cm = batch.pattern == Pattern.COMPROMISED_MERCHANT
    frauds = [int(np.count_nonzero(is_cm & (batch.merchant == m))) for m in m_idx.tolist()]
    return pd.DataFrame(
        {
            "merchant_id": pop.merchants.id[m_idx],
            "start": _timestamps(np.array([b.start_us for b in breaches], dtype=np.int64)),
            "end": _timestamps(np.array([b.end_us for b in breaches], dtype=np.int64)),
            "fraud_fraction": np.array([b.fraction for b in breaches], dtype=np.float64),
            "fraud_transactions": np.array(frauds, dtype=np.int64),
        }
    )


# --- files ---------------------------------------------------------------------------------------------


def write_history(history: History, out_dir: Path | str) -> dict[str, Path]:
    """Write every frame as Parquet (zstd). Same history -> byte-identical files; the generator version
    and config are stored in each file's schema metadata."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(
        {
            "version": GENERATOR_VERSION,
            "config": history.config.as_json_dict(),
            "evaluation_only_columns": list(EVALUATION_ONLY_COLUMNS),
        },
        sort_keys=True,
    ).encode()
    written: dict[str, Path] = {}
    for name, filename in FILES.items():
        frame: pd.DataFrame = getattr(history, name)
        table = pa.Table.from_pandas(frame, schema=_SCHEMAS.get(name), preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: meta})
        path = out / filename
        pq.write_table(table, path, compression="zstd")
        written[name] = path
    return written


def read_history(out_dir: Path | str) -> History:
    """Read back what ``write_history`` wrote (the config comes from the files' metadata)."""
    out = Path(out_dir)
    tables = {name: pq.read_table(out / filename) for name, filename in FILES.items()}
    meta = json.loads(tables["transactions"].schema.metadata[_META_KEY])
    frames = {name: table.to_pandas() for name, table in tables.items()}
    return History(config=config_from_json(meta["config"]), **frames)


def config_from_json(data: dict[str, Any]) -> HistoryConfig:
    fraud: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data["fraud"].items()}
    return HistoryConfig(
        days=int(data["days"]),
        users=int(data["users"]),
        merchants=int(data["merchants"]),
        seed=int(data["seed"]),
        start=datetime.fromisoformat(data["start"].replace("Z", "+00:00")),
        fraud=FraudConfig(**fraud),
    )


def format_summary(history: History, seconds: float | None = None) -> str:
    s = history.summary()
    lines = [
        f"events        {s['events']:>12,}   ({s['active_users']:,} active of {s['users']:,} users, "
        f"{s['merchants']:,} merchants, {s['days']} days)",
        f"labels        {s['labels']:>12,}",
        f"window        {s['first_event']} .. {s['last_event']}",
        f"fraud rate    {s['fraud_rate']:>12.3%}",
    ]
    lines += [f"  {name:<22}{rate:>10.3%}" for name, rate in s["fraud_rate_by_pattern"].items()]
    if seconds is not None:
        lines.append(f"generated in  {seconds:>11.2f}s")
    return "\n".join(lines)


def timed_generate(config: HistoryConfig) -> tuple[History, float]:
    began = time.perf_counter()
    history = generate_history(config)
    return history, time.perf_counter() - began
