"""Train the fraud model (``streamscore train``) from historical features and register it.

Steps, each a function: labelled entity frame → ``get_historical_features`` through the production
FeatureService → validation (stops on bad data with a report) → time-based split → XGBoost (binary,
hist) with early stopping on the validation slice, cut at its best iteration → threshold chosen on
validation → evaluation on the time holdout → report (JSON + PNG) → registry version (UBJ model +
metadata). Promotion is separate (``streamscore promote``).

Validation and holdout scores come from ``Scorer`` on the cut booster, the very object and call the
worker scores with, so the registered model is exactly the evaluated one."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xgboost

from models import evaluate, validate
from models.features import LABEL, feature_bounds, model_feature_names, nullable_features, production_service_name
from stream_app.adapters.model_registry import Lineage, ModelMetadata, ModelRegistry, TrainingData
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.scoring import Scorer
from stream_app.errors import DataValidationError

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary:logistic",
    "tree_method": "hist",
    "max_depth": 6,
    "eta": 0.08,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 2.0,
    "eval_metric": ["aucpr", "auc"],
    "nthread": 2,
    "seed": 0,
}


@dataclass(frozen=True)
class TrainConfig:
    """How ``train_frame`` splits, boosts and validates."""

    holdout_days: float = 5.0  # the most recent days are the test set, never seen in training
    valid_fraction: float = 0.15  # the latest part of the rest: early stopping and the threshold
    num_boost_round: int = 600
    early_stopping_rounds: int = 40
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    policy: validate.ValidationPolicy = field(default_factory=validate.ValidationPolicy)


@dataclass(frozen=True)
class Fitted:
    """A booster cut at its best iteration, its threshold (chosen on validation) and its holdout scores."""

    booster: xgboost.Booster
    threshold: float
    test_scores: npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainResult:
    """A registered training run: its version, holdout metrics, report directory and validation report."""

    version: str
    metrics: dict[str, Any]
    report_dir: Path
    validation: dict[str, Any]


def split_by_time(frame: pd.DataFrame, holdout_days: float, valid_fraction: float,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) by event time: test = the last ``holdout_days``; valid = the latest
    ``valid_fraction`` of what remains. No row of a later slice precedes a row of an earlier one."""
    frame = frame.sort_values(TIMESTAMP, kind="stable", ignore_index=True)
    cut = frame[TIMESTAMP].max() - pd.Timedelta(days=holdout_days)
    rest, test = frame[frame[TIMESTAMP] < cut], frame[frame[TIMESTAMP] >= cut]
    split = int(len(rest) * (1.0 - valid_fraction))
    train, valid = rest.iloc[:split], rest.iloc[split:]
    if min(len(train), len(valid), len(test)) == 0:
        raise DataValidationError("time split left an empty slice; need more history than the holdout",
                                  {"rows": len(frame), "holdout_days": holdout_days})
    return train, valid, test


def training_matrix(frame: pd.DataFrame, features: list[str]) -> xgboost.DMatrix:
    """The frame's features (float64, NaN = missing) and label, for ``xgboost.train``."""
    return xgboost.DMatrix(frame[features].astype(np.float64).to_numpy(), label=frame[LABEL].astype(np.int8),
                           feature_names=features, missing=np.nan)


def fit(train: pd.DataFrame, valid: pd.DataFrame, features: list[str], config: TrainConfig) -> xgboost.Booster:
    """Boost with early stopping on ``valid``; the trees after the best iteration are cut off, so every
    tree of the returned booster counts, whoever scores it."""
    positives = max(int(train[LABEL].sum()), 1)
    params = {**config.params, "scale_pos_weight": float(np.sqrt((len(train) - positives) / positives))}
    booster = xgboost.train(params, training_matrix(train, features), num_boost_round=config.num_boost_round,
                            evals=[(training_matrix(valid, features), "valid")],
                            early_stopping_rounds=config.early_stopping_rounds, verbose_eval=False)
    return booster[: booster.best_iteration + 1]


def fit_and_score(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, features: list[str],
                  config: TrainConfig) -> Fitted:
    """Fit, choose the threshold on ``valid`` and score ``test``, all through ``Scorer``."""
    booster = fit(train, valid, features, config)
    # The threshold is what this step chooses: the Scorer's own is unused (it only scores here).
    scorer = Scorer(booster, tuple(features), threshold=0.5, version="candidate")
    threshold = evaluate.choose_threshold(valid[LABEL].to_numpy(), scorer.score_frame(valid))
    return Fitted(booster, threshold, scorer.score_frame(test))


def git_commit() -> str | None:
    """The HEAD commit of the checkout this code runs from (whatever the working directory: cron and
    orchestrators start jobs elsewhere), None outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False, timeout=5,
                              cwd=Path(__file__).resolve().parent)
    except OSError:
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def train_frame(frame: pd.DataFrame, registry: ModelRegistry, reports_root: Path,
                config: TrainConfig | None = None, *, lineage: Lineage | None = None) -> TrainResult:
    """Validate, train, evaluate, register. ``frame`` is the historical-features frame with the label;
    ``lineage`` (from ``models.retrain``) is recorded in the version's metadata."""
    config = config or TrainConfig()
    features = model_feature_names()
    previous = registry.get_alias("production") or registry.latest_version()
    reference = registry.metadata(previous).reference_distributions if previous else None
    report = validate.validate_frame(frame, features, label=LABEL, timestamp=TIMESTAMP,
                                     nullable=nullable_features(), bounds=feature_bounds(), reference=reference,
                                     policy=config.policy)
    train, valid, test = split_by_time(frame, config.holdout_days, config.valid_fraction)
    fitted = fit_and_score(train, valid, test, features, config)
    booster, threshold, test_scores = fitted.booster, fitted.threshold, fitted.test_scores
    gains: dict[str, Any] = booster.get_score(importance_type="gain")
    importance = {name: float(value) for name, value in gains.items()}
    metrics = evaluate.evaluate(test[LABEL].to_numpy(), test_scores, threshold, importance)
    metrics["split"] = {"train": len(train), "valid": len(valid), "test": len(test),
                        "test_start": str(test[TIMESTAMP].min()),
                        "best_iteration": int(booster.num_boosted_rounds()) - 1}
    model_frame = frame[[TIMESTAMP, *features, LABEL]]
    metadata = ModelMetadata(
        feature_service=production_service_name(), features=features, threshold=threshold,
        training_data=TrainingData(start=frame[TIMESTAMP].min().to_pydatetime(),
                                   end=frame[TIMESTAMP].max().to_pydatetime(), rows=len(frame),
                                   content_hash=validate.content_hash(model_frame)),
        params=config.params, metrics=metrics, git_commit=git_commit(),
        reference_distributions=validate.reference_distributions(frame, features), lineage=lineage,
    )
    version = registry.register(booster, metadata)
    report_dir = reports_root / version
    evaluate.write_report(metrics, test[LABEL].to_numpy(), test_scores, importance, report_dir)
    (report_dir / "validation.json").write_text(json.dumps(report, indent=2, default=str))
    return TrainResult(version, metrics, report_dir, report)
