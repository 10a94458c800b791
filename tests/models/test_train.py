"""Training scores through the one scoring path: the holdout scores training reports are exactly the
scores the registered model gives once loaded, as the worker loads it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from models.features import LABEL
from models.train import DEFAULT_PARAMS, TrainConfig, fit_and_score, split_by_time
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.core.profiles import TIMESTAMP

FEATURES = ["f_count", "f_rate", "f_amount", "f_since"]


def labelled_frame(rows: int = 3000, seed: int = 3) -> pd.DataFrame:
    """Noisy labels (so early stopping cuts the booster well before the round limit), missing values."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        TIMESTAMP: pd.date_range("2026-09-01", periods=rows, freq="5min", tz="UTC"),
        "f_count": rng.poisson(3, rows).astype(float),
        "f_rate": rng.random(rows),
        "f_amount": rng.gamma(2, 50, rows),
        "f_since": np.where(rng.random(rows) < 0.2, np.nan, rng.exponential(3600, rows)),
    })
    logit = 3 * frame["f_rate"] + 0.4 * frame["f_count"] - 4 + rng.normal(0, 1.5, rows)
    frame[LABEL] = logit > 0
    return frame


def test_holdout_scores_equal_the_loaded_models_scorer(tmp_path: Path) -> None:
    frame = labelled_frame()
    config = TrainConfig(num_boost_round=400, early_stopping_rounds=10,
                         params={**DEFAULT_PARAMS, "nthread": 1, "eta": 0.3})
    train, valid, test = split_by_time(frame, holdout_days=2.0, valid_fraction=0.2)
    fitted = fit_and_score(train, valid, test, FEATURES, config)
    assert fitted.booster.num_boosted_rounds() < config.num_boost_round  # cut at the best iteration

    registry = ModelRegistry(tmp_path / "registry")
    when = datetime(2026, 9, 1, tzinfo=UTC)
    version = registry.register(fitted.booster, ModelMetadata(
        feature_service="svc", features=FEATURES, threshold=fitted.threshold,
        training_data=TrainingData(start=when, end=when, rows=len(frame), content_hash="x")))
    scorer = registry.load(version).scorer()
    shuffled = test[[LABEL, *reversed(FEATURES), TIMESTAMP]]  # column order does not matter
    np.testing.assert_array_equal(scorer.score_frame(shuffled), fitted.test_scores)
    assert scorer.threshold == fitted.threshold and scorer.features == tuple(FEATURES)

