"""evaluate / choose_threshold / write_report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.evaluate import REPORT_FILES, choose_threshold, evaluate, write_report
from stream_app.core.metrics import pr_auc, precision_recall_at, roc_auc
from stream_app.errors import DataValidationError

IMPORTANCE = {"user_txn_count_1h": 3.5, "merchant_fraud_rate_7d": 12.0, "user_amount_sum_24h": 0.7}


@pytest.fixture
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    y = (rng.random(3000) < 0.05).astype(int)
    scores = np.clip(rng.beta(2, 8, y.size) + 0.35 * y * rng.random(y.size), 0, 1)
    return y, scores


def test_evaluate_keys_and_values(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    metrics = evaluate(y, s, 0.4, IMPORTANCE)
    json.dumps(metrics, allow_nan=False)
    assert set(metrics) == {"n", "positives", "base_rate", "roc_auc", "pr_auc", "threshold", "precision", "recall",
                            "f1", "flag_rate", "confusion", "calibration", "feature_importance"}
    assert metrics["n"] == 3000 and metrics["positives"] == int(y.sum())
    assert metrics["base_rate"] == pytest.approx(y.mean())
    assert metrics["roc_auc"] == pytest.approx(roc_auc(y, s))
    assert metrics["pr_auc"] == pytest.approx(pr_auc(y, s))
    point = precision_recall_at(y, s, 0.4)
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == (point.precision, point.recall, point.f1)
    assert sum(metrics["confusion"].values()) == 3000
    assert len(metrics["calibration"]["bins"]) == 10 and 0 <= metrics["calibration"]["ece"] <= 1
    assert list(metrics["feature_importance"]) == ["merchant_fraud_rate_7d", "user_txn_count_1h",
                                                   "user_amount_sum_24h"]


def test_single_class_is_a_data_error() -> None:
    with pytest.raises(DataValidationError, match="both classes"):
        evaluate([0, 0, 0], [0.1, 0.2, 0.3], 0.5, {})


def test_choose_threshold_maximises_f1(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    chosen = choose_threshold(y, s)
    best = max(precision_recall_at(y, s, t).f1 for t in np.unique(s))
    assert precision_recall_at(y, s, chosen).f1 == pytest.approx(best)
    assert chosen in s


def test_choose_threshold_for_target_precision(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    chosen = choose_threshold(y, s, target_precision=0.5)
    assert precision_recall_at(y, s, chosen).precision >= 0.5
    # Lowest such threshold: every lower distinct score misses the target.
    lower = s[s < chosen]
    assert all(precision_recall_at(y, s, t).precision < 0.5 for t in np.unique(lower))
    with pytest.raises(ValueError, match="no threshold reaches precision"):
        choose_threshold([1, 0, 1, 0], [0.5, 0.9, 0.4, 0.8], target_precision=1.0)


def test_write_report_files(tmp_path: Path, scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    metrics = evaluate(y, s, choose_threshold(y, s), IMPORTANCE)
    written = write_report(metrics, y, s, IMPORTANCE, tmp_path / "run")
    assert set(written) == set(REPORT_FILES)
    for name in REPORT_FILES:
        path = tmp_path / "run" / name
        assert written[name] == path and path.stat().st_size > 0
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert path.stat().st_size > 5000  # an actual plot, not an empty canvas
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == metrics
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_write_report_refuses_nan(tmp_path: Path, scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = scored
    with pytest.raises(ValueError, match="JSON"):
        write_report({"roc_auc": float("nan")}, y, s, {}, tmp_path)
