"""The offline feature log: append-only parquet parts of the window rows serving served.

Feast's stream feature views read it as their batch source (``{user,merchant}_windows/**/*.parquet``
under the offline data directory, paths from ``core.offline_layout``), so training sees the rows
serving served. The sink (``stream_app.sink``) writes ``part-stream-*`` parts in hour directories with
``rows_frame`` and ``write_part``; the backfill writes ``part-backfill.parquet`` through
``window_frame``; ``adapters.log_compaction`` merges a closed hour's parts into one. Parts are written
atomically. Why: docs/decisions/0005-offline-log-parts.md and
docs/decisions/0017-offline-logs-written-by-a-sink.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stream_app.adapters.files import fsync_dir
from stream_app.core.offline_layout import CREATED, hour_of
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.records import WindowRow
from stream_app.core.window_spec import Function, WindowSpec
from stream_app.errors import ServiceUnavailableError

_INT_FUNCTIONS = (Function.COUNT, Function.DISTINCT)
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")
_MAX_IDENTITY = 120  # longer batch identities (many partitions or batches) are named by their hash


def log_columns(specs: Sequence[WindowSpec]) -> list[str]:
    """The columns of one log, in order."""
    return [specs[0].entity.value, TIMESTAMP, CREATED, *(s.name for s in specs)]


def window_frame(key: str, ids: Any, stamps: Any, rows: Sequence[Mapping[str, float]],
                 specs: Sequence[WindowSpec]) -> pd.DataFrame:
    """Rows of one log: ``ids`` (ints), ``stamps`` (anything ``pd.to_datetime`` reads as instants, naive =
    UTC) and one feature mapping per row; the event time is also the created time.

    The one builder of the log's schema: entity id (int64), ``event_timestamp`` and ``created_timestamp``
    (datetime64[us, UTC]: Feast's DuckDB offline store reads microseconds only), then one column per
    WindowSpec in spec order (COUNT and DISTINCT int64, the rest float64)."""
    times = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("us")
    data: dict[str, object] = {key: np.asarray(ids, dtype=np.int64), TIMESTAMP: times, CREATED: times}
    for spec in specs:
        values = np.array([row[spec.name] for row in rows], dtype=np.float64)
        data[spec.name] = values.astype(np.int64) if spec.function in _INT_FUNCTIONS else values
    return pd.DataFrame(data)


def rows_frame(rows: Sequence[WindowRow], specs: Sequence[WindowSpec]) -> pd.DataFrame:
    """A log frame from the worker's (entity id, event time, features) rows."""
    return window_frame(specs[0].entity.value, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                        specs)


def conform(frame: pd.DataFrame, specs: Sequence[WindowSpec]) -> pd.DataFrame:
    """``frame`` with exactly the log's columns, order and dtypes; ValueError if columns differ."""
    columns = log_columns(specs)
    if set(frame.columns) != set(columns) or len(frame.columns) != len(columns):
        raise ValueError(f"offline log frame must have columns {columns}, got {list(frame.columns)}")
    out = frame.loc[:, columns].reset_index(drop=True)
    out[columns[0]] = out[columns[0]].astype(np.int64)
    for name in (TIMESTAMP, CREATED):
        out[name] = pd.to_datetime(out[name], utc=True).dt.as_unit("us")
    for spec in specs:
        out[spec.name] = out[spec.name].astype(np.int64 if spec.function in _INT_FUNCTIONS else np.float64)
    return out


def part_name(source: str, identities: Sequence[str]) -> str:
    """Deterministic part name for the source positions ``identities`` of ``source``, e.g.
    ``part-stream-p0-100+p3-40.parquet`` (the sink names a part after the first position of each
    partition in it); long or unsafe identities are named by their hash."""
    identity = "+".join(identities)
    if len(identity) > _MAX_IDENTITY or not _SAFE_NAME.fullmatch(identity):
        identity = "h" + hashlib.sha256(identity.encode()).hexdigest()[:32]
    return f"part-{source}-{identity}.parquet"


def read_parts(directory: Path, attempts: int = 3, hours: tuple[datetime, datetime] | None = None,
               ) -> list[pd.DataFrame]:
    """Every part under ``directory`` (hour directories and the top), in path order; none if it holds none.
    With ``hours`` = (first, last), parts of hour directories outside the hours holding ``first`` to ``last``
    are not read (the caller still filters rows: an hour holds rows of its whole hour). A part removed
    between the listing and its reading (merged into another by compaction,
    docs/decisions/0020-compacting-closed-hours.md) makes it list the parts again, up to ``attempts`` times."""
    for attempt in range(1, attempts + 1):
        try:
            return [pd.read_parquet(p) for p in sorted(directory.glob("**/part-*.parquet"))
                    if hours is None or _in_hours(p.parent, directory, hours)]
        except FileNotFoundError:
            if attempt == attempts:
                raise
    raise ValueError("attempts must be at least 1")


def _in_hours(parent: Path, directory: Path, hours: tuple[datetime, datetime]) -> bool:
    if parent == directory:
        return True
    start = hour_of(parent.name)
    first, last = hours
    return start is None or (start <= last and first < start + timedelta(hours=1))


def write_part(frame: pd.DataFrame, target: Path, writer_id: str = "w") -> Path:
    """Write ``frame`` to ``target`` atomically and durably (temp name, fsync, os.replace, dir fsync).
    The temporary name never matches the ``*.parquet`` glob, so readers see a whole part or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{writer_id}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            frame.to_parquet(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise ServiceUnavailableError(f"offline log: cannot write {target}: {exc}") from exc
    return target
