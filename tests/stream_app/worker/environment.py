"""A ready worker environment for integration tests: a private Feast workspace with history backfilled,
profiles materialised and a production model registered. ``settings_env`` (re-exported from
stream_app.settings) gives the worker's settings as environment variables for a subprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xgboost

from models.dataset import entity_frame, historical_features
from models.features import LABEL, model_feature_names
from stream_app import backfill
from stream_app.adapters.feast_store import run_feast_cli
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.core import profiles
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history
from stream_app.settings import Settings, settings_env
from tests.feast_workspace import open_workspace

USERS, MERCHANTS, SEED = 400, 60, 31


def prepare(settings: Settings, tmp_path: Path, project: str) -> Settings:
    """A Feast workspace with history backfilled, profiles materialised, and a production model."""
    start = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=3)
    history = generate_history(HistoryConfig(days=3, users=USERS, merchants=MERCHANTS, seed=SEED,
                                             start=start.to_pydatetime()))
    workspace = open_workspace(settings, tmp_path, project)
    result = backfill.run(history.transactions, history.labels)
    days = profiles.snapshot_days(history.transactions)
    backfill.write_outputs(workspace.path, result, profiles.user_profiles(history.transactions, history.users, days),
                           profiles.merchant_profiles(history.transactions, days))
    run_feast_cli(workspace.settings, ["apply"], repo=workspace.path)
    now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    run_feast_cli(workspace.settings, ["materialize-incremental", now, "--views", "user_profile",
                                       "--views", "merchant_profile"], repo=workspace.path)
    frame = historical_features(workspace.store, entity_frame(history.transactions, history.labels))
    features = model_feature_names()
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 4, "nthread": 2},
                            xgboost.DMatrix(frame[features].astype(np.float64), label=frame[LABEL].astype(int),
                                            feature_names=features, missing=np.nan), num_boost_round=20)
    registry = ModelRegistry(settings.models_dir)
    version = registry.register(booster, ModelMetadata(
        feature_service="fraud_model_v1", features=features, threshold=0.5,
        training_data=TrainingData(start=frame["event_timestamp"].min().to_pydatetime(),
                                   end=frame["event_timestamp"].max().to_pydatetime(), rows=len(frame),
                                   content_hash="test")))
    registry.set_alias("production", version, forced=True)
    return workspace.settings


__all__ = ["MERCHANTS", "SEED", "USERS", "prepare", "settings_env"]
