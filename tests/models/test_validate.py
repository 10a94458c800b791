"""validate_frame: each check fails on a crafted bad frame and passes on a good one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.validate import ValidationPolicy, content_hash, reference_distributions, validate_frame
from stream_app.errors import DataValidationError

FEATURES = ["user_txn_count_1h", "merchant_fraud_rate_7d", "user_amount_sum_24h", "user_seconds_since_prev"]
NULLABLE = {"user_seconds_since_prev"}
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "user_txn_count_1h": (0, None),
    "merchant_fraud_rate_7d": (0, 1),
    "user_amount_sum_24h": (0, None),
    "user_seconds_since_prev": (0, None),
}


def good_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    since = rng.exponential(3600, rows)
    since[rng.random(rows) < 0.2] = np.nan  # first transactions: legitimately missing
    return pd.DataFrame({
        "event_timestamp": pd.date_range("2026-01-01", periods=rows, freq="min", tz="UTC"),
        "user_txn_count_1h": rng.poisson(2, rows),
        "merchant_fraud_rate_7d": rng.beta(1, 50, rows),
        "user_amount_sum_24h": rng.gamma(2, 60, rows),
        "user_seconds_since_prev": since,
        "is_fraud": (rng.random(rows) < 0.03).astype(np.int8),
        "event_id": [f"e{i}" for i in range(rows)],
    })


def run(frame: pd.DataFrame, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"label": "is_fraud", "timestamp": "event_timestamp", "nullable": NULLABLE,
                               "bounds": BOUNDS}
    options.update(kwargs)
    return validate_frame(frame, FEATURES, **options)


def failure(frame: pd.DataFrame, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(DataValidationError) as caught:
        run(frame, **kwargs)
    report: dict[str, Any] = caught.value.report
    json.dumps(report, allow_nan=False)
    assert report["passed"] is False
    for name in report["failed"]:
        assert name in str(caught.value)
    return report


def test_good_frame_passes_with_a_complete_report() -> None:
    frame = good_frame()
    report = run(frame, reference=reference_distributions(good_frame(seed=1), FEATURES))
    json.dumps(report, allow_nan=False)
    assert report["passed"] is True and report["failed"] == [] and report["rows"] == 2000
    assert set(report["checks"]) == {"columns", "dtypes", "row_count", "label", "label_rate", "timestamps",
                                     "null_fraction", "ranges", "shift"}
    assert all(check["passed"] for check in report["checks"].values())
    assert report["checks"]["columns"]["extra"] == ["event_id"]
    assert report["checks"]["label_rate"]["rate"] == pytest.approx(frame["is_fraud"].mean())
    assert report["checks"]["null_fraction"]["fractions"]["user_seconds_since_prev"] == pytest.approx(0.2, abs=0.03)
    assert set(report["checks"]["shift"]["psi"]) == set(FEATURES)
    assert max(report["checks"]["shift"]["psi"].values()) < 0.05
    assert report["checks"]["timestamps"]["start"].startswith("2026-01-01T00:00:00")
    assert report["policy"]["max_psi"] == 0.25


def test_shift_check_is_skipped_without_reference() -> None:
    report = run(good_frame())
    assert report["checks"]["shift"] == {"passed": True, "skipped": True,
                                         "reason": "no reference distributions given", "max_psi": 0.25}


Mutation = Callable[[pd.DataFrame], pd.DataFrame]


def _set(column: str, index: Any, value: Any) -> Mutation:
    def mutate(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        frame.loc[index, column] = value
        return frame
    return mutate


@pytest.mark.parametrize(
    ("mutate", "check", "detail"),
    [
        (lambda f: f.drop(columns=["user_txn_count_1h"]), "columns", {"missing": ["user_txn_count_1h"]}),
        (lambda f: f.assign(user_amount_sum_24h=f["user_amount_sum_24h"].astype(str)), "dtypes",
         {"invalid": {"user_amount_sum_24h": "object"}}),
        (lambda f: f.assign(event_timestamp=f["event_timestamp"].astype(str)), "dtypes",
         {"invalid": {"event_timestamp": "object"}}),
        (lambda f: f.head(500), "row_count", {"rows": 500}),
        (lambda f: f.assign(is_fraud=f["is_fraud"].astype(float).where(f.index != 3)), "label", {"nulls": 1}),
        (_set("is_fraud", 7, 2), "label", {"invalid_values": [2.0]}),
        (lambda f: f.assign(is_fraud=(f.index % 3 == 0).astype(int)), "label_rate", {}),
        (lambda f: f.assign(is_fraud=0), "label_rate", {"rate": 0.0}),
        (_set("user_txn_count_1h", [1, 2], np.nan), "null_fraction", {"violations": {"user_txn_count_1h": 0.001}}),
        (lambda f: f.assign(user_seconds_since_prev=np.nan), "null_fraction",
         {"violations": {"user_seconds_since_prev": 1.0}}),
        (_set("user_txn_count_1h", 5, -1), "ranges", {}),
        (_set("merchant_fraud_rate_7d", 5, 1.5), "ranges", {}),
        (_set("user_amount_sum_24h", 5, np.inf), "ranges", {}),
        (_set("event_timestamp", 4, pd.NaT), "timestamps", {"nulls": 1}),
    ],
)
def test_each_check_fails_on_a_crafted_frame(mutate: Mutation, check: str, detail: dict[str, Any]) -> None:
    report = failure(mutate(good_frame()))
    assert check in report["failed"]
    for key, value in detail.items():
        assert report["checks"][check][key] == value


def test_range_violation_reports_counts() -> None:
    frame = good_frame()
    frame.loc[[1, 2, 3], "merchant_fraud_rate_7d"] = 1.2
    report = failure(frame)
    assert report["failed"] == ["ranges"]
    assert report["checks"]["ranges"]["violations"] == {
        "merchant_fraud_rate_7d": {"below": 0, "above": 3, "infinite": 0, "bounds": [0, 1]}
    }
    assert report["checks"]["ranges"]["ranges"]["merchant_fraud_rate_7d"]["max"] == 1.2


def test_label_rate_within_policy_bounds() -> None:
    frame = good_frame()
    frame["is_fraud"] = (np.arange(len(frame)) % 4 == 0).astype(int)  # 25 %
    assert failure(frame)["checks"]["label_rate"]["rate"] == 0.25
    assert run(frame, policy=ValidationPolicy(max_label_rate=0.3))["passed"]


def test_shift_against_previous_training_set_fails() -> None:
    reference = reference_distributions(good_frame(seed=1), FEATURES)
    shifted = good_frame(seed=2)
    shifted["user_amount_sum_24h"] *= 3
    report = failure(shifted, reference=reference)
    assert report["failed"] == ["shift"]
    assert list(report["checks"]["shift"]["violations"]) == ["user_amount_sum_24h"]
    assert report["checks"]["shift"]["violations"]["user_amount_sum_24h"] > 0.25
    assert report["checks"]["shift"]["psi"]["user_txn_count_1h"] < 0.1


def test_several_failures_are_reported_together() -> None:
    frame = good_frame().head(100).drop(columns=["merchant_fraud_rate_7d"])
    frame.loc[0, "user_txn_count_1h"] = -5
    report = failure(frame)
    assert {"columns", "row_count", "ranges"} <= set(report["failed"])


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="label rate"):
        ValidationPolicy(min_label_rate=0.5, max_label_rate=0.1)


def test_content_hash_is_stable_and_content_sensitive() -> None:
    frame = good_frame()
    assert content_hash(frame) == content_hash(good_frame())
    changed = frame.copy()
    changed["user_amount_sum_24h"] = changed["user_amount_sum_24h"] + np.where(changed.index == 10, 0.01, 0.0)
    assert content_hash(changed) != content_hash(frame)
    assert content_hash(frame).startswith("sha256:")
