"""``summary.png``: throughput and backlog over time, the event→prediction latency distribution, score
distributions by label and the online ROC curve, in one figure a reader can take in at a glance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stream_app.core.metrics import roc_curve
from stream_app.demo.progress import backlog
from stream_app.demo.records import SeenPrediction
from stream_app.demo.summary import Sample, join_labels, rates


def write_chart(path: Path, samples: Sequence[Sample], predictions: Mapping[str, SeenPrediction],
                labels: Mapping[str, bool], summary: Mapping[str, Any]) -> Path:
    fig = Figure(figsize=(13, 9))
    FigureCanvasAgg(fig)  # renders to a file: no display, no pyplot state
    axes = fig.subplots(2, 2)
    (ax_tput, ax_lat), (ax_score, ax_roc) = axes

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
    ax_lat.set(title="Event → prediction latency", xlabel="ms (log scale)", ylabel="predictions")

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

    ev = summary["events_in"]
    fig.suptitle(f"streamscore demo: {ev['transactions']:,} transactions in, {summary['predictions_out']:,} "
                 f"predictions, {summary['dead_letters']['total']:,} dead letters (model {summary['model_version']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
