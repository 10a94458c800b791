"""What an operator would see: the demo's figures from the worker's and the sink's ``/metrics``, scraped
every couple of seconds through the live phase and once more at the end (``scraper``). Pure functions
on the scrapes, so they are unit-tested on canned expositions.

Counters and histograms are read as their increase from the first scrape (taken as the live stream
begins, after the warm-up) to the last (after the drain), so they cover the same events as the demo's
own counts; gauges (lag, drift, online quality, freshness, the model) are the last scrape's, or a
series over the scrapes for the chart."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.metrics_reader import (
    Samples,
    bucket_quantile,
    buckets,
    by_label,
    delta,
    histogram_figures,
    total,
)

WORKER, SINK = "worker", "sink"  # the scraped processes
QUANTILES = (0.5, 0.95, 0.99)
TOP_FEATURES = 5

Series = list[tuple[float, float]]  # (seconds since the stream began, value)


@dataclass(frozen=True, slots=True)
class Scrape:
    """One successful scrape, ``t`` seconds after the live stream began."""

    t: float
    samples: Samples


@dataclass
class Scrapes:
    """Every successful scrape of each process in time order, and how many failed (with the first error)."""

    interval_s: float
    worker: list[Scrape] = field(default_factory=list)
    sink: list[Scrape] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)

    def of(self, target: str) -> list[Scrape]:
        """The scrapes of ``WORKER`` or ``SINK``."""
        return {WORKER: self.worker, SINK: self.sink}[target]


def gained(scrapes: Sequence[Scrape]) -> Samples:
    """What counters and histograms gained from the first scrape to the last (empty without scrapes)."""
    if not scrapes:
        return {}
    return delta(scrapes[0].samples, scrapes[-1].samples)


def lag_series(scrapes: Sequence[Scrape]) -> dict[str, Series]:
    """The consumer lag of every ``topic/partition`` over the scrapes."""
    out: dict[str, Series] = {}
    for scrape in scrapes:
        for (name, labels), value in sorted(scrape.samples.items()):
            if name == m.CONSUMER_LAG:
                found = dict(labels)
                out.setdefault(f"{found.get('topic')}/{found.get('partition')}", []).append((scrape.t, value))
    return out


def latency_series(scrapes: Sequence[Scrape]) -> dict[str, Series]:
    """Event latency quantiles (ms) of the events acknowledged between consecutive scrapes, at the later
    one (an interval without events has no point): what ``histogram_quantile`` over ``rate()`` shows."""
    out: dict[str, Series] = {f"p{100 * q:g}": [] for q in QUANTILES}
    for before, after in itertools.pairwise(scrapes):
        cumulative = buckets(delta(before.samples, after.samples), m.EVENT_LATENCY)
        for q in QUANTILES:
            value = bucket_quantile(cumulative, q)
            if value is not None:
                out[f"p{100 * q:g}"].append((after.t, 1e3 * value))
    return out


def gauge_series(scrapes: Sequence[Scrape], name: str, label: str) -> dict[str, Series]:
    """A gauge over the scrapes, one series per value of ``label``."""
    out: dict[str, Series] = {}
    for scrape in scrapes:
        for key, value in sorted(by_label(scrape.samples, name, label).items()):
            if math.isfinite(value):
                out.setdefault(key, []).append((scrape.t, value))
    return out


def _top(values: Mapping[str, float], n: int = TOP_FEATURES) -> list[dict[str, Any]]:
    finite = [(k, v) for k, v in values.items() if math.isfinite(v)]
    return [{"feature": k, "value": v} for k, v in sorted(finite, key=lambda kv: (-kv[1], kv[0]))[:n]]


def _lag(scrapes: Sequence[Scrape]) -> dict[str, Any]:
    """The consumer group's lag summed over its partitions (max over the scrapes, and at the last one) and
    per partition."""
    series = lag_series(scrapes)
    totals = [total(s.samples, m.CONSUMER_LAG) for s in scrapes if any(n == m.CONSUMER_LAG for n, _ in s.samples)]
    last_t = scrapes[-1].t if scrapes else None
    final = {key: points[-1][1] for key, points in series.items() if points[-1][0] == last_t}
    return {"max": max(totals, default=None), "final": sum(final.values()) if final else None,
            "max_by_partition": {key: max(v for _, v in points) for key, points in series.items()},
            "final_by_partition": final}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _online_quality(last: Samples) -> dict[str, dict[str, float | None]]:
    """Per model version, the online-quality gauges of the last scrape."""
    gauges = {key: by_label(last, name, "model_version") for key, name in (
        ("roc_auc", m.ONLINE_ROC_AUC), ("precision", m.ONLINE_PRECISION), ("recall", m.ONLINE_RECALL),
        ("labels", m.ONLINE_LABELS))}
    return {version: {key: _finite(values.get(version)) for key, values in gauges.items()}
            for version in sorted(gauges["labels"])}


def metrics_section(scrapes: Scrapes) -> dict[str, Any]:
    """The summary's ``metrics`` section (see the module docstring for what is a delta and what is the
    last scrape's); a process never scraped has its figures as None or empty."""
    worker, sink = scrapes.worker, scrapes.sink
    w_gain, s_gain = gained(worker), gained(sink)
    w_last = worker[-1].samples if worker else {}
    s_last = sink[-1].samples if sink else {}
    dead_letters = {k: int(v) for k, v in sorted(by_label(w_gain, m.DEAD_LETTERS, "reason").items()) if v > 0}
    missing = by_label(w_last, m.FEATURE_MISSING, "feature")
    return {
        "source": "the worker's and the sink's /metrics: counters and histograms are their increase from the "
                  "first scrape (the stream's start) to the last (after the drain); gauges are the last scrape's",
        "scrapes": {"interval_s": scrapes.interval_s,
                    WORKER: {"ok": len(worker), "failed": scrapes.failed.get(WORKER, 0)},
                    SINK: {"ok": len(sink), "failed": scrapes.failed.get(SINK, 0)},
                    "first_error": dict(scrapes.first_error)},
        "consumer_lag": {WORKER: _lag(worker), SINK: _lag(sink)},
        "event_latency_ms": histogram_figures(w_gain, m.EVENT_LATENCY, 1e3, QUANTILES) if worker else None,
        "predictions_published": int(total(w_gain, m.PREDICTIONS_PUBLISHED)) if worker else None,
        "decisions": {k: int(v) for k, v in sorted(by_label(w_gain, m.DECISIONS, "decision").items())},
        "dead_letters": {"total": sum(dead_letters.values()), "by_reason": dead_letters} if worker else None,
        "online_quality": _online_quality(w_last),
        "drift_psi_top": _top(by_label(w_last, m.FEATURE_DRIFT_PSI, "feature")),
        "missing_share": {"features": len(missing), "with_missing": sum(1 for v in missing.values() if v > 0),
                          "top": _top({k: v for k, v in missing.items() if v > 0})},
        "feature_freshness_s": dict(sorted(by_label(w_last, m.FEATURE_FRESHNESS, "view").items())),
        "model_info": [dict(labels) for (name, labels), v in sorted(w_last.items()) if name == m.MODEL_INFO and v == 1],
        "sink": {"records": {k: int(v) for k, v in sorted(by_label(s_gain, m.SINK_RECORDS, "topic").items())},
                 "rows_written": {k: int(v) for k, v in sorted(by_label(s_gain, m.SINK_ROWS_WRITTEN, "log").items())},
                 "open_rows": int(total(s_last, m.SINK_OPEN_ROWS)) if sink else None},
    }


def metrics_notes(section: Mapping[str, Any], *, predictions_seen: int, dead_letters_seen: int) -> list[str]:
    """Where /metrics disagrees with what the demo read from the topics itself (``predictions_seen``
    counts duplicates too: the counter counts every publication), or could not be read."""
    out: list[str] = []
    published, dlq = section["predictions_published"], section["dead_letters"]
    if published is not None and published != predictions_seen:
        out.append(f"the worker's /metrics counted {published:,} predictions published, the demo read "
                   f"{predictions_seen:,} from the topic")
    if dlq is not None and dlq["total"] != dead_letters_seen:
        out.append(f"the worker's /metrics counted {dlq['total']:,} dead letters, the demo read {dead_letters_seen:,}")
    final_lag = section["consumer_lag"][WORKER]["final"]
    if final_lag:
        out.append(f"the worker's consumer lag still read {final_lag:,.0f} at the end")
    failed = {k: v["failed"] for k, v in section["scrapes"].items() if isinstance(v, dict) and v.get("failed")}
    if failed:
        out.append("failed /metrics scrapes: " + ", ".join(f"{k} {v:,}" for k, v in failed.items())
                   + "; the metrics section is from the others")
    return out


def fmt(value: Any, spec: str = ",.0f", unit: str = "") -> str:
    """``value`` formatted, or "n/a" for None."""
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def format_metrics(section: Mapping[str, Any]) -> list[str]:
    """The metrics section as the summary's closing lines."""
    sc, lag, lat = section["scrapes"], section["consumer_lag"], section["event_latency_ms"]
    w_lag, s_lag = lag["worker"], lag["sink"]
    lines = [f"/metrics scrapes   worker {sc['worker']['ok']:,} ok, {sc['worker']['failed']:,} failed; "
             f"sink {sc['sink']['ok']:,} ok, {sc['sink']['failed']:,} failed (every {sc['interval_s']:g} s)"]
    if sc["first_error"]:
        lines.append("  first errors     " + "; ".join(f"{k}: {v}" for k, v in sc["first_error"].items()))
    lines.append(f"  consumer lag     (all partitions) worker max {fmt(w_lag['max'])}, "
                 f"at the end {fmt(w_lag['final'])}; sink max {fmt(s_lag['max'])}, at the end {fmt(s_lag['final'])} "
                 f"(open rows {fmt(section['sink']['open_rows'], ',')})")
    if lat is not None:
        lines.append(f"  event latency    p50 {fmt(lat['p50'], unit=' ms')}, p95 {fmt(lat['p95'], unit=' ms')}, "
                     f"p99 {fmt(lat['p99'], unit=' ms')} over {lat['count']:,} events "
                     "(record timestamp -> prediction acknowledged, from the histogram's buckets)")
    dlq = section["dead_letters"]
    reasons = ", ".join(f"{k} {v:,}" for k, v in dlq["by_reason"].items()) if dlq else ""
    lines.append(f"  published        {fmt(section['predictions_published'], ',')} predictions; dead letters "
                 f"{fmt(dlq['total'] if dlq else None, ',')}" + (f" ({reasons})" if reasons else ""))
    for version, q in section["online_quality"].items():
        lines.append(f"  online quality   {version}: ROC-AUC {fmt(q['roc_auc'], '.3f')}, precision "
                     f"{fmt(q['precision'], '.3f')}, recall {fmt(q['recall'], '.3f')} on {fmt(q['labels'], ',.0f')} "
                     "labels (the worker's rolling window)")
    if not section["online_quality"]:
        lines.append("  online quality   n/a (no labels joined in the worker yet)")
    drift = ", ".join(f"{d['feature']} {d['value']:.3f}" for d in section["drift_psi_top"]) or "n/a"
    lines.append(f"  drift PSI (top)  {drift}")
    missing = section["missing_share"]
    top_missing = ", ".join(f"{d['feature']} {d['value']:.1%}" for d in missing["top"])
    lines.append(f"  missing share    {missing['with_missing']} of {missing['features']} features have missing "
                 "values" + (f" ({top_missing})" if top_missing else ""))
    freshness = ", ".join(f"{k} {v:,.1f} s" for k, v in section["feature_freshness_s"].items()) or "n/a"
    models = ", ".join(f"{i.get('version')} ({i.get('alias')})" for i in section["model_info"]) or "n/a"
    lines.append(f"  freshness        {freshness}; model {models}")
    sink = section["sink"]
    rows = ", ".join(f"{k} {v:,}" for k, v in sink["rows_written"].items()) or "none"
    lines.append(f"  sink             rows written: {rows}")
    return lines
