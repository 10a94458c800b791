"""The sink with a fake consumer at the confluent-kafka boundary and real files: rows derived from the
predictions, parts rolled by rows and by age in hour directories, and offsets committed only up to
records whose parts are durable."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import TopicPartition

from stream_app.adapters.label_log import read_labels
from stream_app.contract import JoinedLabel, Prediction, encode
from stream_app.core.offline_layout import MERCHANT_WINDOW_LOG, USER_WINDOW_LOG
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS
from stream_app.errors import ServiceUnavailableError
from stream_app.settings import Settings, SinkSettings
from stream_app.sink.parts import LogTarget, RollingParts
from stream_app.sink.runner import Sink, build_sink

T0 = datetime(2026, 11, 1, 12, 58, tzinfo=UTC)
PREDICTIONS, JOINED = "predictions", "labels.joined"


class Message:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None = None) -> None:
        self._where = (topic, partition, offset)
        self._value = value
        self._key = key

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


class FakeConsumer:
    """Hands out the queued messages; records commits."""

    def __init__(self, messages: Sequence[Message]) -> None:
        self.queue = list(messages)
        self.commits: list[dict[tuple[str, int], int]] = []
        self.on_revoke: Callable[[Any, list[TopicPartition]], None] | None = None
        self.closed = False

    def subscribe(self, topics: list[str], on_revoke: Callable[[Any, list[TopicPartition]], None]) -> None:
        self.on_revoke = on_revoke

    def consume(self, num_messages: int, timeout: float) -> list[Message]:
        batch, self.queue = self.queue[:num_messages], self.queue[num_messages:]
        return batch

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert not asynchronous
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def close(self) -> None:
        self.closed = True

    def committed(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for commit in self.commits:
            out.update(commit)
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def prediction(i: int, minutes: float = 0, *, drop: str | None = None) -> Prediction:
    features: dict[str, float | None] = {s.name: float(i + k) for k, s in enumerate(USER_WINDOWS + MERCHANT_WINDOWS)}
    features["user_seconds_since_prev"] = None
    features["txn_amount"] = 10.0
    if drop:
        del features[drop]
    return Prediction(event_id=f"e{i}", user_id=100 + i % 3, merchant_id=7, score=0.25, decision="approve",
                      model_version="v1", features=features, event_time=T0 + timedelta(minutes=minutes),
                      scored_at=T0, latency_ms=1.0)


def joined(i: int) -> JoinedLabel:
    return JoinedLabel.model_validate({"event_id": f"e{i}", "user_id": 100, "merchant_id": 7, "is_fraud": i % 2 == 0,
                                       "label_time": "2026-11-01T13:05:00Z", "score": 0.5, "model_version": "v1"})


def settings_for(tmp_path: Path, **sink: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", sink=SinkSettings(**sink))


def make_sink(tmp_path: Path, messages: Sequence[Message], clock: Clock, **sink: Any) -> tuple[Sink, FakeConsumer]:
    consumer = FakeConsumer(messages)
    the_sink = build_sink(settings_for(tmp_path, **sink), consumer=consumer)
    the_sink.parts.clock = clock
    the_sink.start()
    return the_sink, consumer


def log_rows(settings: Settings, log_dir: str) -> pd.DataFrame:
    parts = sorted((settings.feast.repo_path / log_dir).glob("**/*.parquet"))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame()


def test_each_prediction_becomes_one_row_per_view_in_the_hour_of_its_event_time(tmp_path: Path) -> None:
    clock = Clock()
    messages = [Message(PREDICTIONS, 0, i, encode(prediction(i, minutes=i))) for i in range(4)]  # 12:58 .. 13:01
    sink, consumer = make_sink(tmp_path, messages, clock, part_max_age_s=10.0)
    sink.step()
    assert consumer.commits == []  # consumed, but nothing durable yet
    clock.now = 10.0
    sink.step()
    settings = settings_for(tmp_path)
    user_dir = settings.feast.repo_path / USER_WINDOW_LOG
    assert sorted(str(p.relative_to(user_dir)) for p in user_dir.glob("**/*.parquet")) == [
        "2026-11-01T12/part-stream-p0-0.parquet", "2026-11-01T13/part-stream-p0-2.parquet"]
    users = log_rows(settings, USER_WINDOW_LOG).sort_values("event_timestamp", ignore_index=True)
    assert list(users["user_id"]) == [100, 101, 102, 100]
    for i, row in users.iterrows():
        served = prediction(int(str(i))).features  # the same vector the prediction carried
        for spec in USER_WINDOWS:
            expected = served[spec.name]
            assert (math.isnan(row[spec.name]) if expected is None else row[spec.name] == expected), spec.name
    merchants = log_rows(settings, MERCHANT_WINDOW_LOG)
    assert len(merchants) == 4 and set(merchants.columns) >= {s.name for s in MERCHANT_WINDOWS}
    assert consumer.committed() == {(PREDICTIONS, 0): 4}


def test_a_part_is_written_when_it_reaches_max_rows_and_offsets_stop_at_the_open_part(tmp_path: Path) -> None:
    clock = Clock()
    # partition 0: three events in hour 12 then one in hour 13; partition 1: one event in hour 12
    messages = [Message(PREDICTIONS, 0, 10, encode(prediction(0))), Message(PREDICTIONS, 1, 5, encode(prediction(1))),
                Message(PREDICTIONS, 0, 11, encode(prediction(2, minutes=1))),
                Message(PREDICTIONS, 0, 12, encode(prediction(3, minutes=5)))]
    sink, consumer = make_sink(tmp_path, messages, clock, part_max_rows=3, part_max_age_s=3600)
    sink.step()
    # hour 12 reached 3 rows: written; hour 13 (p0 offset 12) is open, so p0 commits up to 12, p1 past 5
    assert consumer.committed() == {(PREDICTIONS, 0): 12, (PREDICTIONS, 1): 6}
    hour12 = settings_for(tmp_path).feast.repo_path / USER_WINDOW_LOG / "2026-11-01T12"
    assert [p.name for p in hour12.iterdir()] == ["part-stream-p0-10+p1-5.parquet"]
    sink.parts.close_all()
    sink.commit()
    assert consumer.committed() == {(PREDICTIONS, 0): 13, (PREDICTIONS, 1): 6}


def test_nothing_is_committed_while_a_part_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    sink, consumer = make_sink(tmp_path, [Message(PREDICTIONS, 0, 0, encode(prediction(0)))], clock,
                               part_max_age_s=1.0)
    sink.step()
    clock.now = 5.0

    def disk_full(*args: Any, **kwargs: Any) -> Path:
        raise ServiceUnavailableError("offline log: disk full")

    monkeypatch.setattr("stream_app.sink.parts.write_part", disk_full)
    with pytest.raises(ServiceUnavailableError):
        sink.step()
    assert consumer.commits == [] and sink.parts.pending_rows == 2
    monkeypatch.undo()
    sink.step()  # the retry writes the same part
    assert consumer.committed() == {(PREDICTIONS, 0): 1} and sink.parts.pending_rows == 0


def test_a_replay_from_the_last_commit_rewrites_the_same_parts_with_the_same_rows(tmp_path: Path) -> None:
    messages = [Message(PREDICTIONS, 0, i, encode(prediction(i, minutes=i * 0.1))) for i in range(6)]
    first, consumer = make_sink(tmp_path, messages, Clock(), part_max_rows=4, part_max_age_s=3600)
    first.step()  # one part of 4 rows written and committed; 2 rows buffered when the sink "crashes"
    assert consumer.committed() == {(PREDICTIONS, 0): 4}
    settings = settings_for(tmp_path)
    before = {p: p.read_bytes() for p in (settings.feast.repo_path / USER_WINDOW_LOG).glob("**/*.parquet")}
    again, _ = make_sink(tmp_path, messages[4:], Clock(), part_max_rows=4, part_max_age_s=3600)
    again.step()
    again.parts.close_all()
    after = sorted((settings.feast.repo_path / USER_WINDOW_LOG).glob("**/*.parquet"))
    assert {p: p.read_bytes() for p in after if p in before} == before
    rows = log_rows(settings, USER_WINDOW_LOG)
    assert len(rows) == 6 and not rows.duplicated().any()


def test_joined_labels_go_to_the_label_log_by_hour_of_label_time(tmp_path: Path) -> None:
    messages = [Message(JOINED, 0, i, encode(joined(i))) for i in range(3)]
    sink, consumer = make_sink(tmp_path, messages, Clock(), part_max_age_s=3600)
    sink.step()
    sink.parts.close_all()
    sink.commit()
    labels_dir = tmp_path / "data" / "labels"
    assert [p.parent.name for p in labels_dir.glob("**/*.parquet")] == ["2026-11-01T13"]
    frame = read_labels(labels_dir)
    assert list(frame["event_id"]) == ["e0", "e1", "e2"] and frame["is_fraud"].tolist() == [True, False, True]
    assert consumer.committed() == {(JOINED, 0): 3}


def test_bad_records_and_predictions_lacking_a_feature_are_counted_skipped_and_committed(tmp_path: Path) -> None:
    messages = [Message(PREDICTIONS, 0, 0, b"{not json"),
                Message(PREDICTIONS, 0, 1, encode(prediction(1, drop="merchant_txn_count_1h")))]
    sink, consumer = make_sink(tmp_path, messages, Clock(), part_max_age_s=3600)
    sink.step()
    assert sink.stats.invalid == 1 and sink.stats.missing == {"merchant_windows": 1}
    assert consumer.committed() == {(PREDICTIONS, 0): 1}  # the user row of offset 1 is still open
    sink.parts.close_all()
    sink.commit()
    settings = settings_for(tmp_path)
    assert len(log_rows(settings, USER_WINDOW_LOG)) == 1 and log_rows(settings, MERCHANT_WINDOW_LOG).empty
    assert consumer.committed() == {(PREDICTIONS, 0): 2}


def test_revoked_partitions_have_their_parts_written_and_committed_first(tmp_path: Path) -> None:
    sink, consumer = make_sink(tmp_path, [Message(PREDICTIONS, 2, 7, encode(prediction(0)))], Clock(),
                               part_max_age_s=3600)
    sink.step()
    assert consumer.commits == [] and consumer.on_revoke is not None  # nothing durable: nothing to commit
    consumer.on_revoke(consumer, [TopicPartition(PREDICTIONS, 2)])
    assert consumer.committed() == {(PREDICTIONS, 2): 8} and sink.parts.pending_rows == 0
    assert sink.parts.commit_positions() == {}


def test_rolling_parts_refuse_an_unknown_log(tmp_path: Path) -> None:
    parts = RollingParts({"a": LogTarget(tmp_path, lambda rows: pd.DataFrame({"x": rows}))}, max_rows=2,
                         max_age_s=1.0, writer_id="w")
    with pytest.raises(ValueError, match="unknown log"):
        parts.add("b", "2026-11-01T12", 1, ("t", 0, 0))


class SinkRecorder:
    """A SinkSensor that keeps every call."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int]] = []
        self.parts: list[tuple[str, int]] = []
        self.open_rows: list[int] = []

    def on_records(self, topic: str, count: int) -> None:
        self.records.append((topic, count))

    def on_part_written(self, log: str, rows: int, seconds: float) -> None:
        assert seconds >= 0
        self.parts.append((log, rows))

    def on_open_rows(self, rows: int) -> None:
        self.open_rows.append(rows)


def test_the_sensor_is_told_what_was_consumed_written_and_still_buffered(tmp_path: Path) -> None:
    clock, sensor = Clock(), SinkRecorder()
    messages = [*(Message(PREDICTIONS, 0, i, encode(prediction(i))) for i in range(3)),
                Message(JOINED, 1, 0, encode(joined(0)))]
    sink = build_sink(settings_for(tmp_path, part_max_age_s=10.0), consumer=FakeConsumer(messages), sensor=sensor)
    sink.parts.clock = clock
    sink.start()
    sink.step()
    assert sorted(sensor.records) == [(JOINED, 1), (PREDICTIONS, 3)]
    assert sensor.parts == [] and sensor.open_rows == [7]  # 3 predictions x 2 views + 1 label
    clock.now = 10.0
    sink.step()
    assert sorted(sensor.parts) == [("labels", 1), ("merchant_windows", 3), ("user_windows", 3)]
    assert sensor.open_rows[-1] == 0
