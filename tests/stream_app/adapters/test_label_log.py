from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stream_app.adapters.label_log import label_frame, read_labels
from stream_app.adapters.offline_log import write_part
from stream_app.core.records import LabelRow

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def row(event_id: str, fraud: bool) -> LabelRow:
    return LabelRow(event_id, 1, 7, fraud, T0, 0.5, "v1")


def test_parts_in_hour_directories_are_read_and_a_replayed_label_is_read_once(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    write_part(label_frame([row("a", True), row("b", False)]), labels / "2026-11-01T12" / "part-stream-p0-0.parquet")
    # b again, replayed into another part (cut at other boundaries)
    write_part(label_frame([row("b", False), row("c", True)]), labels / "2026-11-01T13" / "part-stream-p0-1.parquet")
    frame = read_labels(labels)
    assert sorted(frame["event_id"]) == ["a", "b", "c"]
    assert frame["label_time"].dt.tz is not None and frame["is_fraud"].sum() == 2


def test_an_empty_log_reads_as_an_empty_frame_with_the_columns(tmp_path: Path) -> None:
    frame = read_labels(tmp_path / "none")
    assert frame.empty and list(frame.columns)[:2] == ["event_id", "user_id"]
