"""The golden set: a fixed, seeded, labelled evaluation frame every promotion is judged on.

It is built by the real pipeline (generator → feature engine backfill → Feast historical retrieval through
the production FeatureService) in a private Feast workspace, then cached by content key, so every model
is judged on the very same rows."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.dataset import entity_frame, historical_features
from models.features import LABEL, model_feature_names, production_service_name
from stream_app.core.metrics import pr_auc, roc_auc
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.scoring import Scorer
from stream_app.errors import DataValidationError
from stream_app.generator.config import GENERATOR_VERSION
from stream_app.generator.history import GOLDEN_SEED, golden_config
from stream_app.settings import Settings, get_settings


@dataclass(frozen=True)
class GoldenSet:
    """A fixed labelled frame every promotion is judged on: ``X`` columns are feature names (any
    order; each model picks its own), ``y`` the 0/1 labels aligned with ``X``'s rows."""

    X: pd.DataFrame
    y: npt.NDArray[Any]

    def check(self) -> None:
        """Both classes and matching lengths, or DataValidationError: an AUC on anything less means
        nothing, and a gate judging on it would be noise."""
        y = np.asarray(self.y)
        if y.ndim != 1 or y.size != len(self.X):
            raise DataValidationError(f"golden set: y has shape {y.shape}, X has {len(self.X)} rows")
        positives = int(np.count_nonzero(y == 1))
        if positives in (0, y.size) or not bool(np.all((y == 0) | (y == 1))):
            raise DataValidationError(
                f"golden set needs 0/1 labels of both classes, got {positives} positives out of {y.size}"
            )


def golden_metrics(scorer: Scorer, golden: GoldenSet) -> dict[str, float]:
    """ROC-AUC and PR-AUC of ``scorer`` on the golden set (DataValidationError if it lacks features)."""
    y = np.asarray(golden.y)
    scores = scorer.score_frame(golden.X)
    return {"roc_auc": roc_auc(y, scores), "pr_auc": pr_auc(y, scores)}


def build_golden_frame(settings: Settings, seed: int = GOLDEN_SEED) -> pd.DataFrame:
    """The golden history through backfill and Feast historical retrieval, in a throw-away workspace."""
    from models.pipeline import prepare_world  # noqa: PLC0415  (imports feast; the promotion gate does not need it)

    with tempfile.TemporaryDirectory(prefix="streamscore-golden-") as tmp:
        world = prepare_world(settings, Path(tmp), "streamscore_golden", golden_config(seed), materialize=False)
        history = world.history
        frame = historical_features(world.store, entity_frame(history.transactions, history.labels))
    return frame[["event_id", TIMESTAMP, *model_feature_names(), LABEL]]


def golden_set(settings: Settings | None = None, seed: int = GOLDEN_SEED) -> GoldenSet:
    """The golden set, from the cache under ``data_dir/golden`` (keyed by FeatureService, generator
    version and seed) or built and cached."""
    settings = settings or get_settings()
    name = f"{production_service_name()}-gen{GENERATOR_VERSION}-seed{seed}.parquet"
    cache = settings.data_dir / "golden" / name
    if cache.is_file():
        frame = pd.read_parquet(cache)
    else:
        frame = build_golden_frame(settings, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(cache, index=False)
    return GoldenSet(X=frame[model_feature_names()], y=frame[LABEL].to_numpy(dtype=np.int8))
