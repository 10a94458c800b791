"""The demo's numbers, from what it observed: counts, latency percentiles, throughput, and online ROC-AUC
from labels joined to predictions by event_id. Pure functions on plain data, so they are unit-tested
without Kafka; ROC/PR-AUC come from ``stream_app.core.metrics`` so online and offline numbers are
computed the same way. The summary's ``metrics`` section, from the worker's and the sink's /metrics,
is ``metrics_view``'s; ``SOURCES`` says which figure comes from where."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream_app.core.metrics import pr_auc, roc_auc
from stream_app.demo.metrics_view import Scrapes, fmt, format_metrics, metrics_notes, metrics_section
from stream_app.demo.records import SeenPrediction


@dataclass(frozen=True, slots=True)
class Sample:
    """Cumulative totals at ``t`` seconds after the live stream began (one per progress tick)."""

    t: float
    produced: int
    scored: int
    dead_letters: int
    labels: int


@dataclass
class Observed:
    """Everything the demo saw during the measured phase (the warm-up is excluded)."""

    transactions_in: int  # transaction records delivered to Kafka, valid and invalid
    invalid_in: int
    labels_in: int
    labels_pending: int  # labels not yet due when the stream stopped (never sent)
    stream_s: float
    predictions: Mapping[str, SeenPrediction]
    duplicate_predictions: int
    dead_letters: Mapping[str, int]
    labels: Mapping[str, bool]
    samples: Sequence[Sample] = field(default_factory=list)
    unreadable: int = 0
    scrapes: Scrapes | None = None  # the worker's and the sink's /metrics over the same phase


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation as numpy's default); None for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be within [0, 100], got {q}")
    finite = [v for v in values if math.isfinite(v)]
    return float(np.percentile(np.asarray(finite, dtype=np.float64), q)) if finite else None


def latency_stats(values: Sequence[float | None]) -> dict[str, float | int | None]:
    present = [v for v in values if v is not None]
    return {"n": len(present), "p50_ms": percentile(present, 50), "p99_ms": percentile(present, 99),
            "max_ms": max(present) if present else None}


def join_labels(predictions: Mapping[str, SeenPrediction], labels: Mapping[str, bool],
                ) -> tuple[list[bool], list[SeenPrediction]]:
    """(label, prediction) for every event that has both, in event_id order (deterministic)."""
    joined = sorted(set(predictions) & set(labels))
    return [labels[e] for e in joined], [predictions[e] for e in joined]


@dataclass(frozen=True)
class OnlineQuality:
    """Quality on the labelled predictions. The AUCs are None, with ``note`` saying why, until both
    classes have been seen (the area is undefined before)."""

    n: int
    positives: int
    roc_auc: float | None
    pr_auc: float | None
    decline_precision: float | None  # of the declined labelled events, the share that was fraud
    decline_recall: float | None  # of the labelled frauds, the share declined
    note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"labelled_predictions": self.n, "positives": self.positives, "roc_auc": self.roc_auc,
                "pr_auc": self.pr_auc, "decline_precision": self.decline_precision,
                "decline_recall": self.decline_recall, "note": self.note}


def online_quality(predictions: Mapping[str, SeenPrediction], labels: Mapping[str, bool]) -> OnlineQuality:
    y, joined = join_labels(predictions, labels)
    positives = sum(y)
    declined = [p.decision == "decline" for p in joined]
    true_declines = sum(1 for fraud, d in zip(y, declined, strict=True) if fraud and d)
    precision = true_declines / sum(declined) if any(declined) else None
    recall = true_declines / positives if positives else None
    if not joined:
        return OnlineQuality(0, 0, None, None, None, None, "no labelled predictions yet")
    scores = [p.score for p in joined]
    try:
        auc, ap = roc_auc(y, scores), pr_auc(y, scores)
    except ValueError as exc:  # one class only: undefined, not 0.5
        return OnlineQuality(len(y), positives, None, None, precision, recall, str(exc))
    return OnlineQuality(len(y), positives, auc, ap, precision, recall, None)


QUALITY_METRICS = {"roc_auc": "ROC-AUC", "pr_auc": "PR-AUC"}  # compared online vs offline: key -> printed name
QUALITY_TOLERANCE = 0.05  # online quality is comparable to offline when each metric is within this of it


def online_vs_offline(online: Mapping[str, Any], offline: Mapping[str, Any] | None,
                      tolerance: float = QUALITY_TOLERANCE) -> dict[str, dict[str, Any]]:
    """Per metric both sides know (``QUALITY_METRICS``): the online and the offline holdout's value, the
    gap (online - offline) and whether it is within ``tolerance``; empty without an offline holdout."""
    out: dict[str, dict[str, Any]] = {}
    for name in QUALITY_METRICS:
        now, then = online.get(name), (offline or {}).get(name)
        if now is None or then is None:
            continue
        gap = float(now) - float(then)
        out[name] = {"online": float(now), "offline": float(then), "gap": gap, "within": abs(gap) <= tolerance}
    return out


def rates(samples: Sequence[Sample], attr: str) -> list[tuple[float, float]]:
    """Per-interval rates (t at the interval's end, events/s) of a cumulative ``Sample`` attribute."""
    out: list[tuple[float, float]] = []
    for before, after in itertools.pairwise(samples):
        dt = after.t - before.t
        if dt > 0:
            out.append((after.t, (getattr(after, attr) - getattr(before, attr)) / dt))
    return out


SOURCES = {
    "events_in": "the demo's producer: records the broker acknowledged",
    "predictions_out, decisions, dead_letters, backlog, latency, online_quality": "the demo's own consumer of "
    "predictions, transactions.dlq and labels (latency.event_to_prediction: the transaction record's Kafka "
    "timestamp, when it was sent -> the prediction's; online_quality: every labelled prediction of the run, "
    "joined by event_id)",
    "metrics": "the worker's and the sink's /metrics, what Prometheus would scrape (event latency: record "
    "timestamp -> prediction acknowledged, from histogram buckets; online quality: the worker's rolling window)",
}


def build_summary(observed: Observed, *, config: Mapping[str, Any], timings_s: Mapping[str, float],
                  model_version: str | None, offline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The summary written to ``summary.json`` (plain JSON: no NaN, no numpy scalars). ``offline``: the
    model's offline holdout metrics (``roc_auc``, ``pr_auc``, ``threshold``), compared with the online ones."""
    predictions = observed.predictions
    dlq_total = sum(observed.dead_letters.values())
    out_rates = [r for t, r in rates(observed.samples, "scored") if t <= observed.stream_s + 1e-9]
    backlog = [s.produced - s.scored - s.dead_letters for s in observed.samples]
    quality = online_quality(predictions, observed.labels)
    decisions = Counter(p.decision for p in predictions.values())
    versions = Counter(p.model_version for p in predictions.values())
    stream_s = observed.stream_s if observed.stream_s > 0 else float("nan")
    unaccounted = observed.transactions_in - len(predictions) - dlq_total
    metrics = metrics_section(observed.scrapes) if observed.scrapes is not None else None
    comparison = online_vs_offline(quality.as_dict(), offline)
    checks = metrics_notes(metrics, predictions_seen=len(predictions) + observed.duplicate_predictions,
                           dead_letters_seen=dlq_total) if metrics is not None else []
    summary: dict[str, Any] = _json_clean({
        "config": dict(config),
        "model_version": model_version,
        "timings_s": dict(timings_s),
        "events_in": {"transactions": observed.transactions_in, "valid": observed.transactions_in - observed.invalid_in,
                      "invalid": observed.invalid_in, "labels": observed.labels_in,
                      "labels_not_yet_due": observed.labels_pending},
        "predictions_out": len(predictions),
        "duplicate_predictions": observed.duplicate_predictions,
        "dead_letters": {"total": dlq_total, "by_reason": dict(sorted(observed.dead_letters.items()))},
        "unaccounted": unaccounted,
        "unreadable_records": observed.unreadable,
        "decisions": dict(sorted(decisions.items())),
        "models_seen": dict(sorted(versions.items())),
        "throughput_per_s": {
            "in_mean": observed.transactions_in / stream_s,
            "out_mean_while_streaming": (sum(out_rates) / len(out_rates)) if out_rates else None,
            "out_peak": max(out_rates) if out_rates else None,
        },
        "backlog": {"max": max(backlog) if backlog else None, "final": backlog[-1] if backlog else None},
        "latency": {
            "event_to_prediction": latency_stats([p.e2e_ms for p in predictions.values()]),
            "worker": latency_stats([p.worker_ms for p in predictions.values()]),
        },
        "online_quality": quality.as_dict(),
        "offline_holdout": dict(offline) if offline is not None else None,
        "online_vs_offline": comparison,
        "metrics": metrics,
        "sources": SOURCES,
        "notes": notes(observed.transactions_in / stream_s, max(backlog, default=0), unaccounted) + checks
        + quality_notes(comparison),
    })
    return summary


def notes(in_rate: float, max_backlog: int, unaccounted: int) -> list[str]:
    """What a reader should know before trusting the numbers."""
    out: list[str] = []
    if in_rate > 0 and max_backlog > 5 * in_rate:
        out.append(f"the worker fell behind: up to {max_backlog:,} events ({max_backlog / in_rate:.0f} s of input) "
                   "waited, so the latency is mostly queueing; the machine was busy, or --rate is above what the "
                   "worker sustains here")
    if unaccounted > 0:
        out.append(f"{unaccounted:,} transactions had neither a prediction nor a dead letter when the demo stopped "
                   "(the worker had not caught up)")
    return out


def quality_notes(comparison: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A note per metric whose online value is further than ``QUALITY_TOLERANCE`` from the offline one."""
    out: list[str] = []
    for name, c in comparison.items():
        if not c["within"]:
            side = "below" if c["gap"] < 0 else "above"
            out.append(f"online {QUALITY_METRICS[name]} {c['online']:.3f} is {abs(c['gap']):.3f} {side} the offline "
                       f"holdout's {c['offline']:.3f} (more than {QUALITY_TOLERANCE:g}): the live stream does not look "
                       "like the data the model was evaluated on")
    return out


def _json_clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return value


def format_summary(summary: Mapping[str, Any]) -> str:
    """The human-readable summary printed at the end of the demo."""
    ev, dlq, lat, q = summary["events_in"], summary["dead_letters"], summary["latency"], summary["online_quality"]
    e2e, worker, tput = lat["event_to_prediction"], lat["worker"], summary["throughput_per_s"]
    reasons = ", ".join(f"{k} {v:,}" for k, v in dlq["by_reason"].items()) or "none"
    decisions = ", ".join(f"{k} {v:,}" for k, v in summary["decisions"].items()) or "none"
    auc = (f"ROC-AUC {q['roc_auc']:.3f}, PR-AUC {q['pr_auc']:.3f}" if q["roc_auc"] is not None
           else f"ROC-AUC n/a ({q['note']})")
    lines = [
        f"events in          {ev['transactions']:,} transactions ({ev['valid']:,} valid, {ev['invalid']:,} invalid), "
        f"{ev['labels']:,} labels ({ev['labels_not_yet_due']:,} not yet due at the end)",
        f"predictions out    {summary['predictions_out']:,} (model {summary['model_version']}; decisions: {decisions}; "
        f"duplicates {summary['duplicate_predictions']:,})",
        f"dead letters       {dlq['total']:,} ({reasons})",
        f"unaccounted        {summary['unaccounted']:,} (in - predictions - dead letters)",
        f"throughput         in {fmt(tput['in_mean'])}/s; out {fmt(tput['out_mean_while_streaming'])}/s mean, "
        f"{fmt(tput['out_peak'])}/s peak; backlog max {fmt(summary['backlog']['max'], ',')}",
        f"latency            sent -> prediction p50 {fmt(e2e['p50_ms'], ',.0f', ' ms')}, "
        f"p99 {fmt(e2e['p99_ms'], ',.0f', ' ms')} (max {fmt(e2e['max_ms'], ',.0f', ' ms')}); "
        f"in the worker p50 {fmt(worker['p50_ms'], ',.0f', ' ms')}, p99 {fmt(worker['p99_ms'], ',.0f', ' ms')}",
        f"online quality     {auc} on {q['labelled_predictions']:,} labelled predictions "
        f"({q['positives']:,} fraud); declines: precision {fmt(q['decline_precision'], '.3f')}, "
        f"recall {fmt(q['decline_recall'], '.3f')}",
    ]
    holdout = summary.get("offline_holdout") or {}
    if holdout.get("roc_auc") is not None:
        pr = f", PR-AUC {holdout['pr_auc']:.3f}" if holdout.get("pr_auc") is not None else ""
        lines.append(f"offline holdout    ROC-AUC {holdout['roc_auc']:.3f}{pr} (the same model on the last 5 days "
                     "of history)")
    comparison = summary.get("online_vs_offline") or {}
    if comparison:
        lines.append("online vs offline  " + "; ".join(
            f"{QUALITY_METRICS[name]} {c['online']:.3f} vs {c['offline']:.3f} (gap {c['gap']:+.3f}, "
            f"{'within' if c['within'] else 'OUTSIDE'} {QUALITY_TOLERANCE:g})" for name, c in comparison.items()))
    if summary["timings_s"].get("total") is not None:
        lines.append(f"wall time          {summary['timings_s']['total']:.0f} s")
    lines += [f"note               {note}" for note in summary.get("notes", [])]
    if summary.get("metrics") is not None:
        lines += format_metrics(summary["metrics"])
    return "\n".join(lines)
