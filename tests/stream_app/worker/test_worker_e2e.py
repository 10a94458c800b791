"""The worker end to end on the real broker, Redis and Feast: generated events including hostile ones
→ every valid event has exactly one prediction, every invalid one a dead letter with its reason,
nothing missing; the served feature rows reach the offline log and the online store."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost

from models.dataset import entity_frame, historical_features
from models.features import LABEL, model_feature_names
from models.registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app import backfill
from stream_app.adapters.feast_store import run_feast_cli
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import decode_transaction
from stream_app.core import profiles
from stream_app.errors import InvalidRecordError
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.wiring import build_worker
from tests.feast_workspace import open_workspace
from tests.kafka_util import consume

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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


def run_worker_until(settings: Settings, records: int, timeout_s: float = 120.0) -> None:
    worker = build_worker(settings)

    async def scenario() -> None:
        await worker.app.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                runner = worker.runner() if _started(worker) else None
                if runner is not None and runner.stats.records >= records:
                    return
            raise AssertionError(f"worker did not consume {records} records in {timeout_s} s")
        finally:
            await worker.app.stop()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def _started(worker) -> bool:  # type: ignore[no-untyped-def]
    try:
        worker.runner()
    except Exception:  # noqa: BLE001 - the runner is built lazily by the agent
        return False
    return True


def test_every_valid_event_is_scored_once_and_every_invalid_one_dead_lettered(settings: Settings, unique: str,
                                                                             tmp_path: Path) -> None:
    settings = prepare(settings, tmp_path, f"worker_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    counts = stream_live(settings, rate=400, duration_s=3.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         invalid_fraction=0.05, label_delay_scale=1e-6, report=None)
    total = counts.valid + counts.invalid
    inputs = consume(settings, settings.topics.transactions.name, total)
    expected_valid: set[str] = set()
    expected_invalid: Counter[str] = Counter()
    for key, value, _, _ in inputs:
        try:
            expected_valid.add(decode_transaction(value, key).event_id)
        except InvalidRecordError as error:
            expected_invalid[error.code] += 1

    run_worker_until(settings, total)

    predictions = consume(settings, settings.topics.predictions.name, len(expected_valid))
    dead = consume(settings, settings.topics.transactions_dlq.name, counts.invalid)
    predicted = [key.decode() for key, _, _, _ in predictions if key]
    assert len(predicted) == len(set(predicted)), "an event was predicted twice"
    assert set(predicted) == expected_valid
    reasons = Counter(json.loads(value)["error"]["code"] for _, value, _, _ in dead if value)
    assert reasons == expected_invalid
    log_dir = settings.feast.repo_path / "data" / "offline" / "user_windows"
    logged = pd.concat([pd.read_parquet(p) for p in log_dir.glob("part-*.parquet") if "backfill" not in p.name])
    assert len(logged) == len(expected_valid)
