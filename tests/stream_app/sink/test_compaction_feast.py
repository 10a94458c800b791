"""Compaction on the real broker and Feast: a sink process writes many parts per hour from predictions and
joined labels; after ``streamscore sink compact`` every hour of every log is one file, and Feast's
point-in-time join over the offline log returns, for every event, exactly the features its prediction
served (as it did before compaction); ``read_labels`` returns the same labels."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Producer

from models.dataset import apply_definitions
from stream_app.adapters.feast_store import in_repo
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.label_log import read_labels
from stream_app.contract import JoinedLabel, Prediction, encode
from stream_app.core.offline_layout import LABEL_LOG, MERCHANT_WINDOW_LOG, USER_WINDOW_LOG
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS, Function
from stream_app.settings import REPO_ROOT, Settings, SinkSettings, settings_env
from tests.fixtures.reference import same
from tests.fixtures.workers import StartSink, wait_for_sink
from tests.fixtures.workspace import Workspace, open_workspace

pytestmark = [pytest.mark.integration]

EVENTS, LABELS = 1500, 300
T0 = datetime(2026, 11, 1, 10, tzinfo=UTC)  # events every 7 s: 10:00 .. 12:54, three closed hours
WINDOWS = USER_WINDOWS + MERCHANT_WINDOWS
REFS = [f"user_windows:{s.name}" for s in USER_WINDOWS] + [f"merchant_windows:{s.name}" for s in MERCHANT_WINDOWS]


def predictions() -> list[Prediction]:
    rng = random.Random(11)
    out = []
    for i in range(EVENTS):
        features: dict[str, float | None] = {  # counts are whole numbers: the log stores them as integers
            s.name: float(rng.randrange(500)) if s.function in (Function.COUNT, Function.DISTINCT)
            else round(rng.uniform(0, 500), 3) for s in WINDOWS}
        if i % 9 == 0:
            features["user_seconds_since_prev"] = None
        out.append(Prediction(event_id=f"e{i}", user_id=i % 40, merchant_id=i % 15, score=0.5, decision="approve",
                              model_version="v1", features=features, event_time=T0 + timedelta(seconds=7 * i),
                              scored_at=T0, latency_ms=1.0))
    return out


def joined(i: int) -> JoinedLabel:
    return JoinedLabel.model_validate({
        "event_id": f"e{i}", "user_id": i % 40, "merchant_id": i % 15, "is_fraud": i % 4 == 0,
        "label_time": (T0 + timedelta(seconds=35 * i)).isoformat(), "score": 0.5, "model_version": "v1"})


def produce(settings: Settings, served: list[Prediction]) -> None:
    producer = Producer({**settings.kafka.confluent(), "linger.ms": 5})
    for p in served:
        producer.produce(settings.topics.predictions.name, key=p.event_id.encode(), value=encode(p))
    for i in range(LABELS):
        producer.produce(settings.topics.labels_joined.name, key=f"e{i}".encode(), value=encode(joined(i)))
    assert producer.flush(30) == 0


def files_per_hour(directory: Path) -> dict[str, int]:
    return {d.name: len(list(d.glob("*.parquet"))) for d in sorted(directory.iterdir()) if d.is_dir()}


def historical(workspace: Workspace, served: list[Prediction]) -> pd.DataFrame:
    entities = pd.DataFrame({"user_id": [p.user_id for p in served], "merchant_id": [p.merchant_id for p in served],
                             "event_timestamp": pd.to_datetime([p.event_time for p in served], utc=True).as_unit("us")})
    with in_repo(workspace.store):
        frame = workspace.store.get_historical_features(entity_df=entities, features=REFS).to_df()
    return frame.sort_values("event_timestamp", ignore_index=True)  # one event per timestamp


def mismatches(frame: pd.DataFrame, served: list[Prediction]) -> list[str]:
    assert len(frame) == len(served)
    return [f"{p.event_id} {s.name}: historical {row[s.name]} served {p.features[s.name]}"
            for p, (_, row) in zip(served, frame.iterrows(), strict=True) for s in WINDOWS
            if not same(_num(row[s.name]), _num(p.features[s.name]))]


def _num(value: Any) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def test_after_compaction_historical_features_are_exactly_what_was_served(
        settings: Settings, unique: str, tmp_path: Path, sink_process: StartSink) -> None:
    workspace = open_workspace(settings, tmp_path, f"compact_{unique}")
    settings = workspace.settings.model_copy(update={"sink": SinkSettings(
        group_id=f"compact-{unique}", part_max_rows=60, part_max_age_s=0.2, compact_every_s=0)})
    ensure_topics(settings.kafka, settings.topics.all())
    served = predictions()
    produce(settings, served)
    sink = sink_process(settings, tmp_path / "sink.log")
    wait_for_sink(settings, sink)
    assert sink.stop() == 0, sink.tail(40)

    logs = (settings.feast.repo_path / USER_WINDOW_LOG, settings.feast.repo_path / MERCHANT_WINDOW_LOG,
            settings.data_dir / LABEL_LOG)
    hours = ["2026-11-01T10", "2026-11-01T11", "2026-11-01T12"]
    for directory in logs:
        parts = files_per_hour(directory)
        assert list(parts) == hours and min(parts.values()) > 1, parts
    apply_definitions(workspace.store)
    before = historical(workspace, served)
    assert mismatches(before, served) == []
    labels_before = read_labels(settings.data_dir / LABEL_LOG)
    assert len(labels_before) == LABELS

    done = subprocess.run([sys.executable, "-m", "stream_app", "sink", "compact", "--grace", "0"],
                          env={**os.environ, **settings_env(settings)}, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "compacted 9 hour directories, 0 failed" in done.stderr
    for directory in logs:
        assert files_per_hour(directory) == dict.fromkeys(hours, 1)

    after = historical(workspace, served)
    assert mismatches(after, served) == []
    pd.testing.assert_frame_equal(after, before)
    pd.testing.assert_frame_equal(read_labels(settings.data_dir / LABEL_LOG).sort_values("event_id", ignore_index=True),
                                  labels_before.sort_values("event_id", ignore_index=True))
