"""The offline feature log's parts: atomic, the backfill's schema, stable names, compaction."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from stream_app import backfill
from stream_app.adapters.log_compaction import closed_hours, hour_directories, merge_parts
from stream_app.adapters.offline_log import (
    conform,
    log_columns,
    part_name,
    rows_frame,
    write_part,
)
from stream_app.core.engine import FeatureEngine, TransactionEvent, WindowRows
from stream_app.core.offline_layout import CREATED
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.records import WindowRow
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS
from stream_app.errors import ServiceUnavailableError

T0 = datetime(2026, 10, 1, 12, 0, 0, 123456, tzinfo=UTC)


def served(n: int, start: int = 0) -> tuple[list[WindowRow], list[WindowRow]]:
    """Rows the real engine serves for n transactions (offsets start .. start+n-1 of partition 0)."""
    engine = FeatureEngine(300.0)
    users: list[WindowRow] = []
    merchants: list[WindowRow] = []
    for i in range(start, start + n):
        when = T0 + timedelta(seconds=7 * i)
        rows = engine.on_transaction(TransactionEvent(f"e{i}", i % 3, 10 + i % 2, 5.0 + i, when.timestamp(), (0, i)))
        assert isinstance(rows, WindowRows)
        users.append((i % 3, when, rows.user))
        merchants.append((10 + i % 2, when, rows.merchant))
    return users, merchants


def parts(repo: Path) -> list[Path]:
    return sorted(repo.rglob("part-*.parquet"))


USER_LOG, MERCHANT_LOG = "data/offline/user_windows", "data/offline/merchant_windows"


def write_logs(repo: Path, users: list[WindowRow], merchants: list[WindowRow], name: str,
               hour: str = "") -> list[Path]:
    """Both logs' parts of ``users`` and ``merchants`` as the sink writes them."""
    return [write_part(rows_frame(users, USER_WINDOWS), repo / USER_LOG / hour / name),
            write_part(rows_frame(merchants, MERCHANT_WINDOWS), repo / MERCHANT_LOG / hour / name)]


def compact(repo: Path, before: datetime | None = None) -> list[Path]:
    """Each view's parts merged per directory: the log's top and every hour, or with ``before`` the hours
    closed by then (as the sink's compaction does)."""
    merged = []
    for log, specs in ((USER_LOG, USER_WINDOWS), (MERCHANT_LOG, MERCHANT_WINDOWS)):
        top = repo / log
        directories = closed_hours(top, before) if before else [top, *(d for _, d in hour_directories(top))]
        for directory in directories:
            done = merge_parts(directory, partial(conform, specs=specs), (TIMESTAMP, specs[0].entity.value))
            if done is not None:
                merged.append(done.path)
    return merged


def test_a_part_is_readable_with_the_logs_columns_and_no_temp_file_left(tmp_path: Path) -> None:
    users, merchants = served(5)
    written = write_logs(tmp_path, users, merchants, "part-stream-p0-0.parquet", "2026-10-01T12")
    assert written == sorted(parts(tmp_path), reverse=True)
    assert [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith("part-")] == []
    frame = pd.read_parquet(written[0])
    assert len(frame) == 5 and list(frame.columns) == log_columns(USER_WINDOWS)
    assert frame["user_txn_count_24h"].tolist() == [1, 1, 1, 2, 2]


def test_columns_and_dtypes_are_the_backfills_with_microsecond_utc_timestamps(tmp_path: Path) -> None:
    history = pd.DataFrame({
        "event_id": ["a", "b", "c"], "user_id": [1, 2, 1], "merchant_id": [7, 7, 8], "amount": [3.0, 4.5, 1.25],
        "event_time": pd.to_datetime([T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)], utc=True)})
    labels = pd.DataFrame({"event_id": pd.Series([], dtype=str), "is_fraud": pd.Series([], dtype=bool),
                           "label_time": pd.to_datetime(pd.Series([], dtype="datetime64[us]"), utc=True)})
    result = backfill.run(history, labels)
    backfill_dir = tmp_path / "backfill"
    backfill.write_outputs(backfill_dir, result, pd.DataFrame({"x": [1]}), pd.DataFrame({"x": [1]}))

    users, merchants = served(3)
    write_logs(tmp_path / "stream", users, merchants, "part-stream-p0-0.parquet")
    for log in ("user_windows", "merchant_windows"):
        ours = pq.read_schema(tmp_path / "stream" / "data/offline" / log / "part-stream-p0-0.parquet")
        theirs = pq.read_schema(backfill_dir / "data/offline" / log / backfill.BACKFILL_PART)
        assert ours.names == theirs.names
        assert ours.types == theirs.types
        assert str(ours.field(TIMESTAMP).type) == str(ours.field(CREATED).type) == "timestamp[us, tz=UTC]"
    frame = pd.read_parquet(tmp_path / "stream" / "data/offline/user_windows/part-stream-p0-0.parquet")
    assert frame[TIMESTAMP].tolist() == [pd.Timestamp(u[1]) for u in users]  # microseconds kept exactly
    assert (frame[TIMESTAMP] == frame[CREATED]).all()
    assert math.isnan(frame["user_seconds_since_prev"].iloc[0])


def test_long_part_identities_are_hashed_into_a_short_stable_name() -> None:
    ids = [f"p{p}-{1000 * p}" for p in range(40)]
    name = part_name("stream", ids)
    assert name == part_name("stream", ids) and len(name) < 60
    assert part_name("stream", ["p0-10", "p3-7"]) == "part-stream-p0-10+p3-7.parquet"
    assert part_name("stream", ["../../etc"]).startswith("part-stream-h")


def test_a_failed_write_leaves_no_temp_file_and_can_be_retried(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    users, _ = served(2)
    target = tmp_path / USER_LOG / "part-stream-p0-0.parquet"

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(ServiceUnavailableError, match="No space left"):
        write_part(rows_frame(users, USER_WINDOWS), target)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    monkeypatch.undo()
    assert write_part(rows_frame(users, USER_WINDOWS), target) == target


def test_frames_with_other_columns_are_refused() -> None:
    users, _ = served(1)
    bad = rows_frame(users, USER_WINDOWS).drop(columns=["user_txn_count_1h"])
    with pytest.raises(ValueError, match="must have columns"):
        conform(bad, USER_WINDOWS)


def test_compact_merges_parts_and_drops_duplicate_rows(tmp_path: Path) -> None:
    users, merchants = served(6)
    write_logs(tmp_path, users[:4], merchants[:4], "part-stream-p0-0.parquet")
    write_logs(tmp_path, users[2:], merchants[2:], "part-stream-p0-2.parquet")  # a replay cut elsewhere
    (tmp_path / "data/offline/user_windows" / backfill.BACKFILL_PART).write_bytes(b"not touched")
    merged = compact(tmp_path)
    assert len(merged) == 2
    user_parts = sorted((tmp_path / "data/offline/user_windows").glob("part-*.parquet"))
    assert [p.name for p in user_parts] == [backfill.BACKFILL_PART, merged[0].name]
    frame = pd.read_parquet(merged[0])
    assert len(frame) == 6 and frame[TIMESTAMP].is_monotonic_increasing
    pd.testing.assert_frame_equal(frame, rows_frame(users, USER_WINDOWS))


def test_compact_merges_each_closed_hour_directory_into_one_part(tmp_path: Path) -> None:
    users, _ = served(6)  # 12:00:00 .. 12:00:35
    log = tmp_path / "data/offline/user_windows"
    write_part(rows_frame(users[:4], USER_WINDOWS), log / "2026-10-01T12" / "part-stream-p0-0.parquet")
    write_part(rows_frame(users[2:], USER_WINDOWS), log / "2026-10-01T12" / "part-stream-p0-2.parquet")  # a replay
    write_part(rows_frame(users[:2], USER_WINDOWS), log / "2026-10-01T13" / "part-stream-p0-9.parquet")
    write_part(rows_frame(users[2:], USER_WINDOWS), log / "2026-10-01T13" / "part-stream-p1-4.parquet")
    (merged,) = compact(tmp_path, before=datetime(2026, 10, 1, 13, 30, tzinfo=UTC))
    assert list((log / "2026-10-01T12").iterdir()) == [merged]
    pd.testing.assert_frame_equal(pd.read_parquet(merged), rows_frame(users, USER_WINDOWS))
    assert len(list((log / "2026-10-01T13").iterdir())) == 2  # the hour is not over: untouched
    assert len(compact(tmp_path)) == 1 and len(list((log / "2026-10-01T13").iterdir())) == 1
