from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xgboost

from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.worker.model_source import RegistryModel

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
