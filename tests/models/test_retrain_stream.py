"""Retraining from what the stream recorded, on the real broker, Redis and Feast: live transactions and
then their labels go through a worker process, a sink process logs predictions, joined labels and
transactions; ``models.retrain`` builds its frame from those logs alone, and for every event the training
frame's features are exactly the feature vector the worker served (0 mismatches). The version it
registers carries the lineage of that record."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from confluent_kafka import Producer

from models.features import LABEL, model_feature_names
from models.retrain import retrain, store_features
from models.train import DEFAULT_PARAMS, TrainConfig
from models.validate import ValidationPolicy
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.contract import Label, encode, user_key
from stream_app.generator.live import stream_live
from stream_app.settings import Settings, SinkSettings
from tests.fixtures.kafka import consume
from tests.fixtures.reference import same
from tests.fixtures.served import predictions_by_event
from tests.fixtures.workers import StartSink, StartWorker, wait_for_sink
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FRAUD_RATE = 0.15  # of the labels this test sends, so every time slice holds both classes


def produce_labels(settings: Settings, served: dict[str, dict[str, Any]], at: datetime) -> int:
    """A label for every served event but each fifth (it stays unlabelled), sent after the predictions."""
    rng = random.Random(5)
    producer = Producer(settings.kafka.confluent())
    sent = 0
    for n, (event_id, body) in enumerate(sorted(served.items())):
        if n % 5 == 4:
            continue
        label = Label.model_validate({"event_id": event_id, "user_id": body["user_id"],
                                      "is_fraud": rng.random() < FRAUD_RATE, "label_time": at.isoformat()})
        producer.produce(settings.topics.labels.name, key=user_key(label.user_id), value=encode(label))
        sent += 1
    assert producer.flush(30) == 0
    return sent


def _num(value: Any) -> float:
    return float("nan") if value is None or pd.isna(value) else float(value)


def test_the_retraining_frame_holds_exactly_the_features_the_worker_served(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker, sink_process: StartSink) -> None:
    settings = prepare(settings, tmp_path, f"retrain_{unique}")
    settings = settings.model_copy(update={"sink": SinkSettings(group_id=f"retrain-{unique}", part_max_age_s=0.5,
                                                                compact_every_s=0)})
    ensure_topics(settings.kafka, settings.topics.all())
    started = datetime.now(UTC)
    sink = sink_process(settings, tmp_path / "sink.log")
    worker = worker_process(settings, tmp_path / "worker.log")
    counts = stream_live(settings, rate=400, duration_s=3.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         invalid_fraction=0.03, label_delay_scale=10.0, report=None)  # no label falls due
    served = predictions_by_event(consume(settings, settings.topics.predictions.name, counts.valid, timeout_s=120))
    assert len(served) == counts.valid, worker.tail(40)
    labelled_at = datetime.now(UTC)
    sent = produce_labels(settings, served, labelled_at)
    joined = consume(settings, settings.topics.labels_joined.name, sent, timeout_s=120)
    assert len({json.loads(v or b"{}")["event_id"] for _, v, _, _ in joined}) == sent, worker.tail(40)
    wait_for_sink(settings, sink)
    assert worker.stop() == 0 and sink.stop() == 0, sink.tail(40)

    fetch = store_features(settings)
    frames: list[pd.DataFrame] = []

    def recorded_features(entities: pd.DataFrame) -> pd.DataFrame:
        frames.append(fetch(entities))
        return frames[-1]

    until = datetime.now(UTC)
    since = started - timedelta(minutes=5)
    config = TrainConfig(holdout_days=1.0 / 86_400, valid_fraction=0.3, num_boost_round=20,
                         params={**DEFAULT_PARAMS, "nthread": 1},
                         policy=ValidationPolicy(min_rows=100, max_label_rate=0.5, max_psi=1e9))
    registry = ModelRegistry(settings.models_dir)
    production = registry.get_alias("production")
    result = retrain(settings, registry, since, until, config=config, min_labels=100, historical=recorded_features)

    [frame] = frames
    labels = {body["event_id"]: body["is_fraud"] for body in (json.loads(v or b"{}") for _, v, _, _ in joined)}
    assert sorted(frame["event_id"]) == sorted(labels)
    mismatches = [f"{row['event_id']} {name}: trained {row[name]}, served {served[row['event_id']]['features'][name]}"
                  for row in frame.to_dict("records") for name in model_feature_names()
                  if not same(_num(row[name]), _num(served[row["event_id"]]["features"][name]))]
    assert mismatches == [], f"{len(mismatches)} mismatches, e.g. {mismatches[:5]}"
    assert all(labels[row["event_id"]] == bool(row[LABEL]) for row in frame.to_dict("records"))

    metadata = registry.metadata(result.trained.version)
    assert metadata.lineage is not None
    assert metadata.lineage.labelled == metadata.training_data.rows == sent
    assert metadata.lineage.transactions == counts.valid and metadata.lineage.parent_version == production
