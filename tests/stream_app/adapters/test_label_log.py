from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from stream_app.adapters.label_log import LabelLogWriter, read_labels
from stream_app.core.records import LabelRow

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def row(event_id: str, fraud: bool) -> LabelRow:
    return LabelRow(event_id, 1, 7, fraud, T0, 0.5, "v1")


def test_parts_are_named_by_batch_so_a_replay_overwrites_and_reads_dedupe(tmp_path: Path) -> None:
    writer = LabelLogWriter(tmp_path / "labels", "w1")
    assert writer.append([], "p0-0-0") is None
    first = writer.append([row("a", True), row("b", False)], "p0-0-1")
    again = LabelLogWriter(tmp_path / "labels", "w2").append([row("a", True), row("b", False)], "p0-0-1")
    assert first == again and len(list((tmp_path / "labels").glob("*"))) == 1
    writer.append([row("b", False), row("c", True)], "p1-5-6")  # b again, cut at other boundaries
    frame = read_labels(tmp_path / "labels")
    assert sorted(frame["event_id"]) == ["a", "b", "c"]
    assert frame["label_time"].dt.tz is not None and frame["is_fraud"].sum() == 2


def test_an_empty_log_reads_as_an_empty_frame_with_the_columns(tmp_path: Path) -> None:
    frame = read_labels(tmp_path / "none")
    assert frame.empty and list(frame.columns)[:2] == ["event_id", "user_id"]
