"""The transaction log: append-only parquet parts of every valid transaction's fields, for retraining.

The worker scores what it reads from ``transactions``; Feast's on-demand features need the request
fields (amount, country, channel, event hour) that no prediction carries whole (a prediction carries
``is_foreign_country``, not the country). So the sink also consumes ``transactions`` and keeps each record
that passes the contract's validation (``decode_transaction``, the worker's own check), one directory per
hour of event time like the other logs. Which of them were scored is decided where the log is read: a
transaction is trained on only when a joined label (the worker joins labels to its predictions only)
names it. ``read_transactions`` keeps one row per event_id, the first the worker read."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from stream_app.adapters.offline_log import read_parts
from stream_app.contract import Transaction
from stream_app.core.records import TransactionRow

COLUMNS = ("event_id", "user_id", "merchant_id", "amount", "currency", "country", "channel", "event_time",
           "partition", "offset")


def transaction_row(txn: Transaction, partition: int, offset: int) -> TransactionRow:
    """The log's row for a valid transaction read at (``partition``, ``offset``)."""
    return TransactionRow(event_id=txn.event_id, user_id=txn.user_id, merchant_id=txn.merchant_id,
                          amount=txn.amount, currency=txn.currency, country=txn.country, channel=txn.channel,
                          event_time=txn.event_time, partition=partition, offset=offset)


def transaction_frame(rows: Sequence[TransactionRow]) -> pd.DataFrame:
    """The log's frame for ``rows``: ``COLUMNS`` with fixed dtypes, event_time as UTC microseconds."""
    return pd.DataFrame({
        "event_id": pd.Series([r.event_id for r in rows], dtype="string"),
        "user_id": np.array([r.user_id for r in rows], dtype=np.int64),
        "merchant_id": np.array([r.merchant_id for r in rows], dtype=np.int64),
        "amount": np.array([r.amount for r in rows], dtype=np.float64),
        "currency": pd.Series([r.currency for r in rows], dtype="string"),
        "country": pd.Series([r.country for r in rows], dtype="string"),
        "channel": pd.Series([r.channel for r in rows], dtype="string"),
        "event_time": pd.DatetimeIndex(pd.to_datetime([r.event_time for r in rows], utc=True)).as_unit("us"),
        "partition": np.array([r.partition for r in rows], dtype=np.int64),
        "offset": np.array([r.offset for r in rows], dtype=np.int64),
    })


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with exactly the log's columns, order and dtypes; ValueError if columns differ."""
    if sorted(frame.columns) != sorted(COLUMNS):
        raise ValueError(f"transaction log frame must have columns {list(COLUMNS)}, got {list(frame.columns)}")
    template = transaction_frame([])
    out = frame.loc[:, list(COLUMNS)].reset_index(drop=True)
    for name in COLUMNS:
        out[name] = out[name].astype(template[name].dtype)
    return out


def read_transactions(directory: Path, attempts: int = 3, since: datetime | None = None,
                      until: datetime | None = None) -> pd.DataFrame:
    """Every logged transaction (with event time in [``since``, ``until``] when given: only those hours
    are read), one row per event_id: of duplicates (a producer's retry, or a replay after a sink crash)
    the one read first, as the worker scores the first and dead-letters the rest."""
    hours = None if since is None or until is None else (since, until)
    parts = read_parts(directory, attempts, hours)
    if not parts:
        return transaction_frame([])
    frame = pd.concat([conform(p) for p in parts], ignore_index=True)
    if hours is not None:
        frame = frame[(frame["event_time"] >= since) & (frame["event_time"] <= until)]
    frame = frame.sort_values(["partition", "offset"], kind="stable")
    return frame.drop_duplicates("event_id", keep="first").reset_index(drop=True)
