"""Retrain triggers: the decision from drift, online ROC-AUC and age; its numbers read from a worker's
/metrics text and from logs written by the sink's own writers; and ``retrain --if-needed``, which trains
only when a trigger fires (training is faked at its entry, ``models.retrain.retrain``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost

from models import retrain as retrain_module
from models.triggers import (
    AGE,
    DRIFT,
    NO_PRODUCTION,
    ROC_AUC,
    Observed,
    Thresholds,
    fired,
    recorded_drift,
    recorded_quality,
    scraped,
)
from stream_app.adapters.label_log import label_frame
from stream_app.adapters.metrics_reader import parse
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.adapters.offline_log import window_frame, write_part
from stream_app.core.metrics import histogram_reference, psi, roc_auc
from stream_app.core.offline_layout import LABEL_LOG, USER_WINDOW_LOG, hour_dir
from stream_app.core.records import LabelRow
from stream_app.core.window_spec import USER_WINDOWS
from stream_app.errors import DataValidationError
from stream_app.settings import get_settings

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
QUIET = Observed("test", {"f": 0.05}, 0.9, 1000, timedelta(days=3))


def names(triggers: list[Any]) -> list[str]:
    return [t.name for t in triggers]


# --- the decision ----------------------------------------------------------------------------------------

def test_nothing_fires_when_every_number_is_within_its_threshold() -> None:
    assert fired(QUIET, Thresholds()) == []


def test_drift_alone_fires_and_names_the_drifted_features() -> None:
    observed = Observed("test", {"a": 0.05, "b": 0.40, "c": 0.30, "d": math.nan}, 0.9, 1000, timedelta(days=3))
    (trigger,) = fired(observed, Thresholds(max_psi=0.25))
    assert trigger.name == DRIFT
    assert "b 0.400, c 0.300" in trigger.reason and "a " not in trigger.reason and "d " not in trigger.reason


def test_a_psi_at_the_threshold_does_not_fire() -> None:
    assert fired(Observed("test", {"a": 0.25}, None, 0, timedelta(days=1)), Thresholds(max_psi=0.25)) == []


def test_a_low_online_roc_auc_alone_fires() -> None:
    (trigger,) = fired(Observed("test", {"f": 0.05}, 0.70, 600, timedelta(days=3)),
                       Thresholds(min_roc_auc=0.75, min_auc_labels=500))
    assert trigger.name == ROC_AUC and "0.7000 over 600 labels" in trigger.reason


def test_the_online_roc_auc_is_ignored_with_too_few_labels() -> None:
    assert fired(Observed("test", {}, 0.50, 499, timedelta(days=3)), Thresholds(min_auc_labels=500)) == []
    assert fired(Observed("test", {}, None, 5000, timedelta(days=3)), Thresholds()) == []  # undefined AUC


def test_age_alone_fires() -> None:
    (trigger,) = fired(Observed("test", {}, None, 0, timedelta(days=31)), Thresholds(max_age_days=30))
    assert trigger.name == AGE and "31.0 days old" in trigger.reason
    assert fired(Observed("test", {}, None, 0, timedelta(days=29)), Thresholds(max_age_days=30)) == []


def test_no_production_model_fires_and_every_trigger_is_reported() -> None:
    assert names(fired(Observed("test", {}, None, 0, None), Thresholds())) == [NO_PRODUCTION]
    everything = Observed("test", {"f": 1.0}, 0.6, 1000, timedelta(days=40))
    assert names(fired(everything, Thresholds())) == [AGE, DRIFT, ROC_AUC]


# --- the worker's /metrics -------------------------------------------------------------------------------

METRICS = """\
# HELP streamscore_feature_drift_psi PSI of the served values vs the model's reference
# TYPE streamscore_feature_drift_psi gauge
streamscore_feature_drift_psi{feature="user_txn_count_1h"} 0.31
streamscore_feature_drift_psi{feature="txn_amount"} 0.02
streamscore_feature_drift_psi{feature="hour_of_day"} NaN
# HELP streamscore_online_roc_auc rolling ROC-AUC from delayed labels
# TYPE streamscore_online_roc_auc gauge
streamscore_online_roc_auc{model_version="v0001"} 0.6
streamscore_online_roc_auc{model_version="v0002"} 0.81
# HELP streamscore_online_labels labels in the rolling window
# TYPE streamscore_online_labels gauge
streamscore_online_labels{model_version="v0001"} 900.0
streamscore_online_labels{model_version="v0002"} 720.0
"""


def test_the_numbers_are_read_from_the_worker_metrics_for_the_production_version() -> None:
    drift, auc, labels = scraped(parse(METRICS), "v0002")
    assert drift == {"user_txn_count_1h": 0.31, "txn_amount": 0.02}
    assert (auc, labels) == (0.81, 720)
    assert scraped(parse(METRICS), "v0003")[1:] == (None, 0)
    observed = Observed("metrics", drift, auc, labels, timedelta(days=1))
    assert names(fired(observed, Thresholds())) == [DRIFT]


# --- the recorded logs -----------------------------------------------------------------------------------

def window_rows(feature_repo: Path, stamps: list[datetime], values: dict[str, np.ndarray]) -> None:
    """User window rows at ``stamps`` (one part per hour), ``values`` for some features, 1.0 elsewhere."""
    rows = [{s.name: float(values[s.name][i]) if s.name in values else 1.0 for s in USER_WINDOWS}
            for i in range(len(stamps))]
    frame = window_frame("user_id", list(range(len(stamps))), stamps, rows, USER_WINDOWS)
    for hour, part in frame.groupby(frame["event_timestamp"].map(hour_dir)):
        write_part(part, feature_repo / USER_WINDOW_LOG / str(hour) / f"part-test-{len(part)}.parquet")


def test_drift_is_the_psi_of_the_recent_logged_vectors_against_the_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    reference = {"user_amount_sum_1h": histogram_reference(rng.normal(100, 10, 5000)),
                 "user_amount_sum_24h": histogram_reference(rng.normal(100, 10, 5000))}
    recent = [NOW - timedelta(minutes=m) for m in range(1, 2001)]
    stable, moved = rng.normal(100, 10, 2000), rng.normal(160, 10, 2000)
    window_rows(tmp_path, recent, {"user_amount_sum_1h": stable, "user_amount_sum_24h": moved})
    old = [NOW - timedelta(days=3, minutes=m) for m in range(500)]  # before the span: not counted
    window_rows(tmp_path, old, {"user_amount_sum_1h": np.full(500, 1e4), "user_amount_sum_24h": np.full(500, 1e4)})

    drift = recorded_drift(tmp_path, reference, NOW - timedelta(days=2), NOW)
    assert set(drift) == set(reference)  # only features with a reference
    assert drift["user_amount_sum_1h"] == pytest.approx(psi(reference["user_amount_sum_1h"], stable))
    assert drift["user_amount_sum_1h"] < 0.1 and drift["user_amount_sum_24h"] > 0.25
    assert recorded_drift(tmp_path / "nothing", reference, NOW - timedelta(days=2), NOW) == {}


def label_rows(data_dir: Path, rows: list[LabelRow]) -> None:
    frame = label_frame(rows)
    for hour, part in frame.groupby(frame["label_time"].map(hour_dir)):
        write_part(part, data_dir / LABEL_LOG / str(hour) / f"part-test-{len(part)}.parquet")


def test_online_roc_auc_is_of_the_production_versions_recent_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    y = rng.random(300) < 0.2
    score = np.clip(0.3 * y + rng.random(300) * 0.8, 0, 1)

    def row(i: int, version: str, at: datetime, fraud: bool, s: float) -> LabelRow:
        return LabelRow(event_id=f"{version}-{i}-{at:%d}", user_id=i, merchant_id=i % 7, is_fraud=fraud,
                        label_time=at, score=s, model_version=version)

    label_rows(tmp_path, [
        *(row(i, "v0002", NOW - timedelta(minutes=i + 1), bool(y[i]), float(score[i])) for i in range(300)),
        *(row(i, "v0001", NOW - timedelta(minutes=i + 1), bool(i % 2), 0.5) for i in range(100)),  # other version
        *(row(i, "v0002", NOW - timedelta(days=5, minutes=i), bool(i % 2), float(i % 2 == 0)) for i in range(100)),
    ])
    auc, labels = recorded_quality(tmp_path, "v0002", NOW - timedelta(days=1), NOW)
    assert labels == 300
    assert auc == pytest.approx(roc_auc(y, score))
    assert recorded_quality(tmp_path, "v0009", NOW - timedelta(days=1), NOW) == (None, 0)


# --- the command -----------------------------------------------------------------------------------------

def production_model(data_dir: Path, created_at: datetime) -> str:
    """A tiny registered version holding the production alias."""
    registry = ModelRegistry(data_dir / "registry")
    x = np.arange(40, dtype=float).reshape(20, 2)
    booster = xgboost.train({"objective": "binary:logistic", "nthread": 1},
                            xgboost.DMatrix(x, label=np.arange(20) % 2, feature_names=["a", "b"]), 2)
    version = registry.register(booster, ModelMetadata(
        created_at=created_at, feature_service="fraud_v1", features=["a", "b"], threshold=0.5,
        training_data=TrainingData(start=created_at - timedelta(days=7), end=created_at, rows=20,
                                   content_hash="sha256:x")))
    registry.set_alias("production", version)
    return version


@pytest.fixture
def command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[datetime, datetime]]]:
    """``retrain --if-needed`` on a data directory in ``tmp_path``; returns the ranges training was asked for
    (the fake stops the run as data validation would, exit code 2)."""
    monkeypatch.setenv("STREAMSCORE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    calls: list[tuple[datetime, datetime]] = []

    def fake_retrain(_settings: Any, _registry: Any, since: datetime, until: datetime, **_: Any) -> Any:
        calls.append((since, until))
        raise DataValidationError("stopped by the test", {})

    monkeypatch.setattr(retrain_module, "retrain", fake_retrain)
    yield calls
    get_settings.cache_clear()


def test_if_needed_with_nothing_firing_exits_0_without_training(
        tmp_path: Path, command: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    production_model(tmp_path, NOW - timedelta(days=2))
    code = retrain_module.main(["--since", "30d", "--until", NOW.isoformat(), "--if-needed"])
    assert code == 0 and command == []
    assert "no retrain trigger fired" in capsys.readouterr().out


def test_if_needed_with_a_trigger_says_which_and_trains(
        tmp_path: Path, command: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    production_model(tmp_path, NOW - timedelta(days=2))
    code = retrain_module.main(["--since", "30d", "--until", NOW.isoformat(), "--if-needed", "--max-age-days", "1"])
    assert code == 2 and command == [(NOW - timedelta(days=30), NOW)]
    assert "retrain trigger fired: age: the production model is 2.0 days old" in capsys.readouterr().out


def test_if_needed_reads_the_metrics_url_when_given(
        tmp_path: Path, command: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert production_model(tmp_path, NOW - timedelta(days=2)) == "v0001"
    exposition = tmp_path / "metrics.txt"
    exposition.write_text(METRICS)
    code = retrain_module.main(["--since", "30d", "--until", NOW.isoformat(), "--if-needed",
                                "--metrics-url", exposition.as_uri()])
    assert code == 2 and len(command) == 1
    out = capsys.readouterr().out
    assert "retrain trigger fired: drift:" in out and "user_txn_count_1h 0.310" in out
    assert "retrain trigger fired: roc_auc: online ROC-AUC 0.6000 over 900 labels" in out


def test_without_if_needed_training_runs_whatever_the_triggers(tmp_path: Path, command: list[Any]) -> None:
    production_model(tmp_path, NOW - timedelta(days=2))
    assert retrain_module.main(["--since", "30d", "--until", NOW.isoformat()]) == 2 and len(command) == 1


def test_unreadable_metrics_exit_1_without_training(tmp_path: Path, command: list[Any]) -> None:
    production_model(tmp_path, NOW - timedelta(days=40))  # old enough to fire, were the metrics readable
    missing = (tmp_path / "no-metrics.txt").as_uri()
    assert retrain_module.main(["--since", "30d", "--until", NOW.isoformat(), "--if-needed",
                                "--metrics-url", missing]) == 1
    assert command == []
