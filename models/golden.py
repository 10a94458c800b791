"""The golden set: a fixed, seeded, labelled evaluation frame every promotion is judged on.

It is built by the real pipeline (generator → feature engine backfill → Feast historical retrieval through
the production FeatureService) in a private Feast workspace, then cached by content key, so every model
is judged on the very same rows."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from models.dataset import apply_definitions, entity_frame, historical_features, prepare_workspace
from models.features import LABEL, TIMESTAMP, model_feature_names, production_service_name
from models.promote import GoldenSet
from stream_app import backfill
from stream_app.core import profiles
from stream_app.settings import Settings, get_settings

GOLDEN_SEED = 12345


def build_golden_frame(settings: Settings, seed: int = GOLDEN_SEED) -> pd.DataFrame:
    from feast import FeatureStore

    from stream_app.adapters.feast_store import feast_env
    from stream_app.generator.history import golden_history

    history = golden_history(seed)
    with tempfile.TemporaryDirectory(prefix="streamscore-golden-") as tmp:
        workspace = prepare_workspace(settings.feast.repo_path, Path(tmp), "streamscore_golden")
        result = backfill.run(history.transactions, history.labels)
        days = profiles.snapshot_days(history.transactions)
        backfill.write_outputs(workspace, result, profiles.user_profiles(history.transactions, history.users, days),
                               profiles.merchant_profiles(history.transactions, days))
        os.environ.update(feast_env(settings))
        store = FeatureStore(repo_path=str(workspace))
        apply_definitions(store)
        frame = historical_features(store, entity_frame(history.transactions, history.labels))
    return frame[["event_id", TIMESTAMP, *model_feature_names(), LABEL]]


def golden_set(settings: Settings | None = None, seed: int = GOLDEN_SEED) -> GoldenSet:
    settings = settings or get_settings()
    from stream_app.generator.config import GENERATOR_VERSION

    name = f"{production_service_name()}-gen{GENERATOR_VERSION}-seed{seed}.parquet"
    cache = settings.data_dir / "golden" / name
    if cache.is_file():
        frame = pd.read_parquet(cache)
    else:
        frame = build_golden_frame(settings, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(cache, index=False)
    return GoldenSet(X=frame[model_feature_names()], y=frame[LABEL].to_numpy(dtype=np.int8))
