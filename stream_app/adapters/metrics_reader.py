"""Reading a process's Prometheus metrics back: fetch ``/metrics`` (``scrape``), parse the text exposition
into samples (``parse``), pick values out of them (``total``, ``by_label``, ``buckets``) and estimate a
histogram's quantiles from its buckets (``bucket_quantile``, ``histogram_figures``). Used by the demo
and the benchmarks, which show what an operator's Prometheus would see, and by ``retrain --if-needed``
(``models.triggers``); the metric names are in ``prometheus_metrics``."""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Samples = dict[tuple[str, Labels], float]  # (sample name, labels) -> value


def parse(text: str) -> Samples:
    """Every sample of a text exposition, keyed by its name and sorted labels (histograms as their
    ``_bucket`` / ``_count`` / ``_sum`` samples). Raises ValueError on text that is not an exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> Samples:
    """The samples served at ``http://<host>:<port>/metrics``. Raises OSError when the process does not
    answer and ValueError when the answer is not an exposition."""
    return scrape_url(f"http://{host}:{port}/metrics", timeout_s)


def scrape_url(url: str, timeout_s: float = 5.0) -> Samples:
    """The samples served at ``url``; raises as ``scrape``."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return parse(response.read().decode())


def _matches(labels: Labels, wanted: Mapping[str, str]) -> bool:
    found = dict(labels)
    return all(found.get(k) == v for k, v in wanted.items())


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there are none)."""
    return sum(v for (n, ls), v in samples.items() if n == name and _matches(ls, labels))


def by_label(samples: Samples, name: str, label: str, **labels: str) -> dict[str, float]:
    """The samples called ``name`` (whose labels include ``labels``), summed by the value of ``label``."""
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        key = dict(ls).get(label)
        if n == name and key is not None and _matches(ls, labels):
            out[key] = out.get(key, 0.0) + v
    return out


def max_by_label(samples: Samples, name: str, label: str, **labels: str) -> dict[str, float]:
    """The samples called ``name`` (whose labels include ``labels``): the largest by the value of ``label``
    (for a gauge reported by several processes, where a sum means nothing); NaN samples are left out."""
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        key = dict(ls).get(label)
        if n == name and key is not None and not math.isnan(v) and _matches(ls, labels):
            out[key] = max(out.get(key, v), v)
    return out


def buckets(samples: Samples, name: str, **labels: str) -> list[tuple[float, float]]:
    """(le, cumulative count) of histogram ``name``, summed over its other labels, in bound order (+Inf last)."""
    counts: dict[float, float] = {}
    for (n, ls), v in samples.items():
        found = dict(ls)
        if n == f"{name}_bucket" and "le" in found and _matches(ls, labels):
            le = float(found["le"])
            counts[le] = counts.get(le, 0.0) + v
    return sorted(counts.items())


def delta(before: Samples, after: Samples) -> Samples:
    """What every sample gained from ``before`` to ``after``: the increase of counters and histograms
    between two scrapes (a gauge's difference means nothing; read gauges from one scrape)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def bucket_quantile(cumulative: Sequence[tuple[float, float]], q: float) -> float | None:
    """The q-quantile (0..1) of a histogram given as (le, cumulative count) in bound order, as
    Prometheus's ``histogram_quantile``: the bucket holding rank ``q * count`` is found and the value is
    interpolated linearly inside it (the first bucket starts at 0). A rank in the +Inf bucket returns the
    highest finite bound. None when the histogram is empty."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q}")
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank and count > below:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = le, count
    return lower


def histogram_figures(samples: Samples, name: str, scale: float = 1.0,
                      quantiles: Sequence[float] = (0.5, 0.95, 0.99), **labels: str) -> dict[str, Any]:
    """``count``, ``mean`` and ``p<100q>`` for each of ``quantiles`` (``bucket_quantile``) of histogram
    ``name`` summed over its other labels, the values times ``scale`` (1e3: seconds to ms); None where
    the histogram is empty."""
    count, sum_ = total(samples, f"{name}_count", **labels), total(samples, f"{name}_sum", **labels)
    cumulative = buckets(samples, name, **labels)
    out: dict[str, Any] = {"count": int(count), "mean": scale * sum_ / count if count > 0 else None}
    for q in quantiles:
        value = bucket_quantile(cumulative, q)
        out[f"p{100 * q:g}"] = None if value is None else scale * value
    return out


def scrape_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of the first sample called ``name`` in a text exposition whose labels include ``labels``;
    None when there is none."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                return float(sample.value)
    return None
