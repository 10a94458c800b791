"""Replay a historical transaction/label log through the same feature engine the stream worker runs,
and write what serving would have served (``streamscore backfill``).

Outputs, inside the Feast repository (paths from ``stream_app.core.offline_layout``): the offline
feature log the stream feature views read (``data/offline/{user,merchant}_windows/``) and the daily
batch profiles (``data/batch/{user,merchant}_profile.parquet``). A re-run overwrites the same files
with identical content.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from stream_app.adapters.feast_store import project_of
from stream_app.adapters.offline_log import window_frame
from stream_app.adapters.redis_client import connect
from stream_app.adapters.state_store import RedisWindowStore, SeedCounts
from stream_app.core import profiles
from stream_app.core.engine import FeatureEngine, LabelEvent, TransactionEvent, WindowRows, WindowState
from stream_app.core.offline_layout import BATCH_DIR, MERCHANT_WINDOW_LOG, USER_WINDOW_LOG
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS
from stream_app.errors import ConfigError
from stream_app.settings import Settings, get_settings

BACKFILL_PART = "part-backfill.parquet"
RECORD_TIME = "record_time"  # optional transactions column: when the record entered Kafka


@dataclass(frozen=True)
class BackfillResult:
    """The served rows of a backfill run, its counts by outcome, and the window state it ended with."""

    user_rows: pd.DataFrame
    merchant_rows: pd.DataFrame
    transactions: int
    labels: int
    late: int
    future: int
    duplicates: int
    seconds: float
    labels_after_end: int  # arrived after the last transaction: not applied (``run``)
    state: WindowState  # every user's and merchant's windows after the last event (``seed_state``)
    lateness_s: float

    @property
    def events_per_s(self) -> float:
        return (self.transactions + self.labels) / self.seconds if self.seconds > 0 else float("nan")


def _seconds(series: pd.Series) -> np.ndarray:  # type: ignore[type-arg]
    """UTC timestamps as float epoch seconds, whatever the column's time unit."""
    stamps = pd.to_datetime(series, utc=True).dt.as_unit("us")
    return stamps.astype("int64").to_numpy() / 1e6


def entered_kafka(transactions: pd.DataFrame) -> np.ndarray:  # type: ignore[type-arg]
    """Epoch seconds each transaction entered Kafka: ``record_time`` if the frame has it (the record's Kafka
    timestamp, e.g. in a log exported from the topic), else event_time (the generator's history models
    producers that publish at event time). The worker's rules that depend on that time (``future``,
    ``core.engine.is_future``) apply to the same time here."""
    return _seconds(transactions[RECORD_TIME if RECORD_TIME in transactions.columns else "event_time"])


def arrival_order(transactions: pd.DataFrame, labels: pd.DataFrame) -> Iterator[tuple[str, int]]:
    """(kind, row index) in the order serving would see them: transactions when they entered Kafka,
    labels at label_time, merged (a label and a transaction at the same instant: the label first)."""
    t_times = entered_kafka(transactions)
    l_times = _seconds(labels["label_time"]) if len(labels) else np.empty(0)
    times = np.concatenate([l_times, t_times])
    kinds = np.concatenate([np.zeros(len(l_times), dtype=np.int8), np.ones(len(t_times), dtype=np.int8)])
    index = np.concatenate([np.arange(len(l_times)), np.arange(len(t_times))])
    order = np.lexsort((kinds, times))  # by time, labels before transactions at the same instant
    for i in order:
        yield ("label" if kinds[i] == 0 else "transaction", int(index[i]))


def run(transactions: pd.DataFrame, labels: pd.DataFrame, lateness_s: float | None = None,
        progress: bool = False, max_future_skew_s: float | None = None) -> BackfillResult:
    """Run the engine over the history; returns the served rows (one user row and one merchant row per
    applied transaction). ``lateness_s`` and ``max_future_skew_s`` default to the worker's settings, so
    training and serving call the same events late or future. A transaction whose event_id its user's
    state already applied is skipped, as the worker dead-letters it (``duplicate``): training sees each
    event_id once.

    Labels that arrive after the last transaction are not applied (counted in ``labels_after_end``): they
    serve nothing here, and without them the state the run ends with is the history's as of its end, the
    labels known by then (a generated history also holds the labels its last days will get). That is the
    state ``seed_state`` hands a worker that continues the history."""
    started = time.perf_counter()
    worker = get_settings().worker
    lateness_s = worker.allowed_lateness_s if lateness_s is None else lateness_s
    max_future_skew_s = worker.max_future_skew_s if max_future_skew_s is None else max_future_skew_s
    engine = FeatureEngine(lateness_s, max_future_skew_s=max_future_skew_s)
    t_times = _seconds(transactions["event_time"])
    t_entered = entered_kafka(transactions)
    t_users = transactions["user_id"].to_numpy(dtype=np.int64)
    t_merchants = transactions["merchant_id"].to_numpy(dtype=np.int64)
    t_amounts = transactions["amount"].to_numpy(dtype=np.float64)
    t_ids = transactions["event_id"].to_numpy()
    merchant_of = dict(zip(t_ids, t_merchants, strict=True))
    l_times = _seconds(labels["label_time"]) if len(labels) else np.empty(0)
    end = float(t_entered.max()) if len(t_entered) else -np.inf
    l_ids = labels["event_id"].to_numpy()
    l_fraud = labels["is_fraud"].to_numpy(dtype=bool)

    served_index: list[int] = []
    user_rows: list[dict[str, float]] = []
    merchant_rows: list[dict[str, float]] = []
    label_count = after_end = 0
    events = arrival_order(transactions, labels)
    total = len(transactions) + len(labels)
    # Positions are arrival ranks, not frame rows: the engine treats a position at or below the last one
    # applied as a replay, so they must grow in processing order whatever order the frames are in.
    for rank, (kind, i) in enumerate(tqdm(events, total=total, disable=not progress, unit="ev", mininterval=1.0)):
        if kind == "label":
            if l_times[i] > end:
                after_end += 1
                continue
            merchant = merchant_of.get(l_ids[i])
            if merchant is None:
                continue
            engine.on_label(LabelEvent(str(l_ids[i]), int(merchant), bool(l_fraud[i]), float(l_times[i]),
                                       (1, rank)))
            label_count += 1
            continue
        result = engine.on_transaction(TransactionEvent(
            str(t_ids[i]), int(t_users[i]), int(t_merchants[i]), float(t_amounts[i]), float(t_times[i]),
            (0, rank), float(t_entered[i])))
        if isinstance(result, WindowRows):
            served_index.append(i)
            user_rows.append(result.user)
            merchant_rows.append(result.merchant)

    served = transactions.iloc[served_index]
    stamps = pd.to_datetime(served["event_time"], utc=True).dt.as_unit("us").to_numpy()
    users = _frame("user_id", served["user_id"].to_numpy(dtype=np.int64), stamps, user_rows, USER_WINDOWS)
    merchants = _frame("merchant_id", served["merchant_id"].to_numpy(dtype=np.int64), stamps, merchant_rows,
                       MERCHANT_WINDOWS)
    return BackfillResult(users, merchants, len(transactions), label_count, engine.stats.late,
                          engine.stats.future, engine.stats.duplicates, time.perf_counter() - started,
                          after_end, engine.state, lateness_s)


def _frame(key: str, ids: np.ndarray, stamps: np.ndarray, rows: list[dict[str, float]],  # type: ignore[type-arg]
           specs: tuple) -> pd.DataFrame:  # type: ignore[type-arg]
    """The offline log's rows; the stream worker's log writer builds them with the same function."""
    return window_frame(key, ids, stamps, rows, specs)


def write_outputs(repo: Path, result: BackfillResult, user_profiles: pd.DataFrame,
                  merchant_profiles: pd.DataFrame) -> list[Path]:
    """Write (overwrite) the backfill's part of the offline log and the batch profiles."""
    written = []
    for log_dir, frame in ((USER_WINDOW_LOG, result.user_rows), (MERCHANT_WINDOW_LOG, result.merchant_rows)):
        target = repo / log_dir / BACKFILL_PART
        target.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target, index=False)
        written.append(target)
    (repo / BATCH_DIR).mkdir(parents=True, exist_ok=True)
    for name, frame in (("user_profile", user_profiles), ("merchant_profile", merchant_profiles)):
        target = repo / BATCH_DIR / f"{name}.parquet"
        frame.to_parquet(target, index=False)
        written.append(target)
    return written


def seed_state(result: BackfillResult, settings: Settings, project: str | None = None) -> SeedCounts:
    """Write the backfill's final window state into the worker's state store (``settings``' Redis, the
    namespace of ``project`` and ``worker.app_id``; project default: the Feast repository's), so a
    worker starting after the history serves the windows it left instead of empty ones. Keys the worker
    already holds are kept (``RedisWindowStore.seed``). The worker's first events must come after the
    history (within the allowed lateness of each key's latest event), as events after a restart would.
    ConfigError if the backfill ran with another allowed lateness than the worker's."""
    lateness = settings.worker.allowed_lateness_s
    if result.lateness_s != lateness:
        raise ConfigError(f"the backfill ran with an allowed lateness of {result.lateness_s:g} s, the worker's is "
                          f"{lateness:g} s: its state would not be the worker's; backfill with the worker's")
    project = project if project is not None else project_of(settings.feast.repo_path)
    return RedisWindowStore.for_worker(connect(settings.redis), settings, project).seed(result.state)


def load_history(history: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The transactions, labels and users of a history directory; ConfigError if one is missing."""
    paths = [history / name for name in ("transactions.parquet", "labels.parquet", "users.parquet")]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"history is incomplete, missing: {', '.join(missing)}")
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1]), pd.read_parquet(paths[2])


def backfill(history: Path, repo: Path, lateness_s: float | None = None, progress: bool = False,
             extra_profile_days: int = 1, *, max_future_skew_s: float | None = None) -> BackfillResult:
    """Backfill the Feast repository ``repo`` from the history in ``history``: window log and profiles."""
    transactions, labels, users = load_history(history)
    result = run(transactions, labels, lateness_s, progress=progress, max_future_skew_s=max_future_skew_s)
    days = profiles.snapshot_days(transactions, extra_days=extra_profile_days)
    write_outputs(repo, result, profiles.user_profiles(transactions, users, days),
                  profiles.merchant_profiles(transactions, days))
    return result
