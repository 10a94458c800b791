"""Offline evaluation of a scored hold-out set: the numbers stored in ModelMetadata.metrics and a
human-readable report (JSON + plots) written next to the training run. The maths lives in
stream_app.core.metrics so online monitoring computes the same quantities."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stream_app.adapters.files import atomic_write_text
from stream_app.core.metrics import (
    calibration_bins,
    pr_auc,
    pr_curve,
    precision_recall_at,
    roc_auc,
    roc_curve,
    threshold_for_precision,
)
from stream_app.errors import DataValidationError

REPORT_FILES = ("report.json", "roc.png", "pr.png", "feature_importance.png", "score_distribution.png")


def _checked(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Labels/scores as arrays, with the single-class case (every ranking metric undefined) reported
    as a data problem rather than a maths error."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    try:
        roc_auc(y, s)
    except ValueError as exc:
        raise DataValidationError(f"cannot evaluate: {exc}", {"n": int(y.size)}) from exc
    return y.astype(np.float64) == 1.0, s


def evaluate(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    threshold: float,
    feature_importance: Mapping[str, float],
    calibration_n_bins: int = 10,
) -> dict[str, Any]:
    """ROC-AUC, PR-AUC (average precision), precision/recall/F1 and alert rate at ``threshold``,
    calibration table + ECE, base rate and n, plus the importance sorted descending. JSON-ready.
    Raises DataValidationError when the labels hold a single class (AUCs undefined)."""
    y, s = _checked(y_true, scores)
    n = int(y.size)
    positives = int(np.count_nonzero(y))
    at_threshold = precision_recall_at(y, s, threshold)
    return {
        "n": n,
        "positives": positives,
        "base_rate": positives / n,
        "roc_auc": roc_auc(y, s),
        "pr_auc": pr_auc(y, s),
        "threshold": float(threshold),
        "precision": at_threshold.precision,
        "recall": at_threshold.recall,
        "f1": at_threshold.f1,
        "flag_rate": at_threshold.flag_rate,
        "confusion": {"tp": at_threshold.tp, "fp": at_threshold.fp, "fn": at_threshold.fn, "tn": at_threshold.tn},
        "calibration": calibration_bins(y, s, calibration_n_bins).as_dict(),
        "feature_importance": _sorted_importance(feature_importance),
    }


def _sorted_importance(importance: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(importance.items(), key=lambda kv: (-kv[1], kv[0]))}


def choose_threshold(y: npt.ArrayLike, scores: npt.ArrayLike, target_precision: float | None = None) -> float:
    """The decision threshold (flag when ``score >= threshold``).

    Default: the threshold that maximises F1 on the given (validation, never test) labels, ties going
    to the higher threshold (fewer alerts for the same F1). F1 is chosen because fraud teams value a
    caught fraud and a wrongly declined customer at the same order of magnitude and the alert budget is
    not yet known; when it is, pass ``target_precision`` instead to get the lowest threshold (most
    recall) whose precision reaches it. Raises ValueError when the target cannot be reached, rather
    than silently shipping a threshold that misses the agreed precision.
    """
    labels, s = _checked(y, scores)
    if target_precision is not None:
        chosen = threshold_for_precision(labels, s, target_precision)
        if chosen is None:
            raise ValueError(f"no threshold reaches precision {target_precision} on these {labels.size} labels")
        return chosen
    precision, recall, thresholds = pr_curve(labels, s)
    # Skip the conventional (precision 1, recall 0, +inf) starting point: it flags nothing.
    precision, recall, thresholds = precision[1:], recall[1:], thresholds[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    # Thresholds are descending, so argmax's first maximum is the highest threshold among ties.
    return float(thresholds[int(np.argmax(f1))])


def write_report(
    metrics: Mapping[str, Any],
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    importance: Mapping[str, float],
    out_dir: Path | str,
) -> dict[str, Path]:
    """Write ``report.json`` and the PNG plots (ROC, PR, feature importance, score distribution by
    class) into ``out_dir``; returns the written paths by file name. Uses matplotlib's Agg canvas on
    private Figure objects, never pyplot, so it works headless and from threads."""
    y, s = _checked(y_true, scores)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    threshold = metrics.get("threshold")
    written = {
        "report.json": _write_json(out / "report.json", metrics),
        "roc.png": _save(_roc_figure(y, s, metrics), out / "roc.png"),
        "pr.png": _save(_pr_figure(y, s, metrics), out / "pr.png"),
        "feature_importance.png": _save(_importance_figure(importance), out / "feature_importance.png"),
        "score_distribution.png": _save(
            _score_figure(y, s, float(threshold) if threshold is not None else None), out / "score_distribution.png"
        ),
    }
    return written


def _write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Atomic (temp file + rename) so a reader never sees half a report; NaN is refused, not written as
    the non-JSON token ``NaN``."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    return path


def _roc_figure(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64], metrics: Mapping[str, Any]) -> Figure:
    fpr, tpr, _ = roc_curve(y, s)
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    ax.plot(fpr, tpr, label=f"model (AUC {roc_auc(y, s):.4f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    _mark_threshold(ax, metrics, x_key="fpr")
    ax.set(xlabel="false positive rate", ylabel="true positive rate (recall)", title="ROC", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="lower right")
    return figure


def _mark_threshold(ax: Any, metrics: Mapping[str, Any], x_key: str) -> None:
    confusion = metrics.get("confusion")
    if not isinstance(confusion, Mapping) or metrics.get("threshold") is None:
        return
    negatives = confusion["fp"] + confusion["tn"]
    recall = metrics.get("recall")
    if x_key == "fpr" and negatives:
        ax.scatter([confusion["fp"] / negatives], [recall], color="red", zorder=3,
                   label=f"threshold {metrics['threshold']:.3f}")
    elif x_key == "recall":
        ax.scatter([recall], [metrics.get("precision")], color="red", zorder=3,
                   label=f"threshold {metrics['threshold']:.3f}")


def _pr_figure(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64], metrics: Mapping[str, Any]) -> Figure:
    precision, recall, _ = pr_curve(y, s)
    base_rate = float(np.mean(y))
    figure = Figure(figsize=(5, 5))
    ax = figure.add_subplot()
    ax.step(recall, precision, where="post", label=f"model (AP {pr_auc(y, s):.4f})")
    ax.axhline(base_rate, linestyle="--", color="grey", label=f"base rate {base_rate:.4f}")
    _mark_threshold(ax, metrics, x_key="recall")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper right")
    return figure


def _importance_figure(importance: Mapping[str, float]) -> Figure:
    ordered = list(_sorted_importance(importance).items())
    figure = Figure(figsize=(7, max(2.5, 0.35 * len(ordered) + 1)))
    ax = figure.add_subplot()
    if ordered:
        names, values = zip(*reversed(ordered), strict=True)
        ax.barh(list(names), list(values))
    else:
        ax.text(0.5, 0.5, "no importance recorded", ha="center", va="center")
    ax.set(xlabel="importance (gain)", title="Feature importance")
    return figure


def _score_figure(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64], threshold: float | None) -> Figure:
    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    bins = np.linspace(float(min(0.0, s.min())), float(max(1.0, s.max())), 51).tolist()
    # Densities, not counts: fraud is rare and would be invisible next to the legitimate traffic.
    ax.hist(s[~y], bins=bins, density=True, alpha=0.6, label=f"legitimate (n={int(np.sum(~y))})")
    ax.hist(s[y], bins=bins, density=True, alpha=0.6, label=f"fraud (n={int(np.sum(y))})")
    if threshold is not None:
        ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="score", ylabel="density", title="Score distribution by class")
    ax.legend(loc="best")
    return figure
