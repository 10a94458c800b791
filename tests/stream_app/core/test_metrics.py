"""Metric maths against hand-computed cases and brute-force definitions."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.metrics import (
    average_ranks,
    calibration_bins,
    histogram_reference,
    pr_auc,
    pr_curve,
    precision_recall_at,
    psi,
    roc_auc,
    roc_curve,
    threshold_for_precision,
    threshold_for_recall,
)

# The scikit-learn documentation example: AUC 0.75, average precision 0.8333.
Y = [0, 0, 1, 1]
S = [0.1, 0.4, 0.35, 0.8]


def brute_force_auc(y: list[int], s: list[float]) -> float:
    """Fraction of (positive, negative) pairs ranked correctly, ties counting 1/2."""
    pairs = [(sp, sn) for (yp, sp), (yn, sn) in itertools.product(zip(y, s, strict=True), repeat=2)
             if yp == 1 and yn == 0]
    return sum(1.0 if sp > sn else 0.5 if sp == sn else 0.0 for sp, sn in pairs) / len(pairs)


def brute_force_ap(y: list[int], s: list[float]) -> float:
    """Sum over distinct thresholds (descending) of (R_n - R_{n-1}) * P_n, via precision_recall_at."""
    total, previous_recall = 0.0, 0.0
    for threshold in sorted(set(s), reverse=True):
        point = precision_recall_at(y, s, threshold)
        total += (point.recall - previous_recall) * point.precision
        previous_recall = point.recall
    return total


labelled = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 6).map(lambda v: v / 6)), min_size=2, max_size=40)


def test_hand_computed_auc_and_ap() -> None:
    assert roc_auc(Y, S) == pytest.approx(0.75)
    assert pr_auc(Y, S) == pytest.approx(0.8333333333)


def test_perfect_reversed_and_tied_rankings() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert pr_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    # All tied: one threshold, precision 2/3 at recall 1.
    assert pr_auc([1, 0, 1], [0.5, 0.5, 0.5]) == pytest.approx(2 / 3)


def test_average_ranks_share_ties() -> None:
    np.testing.assert_allclose(average_ranks([10, 20, 20, 5, 20]), [2, 4, 4, 1, 4])


@settings(max_examples=200, deadline=None)
@given(labelled)
def test_roc_auc_equals_pairwise_definition(rows: list[tuple[int, float]]) -> None:
    y = [r[0] for r in rows]
    s = [r[1] for r in rows]
    if len(set(y)) < 2:
        with pytest.raises(ValueError, match="both classes"):
            roc_auc(y, s)
        return
    assert roc_auc(y, s) == pytest.approx(brute_force_auc(y, s))
    fpr, tpr, thresholds = roc_curve(y, s)
    # Trapezoids over the curve (ties give diagonal segments) integrate to the same area.
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(roc_auc(y, s))
    assert thresholds[0] == math.inf and fpr[0] == tpr[0] == 0.0 and fpr[-1] == tpr[-1] == 1.0


@settings(max_examples=200, deadline=None)
@given(labelled)
def test_pr_auc_equals_stepwise_definition(rows: list[tuple[int, float]]) -> None:
    y = [r[0] for r in rows]
    s = [r[1] for r in rows]
    if 1 not in y:
        with pytest.raises(ValueError, match="positive"):
            pr_auc(y, s)
        return
    assert pr_auc(y, s) == pytest.approx(brute_force_ap(y, s))
    precision, recall, _ = pr_curve(y, s)
    assert np.all(np.diff(recall) >= 0) and recall[-1] == 1.0 and precision[0] == 1.0


def test_large_random_data_matches_brute_force() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 1500)
    s = np.round(rng.random(1500) + 0.3 * y, 2)  # rounding creates many ties
    pos, neg = s[y == 1], s[y == 0]
    wins = np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])
    expected = wins / (pos.size * neg.size)
    assert roc_auc(y, s) == pytest.approx(expected)
    assert 0.5 < roc_auc(y, s) < 1.0


def test_ap_of_random_scores_is_near_base_rate() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.05).astype(int)
    assert pr_auc(y, rng.random(y.size)) == pytest.approx(y.mean(), abs=0.01)


def test_precision_recall_at_threshold_and_zero_division() -> None:
    point = precision_recall_at(Y, S, 0.35)  # flags 0.4, 0.35, 0.8
    assert (point.tp, point.fp, point.fn, point.tn) == (2, 1, 0, 1)
    assert point.precision == pytest.approx(2 / 3) and point.recall == 1.0 and point.f1 == pytest.approx(0.8)
    assert point.flag_rate == 0.75
    nothing = precision_recall_at(Y, S, 0.9)
    assert nothing.precision == 0.0 and nothing.recall == 0.0 and nothing.f1 == 0.0
    assert json.dumps(point.as_dict(), allow_nan=False)


def test_threshold_helpers() -> None:
    assert threshold_for_precision(Y, S, 1.0) == 0.8
    assert threshold_for_precision(Y, S, 0.6) == 0.35  # lowest threshold still at >= 0.6 precision
    assert threshold_for_precision([1, 0], [0.1, 0.9], 1.0) is None
    assert threshold_for_recall(Y, S, 1.0) == 0.35
    assert threshold_for_recall(Y, S, 0.5) == 0.8
    with pytest.raises(ValueError, match="target"):
        threshold_for_recall(Y, S, 0.0)


def test_calibration_hand_case() -> None:
    calibration = calibration_bins(Y, S, n_bins=4)
    counts = [b.count for b in calibration.bins]
    assert counts == [1, 2, 0, 1]
    assert calibration.bins[1].mean_predicted == pytest.approx(0.375) and calibration.bins[1].observed_rate == 0.5
    assert calibration.bins[2].mean_predicted is None
    # ECE = 1/4*|0.1-0| + 2/4*|0.375-0.5| + 1/4*|0.8-1|
    assert calibration.ece == pytest.approx(0.025 + 0.0625 + 0.05)
    assert calibration.mce == pytest.approx(0.2)
    assert json.dumps(calibration.as_dict(), allow_nan=False)


def test_calibrated_scores_have_small_ece() -> None:
    rng = np.random.default_rng(11)
    p = rng.random(50_000)
    y = (rng.random(p.size) < p).astype(int)
    assert calibration_bins(y, p).ece < 0.01
    assert calibration_bins(y, p**3).ece > 0.1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_bins([0, 1], [0.5, 1.5])


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([], [], "empty"),
        ([0, 1], [0.5], "length"),
        ([0, 2], [0.1, 0.2], "exactly 0 or 1"),
        ([0, 1], [0.1, float("nan")], "finite"),
        ([1, 1], [0.1, 0.2], "both classes"),
    ],
)
def test_degenerate_inputs_raise(y: list[int], s: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        roc_auc(y, s)


def test_histogram_reference_is_json_and_sums_to_one() -> None:
    rng = np.random.default_rng(5)
    values = np.r_[rng.exponential(100, 900), np.full(100, np.nan)]
    reference = histogram_reference(values)
    json.dumps(reference, allow_nan=False)
    assert len(reference["proportions"]) == len(reference["edges"]) + 1 == 10
    assert reference["missing"] == pytest.approx(0.1)
    assert sum(reference["proportions"]) + reference["missing"] == pytest.approx(1.0)
    assert all(p == pytest.approx(0.09, abs=0.002) for p in reference["proportions"])
    assert np.all(np.diff(reference["edges"]) > 0)


def test_histogram_reference_dedupes_tied_quantiles() -> None:
    counts = np.r_[np.zeros(950), np.arange(1, 51)]
    reference = histogram_reference(counts)
    assert reference["edges"][0] == 0.0  # the point mass at zero keeps its own bin
    assert reference["proportions"][0] == pytest.approx(0.95)
    constant = histogram_reference(np.full(10, 3.0))
    assert constant["edges"] == [3.0] and constant["proportions"] == [1.0, 0.0]
    assert psi(constant, np.full(10, 4.0)) > 1.0  # upward shift of a constant is caught


def test_psi_zero_for_identical_and_growing_with_shift() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=20_000)
    reference = histogram_reference(base)
    assert psi(reference, base) == pytest.approx(0.0, abs=1e-12)
    assert psi(reference, rng.normal(size=20_000)) < 0.01
    shifts = [psi(reference, rng.normal(loc=shift, size=20_000)) for shift in (0.1, 0.3, 0.6, 1.2)]
    assert shifts == sorted(shifts) and shifts[-1] > 0.25
    # More missing values is a shift too.
    assert psi(reference, np.r_[base[:15_000], np.full(5_000, np.nan)]) > 0.25


def test_psi_rejects_bad_input() -> None:
    reference = histogram_reference([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="empty"):
        psi(reference, [])
    with pytest.raises(ValueError, match="malformed"):
        psi({"edges": [1.0], "proportions": [1.0]}, [1.0])
    with pytest.raises(ValueError, match="malformed"):
        psi({"edges": [2.0, 1.0], "proportions": [0.3, 0.3, 0.4]}, [1.0])
    with pytest.raises(ValueError, match="infinities"):
        histogram_reference([1.0, math.inf])
