"""What the runners, the model source and the timed state store tell the sensor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.core.engine import WindowState
from stream_app.core.metrics import histogram_reference
from stream_app.core.observations import BatchSeen, ScoredSeen, ServedModel
from stream_app.core.online_quality import OnlineQuality
from stream_app.core.records import Indexed
from stream_app.errors import ServiceUnavailableError, StateConflictError
from stream_app.settings import WorkerSettings
from stream_app.worker.label_runner import LabelRunner
from stream_app.worker.model_source import RegistryModel
from stream_app.worker.processor import BatchProcessor
from stream_app.worker.runner import BatchRunner
from stream_app.worker.sensor import TimedState
from tests.fixtures.fakes import FEATURES, T0, FakeModel, FakeOnline, FakeState, record, txn
from tests.stream_app.worker.test_labels import T0 as LABELS_T0
from tests.stream_app.worker.test_labels import FakeIndex, label, label_processor
from tests.stream_app.worker.test_runner import FAST, Journal, Publisher


class Recorder:
    """A WorkerSensor that keeps every call."""

    def __init__(self) -> None:
        self.batches: list[BatchSeen] = []
        self.scored: list[ScoredSeen] = []
        self.labels: list[list[float]] = []
        self.retries: list[str] = []
        self.outages: list[float] = []
        self.redis: list[tuple[str, bool]] = []
        self.models: list[ServedModel] = []
        self.failed = 0

    def on_batch(self, batch: BatchSeen) -> None:
        self.batches.append(batch)

    def on_scored(self, scored: ScoredSeen) -> None:
        self.scored.append(scored)

    def on_labels(self, delays_s: Sequence[float]) -> None:
        self.labels.append(list(delays_s))

    def on_retry(self, reason: str) -> None:
        self.retries.append(reason)

    def on_outage(self, seconds: float) -> None:
        self.outages.append(seconds)

    def on_redis(self, op: str, seconds: float, failed: bool) -> None:
        self.redis.append((op, failed))

    def on_model_loaded(self, model: ServedModel) -> None:
        self.models.append(model)

    def on_model_failed(self) -> None:
        self.failed += 1


class Failing(FakeState):
    """Raises each of ``errors`` on successive commits, then commits."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__()
        self.errors = list(errors)

    def commit(self, state: WindowState, also: Sequence[Any] = ()) -> None:
        if self.errors:
            raise self.errors.pop(0)
        super().commit(state, also)


def batch_runner(sensor: Recorder, state: FakeState, settings: WorkerSettings = FAST) -> BatchRunner:
    online = FakeOnline()
    timed = TimedState(state, sensor)
    processor = BatchProcessor(allowed_lateness_s=300, state=timed, online=online, model=FakeModel())
    return BatchRunner(processor=processor, publisher=Publisher(Journal()), online=online, state=timed,
                       settings=settings, sensor=sensor)


def test_a_transactions_batch_is_reported_once_with_its_counts_scores_and_latencies() -> None:
    sensor = Recorder()
    records = [record(0, txn(0)), record(1, txn(1, minutes=1), partition=1), record(2, b"{not json", key=b"1"),
               record(3, txn(0))]  # the last: the same event again
    started = time.time()
    result = asyncio.run(batch_runner(sensor, FakeState()).handle(records))
    [batch], [scored] = sensor.batches, sensor.scored
    assert batch.topic == "transactions" and dict(batch.partitions) == {0: 3, 1: 1} and batch.size == 4
    assert dict(batch.dead_letters) == {"decode": 1, "duplicate": 1} and batch.seconds > 0
    assert scored.valid == 2 and len(scored.scores) == 2
    assert scored.scores.tolist() == [p.score for p in result.predictions]
    assert scored.declined == sum(p.decision == "decline" for p in result.predictions)
    assert scored.model_version == "v0042" and scored.features == FEATURES and scored.matrix.shape == (2, 5)
    # the records entered Kafka at T0: acknowledged "now"
    assert np.all(scored.latencies_s >= started - T0.timestamp())
    assert scored.newest == {"user_windows": (T0 + timedelta(minutes=1)).timestamp(),
                             "merchant_windows": (T0 + timedelta(minutes=1)).timestamp()}
    assert sensor.redis == [("load", False), ("commit", False)]


def test_retries_are_reported_with_their_reason_and_outages_with_their_wait() -> None:
    sensor = Recorder()
    state = Failing(ServiceUnavailableError("down"), StateConflictError(["k"]), RuntimeError("bug"))
    asyncio.run(batch_runner(sensor, state, WorkerSettings(retry_initial_s=0.01, poison_attempts=3))
                .handle([record(0, txn(0))]))
    assert sensor.retries == ["unavailable", "conflict", "error"]
    assert len(sensor.outages) == 1 and sensor.outages[0] >= 0.01
    assert [failed for op, failed in sensor.redis if op == "commit"] == [True, False, True, False]


def test_a_label_batch_reports_the_delays_of_joined_labels() -> None:
    sensor = Recorder()
    index = FakeIndex({"a": Indexed(7, 0.9, "v1", LABELS_T0.timestamp() - 3600), "b": Indexed(7, 0.2, "v1")})
    state = FakeState()
    runner = LabelRunner(processor=label_processor(state, index), publisher=Publisher(Journal()), state=state,
                         quality=OnlineQuality(), settings=FAST, sensor=sensor)
    asyncio.run(runner.handle([label(0, "a", True), label(1, "b", False)]))
    assert sensor.labels == [[3600.0]]  # "b"'s index entry has no event time
    assert sensor.batches[0].topic == "labels" and dict(sensor.batches[0].partitions) == {0: 2}


def _register(registry: ModelRegistry, rounds: int) -> str:
    rng = np.random.default_rng(rounds)
    x = rng.normal(size=(200, 2))
    booster = xgboost.train({"objective": "binary:logistic", "nthread": 1},
                            xgboost.DMatrix(x, label=(x[:, 0] > 0).astype(int), feature_names=["f0", "f1"]),
                            num_boost_round=rounds)
    when = T0
    return registry.register(booster, ModelMetadata(
        feature_service="svc", features=["f0", "f1"], threshold=0.4,
        training_data=TrainingData(start=when, end=when, rows=200, content_hash="x"),
        reference_distributions={"f0": histogram_reference(x[:, 0])}))


def test_the_model_source_reports_each_model_that_serves_and_each_failed_load(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    registry = ModelRegistry(tmp_path)
    first, second = _register(registry, 2), _register(registry, 3)
    registry.set_alias("production", first, forced=True)
    sensor, now = Recorder(), [0.0]
    source = RegistryModel(registry, "production", poll_s=1.0, clock=lambda: now[0], sensor=sensor)
    [served] = sensor.models
    assert (served.version, served.alias, served.threshold, served.features) == (first, "production", 0.4,
                                                                                 ("f0", "f1"))
    assert set(served.reference) == {"f0"}
    registry.set_alias("production", second, forced=True)
    (tmp_path / "versions" / second / "model.ubj").write_bytes(b"corrupt")
    now[0] = 1.0
    assert source.current().version == first and sensor.failed == 1
