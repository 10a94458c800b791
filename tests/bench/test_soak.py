"""The soak benchmark's pure parts (bench/soak.py): points aggregated into one sample per interval, the
"levels off" judgement, the capacity read from an e2e result, and the chart, on canned scrapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from soak import (
    FLAT_LAG_SHARE,
    FLAT_MB_PER_MIN,
    LAG_BOUND_S,
    Point,
    aggregate,
    capacity_from,
    event_speed,
    judge,
    judge_run,
    labels_steady_s,
    slope_per_min,
    write_chart,
)

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.metrics_reader import Samples, parse

TX, LABELS = "soak.transactions", "soak.labels"
BOUNDS = (0.01, 0.025, 0.05, 0.1)


def worker(*, records: int, labels: int, predictions: int, lag: tuple[float, ...], latency: tuple[int, ...]) -> Samples:
    """A worker's /metrics: consumed records by topic, predictions, the lag of one partition each (lag[i] on
    transactions partition i, the last on labels) and event latency as counts per bucket of BOUNDS (the last
    count: above every bound)."""
    lags = [f'{m.CONSUMER_LAG}{{group="g",topic="{TX}",partition="{i}"}} {v}' for i, v in enumerate(lag[:-1])]
    lags.append(f'{m.CONSUMER_LAG}{{group="g",topic="{LABELS}",partition="0"}} {lag[-1]}')
    cumulative, buckets = 0, []
    for le, count in zip([*map(str, BOUNDS), "+Inf"], latency, strict=True):
        cumulative += count
        buckets.append(f'{m.EVENT_LATENCY}_bucket{{le="{le}"}} {cumulative}')
    consumed = m.RECORDS_CONSUMED.removesuffix("_total")
    published = m.PREDICTIONS_PUBLISHED.removesuffix("_total")
    newline = "\n"
    return parse(f"""\
# TYPE {consumed} counter
{m.RECORDS_CONSUMED}{{topic="{TX}"}} {records}
{m.RECORDS_CONSUMED}{{topic="{LABELS}"}} {labels}
# TYPE {published} counter
{m.PREDICTIONS_PUBLISHED} {predictions}
# TYPE {m.CONSUMER_LAG} gauge
{newline.join(lags)}
# TYPE {m.EVENT_LATENCY} histogram
{newline.join(buckets)}
{m.EVENT_LATENCY}_count {cumulative}
{m.EVENT_LATENCY}_sum {0.02 * cumulative}
""")


def point(t: float, rss: float, redis: float = 100.0, metrics: Samples | None = None,
          produced: int | None = None) -> Point:
    return Point(t, rss, redis, 1_000, produced, {} if metrics is None else metrics)


# ------------------------------------------------------------------------------------------------ aggregate


def test_aggregate_one_sample_per_interval_with_rates_latency_and_lag() -> None:
    base = worker(records=0, labels=0, predictions=0, lag=(0, 0, 0), latency=(0, 0, 0, 0, 0))
    points = [
        point(0, 200, metrics=base, produced=500),
        point(5, 210, metrics=worker(records=500, labels=10, predictions=495, lag=(100, 50, 4),
                                     latency=(100, 300, 80, 10, 5)), produced=1100),
        point(10, 205, 101, worker(records=1000, labels=40, predictions=990, lag=(300, 100, 0),
                                   latency=(200, 600, 160, 20, 10)), produced=1700),
        point(20, 220, 103, worker(records=1600, labels=100, predictions=1590, lag=(0, 0, 0),
                                   latency=(200, 700, 600, 80, 10)), produced=None),
    ]
    samples = aggregate(points, 10.0, TX, LABELS)

    assert [s["t_s"] for s in samples] == [10.0, 20.0]
    assert len(aggregate(points[:-1], 10.0, TX, LABELS)) == 1  # the second interval is not over at 10 s
    partial = [*points[:-1], point(15, 220, metrics=points[-1].metrics)]
    assert [s["t_s"] for s in aggregate(partial, 10.0, TX, LABELS)] == [10.0]  # the stream ended inside it
    first, second = samples
    assert first["worker_rss_mb"] == 205 and first["worker_rss_mb_max"] == 210  # the interval's last point and max
    assert first["redis_used_mb"] == 101
    assert first["lag_sum_mean"] == pytest.approx((154 + 400) / 2, abs=0.1)
    assert first["lag_sum_max"] == 400 and first["lag_partition_max"] == 300
    assert first["events_per_s"] == 100.0 and first["labels_per_s"] == 4.0 and first["predictions_per_s"] == 99.0
    assert first["produced_per_s"] == 120.0  # the topic's records from the baseline's 500 to 1700
    assert second["produced_per_s"] is None  # the broker did not answer at its end
    # 990 events: rank 495 falls in the second bucket (200 below it, 600 in it): 0.01 + 0.015 * 295 / 600
    assert first["latency_count"] == 990
    assert first["latency_p50_ms"] == pytest.approx(1e3 * (0.01 + 0.015 * 295 / 600), abs=0.05)
    assert first["latency_p99_ms"] == pytest.approx(100.0)  # rank 980.1 is above every bound: the highest bound
    # the second interval is measured from the first's last point: only what happened since
    assert second["events_per_s"] == 60.0 and second["labels_per_s"] == 6.0
    assert second["latency_count"] == 600
    assert 25.0 < second["latency_p50_ms"] < 50.0  # 440 of the 600 new events are in (25 ms, 50 ms]
    assert second["lag_sum_mean"] == 0


def test_aggregate_without_metrics_keeps_memory_and_leaves_rates_out() -> None:
    points = [point(0, 200), point(10, 201, 102), point(20, 203, 104, worker(records=10, labels=0, predictions=10,
                                                                            lag=(7, 0), latency=(10, 0, 0, 0, 0)))]
    samples = aggregate(points, 10.0, TX, LABELS)

    assert [s["worker_rss_mb"] for s in samples] == [201, 203]
    assert [s["redis_used_mb"] for s in samples] == [102, 104]
    assert samples[0]["events_per_s"] is None and samples[0]["lag_sum_mean"] is None
    assert samples[0]["scrapes_without_metrics"] == 1
    assert samples[1]["events_per_s"] is None  # the interval before it had no /metrics to measure from
    assert samples[1]["lag_sum_mean"] == 7 and samples[1]["latency_p50_ms"] is None


def test_aggregate_skips_empty_intervals_and_a_dead_worker_rss() -> None:
    points = [point(0, 200), point(10, 201), point(35, math.nan), point(40, math.nan)]
    samples = aggregate(points, 10.0, TX, LABELS)

    assert [s["t_s"] for s in samples] == [10.0, 40.0]  # nothing between 10 and 30 s
    assert samples[1]["worker_rss_mb"] is None and samples[1]["worker_rss_mb_max"] is None
    assert aggregate([], 10.0, TX, LABELS) == []
    assert aggregate([point(0, 1)], 10.0, TX, LABELS) == []  # the baseline alone is no interval


# -------------------------------------------------------------------------------------------------- judge


def line(slopes: list[float], start: float = 100.0, every_s: float = 60.0) -> list[tuple[float, float]]:
    """Points every ``every_s`` s whose per-minute growth is each of ``slopes`` in turn."""
    out, value = [], start
    for i, slope in enumerate(slopes):
        out.append((every_s * (i + 1), value))
        value += slope * every_s / 60
    return out


def test_slope_per_min() -> None:
    assert slope_per_min([(0, 1.0), (60, 3.0), (120, 5.0)]) == pytest.approx(2.0)
    assert slope_per_min([(30, 7.0)]) == 0.0
    assert slope_per_min([(30, 7.0), (30, 9.0)]) == 0.0


def test_judge_linear_growth_grows() -> None:
    verdict = judge(line([3.0] * 18), FLAT_MB_PER_MIN)
    assert verdict["verdict"] == "grows" and verdict["ok"] is False
    assert verdict["first_half_per_min"] == pytest.approx(3.0) and verdict["last_half_per_min"] == pytest.approx(3.0)
    assert verdict["last_half_per_hour"] == pytest.approx(180.0)


def test_judge_growth_that_slows_down_levels_off() -> None:
    verdict = judge(line([8.0] * 9 + [2.0] * 9), FLAT_MB_PER_MIN)
    assert verdict["verdict"] == "levels off" and verdict["ok"] is True


def test_judge_growth_that_slows_too_little_still_grows() -> None:
    assert judge(line([4.0] * 9 + [3.0] * 9), FLAT_MB_PER_MIN)["verdict"] == "grows"


def test_judge_growth_that_starts_late_grows() -> None:
    assert judge(line([0.0] * 9 + [5.0] * 9), FLAT_MB_PER_MIN)["verdict"] == "grows"


def test_judge_flat_noise_and_shrinking_are_flat() -> None:
    noisy = [(60.0 * (i + 1), 300.0 + (1.5 if i % 2 else -1.5)) for i in range(18)]
    assert judge(noisy, FLAT_MB_PER_MIN)["verdict"] == "flat"
    assert judge(line([-2.0] * 18), FLAT_MB_PER_MIN)["verdict"] == "flat"
    # growth below the flat slope is flat even when it does not slow down
    assert judge(line([0.4] * 18), FLAT_MB_PER_MIN)["verdict"] == "flat"


def test_judge_growth_under_the_bound_is_bounded() -> None:
    series = line([0.0] * 9 + [50.0] * 9)  # starts growing late: 100 -> 500
    assert judge(series, 10.0, bound=600.0)["verdict"] == "bounded"
    assert judge(series, 10.0, bound=400.0)["verdict"] == "grows"  # crossed it in the last half
    assert judge(series, 10.0)["verdict"] == "grows"


def test_judge_too_few_points() -> None:
    verdict = judge(line([5.0] * 3), FLAT_MB_PER_MIN)
    assert verdict["verdict"] == "too short" and verdict["ok"] is None


def test_judge_run_fails_on_any_growing_series_after_the_warm_up() -> None:
    rate = 1000.0
    minutes = 20
    samples = [{"t_s": 60.0 * (i + 1), "worker_rss_mb": 300.0 + min(i, 5) * 20,  # grows in the warm-up only
                "redis_used_mb": 100.0 + 2.0 * i,  # 2 MB a minute throughout
                "lag_sum_mean": 500.0 + (i % 3) * 100}  # noise
               for i in range(minutes)]
    result = judge_run(samples, rate, warmup_s=360.0)

    assert result["ok"] is False
    assert result["series"]["worker_rss_mb"]["verdict"] == "flat"
    assert result["series"]["redis_used_mb"]["verdict"] == "grows"
    assert result["series"]["lag_sum_mean"]["verdict"] == "flat"
    assert result["series"]["lag_sum_mean"]["flat_per_min"] == FLAT_LAG_SHARE * rate * 60
    assert result["series"]["worker_rss_mb"]["points"] == minutes - 6  # the warm-up's samples are left out


def test_judge_run_lag_growing_faster_than_one_percent_of_the_rate_fails() -> None:
    rate = 500.0
    behind = 0.05 * rate * 60  # the worker 5 % behind: lag grows 1500 records a minute
    samples = [{"t_s": 60.0 * (i + 1), "worker_rss_mb": 300.0, "redis_used_mb": 100.0, "lag_sum_mean": behind * i}
               for i in range(12)]
    result = judge_run(samples, rate, warmup_s=60.0)
    assert result["ok"] is False and result["series"]["lag_sum_mean"]["verdict"] == "grows"


def test_judge_run_lag_spikes_under_seconds_of_input_are_bounded() -> None:
    rate = 300.0
    lag = [300.0, 1200.0, 500.0, 170.0, 290.0, 390.0, 440.0, 900.0, 1400.0]  # worker keeping up, noisy
    samples = [{"t_s": 20.0 * (i + 1), "worker_rss_mb": 300.0, "redis_used_mb": 100.0, "lag_sum_mean": v}
               for i, v in enumerate(lag)]
    verdict = judge_run(samples, rate, warmup_s=0.0)["series"]["lag_sum_mean"]
    assert verdict["bound"] == LAG_BOUND_S * rate
    assert verdict["verdict"] == "bounded"


def test_judge_run_ok_and_not_judged() -> None:
    steady = [{"t_s": 60.0 * (i + 1), "worker_rss_mb": 300.0, "redis_used_mb": 100.0, "lag_sum_mean": None}
              for i in range(10)]
    result = judge_run(steady, 1000.0, warmup_s=60.0)
    assert result["ok"] is None  # memory is flat but the lag was never read: not judged, not failed
    assert result["series"]["lag_sum_mean"]["verdict"] == "too short"
    for s in steady:
        s["lag_sum_mean"] = 40.0
    assert judge_run(steady, 1000.0, warmup_s=60.0)["ok"] is True


# ----------------------------------------------------------------------------------------- capacity, chart


def test_capacity_from_an_e2e_result() -> None:
    assert capacity_from({"e2e": {"events_per_s": 2184}}) == 2184.0
    assert capacity_from({"metrics_cost": {}}) is None  # an --only run without the throughput section
    assert capacity_from({"e2e": {"events_per_s": None}}) is None
    assert capacity_from({"e2e": "failed"}) is None


def test_event_speed_from_the_generator_log() -> None:
    text = ("live: 300/s for 180s to 't' / 'l'; seed 7\n"
            "live: history's per-user arrivals: event time from 2026-11-29T03:29:51Z runs about x1,350 the wall clock\n"
            "live     1s  tx     63/s\n")
    assert event_speed(text) == 1350.0
    assert event_speed("live: 300/s for 180s\n") is None  # not a realistic run


def test_labels_steady_after_the_longest_legit_delay_scaled() -> None:
    # 3 days x 0.1 = 7.2 h of event time, at x432 the wall clock: 60 s
    assert labels_steady_s(432.0, 0.1) == pytest.approx(60.0)
    assert labels_steady_s(432.0, 0.2) == pytest.approx(120.0)


def test_write_chart_writes_a_png(tmp_path: Path) -> None:
    samples = [{"t_s": 20.0 * (i + 1), "worker_rss_mb": 300.0 + i, "redis_used_mb": 100.0 + i, "redis_keys": 10,
                "lag_sum_mean": 50.0, "lag_sum_max": 80.0, "lag_partition_max": 40.0, "produced_per_s": 301.0,
                "events_per_s": 300.0,
                "predictions_per_s": 297.0, "labels_per_s": None if i == 0 else 250.0, "latency_p50_ms": 12.0,
                "latency_p99_ms": None if i == 0 else 48.0} for i in range(9)]
    judgement = judge_run(samples, 300.0, warmup_s=20.0)
    path = write_chart(tmp_path / "out" / "soak.png", samples, judgement, rate=300.0, title="Soak")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
