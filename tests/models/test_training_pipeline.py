"""The offline half end to end on a small seeded history: backfill → Feast historical features →
validate → train → register; then the promotion gate on the real golden set refuses a worse model and
promotes a better one."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.dataset import entity_frame, historical_features
from models.evaluate import REPORT_FILES
from models.features import LABEL, model_feature_names
from models.golden import golden_set
from models.promote import promote
from models.train import DEFAULT_PARAMS, TrainConfig, train_frame
from models.validate import ValidationPolicy
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.errors import RegistryError
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history
from stream_app.settings import Settings
from tests.fixtures.workspace import backfill_into, open_workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLOOR_ROC_AUC = 0.90


def test_train_evaluate_register_and_gate_promotions(settings: Settings, unique: str, tmp_path: Path) -> None:
    history = generate_history(HistoryConfig(days=12, users=3000, merchants=300, seed=11,
                                             start=pd.Timestamp("2026-09-01", tz="UTC").to_pydatetime()))
    workspace = open_workspace(settings, tmp_path, f"train_{unique}")
    backfill_into(workspace, history.transactions, history.labels, history.users)
    frame = historical_features(workspace.store, entity_frame(history.transactions, history.labels))
    registry = ModelRegistry(settings.models_dir)
    reports = tmp_path / "reports"
    base = TrainConfig(holdout_days=3, policy=ValidationPolicy(min_rows=1000))

    # one stump: a legitimate but clearly weaker model
    weak = train_frame(frame, registry, reports, replace(base, num_boost_round=1, early_stopping_rounds=1,
                                                         params={**DEFAULT_PARAMS, "max_depth": 1}))
    strong = train_frame(frame, registry, reports, base)
    assert strong.metrics["roc_auc"] >= FLOOR_ROC_AUC, strong.metrics["roc_auc"]
    assert all((strong.report_dir / name).stat().st_size > 0 for name in REPORT_FILES)
    assert registry.metadata(strong.version).features == model_feature_names()

    shuffled = frame.copy()
    shuffled[LABEL] = np.random.default_rng(1).permutation(shuffled[LABEL].to_numpy())
    worse = train_frame(shuffled, registry, reports, base)

    golden = golden_set(settings)
    features = model_feature_names()
    first = promote(registry, weak.version, "production", features, golden, min_roc_auc=0.6)  # floor: see test_promote
    assert first.passed and first.candidate is not None
    with pytest.raises(RegistryError, match="ROC-AUC"):
        promote(registry, worse.version, "production", features, golden)
    assert registry.get_alias("production") == weak.version
    better = promote(registry, strong.version, "production", features, golden)
    assert better.passed and better.candidate is not None
    assert better.candidate["roc_auc"] > first.candidate["roc_auc"] + 0.01
    assert registry.get_alias("production") == strong.version
    with pytest.raises(RegistryError):
        promote(registry, strong.version, "production", list(reversed(features)), golden)
