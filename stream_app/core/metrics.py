"""Model-quality and drift maths on plain arrays, shared by offline evaluation, the promotion gate,
online quality from delayed labels and drift monitoring, so each number is computed one way.

Conventions: ``y`` holds binary labels (bool, or numbers exactly 0/1); ``score`` holds finite floats,
higher = more likely fraud; an event is *flagged* when ``score >= threshold``. Degenerate input raises
``ValueError`` saying what is wrong (empty or unequal arrays, labels other than 0/1, NaN/inf scores,
ROC-AUC on one class, PR-AUC without positives); online callers catch it and report "not enough data"
instead of a misleading NaN. A ratio with a zero denominator at a fixed threshold is 0.0 (scikit-learn's
``zero_division=0``). What is returned for storage (``histogram_reference``, ``as_dict``) is plain JSON:
no numpy scalars, ``None`` for NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

PSI_EPSILON = 1e-4
"""Floor for a bin proportion in PSI, so an empty bin on one side gives a large but finite term."""


def _labels_scores(y: npt.ArrayLike, score: npt.ArrayLike) -> tuple[BoolArray, FloatArray]:
    """Checked ``(labels as bool, scores as float64)``; every public metric starts here."""
    y_arr = np.asarray(y)
    try:
        s_arr = np.asarray(score, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"scores must be numeric: {exc}") from exc
    if y_arr.ndim != 1 or s_arr.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y_arr.shape} and {s_arr.shape}")
    if y_arr.size != s_arr.size:
        raise ValueError(f"labels and scores differ in length: {y_arr.size} != {s_arr.size}")
    if y_arr.size == 0:
        raise ValueError("labels and scores are empty")
    if y_arr.dtype == np.bool_:
        labels: BoolArray = y_arr.astype(np.bool_)
    else:
        try:
            y_num = y_arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"labels must be 0/1: {exc}") from exc
        if not bool(np.all((y_num == 0.0) | (y_num == 1.0))):
            bad = np.unique(y_arr[~((y_num == 0.0) | (y_num == 1.0))])[:5]
            raise ValueError(f"labels must be exactly 0 or 1, found {bad.tolist()}")
        labels = y_num == 1.0
    if not bool(np.all(np.isfinite(s_arr))):
        raise ValueError(f"scores must be finite, found {int(np.sum(~np.isfinite(s_arr)))} NaN/inf")
    return labels, s_arr


def _class_counts(labels: BoolArray) -> tuple[int, int]:
    n_pos = int(np.count_nonzero(labels))
    return n_pos, int(labels.size) - n_pos


def average_ranks(values: npt.ArrayLike) -> FloatArray:
    """1-based ranks with ties given the mean of the ranks they span (the Mann-Whitney convention)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(arr, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts).astype(np.float64)
    mean_rank = last_rank - (counts.astype(np.float64) - 1.0) / 2.0
    return mean_rank[inverse.ravel()]


def roc_auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve from ranks: P(score of a random positive > a random negative), ties
    counting one half. Raises ValueError when only one class is present (the area is undefined)."""
    labels, scores = _labels_scores(y, score)
    n_pos, n_neg = _class_counts(labels)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC-AUC needs both classes, got {n_pos} positives and {n_neg} negatives")
    ranks = average_ranks(scores)
    u_statistic = float(ranks[labels].sum()) - n_pos * (n_pos + 1) / 2.0
    return u_statistic / (n_pos * n_neg)


def _cumulative_counts(labels: BoolArray, scores: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(thresholds, tp, fp)`` at every distinct score, thresholds descending: flagging
    ``score >= thresholds[i]`` yields ``tp[i]`` true and ``fp[i]`` false positives."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    tp = np.cumsum(sorted_labels, dtype=np.float64)[last_of_group]
    fp = (last_of_group + 1).astype(np.float64) - tp
    return sorted_scores[last_of_group], tp, fp


def roc_curve(y: npt.ArrayLike, score: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(fpr, tpr, thresholds)`` with thresholds descending from +inf (nothing flagged, the (0, 0)
    point) to the lowest score (everything flagged, (1, 1)); one point per distinct score, so tied
    scores give a diagonal segment and the trapezoid area equals ``roc_auc``."""
    labels, scores = _labels_scores(y, score)
    n_pos, n_neg = _class_counts(labels)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"the ROC curve needs both classes, got {n_pos} positives and {n_neg} negatives")
    thresholds, tp, fp = _cumulative_counts(labels, scores)
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    return fpr, tpr, np.r_[np.inf, thresholds]


def pr_curve(y: npt.ArrayLike, score: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(precision, recall, thresholds)`` with thresholds descending, starting at the conventional
    point (precision 1, recall 0, threshold +inf); recall is non-decreasing. Needs a positive."""
    labels, scores = _labels_scores(y, score)
    n_pos, _ = _class_counts(labels)
    if n_pos == 0:
        raise ValueError("the precision-recall curve needs at least one positive label")
    thresholds, tp, fp = _cumulative_counts(labels, scores)
    precision = np.r_[1.0, tp / (tp + fp)]
    recall = np.r_[0.0, tp / n_pos]
    return precision, recall, np.r_[np.inf, thresholds]


def pr_auc(y: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Average precision: sum over distinct thresholds of (R_n - R_{n-1}) * P_n, the step-wise area
    scikit-learn's ``average_precision_score`` computes (no interpolation, which would flatter the
    model). A random ranking scores about the base rate. Raises ValueError without positives."""
    precision, recall, _ = pr_curve(y, score)
    return float(np.sum(np.diff(recall) * precision[1:]))


@dataclass(frozen=True, slots=True)
class ThresholdMetrics:
    """The confusion matrix when flagging ``score >= threshold``, and the rates derived from it."""

    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        flagged = self.tp + self.fp
        return self.tp / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        positives = self.tp + self.fn
        return self.tp / positives if positives else 0.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 0.0

    @property
    def flag_rate(self) -> float:
        """Share of events flagged: the alert volume the threshold implies."""
        return (self.tp + self.fp) / self.n if self.n else 0.0

    def as_dict(self) -> dict[str, float | int | None]:
        return {
            "threshold": _json_float(self.threshold),
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "flag_rate": self.flag_rate,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
        }


def precision_recall_at(y: npt.ArrayLike, score: npt.ArrayLike, threshold: float) -> ThresholdMetrics:
    """Confusion counts and precision/recall/F1 when flagging ``score >= threshold``."""
    labels, scores = _labels_scores(y, score)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    flagged = scores >= threshold
    tp = int(np.count_nonzero(flagged & labels))
    fp = int(np.count_nonzero(flagged & ~labels))
    fn = int(np.count_nonzero(~flagged & labels))
    return ThresholdMetrics(threshold=float(threshold), tp=tp, fp=fp, fn=fn, tn=int(labels.size) - tp - fp - fn)


def threshold_for_precision(y: npt.ArrayLike, score: npt.ArrayLike, target_precision: float) -> float | None:
    """The lowest threshold (so the most recall) whose precision is at least ``target_precision``;
    None when no threshold reaches it. Precision is not monotonic in the threshold, so every distinct
    score is considered rather than stopping at the first crossing."""
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    labels, scores = _labels_scores(y, score)
    if _class_counts(labels)[0] == 0:
        raise ValueError("a precision target needs at least one positive label")
    thresholds, tp, fp = _cumulative_counts(labels, scores)
    reaching = np.flatnonzero(tp / (tp + fp) >= target_precision)
    return float(thresholds[reaching[-1]]) if reaching.size else None


def threshold_for_recall(y: npt.ArrayLike, score: npt.ArrayLike, target_recall: float) -> float:
    """The highest threshold (so the fewest alerts) whose recall is at least ``target_recall``."""
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target recall must be in (0, 1], got {target_recall}")
    labels, scores = _labels_scores(y, score)
    n_pos, _ = _class_counts(labels)
    if n_pos == 0:
        raise ValueError("a recall target needs at least one positive label")
    thresholds, tp, _ = _cumulative_counts(labels, scores)
    # The lowest threshold flags every positive, so some index always reaches any target <= 1.
    first = int(np.flatnonzero(tp / n_pos >= target_recall - 1e-12)[0])
    return float(thresholds[first])


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """Scores in [lower, upper) (the last bin includes 1.0); means are None for an empty bin."""

    lower: float
    upper: float
    count: int
    mean_predicted: float | None
    observed_rate: float | None


@dataclass(frozen=True, slots=True)
class Calibration:
    """Reliability table plus the expected calibration error (count-weighted mean |gap|) and the
    maximum gap over non-empty bins."""

    bins: tuple[CalibrationBin, ...]
    ece: float
    mce: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "ece": self.ece,
            "mce": self.mce,
            "bins": [
                {
                    "lower": b.lower,
                    "upper": b.upper,
                    "count": b.count,
                    "mean_predicted": b.mean_predicted,
                    "observed_rate": b.observed_rate,
                }
                for b in self.bins
            ],
        }


def calibration_bins(y: npt.ArrayLike, score: npt.ArrayLike, n_bins: int = 10) -> Calibration:
    """Equal-width bins on [0, 1]: does a 0.3 score mean 30 % fraud? Scores must be probabilities
    (ValueError otherwise). Equal-width bins keep the table comparable between models and over time."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    labels, scores = _labels_scores(y, score)
    if float(scores.min()) < 0.0 or float(scores.max()) > 1.0:
        raise ValueError(f"calibration needs scores in [0, 1], got [{scores.min()}, {scores.max()}]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    predicted_sum = np.bincount(index, weights=scores, minlength=n_bins)
    observed_sum = np.bincount(index, weights=labels.astype(np.float64), minlength=n_bins)
    bins: list[CalibrationBin] = []
    ece = 0.0
    mce = 0.0
    for i in range(n_bins):
        count = int(counts[i])
        if count == 0:
            bins.append(CalibrationBin(float(edges[i]), float(edges[i + 1]), 0, None, None))
            continue
        mean_predicted = float(predicted_sum[i]) / count
        observed_rate = float(observed_sum[i]) / count
        gap = abs(mean_predicted - observed_rate)
        ece += count / scores.size * gap
        mce = max(mce, gap)
        bins.append(CalibrationBin(float(edges[i]), float(edges[i + 1]), count, mean_predicted, observed_rate))
    return Calibration(bins=tuple(bins), ece=ece, mce=mce)


def _bin_index(edges: FloatArray, values: FloatArray) -> IntArray:
    """Right-closed bins (-inf, e0], (e0, e1], ..., (e_last, +inf): a cut at a point mass (say 0 for a
    count that is mostly zero) keeps the mass apart from everything above it."""
    return np.searchsorted(edges, values, side="left").astype(np.int64)


def histogram_reference(values: npt.ArrayLike, n_bins: int = 10) -> dict[str, Any]:
    """The distribution of one feature, stored in model metadata so later data can be compared with
    ``psi``. Cut points are the interior quantiles (deduplicated, so a heavily tied feature gets fewer
    bins); NaN is its own category ``missing``. Returns JSON-ready ``{"edges", "proportions",
    "missing", "n"}`` where ``proportions`` has ``len(edges) + 1`` entries and, with ``missing``, sums
    to 1. Raises ValueError on empty input or infinities (a feature pipeline bug, not a distribution)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("cannot build a reference distribution from no values")
    if bool(np.any(np.isinf(arr))):
        raise ValueError("reference values contain infinities")
    present = arr[~np.isnan(arr)]
    if present.size and n_bins > 1:
        edges = np.unique(np.quantile(present, np.arange(1, n_bins) / n_bins))
    else:
        edges = np.empty(0, dtype=np.float64)
    counts = np.bincount(_bin_index(edges, present), minlength=edges.size + 1)
    return {
        "edges": [float(e) for e in edges],
        "proportions": [float(c) / arr.size for c in counts],
        "missing": float(arr.size - present.size) / arr.size,
        "n": int(arr.size),
    }


def _parse_reference(reference: Mapping[str, Any]) -> tuple[FloatArray, FloatArray, float]:
    try:
        edges = np.asarray(reference["edges"], dtype=np.float64)
        proportions = np.asarray(reference["proportions"], dtype=np.float64)
        missing = float(reference.get("missing", 0.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed reference histogram ({exc!r}); expected edges/proportions/missing") from exc
    if edges.ndim != 1 or proportions.ndim != 1 or proportions.size != edges.size + 1:
        raise ValueError(
            f"malformed reference histogram: {edges.size} edges need {edges.size + 1} proportions, "
            f"got {proportions.size}"
        )
    if not bool(np.all(np.isfinite(edges))) or bool(np.any(np.diff(edges) <= 0)):
        raise ValueError("malformed reference histogram: edges must be finite and strictly increasing")
    if bool(np.any(proportions < 0)) or not 0.0 <= missing <= 1.0:
        raise ValueError("malformed reference histogram: proportions must be non-negative")
    if abs(float(proportions.sum()) + missing - 1.0) > 1e-6:
        raise ValueError(
            f"malformed reference histogram: proportions + missing sum to {proportions.sum() + missing}, not 1"
        )
    return edges, proportions, missing


def psi(reference_hist: Mapping[str, Any], current_values: npt.ArrayLike, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of ``current_values`` against a ``histogram_reference``:
    sum over bins (and the missing category) of (cur - ref) * ln(cur / ref), both floored at
    ``epsilon``. 0 means the same distribution; common reading: < 0.1 stable, 0.1-0.25 moderate
    shift, > 0.25 major shift. Infinite current values fall in the end bins; NaN counts as missing.
    Raises ValueError on an empty sample or a malformed reference."""
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    edges, ref_props, ref_missing = _parse_reference(reference_hist)
    arr = np.asarray(current_values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("cannot compute PSI of an empty sample")
    present = arr[~np.isnan(arr)]
    counts = np.bincount(_bin_index(edges, present), minlength=edges.size + 1)
    reference = np.maximum(np.r_[ref_props, ref_missing], epsilon)
    current = np.maximum(np.r_[counts / arr.size, (arr.size - present.size) / arr.size], epsilon)
    return float(np.sum((current - reference) * np.log(current / reference)))


def _json_float(value: float) -> float | None:
    """JSON has no NaN/inf; stored reports carry None instead."""
    return value if math.isfinite(value) else None
