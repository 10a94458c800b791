"""``summary.png``: what the demo measured itself (throughput and backlog over time, the event→prediction
latency distribution, score distributions by label, the online ROC curve) and, in the bottom two rows,
what the worker's ``/metrics`` showed over the same run (consumer lag per partition, event latency
percentiles, drift PSI per feature, online quality), in one figure a reader can take in at a glance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.metrics_reader import by_label
from stream_app.core.metrics import roc_curve
from stream_app.demo.metrics_view import Scrape, Scrapes, gauge_series, lag_series, latency_series
from stream_app.demo.progress import backlog
from stream_app.demo.records import SeenPrediction
from stream_app.demo.summary import Sample, join_labels, rates

FROM_METRICS = " (/metrics)"
DRIFT_BARS = 12


def write_chart(path: Path, samples: Sequence[Sample], predictions: Mapping[str, SeenPrediction],
                labels: Mapping[str, bool], summary: Mapping[str, Any], *, scrapes: Scrapes | None = None) -> Path:
    fig = Figure(figsize=(13, 17))
    FigureCanvasAgg(fig)  # renders to a file: no display, no pyplot state
    axes = fig.subplots(4, 2)
    (ax_tput, ax_lat), (ax_score, ax_roc) = axes[:2]

    for attr, label in (("produced", "in (transactions)"), ("scored", "predictions"), ("dead_letters", "dead letters")):
        series = rates(samples, attr)
        if series:
            ax_tput.plot([t for t, _ in series], [r for _, r in series], label=label)
    ax_tput.set(title="Throughput", xlabel="seconds since the stream began", ylabel="records/s")
    twin = ax_tput.twinx()
    twin.plot([s.t for s in samples], [backlog(s) for s in samples], color="grey", linestyle=":", label="backlog")
    twin.set_ylabel("backlog (events)")
    lines = ax_tput.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    for axis in (ax_tput, twin):  # headroom for the legend strip
        axis.set_ylim(0, max(axis.get_ylim()[1], 1.0) * 1.25)
    ax_tput.legend(lines[0] + more[0], lines[1] + more[1], loc="upper center", ncol=4, fontsize="small")

    e2e = np.asarray([p.e2e_ms for p in predictions.values() if p.e2e_ms is not None], dtype=np.float64)
    e2e = e2e[e2e > 0]
    if e2e.size:
        bins = np.logspace(np.log10(max(e2e.min(), 1.0)), np.log10(e2e.max() + 1.0), 60)
        ax_lat.hist(e2e, bins=bins, color="tab:blue")
        ax_lat.set_xscale("log")
        stats = summary["latency"]["event_to_prediction"]
        for q, style in (("p50_ms", "--"), ("p99_ms", ":")):
            if stats[q] is not None:
                ax_lat.axvline(stats[q], color="black", linestyle=style, label=f"{q[:3]} {stats[q]:,.0f} ms")
        ax_lat.legend(fontsize="small")
    ax_lat.set(title="Sent → prediction latency", xlabel="ms (log scale)", ylabel="predictions")

    y, joined = join_labels(predictions, labels)
    scores = np.asarray([p.score for p in joined], dtype=np.float64)
    truth = np.asarray(y, dtype=bool)
    bins = np.linspace(0.0, 1.0, 41)
    for mask, label, colour in ((~truth, "legit", "tab:green"), (truth, "fraud", "tab:red")):
        if mask.any():
            ax_score.hist(scores[mask], bins=bins, density=True, alpha=0.6, label=f"{label} ({int(mask.sum()):,})",
                          color=colour)
    ax_score.set_yscale("log")
    ax_score.set(title="Score by label (labelled predictions)", xlabel="score", ylabel="density (log)")
    if truth.size:
        ax_score.legend(fontsize="small")

    quality = summary["online_quality"]
    if quality["roc_auc"] is not None:
        fpr, tpr, _ = roc_curve(truth, scores)
        ax_roc.plot(fpr, tpr, label=f"ROC-AUC {quality['roc_auc']:.3f} (n={quality['labelled_predictions']:,})")
        ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax_roc.legend(loc="lower right", fontsize="small")
    else:
        ax_roc.text(0.5, 0.5, f"ROC-AUC n/a\n{quality['note']}", ha="center", va="center")
    ax_roc.set(title="Online ROC from delayed labels", xlabel="false positive rate", ylabel="true positive rate")

    worker = scrapes.worker if scrapes is not None else []
    (ax_lag, ax_mlat), (ax_drift, ax_quality) = axes[2:]
    _lag_panel(ax_lag, worker)
    _latency_panel(ax_mlat, worker)
    _drift_panel(ax_drift, worker)
    _quality_panel(ax_quality, worker, summary)

    ev = summary["events_in"]
    fig.suptitle(f"streamscore demo: {ev['transactions']:,} transactions in, {summary['predictions_out']:,} "
                 f"predictions, {summary['dead_letters']['total']:,} dead letters (model {summary['model_version']})")
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.98))  # room for the title
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path



def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: not scraped", ha="center", va="center", transform=ax.transAxes)


def _lag_panel(ax: Any, worker: Sequence[Scrape]) -> None:
    lag = lag_series(worker)
    for key, points in lag.items():
        ax.plot([t for t, _ in points], [v for _, v in points], label=key, drawstyle="steps-post")
    if lag:
        ax.legend(fontsize="x-small", ncol=2)
    else:
        _no_data(ax, "consumer lag")
    ax.set(title="Consumer lag per partition" + FROM_METRICS, xlabel="seconds since the stream began",
           ylabel="records (end - committed offset)")


def _latency_panel(ax: Any, worker: Sequence[Scrape]) -> None:
    latency = latency_series(worker)
    for (key, points), style in zip(latency.items(), ("-", "--", ":"), strict=False):
        ax.plot([t for t, _ in points], [v for _, v in points], linestyle=style, marker=".", label=key)
    if any(latency.values()):
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    else:
        _no_data(ax, "event latency")
    ax.set(title="Event latency per scrape interval" + FROM_METRICS, xlabel="seconds since the stream began",
           ylabel="ms, record timestamp → acknowledged (log)")


def _drift_panel(ax: Any, worker: Sequence[Scrape]) -> None:
    last = by_label(worker[-1].samples, m.FEATURE_DRIFT_PSI, "feature") if worker else {}
    psi = sorted(((f, v) for f, v in last.items() if np.isfinite(v)), key=lambda fv: fv[1])[-DRIFT_BARS:]
    if psi:
        ax.barh([f for f, _ in psi], [v for _, v in psi], color="tab:purple")
        ax.tick_params(axis="y", labelsize="x-small")
    else:
        _no_data(ax, "drift")
    ax.set(title="Feature drift vs the training reference" + FROM_METRICS, xlabel=f"PSI (top {DRIFT_BARS} features)")


def _quality_panel(ax: Any, worker: Sequence[Scrape], summary: Mapping[str, Any]) -> None:
    plotted = False
    for name, label in ((m.ONLINE_ROC_AUC, "ROC-AUC"), (m.ONLINE_PRECISION, "precision"),
                        (m.ONLINE_RECALL, "recall")):
        for version, points in gauge_series(worker, name, "model_version").items():
            ax.plot([t for t, _ in points], [v for _, v in points], label=f"{label} {version}")
            plotted = True
    if plotted:
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize="small", loc="lower right")
    else:
        _no_data(ax, "online quality")
    quality = (summary.get("metrics") or {}).get("online_quality") or {}
    labels = sum((q.get("labels") or 0) for q in quality.values())
    ax.set(title=f"Online quality, rolling window of {labels:,.0f} labels" + FROM_METRICS,
           xlabel="seconds since the stream began", ylabel="ROC-AUC; precision, recall at the threshold")
