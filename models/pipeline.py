"""The offline pipeline as one library call, in a private Feast workspace: history → backfill → feast
apply → materialise profiles → train → register and promote to ``production``. What ``make pipeline``
leaves behind, for benchmarks, integration tests and the golden set (which stops after apply).

The model trained here has a fixed number of rounds and no early stopping, threshold 0.5: a model of a
known size for environments, not a candidate for real promotion (``streamscore train`` makes those)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xgboost

from models import validate
from models.dataset import apply_definitions, entity_frame, historical_features
from models.features import LABEL, model_feature_names, production_service_name
from models.train import DEFAULT_PARAMS, training_matrix
from stream_app import backfill
from stream_app.adapters.feast_store import feast_env, in_repo, prepare_workspace
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.core import profiles
from stream_app.core.profiles import TIMESTAMP
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import History, generate_history
from stream_app.settings import FEATURE_REPO, Settings

if TYPE_CHECKING:
    from feast import FeatureStore

PROFILE_VIEWS = ["user_profile", "merchant_profile"]


@dataclass(frozen=True)
class QuickModel:
    """A fixed-size model on (a sample of) every labelled transaction of the history."""

    rounds: int
    params: dict[str, Any] = field(
        default_factory=lambda: {k: v for k, v in DEFAULT_PARAMS.items() if k != "eval_metric"})
    train_rows: int | None = None  # sample this many labelled rows (seeded by the history's seed)
    # Train on rows from this instant on: in a generated world the first 30 days have incomplete 30-day
    # profiles and the first week incomplete label windows, values a long-running stream never serves.
    since: datetime | None = None


@dataclass(frozen=True)
class World:
    """What ``prepare_world`` built: settings pointing at the workspace, its FeatureStore, the history,
    the production version (if a model was trained) and the seconds each step took."""

    settings: Settings  # the caller's settings with the workspace as Feast repository
    store: FeatureStore
    history: History
    version: str | None  # the production model, when one was trained
    seconds: dict[str, float]  # per step


def prepare_world(settings: Settings, repo_dir: Path, project: str, config: HistoryConfig, *,
                  materialize: bool = True, model: QuickModel | None = None, seed_state: bool = False) -> World:
    """Generate the history, backfill it into a copy of the Feast repository at ``repo_dir`` (Feast
    project ``project``, on ``settings``' Redis), apply the definitions, materialise the profiles up to
    now when ``materialize`` (the latest of each, however long ago the history ended), and with ``model``
    train one, register it in ``settings.models_dir`` and point ``production`` at it. ``seed_state``
    also seeds the worker's window state with the history's (``backfill.seed_state``): a worker streaming
    after the history then continues it."""
    from feast import FeatureStore  # noqa: PLC0415  (imports feast, ~5 s: only callers that build a world pay)

    seconds: dict[str, float] = {}
    mark = time.perf_counter()
    history = generate_history(config)
    seconds["history"] = time.perf_counter() - mark

    mark = time.perf_counter()
    path = prepare_workspace(FEATURE_REPO, repo_dir, project)
    settings = settings.model_copy(update={"feast": settings.feast.model_copy(update={"repo_path": path})})
    result = backfill.run(history.transactions, history.labels)
    days = profiles.snapshot_days(history.transactions)
    backfill.write_outputs(path, result, profiles.user_profiles(history.transactions, history.users, days),
                           profiles.merchant_profiles(history.transactions, days))
    if seed_state:
        backfill.seed_state(result, settings, project)
    seconds["backfill"] = time.perf_counter() - mark

    mark = time.perf_counter()
    os.environ.update(feast_env(settings))
    store = FeatureStore(repo_path=str(path))
    apply_definitions(store)
    if materialize:
        with in_repo(store):
            store.materialize(start_date=config.start, end_date=datetime.now(UTC), feature_views=PROFILE_VIEWS)
    seconds["apply_materialize"] = time.perf_counter() - mark

    version = None
    if model is not None:
        mark = time.perf_counter()
        version = train_and_promote(store, history, ModelRegistry(settings.models_dir), model)
        seconds["train_register"] = time.perf_counter() - mark
    return World(settings, store, history, version, {k: round(v, 1) for k, v in seconds.items()})


def train_and_promote(store: FeatureStore, history: History, registry: ModelRegistry, model: QuickModel) -> str:
    """Train ``model`` on the history's Feast training frame, register it (with the frame's reference
    distributions, as ``models.train`` does, for drift monitoring), point ``production`` at it
    (forced: there is no earlier model or golden set to judge it against); returns its version."""
    entities = entity_frame(history.transactions, history.labels)
    if model.since is not None:
        entities = entities[entities[TIMESTAMP] >= model.since].reset_index(drop=True)
    if model.train_rows is not None and len(entities) > model.train_rows:
        entities = entities.sample(model.train_rows, random_state=history.config.seed)
        entities = entities.sort_values(TIMESTAMP, ignore_index=True)
    frame = historical_features(store, entities)
    features = model_feature_names()
    booster = xgboost.train(model.params, training_matrix(frame, features), num_boost_round=model.rounds)
    version = registry.register(booster, ModelMetadata(
        feature_service=production_service_name(), features=features, threshold=0.5, params=model.params,
        training_data=TrainingData(start=frame[TIMESTAMP].min().to_pydatetime(),
                                   end=frame[TIMESTAMP].max().to_pydatetime(), rows=len(frame),
                                   content_hash=validate.content_hash(frame[[TIMESTAMP, *features, LABEL]])),
        reference_distributions=validate.reference_distributions(frame, features)))
    registry.set_alias("production", version, forced=True, details={"reason": "world setup (models.pipeline)"})
    return version
