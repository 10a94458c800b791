"""A private Feast workspace per test: the real feature_repo definitions, its own registry, data dir and
project name, on the real Redis. Used by integration tests that must not touch the real repository."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from models.dataset import apply_definitions
from stream_app import backfill
from stream_app.adapters.feast_store import feast_env, prepare_workspace
from stream_app.core import profiles
from stream_app.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore


@dataclass
class Workspace:
    path: Path
    store: FeatureStore
    settings: Settings


def open_workspace(settings: Settings, root: Path, project: str) -> Workspace:
    path = prepare_workspace(settings.feast.repo_path, root / "feature_repo", project)
    settings = settings.model_copy(update={"feast": settings.feast.model_copy(update={"repo_path": path})})
    os.environ.update(feast_env(settings))
    from feast import FeatureStore

    return Workspace(path, FeatureStore(repo_path=str(path)), settings)


def backfill_into(workspace: Workspace, transactions: pd.DataFrame, labels: pd.DataFrame,
                  users: pd.DataFrame) -> backfill.BackfillResult:
    result = backfill.run(transactions, labels)
    days = profiles.snapshot_days(transactions)
    backfill.write_outputs(workspace.path, result, profiles.user_profiles(transactions, users, days),
                           profiles.merchant_profiles(transactions, days))
    apply_definitions(workspace.store)
    return result
