from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy.typing as npt
import pytest
import xgboost

from stream_app.adapters.model_registry import LoadedModel, ModelMetadata, ModelRegistry, TrainingData
from stream_app.core.observations import ServedModel
from stream_app.errors import RegistryError
from stream_app.worker.model_source import RegistryModel
from stream_app.worker.processor import BatchProcessor
from stream_app.worker.sensor import NullSensor
from stream_app.worker.wiring import served_features
from tests.fixtures.fakes import FEATURES as FAKE_FEATURES
from tests.fixtures.fakes import FakeModel, FakeOnline, FakeState, record, txn

FEATURES = ["f0", "f1"]


def _register(registry: ModelRegistry, rounds: int) -> str:
    rng = np.random.default_rng(rounds)
    x = rng.normal(size=(200, 2))
    booster = xgboost.train({"objective": "binary:logistic", "nthread": 1},
                            xgboost.DMatrix(x, label=(x[:, 0] > 0).astype(int), feature_names=FEATURES),
                            num_boost_round=rounds)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return registry.register(booster, ModelMetadata(
        feature_service="svc", features=FEATURES, threshold=0.4,
        training_data=TrainingData(start=when, end=when, rows=200, content_hash="x")))


def test_a_promotion_is_picked_up_on_the_next_poll_without_restart(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    first, second = _register(registry, 2), _register(registry, 5)
    registry.set_alias("production", first, forced=True)
    now = [0.0]
    source = RegistryModel(registry, "production", poll_s=5.0, clock=lambda: now[0])
    assert source.current().version == first and source.current().threshold == 0.4
    registry.set_alias("production", second, forced=True)
    now[0] = 4.0
    assert source.current().version == first  # not polled yet
    now[0] = 5.0
    assert source.current().version == second
    assert source.current().features == tuple(FEATURES)


class Recorder(NullSensor):
    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.failed = 0

    def on_model_loaded(self, model: ServedModel) -> None:
        self.loaded.append(model.version)

    def on_model_failed(self) -> None:
        self.failed += 1


class CountingRegistry(ModelRegistry):
    """The registry, counting loads and, while ``gate`` is clear, holding each load until it is set."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.loads = 0
        self.gate = threading.Event()
        self.gate.set()

    def load(self, version: str) -> LoadedModel:
        self.loads += 1
        assert self.gate.wait(10)
        return super().load(version)


def _trained(rounds: int = 2, *, features: list[str] = FEATURES, objective: str = "binary:logistic",
             max_depth: int = 3, scale: float = 1.0) -> xgboost.Booster:
    rng = np.random.default_rng(rounds)
    x = rng.normal(size=(200, len(features)))
    label = (x[:, 0] > 0).astype(float) * scale
    return xgboost.train({"objective": objective, "nthread": 1, "max_depth": max_depth},
                         xgboost.DMatrix(x, label=label, feature_names=features), num_boost_round=rounds)


def _register_booster(registry: ModelRegistry, booster: xgboost.Booster, features: list[str] = FEATURES) -> str:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return registry.register(booster, ModelMetadata(
        feature_service="svc", features=features, threshold=0.4,
        training_data=TrainingData(start=when, end=when, rows=200, content_hash="x")))


def _infinite_leaves(booster: xgboost.Booster, *, right_only: bool) -> xgboost.Booster:
    """The booster with its first two trees' leaves set to +1e39 and -1e39, which XGBoost reads as +inf and
    -inf (float32), so a row reaching both sums to NaN. ``right_only``: only the right leaf of depth-1 trees,
    missing values going left, so a row with every feature missing still scores a finite value."""
    model = json.loads(booster.save_raw("json"))
    for tree, value in zip(model["learner"]["gradient_booster"]["model"]["trees"], (1e39, -1e39), strict=False):
        leaves = [i for i, left in enumerate(tree["left_children"]) if left == -1]
        for i in leaves[-1:] if right_only else leaves:
            tree["split_conditions"][i] = tree["base_weights"][i] = value
        tree["default_left"] = [1] * len(tree["default_left"])
    return xgboost.Booster(model_file=bytearray(json.dumps(model).encode()))


def _started(tmp_path: Path, **kwargs: object) -> tuple[CountingRegistry, RegistryModel, Recorder, list[float], str]:
    registry = CountingRegistry(tmp_path)
    first = _register_booster(registry, _trained())
    registry.set_alias("production", first, forced=True)
    sensor, now = Recorder(), [0.0]
    source = RegistryModel(registry, "production", poll_s=1.0, clock=lambda: now[0], sensor=sensor,
                           **kwargs)  # type: ignore[arg-type]
    return registry, source, sensor, now, first


def _promote_and_poll(registry: ModelRegistry, source: RegistryModel, now: list[float], version: str) -> str:
    ModelRegistry(registry.root).set_alias("production", version, forced=True)  # another process promotes
    now[0] += 1.0
    return source.current().version


def test_a_checked_version_is_swapped_in_by_a_later_batch_while_the_load_never_holds_a_batch(
        tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path, background=True)
    second = _register_booster(registry, _trained(5))
    registry.gate.clear()  # the new version's load is slow
    assert _promote_and_poll(registry, source, now, second) == first  # not waited for
    for _ in range(3):
        now[0] += 1.0
        assert source.current().version == first
    registry.gate.set()
    deadline = time.monotonic() + 10
    while source.current().version == first:
        assert time.monotonic() < deadline, "the checked version was never swapped in"
        time.sleep(0.01)
    assert source.current().version == second and sensor.loaded == [first, second] and sensor.failed == 0


def test_a_model_file_that_differs_from_its_recorded_checksum_is_refused(tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path)
    second = _register_booster(registry, _trained(5))
    registry.set_alias("production", second, forced=True)
    _trained(7).save_model(str(tmp_path / "versions" / second / "model.ubj"))  # a valid model, not this one
    now[0] += 1.0
    assert source.current().version == first and sensor.failed == 1 and sensor.loaded == [first]


def test_a_corrupt_model_file_is_refused_even_when_its_checksum_was_recorded(tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path)
    second = _register_booster(registry, _trained(5))
    registry.set_alias("production", second, forced=True)
    version_dir = tmp_path / "versions" / second
    (version_dir / "model.ubj").write_bytes(b"{not a model")
    metadata = json.loads((version_dir / "metadata.json").read_text())
    metadata["model_sha256"] = hashlib.sha256(b"{not a model").hexdigest()
    (version_dir / "metadata.json").write_text(json.dumps(metadata))
    now[0] += 1.0
    assert source.current().version == first and sensor.failed == 1


def test_a_model_of_other_features_or_another_order_is_refused(tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path)
    other = _register_booster(registry, _trained(features=["f0", "f9"]), ["f0", "f9"])
    swapped = _register_booster(registry, _trained(features=["f1", "f0"]), ["f1", "f0"])
    assert _promote_and_poll(registry, source, now, other) == first and sensor.failed == 1
    assert _promote_and_poll(registry, source, now, swapped) == first and sensor.failed == 2
    assert sensor.loaded == [first]


def test_a_model_scoring_nan_or_outside_0_1_on_the_canary_is_refused(tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path)
    nan = _register_booster(registry, _infinite_leaves(_trained(), right_only=False))
    assert np.isnan(nan_scores := registry.load(nan).scorer().score(np.zeros((2, 2)))).all(), nan_scores
    regression = _register_booster(registry, _trained(5, objective="reg:squarederror", scale=5.0))
    assert _promote_and_poll(registry, source, now, nan) == first and sensor.failed == 1
    assert _promote_and_poll(registry, source, now, regression) == first and sensor.failed == 2


def test_the_canary_holds_the_recent_vectors_the_worker_scored(tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path, canary_rows=4)
    # NaN only for rows going right at the root (f0 large); a row with every feature missing goes left
    poisoned = _register_booster(registry, _infinite_leaves(_trained(max_depth=1), right_only=True))
    assert np.isfinite(registry.load(poisoned).scorer().score(np.full((1, 2), np.nan))).all()
    source.scored(FEATURES, np.full((3, 2), 10.0))  # the large vectors first, then newer small ones
    source.scored(["f0", "f9"], np.full((1, 2), -10.0))  # another model's vectors: not in the canary
    source.scored(FEATURES, np.full((2, 2), -10.0))
    assert _promote_and_poll(registry, source, now, poisoned) == first and sensor.failed == 1
    source.scored(FEATURES, np.full((4, 2), -10.0))  # the large vectors are no longer among the last 4
    assert _promote_and_poll(registry, source, now, poisoned) == poisoned and sensor.failed == 1


def test_a_refused_version_is_not_loaded_again_until_the_alias_moves(tmp_path: Path) -> None:
    registry, source, sensor, now, first = _started(tmp_path)
    other = _register_booster(registry, _trained(features=["f0", "f9"]), ["f0", "f9"])
    good = _register_booster(registry, _trained(5))
    _promote_and_poll(registry, source, now, other)
    loads = registry.loads
    for _ in range(5):
        now[0] += 1.0
        assert source.current().version == first
    assert registry.loads == loads and sensor.failed == 1
    assert _promote_and_poll(registry, source, now, good) == good and sensor.loaded == [first, good]


def test_the_worker_does_not_start_on_a_model_whose_features_differ_from_the_served_ones(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="features differ"):
        _started(tmp_path, served=["f0", "f1", "f2"])


def test_the_processor_tells_the_model_source_each_scored_matrix() -> None:
    class Watched(FakeModel):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[tuple[str, ...], int]] = []

        def scored(self, features: Sequence[str], matrix: npt.NDArray[np.float64]) -> None:
            self.seen.append((tuple(features), len(matrix)))

    model = Watched()
    processor = BatchProcessor(allowed_lateness_s=300, state=FakeState(), online=FakeOnline(), model=model)
    processor.process([record(0, txn(0)), record(1, txn(1, minutes=1)), record(2, b"{bad", key=b"1")])
    assert model.seen == [(FAKE_FEATURES, 2)]


def test_the_worker_serves_the_features_of_the_feature_service_its_starting_model_was_trained_on(
        tmp_path: Path) -> None:
    class Store:  # the Feast store's feature-service lookup, over a service of two views
        def get_feature_service(self, name: str) -> SimpleNamespace:
            assert name == "svc"
            return SimpleNamespace(feature_view_projections=[
                SimpleNamespace(features=[SimpleNamespace(name="f0")]),
                SimpleNamespace(features=[SimpleNamespace(name="f1"), SimpleNamespace(name="f2")])])

    registry, _, _, _, _ = _started(tmp_path)
    assert served_features(Store(), registry, "production") == ["f0", "f1", "f2"]  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="not set"):
        served_features(Store(), registry, "shadow")  # type: ignore[arg-type]
