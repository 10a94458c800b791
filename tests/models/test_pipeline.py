"""The world setup on the real services: a workspace with the history backfilled, profiles in the online
store and a production model that scores the Feast training frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.dataset import entity_frame, historical_features
from models.features import model_feature_names
from models.pipeline import QuickModel, prepare_world
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.generator.config import HistoryConfig
from stream_app.settings import Settings

pytestmark = pytest.mark.integration


def test_prepare_world_leaves_a_servable_workspace(settings: Settings, unique: str, tmp_path: Path) -> None:
    start = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=2)
    config = HistoryConfig(days=2, users=150, merchants=30, seed=5, start=start.to_pydatetime())
    world = prepare_world(settings, tmp_path / "feature_repo", f"world_{unique}", config,
                          model=QuickModel(rounds=5, params={"objective": "binary:logistic", "nthread": 1}))

    assert world.settings.feast.repo_path == tmp_path / "feature_repo"
    assert world.store.project == f"world_{unique}"
    registry = ModelRegistry(settings.models_dir)
    assert world.version is not None and registry.get_alias("production") == world.version
    scorer = registry.load_alias("production").scorer()
    assert scorer.features == tuple(model_feature_names())

    user = int(world.history.transactions["user_id"].iloc[0])
    online = world.store.get_online_features(features=["user_profile:user_txn_count_30d"],
                                             entity_rows=[{"user_id": user}]).to_dict()
    assert online["user_txn_count_30d"][0] is not None  # materialised up to now

    frame = historical_features(world.store, entity_frame(world.history.transactions, world.history.labels))
    scores = scorer.score_frame(frame)
    assert len(scores) == len(frame) > 0 and ((scores > 0) & (scores < 1)).all()
