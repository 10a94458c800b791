"""The sink killed with SIGKILL mid-stream and restarted, on the real broker: afterwards the offline log
holds one row per view for every prediction on the topic, each equal to the features the prediction
served, and nothing else; the label log holds every joined label. Predictions are produced directly
(a worker adds nothing here): several partitions, event times over several hours, written while the
sink runs."""

from __future__ import annotations

import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Producer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.label_log import read_labels
from stream_app.contract import JoinedLabel, Prediction, decode_prediction, encode
from stream_app.core.offline_layout import LABEL_LOG, MERCHANT_WINDOW_LOG, USER_WINDOW_LOG
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS, Function, WindowSpec
from stream_app.settings import Settings, SinkSettings
from tests.fixtures.kafka import consume
from tests.fixtures.workers import StartSink, sink_backlog, wait_for_sink

pytestmark = [pytest.mark.integration]

EVENTS, LABELS, RATE = 12_000, 600, 1500.0
T0 = datetime(2026, 11, 1, 10, tzinfo=UTC)


def prediction(i: int, rng: random.Random) -> Prediction:
    features: dict[str, float | None] = {  # counts are whole numbers: the log stores them as integers
        s.name: float(rng.randrange(500)) if s.function in (Function.COUNT, Function.DISTINCT)
        else round(rng.uniform(0, 500), 3) for s in USER_WINDOWS + MERCHANT_WINDOWS}
    if i % 7 == 0:
        features["user_seconds_since_prev"] = None
    return Prediction(event_id=f"e{i}", user_id=i, merchant_id=rng.randrange(50), score=rng.random(),
                      decision="approve", model_version="v1", features=features,
                      event_time=T0 + timedelta(seconds=i), scored_at=T0, latency_ms=1.0)  # 12k s: 4 hours


def joined(i: int) -> JoinedLabel:
    return JoinedLabel.model_validate({
        "event_id": f"e{i}", "user_id": i, "merchant_id": 1, "is_fraud": i % 3 == 0,
        "label_time": (T0 + timedelta(seconds=3 * i)).isoformat(), "score": 0.5, "model_version": "v1"})


def produce(settings: Settings, done: threading.Event) -> None:
    producer = Producer({**settings.kafka.confluent(), "linger.ms": 5})
    rng = random.Random(5)
    started = time.monotonic()
    for i in range(EVENTS):
        p = prediction(i, rng)
        producer.produce(settings.topics.predictions.name, key=p.event_id.encode(), value=encode(p))
        if i < LABELS:
            producer.produce(settings.topics.labels_joined.name, key=f"e{i}".encode(), value=encode(joined(i)))
        if i % 200 == 0:
            producer.poll(0)
            time.sleep(max(0.0, started + i / RATE - time.monotonic()))
    assert producer.flush(30) == 0
    done.set()


def logged(directory: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(directory.glob("**/*.parquet"))], ignore_index=True)


def as_key(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def expected_rows(predictions: list[Prediction], entity: str, specs: tuple[WindowSpec, ...]) -> set[tuple[Any, ...]]:
    return {(getattr(p, entity), pd.Timestamp(p.event_time).value // 1000,
             *(p.features[s.name] for s in specs)) for p in predictions}


def log_rows(frame: pd.DataFrame, entity: str, specs: tuple[WindowSpec, ...]) -> list[tuple[Any, ...]]:
    assert (frame["event_timestamp"] == frame["created_timestamp"]).all()
    stamps = frame["event_timestamp"].dt.as_unit("us").astype("int64")
    return [(int(e), int(t), *(as_key(float(v)) for v in values)) for e, t, *values in
            zip(frame[entity], stamps, *(frame[s.name] for s in specs), strict=True)]


def test_a_sink_killed_mid_stream_loses_no_row_and_logs_nothing_but_what_was_served(
        settings: Settings, unique: str, tmp_path: Path, sink_process: StartSink) -> None:
    settings = settings.model_copy(update={"sink": SinkSettings(group_id=f"sink-crash-{unique}", part_max_rows=700,
                                                                part_max_age_s=0.5)})
    ensure_topics(settings.kafka, settings.topics.all())
    log = tmp_path / "sink.log"
    done = threading.Event()
    producer = threading.Thread(target=produce, args=(settings, done), daemon=True)
    producer.start()

    kills = 0
    for _ in range(2):  # each time once the new process has written a part of its own
        parts = len(list(settings.feast.repo_path.glob("**/*.parquet")))
        sink = sink_process(settings, log)
        deadline = time.monotonic() + 60
        while len(list(settings.feast.repo_path.glob("**/*.parquet"))) <= parts:
            assert sink.alive() and time.monotonic() < deadline, sink.tail(40)
            time.sleep(0.05)
        backlog = sink_backlog(settings)
        sink.kill()
        kills += 1
        assert any(backlog.values()), "the kill came after everything was committed"
        if kills == 1:
            assert not done.is_set(), "the stream ended before the first kill: not mid-stream"
    producer.join(timeout=60)
    assert done.is_set()

    sink = sink_process(settings, log)
    wait_for_sink(settings, sink)
    sink.stop()
    assert kills == 2

    served = [decode_prediction(v) for _, v, _, _ in consume(settings, settings.topics.predictions.name, EVENTS)]
    assert len(served) == EVENTS
    repo = settings.feast.repo_path
    for directory, entity, specs in ((USER_WINDOW_LOG, "user_id", USER_WINDOWS),
                                     (MERCHANT_WINDOW_LOG, "merchant_id", MERCHANT_WINDOWS)):
        rows = log_rows(logged(repo / directory), entity, specs)
        expected = expected_rows(served, entity, specs)
        assert set(rows) == expected, f"{directory}: {len(expected - set(rows))} rows lost, " \
            f"{len(set(rows) - expected)} rows that were not served"
        assert len(rows) >= EVENTS  # a replay may write a row again, identically
    hours = {p.parent.name for p in (repo / USER_WINDOW_LOG).glob("**/*.parquet")}
    assert hours == {"2026-11-01T10", "2026-11-01T11", "2026-11-01T12", "2026-11-01T13"}
    labels = read_labels(settings.data_dir / LABEL_LOG)
    assert sorted(labels["event_id"]) == sorted(f"e{i}" for i in range(LABELS))
    assert labels["is_fraud"].sum() == sum(1 for i in range(LABELS) if i % 3 == 0)
