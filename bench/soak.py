"""The soak benchmark's pure parts: raw points (one per scrape) aggregated into one sample per interval
(``aggregate``), the "levels off" judgement of a series (``judge``, ``judge_run``), the capacity a
previous run measured (``capacity_from``) and the 4-panel chart (``write_chart``). bench/bench_soak.py
runs the worker and the generator and feeds these; tests/bench/ tests them on canned scrapes.

A sample covers one interval: memory (worker RSS, Redis ``used_memory``) as read at the interval's last
point, consumer lag as the mean and max of the points inside it, rates and latency quantiles from the
increase of the worker's counters and histogram between the interval's last point and the previous
interval's (what Prometheus's ``rate()`` and ``histogram_quantile`` would show), the generator's rate from
the transactions topic's high watermarks."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from stream_app.adapters import prometheus_metrics as metric
from stream_app.adapters.metrics_reader import Samples, bucket_quantile, buckets, delta, total
from stream_app.generator.labels import LEGIT_DELAY_US

# A series "levels off" when, after the warm-up, its last half grows at most LEVEL_RATIO times as fast as
# its first half, or no faster than its flat slope (noise), or (lag) stays under its bound: below.
LEVEL_RATIO = 0.5
FLAT_MB_PER_MIN = 0.5  # 30 MB an hour: less is read as noise of a memory figure over a 20-minute run
FLAT_LAG_SHARE = 0.01  # lag growing by 1 % of the input rate (the worker 1 % behind) or less is flat
LAG_BOUND_S = 5.0  # lag that stays under this many seconds of input through the last half is bounded (noise)
JUDGED = ("worker_rss_mb", "redis_used_mb", "lag_sum_mean")  # a growth of these fails the soak


@dataclass(frozen=True, slots=True)
class Point:
    """One scrape, ``t`` seconds after the stream began: the worker's RSS, Redis's memory and key count, the
    records on the transactions topic (its high watermarks; None when the broker did not answer) and the
    worker's /metrics (empty when it did not answer)."""

    t: float
    rss_mb: float
    redis_used_mb: float
    redis_keys: int
    produced: int | None
    metrics: Samples


def _rate(before: Samples, after: Samples, seconds: float, name: str, **labels: str) -> float | None:
    if not before or not after or seconds <= 0:
        return None
    return (total(after, name, **labels) - total(before, name, **labels)) / seconds


def _lag(samples: Samples) -> tuple[float, float] | None:
    """(sum over partitions, largest partition) of the worker's consumer-lag gauge; None without one."""
    values = [v for (name, _), v in samples.items() if name == metric.CONSUMER_LAG and math.isfinite(v)]
    return (sum(values), max(values)) if values else None


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


def aggregate(points: Sequence[Point], interval_s: float, transactions: str, labels: str) -> list[dict[str, Any]]:
    """One sample per whole interval after the first point (the baseline, taken as the stream begins): an
    interval without points has no sample, and the last one only once a point has reached its end or
    a later one exists (the stream ends inside a partial one). Rates and latency need the worker's
    /metrics at both ends: where a scrape failed they are None. ``transactions`` / ``labels`` are the
    topic names."""
    if not points:
        return []
    origin = points[0].t
    out: list[dict[str, Any]] = []
    previous = points[0]
    k = 1
    index = 1
    while index < len(points):
        end = origin + k * interval_s
        inside: list[Point] = []
        while index < len(points) and points[index].t <= end + 1e-9:
            inside.append(points[index])
            index += 1
        if index == len(points) and (not inside or inside[-1].t < end - 1e-9):
            break  # the last interval, not over yet
        if inside:
            last = inside[-1]
            seconds = last.t - previous.t
            before_m, after_m = previous.metrics, last.metrics
            lags = [lag for lag in (_lag(p.metrics) for p in inside) if lag is not None]
            gained = delta(before_m, after_m) if before_m and after_m else {}
            cumulative = buckets(gained, metric.EVENT_LATENCY)
            p50, p99 = (bucket_quantile(cumulative, q) for q in (0.5, 0.99))
            rss = [p.rss_mb for p in inside if math.isfinite(p.rss_mb)]
            out.append({
                "t_s": round(last.t - origin, 1),
                "worker_rss_mb": _round(last.rss_mb),
                "worker_rss_mb_max": _round(max(rss)) if rss else None,
                "redis_used_mb": _round(last.redis_used_mb),
                "redis_keys": last.redis_keys,
                "lag_sum_mean": _round(sum(s for s, _ in lags) / len(lags)) if lags else None,
                "lag_sum_max": _round(max(s for s, _ in lags)) if lags else None,
                "lag_partition_max": _round(max(m for _, m in lags)) if lags else None,
                "produced_per_s": (_round((last.produced - previous.produced) / seconds)
                                   if last.produced is not None and previous.produced is not None and seconds > 0
                                   else None),
                "events_per_s": _round(_rate(before_m, after_m, seconds, metric.RECORDS_CONSUMED, topic=transactions)),
                "predictions_per_s": _round(_rate(before_m, after_m, seconds, metric.PREDICTIONS_PUBLISHED)),
                "labels_per_s": _round(_rate(before_m, after_m, seconds, metric.RECORDS_CONSUMED, topic=labels)),
                "latency_count": int(cumulative[-1][1]) if cumulative else 0,
                "latency_p50_ms": _round(None if p50 is None else 1e3 * p50),
                "latency_p99_ms": _round(None if p99 is None else 1e3 * p99),
                "scrapes": len(inside),
                "scrapes_without_metrics": sum(1 for p in inside if not p.metrics),
            })
            previous = last
        k += 1
    return out


def slope_per_min(series: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of (seconds, value) points, per minute (0 for fewer than two distinct times)."""
    n = len(series)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in series) / n
    mean_v = sum(v for _, v in series) / n
    spread = sum((t - mean_t) ** 2 for t, _ in series)
    if spread == 0:
        return 0.0
    return 60.0 * sum((t - mean_t) * (v - mean_v) for t, v in series) / spread


def judge(series: Sequence[tuple[float, float]], flat_per_min: float, ratio: float = LEVEL_RATIO,
          bound: float | None = None) -> dict[str, Any]:
    """Whether a series (seconds, value), warm-up already left out, levels off. It is split at its middle
    time into a first and a last half and a line is fitted to each: "flat" when the last half grows no
    faster than ``flat_per_min`` (per minute), "bounded" when every value of the last half is at most
    ``bound`` (if given), "levels off" when the last half grows at most ``ratio`` times as fast as the
    first half did, else "grows" (ok False). Fewer than two points per half: "too short" (ok None)."""
    points = sorted(series)
    verdict: dict[str, Any] = {"points": len(points), "flat_per_min": flat_per_min, "ratio": ratio, "bound": bound}
    if len(points) < 4:
        return {**verdict, "verdict": "too short", "ok": None}
    middle = (points[0][0] + points[-1][0]) / 2
    first = [p for p in points if p[0] <= middle]
    last = [p for p in points if p[0] >= middle]
    if len(first) < 2 or len(last) < 2:
        return {**verdict, "verdict": "too short", "ok": None}
    s1, s2 = slope_per_min(first), slope_per_min(last)
    verdict.update({"first_half_per_min": round(s1, 3), "last_half_per_min": round(s2, 3),
                    "last_half_per_hour": round(60 * s2, 1), "from": points[0][1], "to": points[-1][1]})
    if s2 <= flat_per_min:
        return {**verdict, "verdict": "flat", "ok": True}
    if bound is not None and max(v for _, v in last) <= bound:
        return {**verdict, "verdict": "bounded", "ok": True}
    if s1 > 0 and s2 <= ratio * s1:
        return {**verdict, "verdict": "levels off", "ok": True}
    return {**verdict, "verdict": "grows", "ok": False}


def flat_slopes(rate: float) -> dict[str, float]:
    """The per-minute slope under which each judged series counts as flat, at input ``rate`` events/s."""
    return {"worker_rss_mb": FLAT_MB_PER_MIN, "redis_used_mb": FLAT_MB_PER_MIN,
            "lag_sum_mean": FLAT_LAG_SHARE * rate * 60.0}


def judge_run(samples: Sequence[Mapping[str, Any]], rate: float, warmup_s: float) -> dict[str, Any]:
    """``judge`` of each of ``JUDGED`` over the samples after ``warmup_s``; ``ok`` is False when any of
    them grows, None when none could be judged (too short) and no series grows."""
    flat = flat_slopes(rate)
    bounds = {"lag_sum_mean": LAG_BOUND_S * rate}
    verdicts: dict[str, Any] = {}
    for name in JUDGED:
        series = [(float(s["t_s"]), float(s[name])) for s in samples if s["t_s"] > warmup_s and s.get(name) is not None]
        verdicts[name] = judge(series, flat[name], bound=bounds.get(name))
    oks = [v["ok"] for v in verdicts.values()]
    ok = False if False in oks else (True if all(o is True for o in oks) else None)
    return {"ok": ok, "warmup_s": warmup_s, "series": verdicts}


def event_speed(generator_log: str) -> float | None:
    """How many times faster than the wall clock a realistic live run's event time ran, as the generator
    printed it ("... runs about x1,350 the wall clock"); None when it did not say."""
    found = re.search(r"runs about x([\d,.]+) the wall clock", generator_log)
    return float(found.group(1).replace(",", "")) if found else None


def labels_steady_s(speed: float, label_delay_scale: float) -> float:
    """Wall seconds until labels arrive at their steady rate: the longest legitimate label delay (nearly
    every label; fraud's longer tail is about 1 % of them), scaled, at ``speed`` event seconds per second."""
    return LEGIT_DELAY_US[1] / 1e6 * label_delay_scale / speed


def capacity_from(result: Mapping[str, Any]) -> float | None:
    """The worker's end-to-end rate (events/s) in a bench/results/e2e.json, None when it has none."""
    e2e = result.get("e2e")
    rate = e2e.get("events_per_s") if isinstance(e2e, Mapping) else None
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


def _minutes(samples: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pairs = [(s["t_s"] / 60.0, float(s[key])) for s in samples if s.get(key) is not None]
    return [t for t, _ in pairs], [v for _, v in pairs]


def write_chart(path: Path, samples: Sequence[Mapping[str, Any]], judgement: Mapping[str, Any], *, rate: float,
                title: str) -> Path:
    """Four panels over the run's minutes: memory (worker RSS, Redis used_memory), consumer lag, event
    latency p50/p99 and the rates achieved against the target; the judged series carry their verdict."""
    fig = Figure(figsize=(13, 9))
    FigureCanvasAgg(fig)  # renders to a file: no display, no pyplot state
    (ax_mem, ax_lag), (ax_lat, ax_rate) = fig.subplots(2, 2)
    verdict = {name: v.get("verdict", "n/a") for name, v in judgement.get("series", {}).items()}
    warm = judgement.get("warmup_s", 0.0) / 60.0

    ax_mem.plot(*_minutes(samples, "worker_rss_mb"), marker="o", color="tab:blue",
                label=f"worker RSS ({verdict.get('worker_rss_mb', 'n/a')})")
    twin = ax_mem.twinx()
    twin.plot(*_minutes(samples, "redis_used_mb"), marker="s", color="tab:red",
              label=f"Redis used_memory ({verdict.get('redis_used_mb', 'n/a')})")
    ax_mem.set(title="Memory", xlabel="minutes", ylabel="worker RSS (MB)")
    twin.set_ylabel("Redis used_memory (MB)")
    lines, more = ax_mem.get_legend_handles_labels(), twin.get_legend_handles_labels()
    ax_mem.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize="small")

    ax_lag.plot(*_minutes(samples, "lag_sum_mean"), marker="o",
                label=f"sum over partitions, mean ({verdict.get('lag_sum_mean', 'n/a')})")
    ax_lag.plot(*_minutes(samples, "lag_sum_max"), linestyle=":", label="sum over partitions, max")
    ax_lag.plot(*_minutes(samples, "lag_partition_max"), linestyle="--", label="largest partition, max")
    ax_lag.set(title="Consumer lag (transactions + labels)", xlabel="minutes", ylabel="records")
    ax_lag.legend(fontsize="small")

    for key, label in (("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")):
        ax_lat.plot(*_minutes(samples, key), marker="o", label=label)
    ax_lat.set_yscale("log")
    ax_lat.set(title="Event latency (record timestamp -> acked; /metrics buckets)",
               xlabel="minutes", ylabel="ms (log)")
    ax_lat.legend(fontsize="small")

    for key, label in (("produced_per_s", "transactions produced"), ("events_per_s", "transactions consumed"),
                       ("predictions_per_s", "predictions"), ("labels_per_s", "labels consumed")):
        ax_rate.plot(*_minutes(samples, key), marker="o", label=label)
    ax_rate.axhline(rate, color="grey", linestyle=":", label=f"target {rate:,.0f}/s")
    ax_rate.set(title="Rates achieved", xlabel="minutes", ylabel="records/s")
    ax_rate.set_ylim(bottom=0)
    ax_rate.legend(fontsize="small")

    for axis in (ax_mem, ax_lag, ax_lat, ax_rate):
        if warm > 0:
            axis.axvspan(0, warm, color="grey", alpha=0.1)
    ok = judgement.get("ok")
    fig.suptitle(f"{title} — {'levels off' if ok else 'GROWS' if ok is False else 'not judged'} "
                 "(shaded: warm-up, not judged)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path
