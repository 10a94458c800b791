"""Merging an hour directory's parts into one, on real files: every row kept exactly, identical rows
dropped, idempotent, parts that arrive or are rewritten meanwhile kept for the next pass, and a merge
interrupted before its inputs are removed leaves what readers see unchanged."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from stream_app.adapters import label_log
from stream_app.adapters.label_log import label_frame, read_labels
from stream_app.adapters.log_compaction import MERGED_PREFIX, Merged, closed_hours, merge_parts
from stream_app.adapters.offline_log import conform, rows_frame, write_part
from stream_app.core.offline_layout import CREATED
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.records import LabelRow, WindowRow
from stream_app.core.window_spec import USER_WINDOWS
from stream_app.errors import ServiceUnavailableError

HOUR = datetime(2026, 11, 1, 12, tzinfo=UTC)
KEY = [TIMESTAMP, "user_id"]


def user_rows(first: int, n: int) -> list[WindowRow]:
    """Rows i = first .. first+n-1: user i % 5, at 12:00 + 20 s * i, features from i (one NaN every 4th)."""
    rows: list[WindowRow] = []
    for i in range(first, first + n):
        features = {s.name: float(i * 10 + k) for k, s in enumerate(USER_WINDOWS)}
        if i % 4 == 0:
            features["user_seconds_since_prev"] = float("nan")
        rows.append((i % 5, HOUR + timedelta(seconds=20 * i), features))
    return rows


def users(rows: list[WindowRow]) -> pd.DataFrame:
    return rows_frame(rows, USER_WINDOWS)


def merge_users(directory: Path) -> Merged | None:
    return merge_parts(directory, lambda f: conform(f, USER_WINDOWS), KEY)


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def read_all(directory: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(directory.glob("*.parquet"))], ignore_index=True)


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns), ignore_index=True)


def label(i: int, score: float = 0.5) -> LabelRow:
    return LabelRow(event_id=f"e{i}", user_id=i, merchant_id=7, is_fraud=i % 3 == 0,
                    label_time=HOUR + timedelta(seconds=i), score=score, model_version="v1")


def test_only_hours_that_ended_by_the_given_moment_are_closed(tmp_path: Path) -> None:
    for name in ("2026-11-01T11", "2026-11-01T12", "2026-11-01T13", "not-an-hour"):
        (tmp_path / name).mkdir()
    (tmp_path / "part-backfill.parquet").write_bytes(b"")
    assert [d.name for d in closed_hours(tmp_path, datetime(2026, 11, 1, 12, 59, tzinfo=UTC))] == ["2026-11-01T11"]
    assert [d.name for d in closed_hours(tmp_path, datetime(2026, 11, 1, 13, tzinfo=UTC))] == [
        "2026-11-01T11", "2026-11-01T12"]
    assert closed_hours(tmp_path / "missing", datetime(2030, 1, 1, tzinfo=UTC)) == []


def test_the_merged_part_holds_every_row_of_the_parts_exactly_in_event_time_order(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    # rows of three partitions, interleaved in time across the parts
    parts = [users(user_rows(0, 40)[p::3]) for p in range(3)]
    for p, frame in enumerate(parts):
        write_part(frame, hour / f"part-stream-p{p}-{p * 100}.parquet")
    merged = merge_users(hour)
    assert merged is not None and files(hour) == [merged.path.name] and merged.path.name.startswith(MERGED_PREFIX)
    assert (merged.inputs, merged.removed, merged.rows, merged.duplicates) == (3, 3, 40, 0)
    frame = pd.read_parquet(merged.path)
    pd.testing.assert_frame_equal(frame, users(user_rows(0, 40)))  # sorted by event time: all rows, same dtypes
    pd.testing.assert_frame_equal(sorted_rows(frame), sorted_rows(pd.concat(parts, ignore_index=True)))


def test_identical_rows_in_several_parts_are_kept_once_and_differing_rows_all_kept(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 10)), hour / "part-stream-p0-0.parquet")
    write_part(users(user_rows(6, 10)), hour / "part-stream-p0-6.parquet")  # a replay cut elsewhere: 6..9 again
    differing = users(user_rows(3, 1))
    differing["user_txn_count_1h"] = differing["user_txn_count_1h"] + 1  # same key as row 3, other values
    write_part(differing, hour / "part-stream-p1-0.parquet")
    merged = merge_users(hour)
    assert merged is not None and (merged.rows, merged.duplicates) == (17, 4)
    frame = pd.read_parquet(merged.path)
    expected = pd.concat([users(user_rows(0, 16)), differing], ignore_index=True)
    pd.testing.assert_frame_equal(sorted_rows(frame), sorted_rows(expected))


def test_a_second_pass_over_a_merged_hour_does_nothing(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 5)), hour / "part-stream-p0-0.parquet")
    assert merge_users(hour) is None  # one part: nothing to merge
    write_part(users(user_rows(5, 5)), hour / "part-stream-p0-5.parquet")
    merged = merge_users(hour)
    assert merged is not None
    stat = merged.path.stat()
    assert merge_users(hour) is None
    assert files(hour) == [merged.path.name] and merged.path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_part_arriving_in_a_merged_hour_is_merged_on_the_next_pass(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 5)), hour / "part-stream-p0-0.parquet")
    write_part(users(user_rows(5, 5)), hour / "part-stream-p0-5.parquet")
    first = merge_users(hour)
    write_part(users(user_rows(10, 3)), hour / "part-stream-p0-10.parquet")  # a late row of the hour
    second = merge_users(hour)
    assert first is not None and second is not None and second.path != first.path
    assert files(hour) == [second.path.name] and second.inputs == 2
    pd.testing.assert_frame_equal(pd.read_parquet(second.path), users(user_rows(0, 13)))


def test_a_merge_interrupted_before_removing_its_parts_leaves_what_readers_see_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 8)), hour / "part-stream-p0-0.parquet")
    write_part(users(user_rows(4, 8)), hour / "part-stream-p1-0.parquet")
    labels = tmp_path / "labels"
    write_part(label_frame([label(i) for i in range(6)]), labels / "2026-11-01T12" / "part-stream-p0-0.parquet")
    write_part(label_frame([label(i) for i in range(4, 9)]), labels / "2026-11-01T12" / "part-stream-p0-4.parquet")
    rows_before, labels_before = read_all(hour), read_labels(labels)

    def refuse(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("os.rename", refuse)  # the removal fails: as if the process died after the write
    with pytest.raises(ServiceUnavailableError, match="cannot remove"):
        merge_users(hour)
    with pytest.raises(ServiceUnavailableError, match="cannot remove"):
        merge_parts(labels / "2026-11-01T12", label_log.conform)
    monkeypatch.undo()

    assert len(files(hour)) == 3 and len(files(labels / "2026-11-01T12")) == 3
    after = read_all(hour)
    assert len(after) > len(rows_before)  # the merged part duplicates the parts, identically
    # Feast keeps one row per entity, event and created timestamp: the distinct rows are the same, one per key
    pd.testing.assert_frame_equal(sorted_rows(after.drop_duplicates()), sorted_rows(rows_before.drop_duplicates()))
    assert not after.drop_duplicates().duplicated(["user_id", TIMESTAMP, CREATED]).any()
    pd.testing.assert_frame_equal(read_labels(labels), labels_before)

    again = merge_users(hour)  # the next pass finishes the job
    assert again is not None and files(hour) == [again.path.name]
    pd.testing.assert_frame_equal(sorted_rows(pd.read_parquet(again.path)), sorted_rows(users(user_rows(0, 12))))
    assert merge_parts(labels / "2026-11-01T12", label_log.conform) is not None
    pd.testing.assert_frame_equal(read_labels(labels), labels_before)


def test_merged_labels_keep_the_first_row_read_labels_keeps(tmp_path: Path) -> None:
    hour = tmp_path / "labels" / "2026-11-01T12"
    write_part(label_frame([label(2), label(1)]), hour / "part-stream-p0-0.parquet")
    write_part(label_frame([label(1, score=0.9), label(0)]), hour / "part-stream-p1-0.parquet")  # e1 differs
    before = read_labels(tmp_path / "labels")
    merged = merge_parts(hour, label_log.conform)
    assert merged is not None and merged.rows == 4  # both versions of e1 kept, in the order read
    pd.testing.assert_frame_equal(read_labels(tmp_path / "labels"), before)
    assert read_labels(tmp_path / "labels").set_index("event_id").loc["e1", "score"] == 0.5


def test_a_part_rewritten_while_it_is_merged_is_kept_for_the_next_pass(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 4)), hour / "part-stream-p0-0.parquet")
    replayed = hour / "part-stream-p1-0.parquet"
    write_part(users(user_rows(4, 4)), replayed)
    calls = []

    def conform_then_rewrite(frame: pd.DataFrame) -> pd.DataFrame:
        calls.append(len(frame))
        if len(calls) == 2:  # the sink replays the second part, with more rows, after it was read
            write_part(users(user_rows(4, 6)), replayed)
        return conform(frame, USER_WINDOWS)

    merged = merge_parts(hour, conform_then_rewrite, KEY)
    assert merged is not None and merged.rows == 8 and merged.removed == 1
    assert files(hour) == sorted([merged.path.name, replayed.name])
    assert len(pd.read_parquet(replayed)) == 6  # the rewrite, not the version read
    again = merge_users(hour)
    assert again is not None and files(hour) == [again.path.name]
    pd.testing.assert_frame_equal(pd.read_parquet(again.path), users(user_rows(0, 10)))


def test_a_part_left_set_aside_by_an_interrupted_merge_is_put_back(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 4)), hour / "part-stream-p0-0.parquet")
    write_part(users(user_rows(4, 4)), hour / "part-stream-p1-0.parquet")
    os.rename(hour / "part-stream-p1-0.parquet", hour / ".part-stream-p1-0.parquet.0a1b2c3d.merged")
    merged = merge_users(hour)
    assert merged is not None and files(hour) == [merged.path.name]
    pd.testing.assert_frame_equal(pd.read_parquet(merged.path), users(user_rows(0, 8)))


def test_a_part_that_does_not_fit_the_log_leaves_the_hour_untouched(tmp_path: Path) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(users(user_rows(0, 4)), hour / "part-stream-p0-0.parquet")
    write_part(users(user_rows(4, 4)).drop(columns=["user_txn_count_1h"]), hour / "part-stream-p1-0.parquet")
    with pytest.raises(ValueError, match="must have columns"):
        merge_users(hour)
    assert files(hour) == ["part-stream-p0-0.parquet", "part-stream-p1-0.parquet"]


def test_read_labels_lists_again_when_a_part_is_removed_under_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    hour = tmp_path / "2026-11-01T12"
    write_part(label_frame([label(0)]), hour / "part-stream-p0-0.parquet")
    write_part(label_frame([label(1)]), hour / "part-stream-p0-1.parquet")
    read = pd.read_parquet
    calls = []

    def racing(path: Path) -> pd.DataFrame:
        calls.append(path)
        if len(calls) == 1:  # compaction merges the hour between the listing and the first read
            assert merge_parts(hour, label_log.conform) is not None
        return read(path)

    monkeypatch.setattr(pd, "read_parquet", racing)
    assert sorted(read_labels(tmp_path)["event_id"]) == ["e0", "e1"]
    assert len(calls) > 2
