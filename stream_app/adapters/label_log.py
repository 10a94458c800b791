"""The label log: append-only parquet parts of the labels the worker joined, for retraining.

One row per joined label: the label (event_id, user_id, is_fraud, label_time) plus what the join found
(merchant_id, the served score and model_version), so a retraining job can pair labels with the feature
rows of the offline log and an analyst can measure a model version after the fact. The sink writes the
parts (``stream_app.sink``: one directory per hour of label time, atomic parts named by source
positions); ``read_labels`` reads them back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from stream_app.adapters.offline_log import read_parts
from stream_app.core.records import LabelRow

COLUMNS = ("event_id", "user_id", "merchant_id", "is_fraud", "label_time", "score", "model_version")


def label_frame(rows: Sequence[LabelRow]) -> pd.DataFrame:
    """The log's frame for ``rows``: ``COLUMNS`` with fixed dtypes, label_time as UTC microseconds."""
    return pd.DataFrame({
        "event_id": pd.Series([r.event_id for r in rows], dtype="string"),
        "user_id": np.array([r.user_id for r in rows], dtype=np.int64),
        "merchant_id": np.array([r.merchant_id for r in rows], dtype=np.int64),
        "is_fraud": np.array([r.is_fraud for r in rows], dtype=bool),
        "label_time": pd.DatetimeIndex(pd.to_datetime([r.label_time for r in rows], utc=True)).as_unit("us"),
        "score": np.array([r.score for r in rows], dtype=np.float64),
        "model_version": pd.Series([r.model_version for r in rows], dtype="string"),
    })


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with exactly the log's columns, order and dtypes; ValueError if columns differ."""
    if sorted(frame.columns) != sorted(COLUMNS):
        raise ValueError(f"label log frame must have columns {list(COLUMNS)}, got {list(frame.columns)}")
    template = label_frame([])
    out = frame.loc[:, list(COLUMNS)].reset_index(drop=True)
    for name in COLUMNS:
        out[name] = out[name].astype(template[name].dtype)
    return out


def read_labels(directory: Path, attempts: int = 3, hours: tuple[datetime, datetime] | None = None,
                ) -> pd.DataFrame:
    """Every logged label, one row per event_id (a label replayed at other batch boundaries is logged twice,
    identically); parts read by ``offline_log.read_parts`` (which survives a concurrent compaction), only
    those of the label-time ``hours`` when given (rows are not filtered: the caller's cut-off does that)."""
    parts = read_parts(directory, attempts, hours)
    if not parts:
        return label_frame([])
    frame = pd.concat(parts, ignore_index=True)
    return frame.drop_duplicates("event_id", keep="first").reset_index(drop=True)
