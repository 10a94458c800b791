"""The promotion gate, behaviourally: real tiny XGBoost models on synthetic data."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost

from models import promote as promote_module
from models.golden import GoldenSet
from models.promote import promote
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.cli import main
from stream_app.core.metrics import pr_auc, roc_auc
from stream_app.errors import DataValidationError, RegistryError

FEATURES = ["f_count", "f_rate", "f_amount"]


def synthetic(seed: int, rows: int, features: list[str] = FEATURES) -> tuple[pd.DataFrame, np.ndarray]:
    """Fraud is likelier with a high rate and many transactions; noisy, so AUCs sit below 1."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"f_count": rng.poisson(3, rows).astype(float), "f_rate": rng.random(rows),
                          "f_amount": rng.gamma(2, 50, rows)})
    logit = 4 * frame["f_rate"] + 0.5 * frame["f_count"] - 5 + rng.normal(0, 1.0, rows)
    frame.columns = pd.Index(features)
    return frame, (logit > 0).astype(int).to_numpy()


def train(seed: int, rows: int, rounds: int, depth: int, *, shuffle: bool = False,
          features: list[str] = FEATURES) -> xgboost.Booster:
    frame, y = synthetic(seed, rows, features)
    if shuffle:
        y = np.random.default_rng(seed + 100).permutation(y)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "nthread": 1, "seed": seed}
    return xgboost.train(params, xgboost.DMatrix(frame, label=y), num_boost_round=rounds)


def register(registry: ModelRegistry, booster: xgboost.Booster, features: list[str] = FEATURES) -> str:
    meta = ModelMetadata(
        feature_service="fraud_v1",
        features=features,
        threshold=0.5,
        training_data=TrainingData(start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 8, tzinfo=UTC),
                                   rows=100, content_hash="sha256:x"),
    )
    return registry.register(booster, meta)


def golden_set(features: list[str] = FEATURES) -> GoldenSet:
    frame, y = synthetic(999, 2000, features)
    return GoldenSet(X=frame, y=y)


def golden_auc(registry: ModelRegistry, version: str, golden: GoldenSet) -> float:
    return roc_auc(golden.y, registry.load(version).scorer().score_frame(golden.X))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


@pytest.fixture
def models(registry: ModelRegistry) -> dict[str, str]:
    """good (modest), worse (trained on shuffled labels), better (more data, deeper)."""
    return {
        "good": register(registry, train(1, 400, rounds=3, depth=1)),
        "worse": register(registry, train(2, 400, rounds=10, depth=3, shuffle=True)),
        "better": register(registry, train(3, 4000, rounds=40, depth=3)),
    }


def test_gate_sequence(registry: ModelRegistry, models: dict[str, str]) -> None:
    golden = golden_set()

    # First promotion: no production yet, so the floor applies, and the good model clears it.
    first = promote(registry, models["good"], "production", FEATURES, golden)
    assert first.passed and not first.forced and first.previous is None
    assert first.baseline["kind"] == "floor"
    assert registry.get_alias("production") == models["good"]
    good_auc = golden_auc(registry, models["good"], golden)
    assert first.candidate is not None and first.candidate["roc_auc"] == pytest.approx(good_auc)
    recorded = registry.metadata(models["good"]).golden_metrics
    assert recorded is not None and recorded["candidate"]["roc_auc"] == pytest.approx(good_auc)
    assert recorded["golden"]["n"] == 2000

    # The model trained on shuffled labels is refused, with the numbers in the message.
    stamp = registry.alias_stamp("production")
    with pytest.raises(RegistryError) as refused:
        promote(registry, models["worse"], "production", FEATURES, golden)
    message = str(refused.value)
    worse_auc = golden_auc(registry, models["worse"], golden)
    assert "ROC-AUC" in message and f"{worse_auc:.4f}" in message and f"{good_auc:.4f}" in message
    assert models["good"] in message
    assert registry.alias_stamp("production") == stamp  # nothing moved
    assert registry.metadata(models["worse"]).golden_metrics is None

    # A matching, better model is promoted over the good one.
    better = promote(registry, models["better"], "production", FEATURES, golden)
    assert better.passed and better.previous == models["good"]
    assert better.baseline == {"kind": "production", "version": models["good"], "tolerance": 0.005,
                               "roc_auc": pytest.approx(good_auc), "pr_auc": better.baseline["pr_auc"]}
    assert better.candidate is not None and better.candidate["roc_auc"] > good_auc
    assert registry.get_alias("production") == models["better"]
    record = registry.alias_record("production")
    assert record is not None and record.details["candidate"]["roc_auc"] == better.candidate["roc_auc"]


def test_tolerance_is_an_absolute_allowance(registry: ModelRegistry, models: dict[str, str]) -> None:
    golden = golden_set()
    promote(registry, models["better"], "production", FEATURES, golden)
    good, better = registry.load(models["good"]), registry.load(models["better"])
    gaps = [metric(golden.y, better.scorer().score_frame(golden.X))
            - metric(golden.y, good.scorer().score_frame(golden.X))
            for metric in (roc_auc, pr_auc)]
    assert 0 < gaps[0] < gaps[1] - 0.001  # seeded: PR-AUC gap is the larger one
    with pytest.raises(RegistryError, match=r"ROC-AUC .* by \d\.\d{4} \(> tolerance 0\.0050\)"):
        promote(registry, models["good"], "production", FEATURES, golden)
    with pytest.raises(RegistryError, match=r"PR-AUC"):
        promote(registry, models["good"], "production", FEATURES, golden, tolerance=gaps[0] + 0.001)
    result = promote(registry, models["good"], "production", FEATURES, golden, tolerance=max(gaps) + 0.001)
    assert result.passed and registry.get_alias("production") == models["good"]


def test_feature_list_mismatch_is_refused(registry: ModelRegistry) -> None:
    reordered = [FEATURES[1], FEATURES[0], FEATURES[2]]
    version = register(registry, train(3, 2000, rounds=20, depth=3, features=reordered), features=reordered)
    golden = golden_set()
    with pytest.raises(RegistryError, match="feature list differs from the FeatureService: same features in a "
                                            "different order"):
        promote(registry, version, "production", FEATURES, golden)
    with pytest.raises(RegistryError, match=re.escape("missing ['f_new'], extra ['f_amount']")):
        promote(registry, version, "production", ["f_count", "f_rate", "f_new"], golden)
    assert registry.get_alias("production") is None


def test_force_overrides_the_gate_loudly(
    registry: ModelRegistry, models: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    golden = golden_set()
    promote(registry, models["better"], "production", FEATURES, golden)
    with caplog.at_level(logging.CRITICAL, logger="models.promote"):
        result = promote(registry, models["worse"], "production", FEATURES, golden, force=True)
    assert result.forced and not result.passed and any("ROC-AUC" in f for f in result.failures)
    assert registry.get_alias("production") == models["worse"]
    assert any(r.levelno == logging.CRITICAL and "FORCED" in r.getMessage() for r in caplog.records)
    record = registry.alias_record("production")
    assert record is not None and record.forced and record.previous == models["better"]
    assert [r.forced for r in registry.alias_history()] == [False, True]


def test_force_overrides_a_feature_mismatch(registry: ModelRegistry, caplog: pytest.LogCaptureFixture) -> None:
    reordered = [FEATURES[1], FEATURES[0], FEATURES[2]]
    version = register(registry, train(3, 2000, rounds=20, depth=3, features=reordered), features=reordered)
    with caplog.at_level(logging.CRITICAL, logger="models.promote"):
        result = promote(registry, version, "production", FEATURES, golden_set(), force=True)
    assert result.forced and "feature list differs" in result.failures[0]
    assert registry.get_alias("production") == version
    assert "FORCED" in caplog.text


def test_floor_without_production(registry: ModelRegistry, models: dict[str, str]) -> None:
    with pytest.raises(RegistryError, match=r"ROC-AUC 0\.\d{4} is below the floor 0\.7500"):
        promote(registry, models["worse"], "production", FEATURES, golden_set())
    with pytest.raises(RegistryError, match=r"below the floor 0\.9900"):
        promote(registry, models["good"], "production", FEATURES, golden_set(), min_roc_auc=0.99)


def test_shadow_is_judged_against_production(registry: ModelRegistry, models: dict[str, str]) -> None:
    golden = golden_set()
    promote(registry, models["better"], "production", FEATURES, golden)
    with pytest.raises(RegistryError, match="ROC-AUC"):
        promote(registry, models["worse"], "shadow", FEATURES, golden)
    result = promote(registry, models["better"], "shadow", FEATURES, golden)
    assert result.passed and registry.get_alias("shadow") == models["better"]
    assert registry.get_alias("production") == models["better"]
    with pytest.raises(RegistryError, match="unknown alias"):
        promote(registry, models["good"], "staging", FEATURES, golden)


def test_production_that_cannot_be_scored_fails_closed(registry: ModelRegistry, models: dict[str, str]) -> None:
    promote(registry, models["good"], "production", FEATURES, golden_set())
    renamed = ["f_count", "f_rate", "f_amount_eur"]
    candidate = register(registry, train(3, 2000, rounds=20, depth=3, features=renamed), features=renamed)
    with pytest.raises(RegistryError, match=f"production model {models['good']} cannot be scored"):
        promote(registry, candidate, "production", renamed, golden_set(renamed))
    assert promote(registry, candidate, "production", renamed, golden_set(renamed), force=True).forced


def test_unusable_golden_set(registry: ModelRegistry, models: dict[str, str]) -> None:
    frame, _ = synthetic(5, 50)
    with pytest.raises(DataValidationError, match="both classes"):
        promote(registry, models["good"], "production", FEATURES, GoldenSet(X=frame, y=np.zeros(50)))
    with pytest.raises(DataValidationError, match="rows"):
        promote(registry, models["good"], "production", FEATURES, GoldenSet(X=frame, y=np.zeros(10)))


@pytest.fixture
def fake_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the FeatureService's feature list and the golden set (which need the Feast
    definitions and services) for the CLI."""
    monkeypatch.setattr(promote_module, "model_feature_names", lambda: list(FEATURES))
    monkeypatch.setattr(promote_module, "golden_set", golden_set)


@pytest.mark.usefixtures("fake_features")
def test_cli(registry: ModelRegistry, models: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    root = str(registry.root)
    assert main(["promote", models["good"], "--registry", root]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["version"] == models["good"] and output["alias"] == "production" and output["passed"]

    assert main(["promote", models["worse"], "--registry", root, "--alias", "production"]) == 1
    assert registry.get_alias("production") == models["good"]

    assert main(["promote", models["worse"], "--registry", root, "--alias", "shadow", "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["forced"] is True
    assert registry.get_alias("shadow") == models["worse"]

    assert main(["promote", "v0099", "--registry", root]) == 1
    with pytest.raises(SystemExit) as usage:
        main(["promote", models["good"], "--alias", "staging"])
    assert usage.value.code == 2


@pytest.mark.usefixtures("fake_features")
def test_cli_rollback(registry: ModelRegistry, models: dict[str, str], capsys: pytest.CaptureFixture[str],
                      caplog: pytest.LogCaptureFixture) -> None:
    root = str(registry.root)
    assert main(["promote", "--rollback", "--registry", root]) == 1  # nothing promoted yet
    assert main(["promote", models["good"], "--registry", root]) == 0
    assert main(["promote", "--rollback", "--registry", root]) == 1  # no earlier version
    assert "no earlier version" in caplog.text
    assert main(["promote", models["better"], "--registry", root]) == 0
    capsys.readouterr()

    assert promote_module.main(["--rollback", "--registry", root]) == 0  # python -m models.promote --rollback
    output = json.loads(capsys.readouterr().out)
    assert (output["version"], output["previous"]) == (models["good"], models["better"])
    assert registry.get_alias("production") == models["good"]
    assert main(["promote", "--rollback", "--registry", root, "--alias", "shadow"]) == 1  # shadow never set

    for both_or_neither in (["promote", models["good"], "--rollback"], ["promote"]):
        assert main([*both_or_neither, "--registry", root]) == 2
    assert registry.get_alias("production") == models["good"]


def test_python_m_models_promote_rollback(registry: ModelRegistry, models: dict[str, str]) -> None:
    """The literal command, in a fresh interpreter: the module has a __main__ entry."""
    registry.set_alias("production", models["good"])
    registry.set_alias("production", models["better"])
    command = [sys.executable, "-m", "models.promote", "--rollback", "--registry", str(registry.root)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == models["good"] == registry.get_alias("production")
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1 and "no earlier version" in again.stderr
