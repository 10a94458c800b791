"""Compaction of the sink's logs on real files: closed hours of all three logs merged, open hours left,
passes run by the sink on a thread of its own, and ``streamscore sink compact``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import TopicPartition

from stream_app.adapters.label_log import label_frame, read_labels
from stream_app.adapters.offline_log import rows_frame, write_part
from stream_app.cli import main
from stream_app.core.offline_layout import LABEL_LOG, MERCHANT_WINDOW_LOG, USER_WINDOW_LOG, hour_dir
from stream_app.core.records import LabelRow, WindowRow
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS
from stream_app.settings import Settings, SinkSettings, get_settings
from stream_app.sink.compaction import Compactor, compact_closed_hours
from stream_app.sink.runner import build_sink, compaction_targets

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def rows(first: int, n: int, start: datetime) -> list[WindowRow]:
    return [(i % 4, start + timedelta(seconds=30 * i), {s.name: float(i) for s in USER_WINDOWS + MERCHANT_WINDOWS})
            for i in range(first, first + n)]


def label(i: int, start: datetime) -> LabelRow:
    return LabelRow(event_id=f"e{start:%H}-{i}", user_id=i, merchant_id=1, is_fraud=i % 2 == 0,
                    label_time=start + timedelta(seconds=i), score=0.5, model_version="v1")


def write_hours(settings: Settings, hours: range, parts: int = 3, start: datetime = T0) -> None:
    """``parts`` parts (of 5 rows) per log in each hour of ``hours`` after ``start``, as the sink writes them."""
    repo = settings.feast.repo_path
    for hour in hours:
        begins = start + timedelta(hours=hour)
        name = hour_dir(begins)
        for p in range(parts):
            part = f"part-stream-p{p}-{10 * hour}.parquet"
            write_part(rows_frame(rows(5 * p, 5, begins), USER_WINDOWS), repo / USER_WINDOW_LOG / name / part)
            write_part(rows_frame(rows(5 * p, 5, begins), MERCHANT_WINDOWS), repo / MERCHANT_WINDOW_LOG / name / part)
            write_part(label_frame([label(5 * p + i, begins) for i in range(5)]),
                       settings.data_dir / LABEL_LOG / name / part)


def files_per_hour(directory: Path) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.parquet"))) for d in sorted(directory.iterdir())}


def feature_rows(directory: Path) -> pd.DataFrame:
    frame = pd.concat([pd.read_parquet(p) for p in directory.glob("**/*.parquet")], ignore_index=True)
    return frame.sort_values(list(frame.columns), ignore_index=True)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def test_a_pass_merges_each_closed_hour_of_every_log_and_leaves_open_hours(settings: Settings) -> None:
    write_hours(settings, range(3))  # 12:00, 13:00, 14:00
    user_dir = settings.feast.repo_path / USER_WINDOW_LOG
    users_before, labels_before = feature_rows(user_dir), read_labels(settings.data_dir / LABEL_LOG)

    report = compact_closed_hours(compaction_targets(settings), T0 + timedelta(hours=2))  # 12:00, 13:00 ended
    assert report.failed == [] and len(report.merged) == 6
    for directory in (user_dir, settings.feast.repo_path / MERCHANT_WINDOW_LOG, settings.data_dir / LABEL_LOG):
        assert files_per_hour(directory) == {"2026-11-01T12": 1, "2026-11-01T13": 1, "2026-11-01T14": 3}
    pd.testing.assert_frame_equal(feature_rows(user_dir), users_before)
    pd.testing.assert_frame_equal(read_labels(settings.data_dir / LABEL_LOG), labels_before)

    assert compact_closed_hours(compaction_targets(settings), T0 + timedelta(hours=2)).merged == []


def test_a_stopped_pass_ends_before_the_next_hour(settings: Settings) -> None:
    write_hours(settings, range(2))
    stop = threading.Event()
    stop.set()
    assert compact_closed_hours(compaction_targets(settings), T0 + timedelta(hours=3), stop).merged == []


def test_an_hour_that_cannot_be_merged_is_reported_and_the_others_are_merged(settings: Settings) -> None:
    write_hours(settings, range(2))
    (settings.feast.repo_path / USER_WINDOW_LOG / "2026-11-01T12" / "part-stream-p9-0.parquet").write_bytes(b"junk")
    report = compact_closed_hours(compaction_targets(settings), T0 + timedelta(hours=3))
    assert [d.name for d, _ in report.failed] == ["2026-11-01T12"] and len(report.merged) == 5


def test_the_compactor_merges_closed_hours_on_its_own_thread_until_stopped(settings: Settings) -> None:
    write_hours(settings, range(2))
    now = [T0 + timedelta(hours=1, minutes=10)]  # 12:00 ended 10 minutes ago: within the 15 minute grace
    compactor = Compactor(compaction_targets(settings), every_s=0.02, grace_s=900, clock=lambda: now[0])
    compactor.start()
    try:
        wait_until(lambda: compactor.passes >= 2)
        assert compactor.merged == 0
        now[0] = T0 + timedelta(hours=1, minutes=15)
        wait_until(lambda: compactor.merged == 3)
    finally:
        compactor.stop()
    passes = compactor.passes
    time.sleep(0.1)
    assert compactor.passes == passes  # stopped
    assert files_per_hour(settings.data_dir / LABEL_LOG) == {"2026-11-01T12": 1, "2026-11-01T13": 3}


def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


class IdleConsumer:
    """A consumer with nothing to consume."""

    def subscribe(self, topics: list[str], on_revoke: Callable[[Any, list[TopicPartition]], None]) -> None:
        pass

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        time.sleep(0.01)
        return []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        pass

    def close(self) -> None:
        pass


def test_the_sink_runs_its_compactor_while_it_runs_unless_compaction_is_off(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", sink=SinkSettings(compact_every_s=0.02, compact_grace_s=0))
    write_hours(settings, range(2))
    sink = build_sink(settings, consumer=IdleConsumer())
    assert sink.compactor is not None
    stop = threading.Event()
    running = threading.Thread(target=sink.run, args=(stop,))
    running.start()
    try:
        wait_until(lambda: sink.compactor is not None and sink.compactor.merged == 6)
    finally:
        stop.set()
        running.join(10)
    assert not running.is_alive()
    assert files_per_hour(settings.feast.repo_path / USER_WINDOW_LOG) == {"2026-11-01T12": 1, "2026-11-01T13": 1}
    off = settings.model_copy(update={"sink": SinkSettings(compact_every_s=0)})
    assert build_sink(off, consumer=IdleConsumer()).compactor is None


@pytest.fixture
def env_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("STREAMSCORE_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_the_compact_command_merges_the_hours_closed_by_its_grace(env_settings: Settings,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    write_hours(env_settings, range(3), start=hour - timedelta(hours=2))  # ended over an hour ago, ended, open
    assert main(["sink", "compact", "--grace", "3600"]) == 0
    assert "compacted 3 hour directories, 0 failed" in capsys.readouterr().err
    assert list(files_per_hour(env_settings.data_dir / LABEL_LOG).values()) == [1, 3, 3]
    assert main(["sink", "compact", "--grace", "0"]) == 0
    assert list(files_per_hour(env_settings.data_dir / LABEL_LOG).values()) == [1, 1, 3]
    assert "compacted 3 hour directories" in capsys.readouterr().err
