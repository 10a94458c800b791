"""End-to-end benchmark of the stream worker (not a test), in one run on one box with its broker and Redis:

(d) naive (``bench_naive``), one event at a time through Feast's public API; (b) e2e, the worker draining
a backlog with ``streamscore sink`` alongside (its parts counted), and (a) passthrough, the Kafka limit
without work, also under other Faust settings and transports (``bench_throughput``, ``bench_ceiling``);
(f) 2 workers vs 1 on one backlog (``bench_scale``); (g) a cProfile of the worker (``profile_worker``);
(c) latency under the live generator (``bench_latency``); (e) RSS (``bench_rss``). The e2e drain and each
latency phase also record the worker's own figures from its /metrics (batch size and time, Redis round
trips, record timestamp -> acknowledged latency: ``worker_metrics``), the e2e run the sink's too; the
calibration's per-stage breakdown (decode, engine, scoring, ...) still comes from bench/probe_worker.py,
which /metrics does not break down. Needs Kafka and Redis from the
environment (bench/run.sh starts private ones); BENCH_QUICK=1 shrinks everything for a harness check.
Writes bench/results/e2e.json (summary, ratios, targets), e2e_latency.json and worker_rss.json (each
with the command that produced it), worker_profile.txt and worker_cprofile.txt.

    .venv/bin/python bench/bench_e2e.py [--users 100000 --merchants 5000 --sustain 60 ...]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer
from feast import FeatureStore
from harness import (
    QUICK,
    RESULTS,
    Backlog,
    FastProducer,
    OutputMeter,
    World,
    base_settings,
    cpu_seconds,
    log,
    measure_drain,
    prepare_world,
    record_pid,
    redis_memory,
    result_header,
    rss_mb,
    scrape_metrics,
    sink_metrics,
    start_child,
    topics_named,
    with_run,
    worker_metrics,
    write_result,
)

from models.features import production_service
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.metrics_reader import delta
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.contract import decode_transaction
from stream_app.core.engine import FeatureEngine, TransactionEvent, WindowRows
from stream_app.settings import REPO_ROOT, Settings, settings_env
from stream_app.sink.runner import LABELS_LOG, TRANSACTIONS_LOG, logs_of
from stream_app.worker.loop_lag import worst_stall_ms
from stream_app.worker.process import SINK_ARGS, WORKER_ARGS, WorkerProcess, free_port

BENCH = Path(__file__).resolve().parent
TARGETS = {"e2e_events_per_s": 4_000, "e2e_over_naive": 60, "e2e_over_passthrough": 0.65,
           "p50_ms_at_1k": 15, "p99_ms_at_1k": 50, "p99_ms_at_2k": 25, "two_workers_over_one": 1.4,
           "sink_parts_per_view_per_10min": 36, "rss_mb_1m_users": 1024, "max_loop_stall_ms_at_1k": 20,
           "metrics_cost_pct": 5}
LOWER_IS_BETTER = {"p50_ms_at_1k", "p99_ms_at_1k", "p99_ms_at_2k", "sink_parts_per_view_per_10min",
                   "rss_mb_1m_users", "max_loop_stall_ms_at_1k", "metrics_cost_pct"}
# Faust's own ceiling: the passthrough (same records, own consumer group each) with the worker's faust.App
# arguments overridden (bench/passthrough_worker.py, BENCH_FAUST_CONF)
CEILING_VARIANTS: dict[str, dict[str, Any]] = {
    "stream_buffer_maxsize=32768": {"stream_buffer_maxsize": 32_768},
    "consumer_max_fetch_size=8MiB": {"consumer_max_fetch_size": 8 * 2**20},
    "broker_max_poll_records=10000": {"broker_max_poll_records": 10_000},
    "all three": {"stream_buffer_maxsize": 32_768, "consumer_max_fetch_size": 8 * 2**20,
                  "broker_max_poll_records": 10_000},
    "confluent:// driver": {"broker_scheme": "confluent"},
    "worker's settings, again (order and noise)": {},
}
PROFILE_START, PROFILE_STOP = signal.SIGRTMIN, signal.SIGRTMIN + 1  # bench/profiled_worker.py's signals
SINK_PART = "part-stream-*.parquet"  # the sink's parts (the backfill's part is named otherwise)


def percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))], 1)

    return {"n": len(ordered), "p50": at(0.50), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 1),
            "mean": round(statistics.fmean(ordered), 1)}


# ------------------------------------------------------------------------------------------------ naive


def bench_naive(world: World, events: int) -> dict[str, Any]:
    """One event at a time through Feast's public API, as a first implementation would."""
    store = FeatureStore(repo_path=str(world.settings.feast.repo_path))
    service = store.get_feature_service(production_service().name)
    int_names = {view: {f.name for f in store.get_feature_view(view).features if str(f.dtype) == "Int64"}
                 for view in ("user_windows", "merchant_windows")}
    loaded = ModelRegistry(world.settings.models_dir).load_alias("production")
    scorer = loaded.scorer()
    # One row gains nothing from threads, and with the registry default (all cores) a one-row predict
    # waits for OpenMP threads that a loaded box does not schedule. One thread keeps the naive
    # baseline as fast as it can honestly be (so the ratio against it is not flattered).
    scorer.booster.set_param({"nthread": 1})
    warmup = 20
    source = Backlog(world.users, world.merchants, world.seed + 1, 200.0,
                     datetime.now(UTC) - timedelta(hours=2), events + warmup)
    records = source.take(events + warmup)
    engine = FeatureEngine(300.0)
    stages = {"decode+engine": 0.0, "write_to_online_store x2": 0.0, "get_online_features": 0.0,
              "xgboost one row (nthread=1)": 0.0}

    def frame(key: str, entity: int, stamp: datetime, values: dict[str, float], view: str) -> pd.DataFrame:
        row = {key: entity, "event_timestamp": stamp, "created_timestamp": stamp, **values}
        out = pd.DataFrame([row])
        return out.astype(dict.fromkeys(int_names[view], "int64"))

    started = cpu_started = 0.0
    for i, (key, value) in enumerate(records):
        if i == warmup:
            stages = dict.fromkeys(stages, 0.0)
            started = time.perf_counter()
            cpu_started = time.process_time()
        t0 = time.perf_counter()
        txn = decode_transaction(value, key)
        rows = engine.on_transaction(TransactionEvent(txn.event_id, txn.user_id, txn.merchant_id, txn.amount,
                                                      txn.event_time.timestamp(), (0, i)))
        if not isinstance(rows, WindowRows):
            continue
        t1 = time.perf_counter()
        store.write_to_online_store("user_windows", frame("user_id", txn.user_id, txn.event_time, rows.user,
                                                          "user_windows"))
        store.write_to_online_store("merchant_windows", frame("merchant_id", txn.merchant_id, txn.event_time,
                                                              rows.merchant, "merchant_windows"))
        t2 = time.perf_counter()
        got = store.get_online_features(features=service, entity_rows=[{
            "user_id": txn.user_id, "merchant_id": txn.merchant_id, "amount": txn.amount, "country": txn.country,
            "channel": txn.channel, "event_hour": txn.event_time.hour}]).to_dict()
        t3 = time.perf_counter()
        vector = np.array([[np.nan if got[name][0] is None else float(got[name][0]) for name in scorer.features]])
        scorer.score(vector)
        t4 = time.perf_counter()
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[name] += seconds
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    return {"events": events, "events_per_s": round(events / elapsed, 1),
            "events_per_cpu_second": round(events / cpu, 1) if cpu > 0 else None,  # this process's CPU only
            "ms_per_event": round(1e3 * elapsed / events, 2),
            "ms_per_event_by_stage": {k: round(1e3 * v / events, 3) for k, v in stages.items()},
            "how": "per event: decode + window engine (in memory), write_to_online_store(user_windows) and "
                   "(merchant_windows) with one-row DataFrames, get_online_features(fraud_model_v1, with the "
                   "on-demand transaction_features) .to_dict(), Scorer.score on one row (nthread=1)"}


# ----------------------------------------------------------------------------------------------- drains


@dataclass
class Run:
    """One worker run's settings (own app id and topics) and the environment that carries them."""

    settings: Settings
    env: dict[str, str]


def make_run(world: World, name: str, worker: dict[str, Any] | None = None, topics_of: str | None = None) -> Run:
    topics = topics_named(topics_of or name)
    settings = with_run(world.settings, app_id=name, topics=topics, worker=worker)
    ensure_topics(settings.kafka, settings.topics.all())
    return Run(settings, settings_env(settings))


def outputs(run: Run) -> OutputMeter:
    return OutputMeter(run.settings.kafka, [run.settings.topics.predictions, run.settings.topics.transactions_dlq])


def breakdown(probe: dict[str, Any], drain: dict[str, Any]) -> dict[str, Any]:
    """Probe counters as µs per event and share of the wall time from the first to the last batch."""
    records = max(1, probe.get("records", 0))
    wall = probe.get("wall_s_first_to_last_batch") or 0.0
    seconds: dict[str, float] = probe.get("seconds", {})
    rows = {name: {"us_per_event": round(1e6 * s / records, 1),
                   "share_of_wall": round(s / wall, 3) if wall else None,
                   "calls": probe.get("calls", {}).get(name)}
            for name, s in sorted(seconds.items(), key=lambda kv: -kv[1])}
    handle = seconds.get("handle", 0.0)
    rows["outside handle (Faust consume, take_events, event loop, idle)"] = {
        "us_per_event": round(1e6 * (wall - handle) / records, 1),
        "share_of_wall": round((wall - handle) / wall, 3) if wall else None, "calls": None}
    return {"records": probe.get("records"), "batches": probe.get("batches"),
            "mean_batch": round(records / max(1, probe.get("batches", 1)), 1),
            "wall_s": round(wall, 2), "cpu_cores_used_by_worker": drain.get("cpu_cores_used"),
            "stages": rows}


def bench_throughput(world: World, backlog: Backlog, root: Path, args: argparse.Namespace,
                     out: dict[str, Any]) -> None:
    """(b) e2e and (a) passthrough: drain pre-produced backlogs of realistic transactions (LiveSource, same
    population as the history).

    A short calibration run of the worker with timing counters (bench/probe_worker.py) gives the time
    breakdown and the rate that sizes the e2e backlog for >= --sustain seconds. The e2e rate runs from
    the first to the last prediction on the broker (high watermarks of predictions + dead letters,
    polled every 0.2 s). The passthrough is the worker's own Faust app and publisher with a runner that
    forwards each record unchanged and waits for the acks (bench/passthrough_worker.py)."""
    run_id = args.run_id
    e2e = make_run(world, f"bench-{run_id}-e2e")
    pt_prefix = f"bench-{run_id}-pt"
    pt = make_run(world, pt_prefix)
    producer = FastProducer(e2e.settings.kafka)
    tx_e2e, tx_pt = e2e.settings.topics.transactions.name, pt.settings.topics.transactions.name

    # calibration: the instrumented worker over a first slice; its rate sizes the sustained backlog
    calibration_n = args.calibration
    producer.send(tx_e2e, backlog.take(calibration_n))
    producer.flush()
    probe_file = root / "probe.json"
    meter = outputs(e2e)
    log(f"calibration: probe worker draining {calibration_n:,} records")
    probe = start_child({**e2e.env, "BENCH_PROBE_OUT": str(probe_file)}, root / "logs" / "probe_worker.log", root,
                        [str(BENCH / "probe_worker.py")])
    try:
        drain = measure_drain(meter, probe, calibration_n, timeout_s=max(60.0, args.sustain * 3))
    finally:
        probe.stop()
    calibration = drain.summary()
    calibration["breakdown"] = breakdown(json.loads(probe_file.read_text()), calibration)
    out["calibration"] = calibration
    rate = calibration["events_per_s_10_to_90pct"] or calibration["events_per_s"] or 1000
    log(f"calibration: {calibration['events_per_s']:,} ev/s (10-90%: {calibration['events_per_s_10_to_90pct']})")

    # the backlog: the e2e worker's >= sustain seconds; the passthrough gets the same records (and more)
    # 1.3x the calibrated rate's worth: the drain still lasts >= sustain if the worker runs up to 1.3x faster
    # than in the (short, cold) calibration; on a shared box the rate moves with the neighbours' load
    main_n = int(min(max(1.3 * rate * (args.sustain + 5), 20_000), args.max_backlog))
    pt_n = max(main_n, args.passthrough_min)
    started = time.perf_counter()
    sent = 0
    while sent < pt_n:
        chunk = backlog.take(min(100_000, pt_n - sent))
        producer.send(tx_pt, chunk)
        if sent < main_n:
            producer.send(tx_e2e, chunk[: main_n - sent])
        sent += len(chunk)
    producer.flush()
    log(f"produced {main_n:,} (e2e) and {pt_n:,} (passthrough) records in {time.perf_counter() - started:.0f} s")
    out["backlog"] = {"e2e_records": main_n, "passthrough_records": pt_n,
                      "event_time_span_s": round(main_n / backlog.nominal_rate, 1),
                      "nominal_event_rate": backlog.nominal_rate, "base_records": backlog.base_size,
                      "users": world.users, "merchants": world.merchants}

    meter_pt = outputs(pt)
    for variant in args.passthrough_variants:  # each its own consumer group over the same input
        name = "passthrough" if variant == "worker" else f"passthrough_{variant}"
        log(f"{name}: draining {pt_n:,} records")
        run = pt if variant == "worker" else make_run(world, f"bench-{run_id}-pt-{variant}", topics_of=pt_prefix)
        child = start_child({**run.env, "BENCH_PASSTHROUGH_SEND": variant}, root / "logs" / f"{name}.log", root,
                            [str(BENCH / "passthrough_worker.py")])
        try:
            out[name] = measure_drain(meter_pt, child, pt_n, timeout_s=max(120, args.sustain * 2)).summary()
            out[name]["send"] = ("the worker's publisher (KafkaPublisher.publish_raw)" if variant == "worker"
                                 else "Faust topic.send per record")
            log(f"{name}: {out[name]['events_per_s']:,} ev/s")
        except Exception:  # noqa: BLE001 - the e2e drain below must still run
            out["errors"][name] = traceback.format_exc()
            log(f"{name} failed:\n{out['errors'][name]}")
        finally:
            child.stop()

    bench_ceiling(world, root, args, pt_prefix=pt_prefix, meter=meter_pt, pt_n=pt_n, out=out)

    log(f"e2e: python -m stream_app worker draining {main_n:,} records, streamscore sink alongside")
    sink_port = free_port()
    sink_env = {**e2e.env, "STREAMSCORE_SINK__GROUP_ID": f"bench-{run_id}-sink",
                "STREAMSCORE_SINK__METRICS_PORT": str(sink_port)}
    logs = logs_of(e2e.settings)
    parts_before = {name: set(target.directory.rglob(SINK_PART)) for name, target in logs.items()}
    sink = start_child(sink_env, root / "logs" / "sink_e2e.log", root, SINK_ARGS)
    sink_started = time.monotonic()
    child = start_child(e2e.env, root / "logs" / "worker_e2e.log", root)
    try:
        out["e2e"] = measure_drain(meter, child, main_n, timeout_s=args.sustain * 3 + 30).summary()
        out["e2e"]["worker_metrics"] = worker_metrics(scrape_metrics(e2e.settings.worker.web_port), tx_e2e)
        sink_before_stop = sink_metrics(scrape_metrics(sink_port))  # its open parts are written as it stops
    finally:
        child.stop()
        sink.stop()  # SIGTERM: the sink writes every open part before it exits
    out["e2e"]["sustained_at_least_s"] = args.sustain
    out["e2e"]["sustained_ok"] = out["e2e"]["drain_seconds"] >= args.sustain
    out["e2e"]["with_sink_running"] = True
    log(f"e2e: {out['e2e']['events_per_s']:,} ev/s over {out['e2e']['drain_seconds']} s")
    out["sink"] = sink_files(logs, parts_before, time.monotonic() - sink_started, e2e.settings, main_n)
    out["sink"]["metrics_before_stop"] = sink_before_stop
    log(f"sink: {out['sink']['parts']} parts; per view per 10 min {out['sink']['parts_per_view_per_10min']}")
    meter.close()
    meter_pt.close()


def sink_files(logs: dict[str, Any], before: dict[str, set[Path]], wall_s: float, settings: Settings,
               records: int) -> dict[str, Any]:
    """The parts ``streamscore sink`` wrote while it ran (wall_s seconds next to the e2e drain), per log,
    and that count scaled to 10 minutes and to an hour of stream. The sink closes a part per log and
    event hour every ``part_max_age_s`` seconds or ``part_max_rows`` rows, and the open ones when it
    stops, so the count is scaled by max(wall_s, part_max_age_s): a run shorter than a part's age
    writes the one part that the steady state writes per age."""
    per_log: dict[str, Any] = {}
    for name, target in logs.items():
        new = sorted(set(target.directory.rglob(SINK_PART)) - before[name])
        per_log[name] = {"parts": len(new), "hour_dirs": len({p.parent for p in new}),
                         "bytes": sum(p.stat().st_size for p in new)}
    views = [v for k, v in per_log.items() if k not in (LABELS_LOG, TRANSACTIONS_LOG)]
    worst = max((v["parts"] for v in views), default=0)
    sink = settings.sink
    span = max(wall_s, sink.part_max_age_s)
    return {"how": "streamscore sink (own consumer group) over the e2e run's predictions, labels.joined and "
                   "transactions, "
                   "started before the e2e worker and stopped (SIGTERM: open parts written) after its drain; "
                   f"parts named {SINK_PART} counted per log",
            "records_streamed": records, "sink_wall_s": round(wall_s, 1), "per_log": per_log,
            "parts": sum(v["parts"] for v in per_log.values()),
            "parts_per_view_per_10min": round(worst * 600 / span, 1),
            "parts_per_view_per_hour": round(worst * 3600 / span, 1),
            "part_max_age_s": sink.part_max_age_s, "part_max_rows": sink.part_max_rows,
            "bound_per_view_per_hour": f"3600 / part_max_age_s = {3600 / sink.part_max_age_s:g}, plus one per "
                                       f"part_max_rows rows and per event hour crossed"}


def bench_ceiling(world: World, root: Path, args: argparse.Namespace, *, pt_prefix: str, meter: OutputMeter,
                  pt_n: int, out: dict[str, Any]) -> None:
    """Faust's ceiling under other settings: the passthrough (each variant its own consumer group over the
    passthrough backlog) with the worker's faust.App arguments overridden (CEILING_VARIANTS), the first
    ``--ceiling-records`` records each. A variant that forwards nothing within 60 s is stopped and its
    log's tail recorded."""
    n = min(pt_n, args.ceiling_records)
    results: dict[str, Any] = {}
    for i, name in enumerate(args.ceiling):
        conf = CEILING_VARIANTS[name]
        run = make_run(world, f"bench-{args.run_id}-ceil{i}", topics_of=pt_prefix)
        env = {**run.env, "BENCH_FAUST_CONF": json.dumps(conf)}
        log(f"ceiling {name}: passthrough draining {n:,} records")
        child = start_child(env, root / "logs" / f"ceiling{i}.log", root, [str(BENCH / "passthrough_worker.py")])
        row: dict[str, Any] = {"faust_app_overrides": conf,
                               "command": f"BENCH_FAUST_CONF='{json.dumps(conf)}' .venv/bin/python "
                                          "bench/passthrough_worker.py"}
        try:
            row.update(measure_drain(meter, child, n, timeout_s=max(60, args.sustain * 2),
                                     first_output_within_s=60).summary())
            log(f"ceiling {name}: {row['events_per_s']:,} ev/s")
        except Exception as exc:  # noqa: BLE001 - a variant that does not run is a finding, not a failure
            row["failed"] = str(exc).splitlines()[0]
            row["log_tail"] = child.tail(15)
            log(f"ceiling {name}: {row['failed']}")
        finally:
            child.stop(timeout_s=20)
        results[name] = row
    base = (out.get("passthrough") or {}).get("events_per_s")
    for row in results.values():
        rate = row.get("events_per_s")
        row["over_default_passthrough"] = round(rate / base, 3) if rate and base else None
    out["ceiling"] = {"records_each": n, "variants": results}


# ------------------------------------------------------------------------------------ scale-out, profile


def drain_with(meter: OutputMeter, children: list[WorkerProcess], expected: int, timeout_s: float,
               produce: Callable[[], None]) -> dict[str, Any]:
    """``measure_drain`` watching the first child while ``produce`` (in a thread) sends the backlog, with
    every child's CPU seconds over the drain."""
    cpu0 = [cpu_seconds(c.pid) for c in children]
    base = meter.count()
    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    try:
        result = measure_drain(meter, children[0], expected, timeout_s=timeout_s, base=base).summary()
    finally:
        producing.join()
    result["cpu_seconds_each_worker"] = [round(cpu_seconds(c.pid) - c0, 1) for c, c0 in zip(children, cpu0,
                                                                                           strict=True)]
    result["cpu_seconds"] = round(sum(result["cpu_seconds_each_worker"]), 1)
    result["events_per_cpu_second"] = (round(result["output_records"] / result["cpu_seconds"])
                                       if result["cpu_seconds"] > 0 else None)
    return result


def group_settled(children: list[WorkerProcess]) -> bool:
    """Every worker has synced the same (latest) group generation and is ready after it (Faust's log)."""
    generations: set[str] = set()
    for child in children:
        text = child.output()
        synced = [line for line in text.splitlines() if "Successfully synced group" in line]
        if not synced or "Worker ready" not in text[text.rindex(synced[-1]):]:
            return False
        generations.add(synced[-1].rsplit("generation", 1)[-1].strip())
    return len(generations) == 1


def scale_run(run: Run, name: str, workers: int, source: Backlog, *, n: int, root: Path,
              timeout_s: float, profile_to: Path | None = None) -> dict[str, Any]:
    """``workers`` workers in one consumer group: a warm-up slice until the group has settled (joined,
    rebalanced, ready), then ``n`` records produced at once and their drain measured. With
    ``profile_to``: the workers are bench/profiled_worker.py, profiling the drain only (one worker)."""
    producer = FastProducer(run.settings.kafka)
    topic = run.settings.topics.transactions.name
    warm = source.take(500 * workers)
    producer.send(topic, warm)
    producer.flush()
    meter = outputs(run)
    base = meter.count()
    env = {**run.env, "BENCH_PROFILE_OUT": str(profile_to)} if profile_to else run.env
    args = [str(BENCH / "profiled_worker.py")] if profile_to else WORKER_ARGS
    children = [start_child({**env, "STREAMSCORE_WORKER__WEB_PORT": str(free_port())},
                            root / "logs" / f"{name}-{i}.log", root, args) for i in range(workers)]
    try:
        deadline = time.monotonic() + 120
        while not (meter.count() - base >= len(warm) and group_settled(children)):
            if time.monotonic() > deadline or not all(c.alive() for c in children):
                raise RuntimeError(f"{name}: the group did not settle:\n{children[0].tail()}")
            time.sleep(0.5)
        records = source.take(n)

        def produce() -> None:
            producer.send(topic, records)
            producer.flush()

        if profile_to:
            children[0].proc.send_signal(PROFILE_START)
        result = drain_with(meter, children, n, timeout_s, produce)
        if profile_to:
            children[0].proc.send_signal(PROFILE_STOP)
            deadline = time.monotonic() + 30
            while not profile_to.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
        return result
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.stop()
        meter.close()


def bench_scale(world: World, root: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """2 worker processes vs 1 on the same backlog (4-partition topics): one worker (its own consumer
    group and state namespace), then two workers in one consumer group (another group and namespace),
    each run after a warm-up that lets the group settle, so the figure is the steady state (a
    rebalance costs a few seconds once). The two runs drain the same records from their own topics.
    """
    prefix = f"bench-{args.run_id}-scale"
    rate = float((out.get("e2e") or {}).get("events_per_s") or 1000.0)
    n = int(min(max(1.3 * rate * args.scale_seconds, 20_000), args.max_backlog))
    timeout = args.scale_seconds * 4 + 60
    result: dict[str, Any] = {"records": n, "how": "each run: its own topics (4 partitions) and consumer group; "
                              "500 warm-up records per worker until every worker has synced the group's "
                              "latest generation and is ready; then the backlog, produced at once"}
    for workers, key in ((1, "one_worker"), (2, "two_workers")):
        run = make_run(world, f"{prefix}{workers}")
        source = Backlog(world.users, world.merchants, world.seed + 2, args.nominal_rate,
                         datetime.now(UTC) - timedelta(minutes=30), args.base_records)
        log(f"scale: {workers} worker(s) in one group draining {n:,} records")
        result[key] = scale_run(run, f"worker_scale{workers}", workers, source, n=n, root=root, timeout_s=timeout)
        result["partitions"] = run.settings.topics.transactions.partitions
        log(f"scale: {workers} worker(s) {result[key]['events_per_s']:,} ev/s")
    one_rate, two_rate = result["one_worker"]["events_per_s"], result["two_workers"]["events_per_s"]
    result["two_over_one"] = round(two_rate / one_rate, 2) if one_rate and two_rate else None
    out["scale"] = result


def bench_metrics_cost(world: World, root: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """The worker's throughput with its Prometheus metrics on and off (``STREAMSCORE_WORKER__METRICS``):
    one worker drains a backlog of the same size four times, on, off, on, off (so drift over the run
    weighs on both), each run on its own topics and group after the warm-up ``scale_run`` does; the cost
    is 1 - mean(on) / mean(off), in percent."""
    rate = float((out.get("e2e") or {}).get("events_per_s") or 1000.0)
    n = int(min(max(rate * args.metrics_seconds, 10_000), args.max_backlog))
    rates: dict[str, list[int]] = {"on": [], "off": []}
    for i, state in enumerate(("on", "off", "on", "off")):
        run = make_run(world, f"bench-{args.run_id}-metrics{i}", worker={"metrics": state == "on"})
        source = Backlog(world.users, world.merchants, world.seed + 4 + i, args.nominal_rate,
                         datetime.now(UTC) - timedelta(minutes=30), args.base_records)
        log(f"metrics cost: metrics {state}, draining {n:,} records")
        drain = scale_run(run, f"worker_metrics_{i}_{state}", 1, source, n=n, root=root,
                          timeout_s=args.metrics_seconds * 6 + 60)
        rates[state].append(drain["events_per_s"])
        log(f"metrics cost: metrics {state}, {drain['events_per_s']:,} ev/s")
    on, off = (sum(r) / len(r) for r in (rates["on"], rates["off"]))
    out["metrics_cost"] = {"records_per_run": n, "events_per_s": rates, "cost_pct": round(100 * (1 - on / off), 1),
                           "how": "one worker, own topics and group per run, metrics on/off/on/off"}


def profile_worker(world: World, root: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """A CPU profile of one worker's steady state: bench/profiled_worker.py (the worker with cProfile
    switched on after the warm-up and off after the drain of ``--profile-records`` records, own topics
    and group); top functions by own time and by cumulative time to bench/results/worker_cprofile.txt.
    cProfile sees the event loop's thread only (not librdkafka's, the publisher's poll thread or worker
    threads) and slows the process: its rate is not a figure."""
    run = make_run(world, f"bench-{args.run_id}-prof")
    stats_file = root / "worker.cprofile"
    source = Backlog(world.users, world.merchants, world.seed + 3, args.nominal_rate,
                     datetime.now(UTC) - timedelta(minutes=30), args.base_records)
    n = args.profile_records
    log(f"profile: the worker under cProfile draining {n:,} records")
    drain = scale_run(run, "worker_cprofile", 1, source, n=n, root=root, timeout_s=args.scale_seconds * 6 + 120,
                      profile_to=stats_file)
    text = io.StringIO()
    command = (f"BENCH_PROFILE_OUT=worker.cprofile .venv/bin/python bench/profiled_worker.py, profiling "
               f"on (SIGRTMIN) after warm-up, off (SIGRTMIN+1) after draining {n:,} records")
    text.write(f"{command}\n{n:,} records drained at {drain['events_per_s']} ev/s under cProfile "
               "(the event loop's thread only)\n")
    stats = pstats.Stats(str(stats_file), stream=text)
    stats.sort_stats("tottime").print_stats(args.profile_top)
    stats.sort_stats("cumulative").print_stats(args.profile_top)
    path = RESULTS / "worker_cprofile.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(text.getvalue())
    rows: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in rows.values()) or 1.0
    top = sorted(rows.items(), key=lambda kv: -kv[1][2])[:12]
    out["cpu_profile"] = {"file": "bench/results/worker_cprofile.txt", "command": command, "records": n,
                          "events_per_s_under_cprofile": drain["events_per_s"],
                          "top_own_time": [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})",
                                            "share_of_profiled_time": round(v[2] / total, 3)} for k, v in top]}
    log(f"profile: {path}")


# ---------------------------------------------------------------------------------------------- latency


class PredictionTap:
    """Consumes a predictions topic in a thread; per prediction: arrival (wall clock), the input's record
    timestamp (scored_at - latency_ms) and latency_ms."""

    def __init__(self, settings: Settings, group: str) -> None:
        self._consumer = Consumer({**settings.kafka.confluent(), "group.id": group, "auto.offset.reset": "earliest",
                                   "enable.auto.commit": False, "fetch.wait.max.ms": 50, "fetch.min.bytes": 1})
        self._consumer.subscribe([settings.topics.predictions.name])
        self.rows: list[tuple[float, float, float]] = []  # (arrival, entered, latency_ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """One ``poll`` per record, stamped as it returns: ``consume(n, timeout)`` would return only when
        n records or the timeout are reached, and stamp a whole batch late by up to the timeout."""
        while not self._stop.is_set():
            msg = self._consumer.poll(0.1)
            if msg is not None:
                arrival = time.time()
                value = msg.value()
                if msg.error() or value is None:
                    continue
                body = json.loads(value)
                scored = datetime.fromisoformat(body["scored_at"].replace("Z", "+00:00")).timestamp()
                self.rows.append((arrival, scored - body["latency_ms"] / 1e3, float(body["latency_ms"])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def live(run: Run, world: World, *, rate: float, seconds: float, log_path: Path, root: Path,
         ) -> tuple[float, float, int]:
    """The live generator as a subprocess; returns (launched, exited, valid records produced)."""
    launched = time.time()
    with log_path.open("ab") as sink, subprocess.Popen(
            [sys.executable, "-m", "stream_app", "generate", "live", "--rate", str(rate), "--duration", str(seconds),
             "--users", str(world.users), "--merchants", str(world.merchants), "--seed", str(world.seed)],
            env={**os.environ, **run.env}, cwd=root, stdout=subprocess.PIPE, stderr=sink, text=True) as child:
        record_pid(child.pid)
        try:
            stdout, _ = child.communicate(timeout=seconds + 120)
        except BaseException:
            child.kill()
            raise
    exited = time.time()
    if child.returncode != 0:
        raise RuntimeError(f"generator failed ({child.returncode}): {stdout[-500:]}")
    valid = int(stdout.split("valid", 1)[1].split()[0])
    return launched, exited, valid


def latency_phase(tap: PredictionTap, run: Run, world: World, *, rate: float, seconds: float, warm_s: float,
                  worker: WorkerProcess, root: Path, name: str, expected_rate: float) -> dict[str, Any]:
    """One paced live run; ``max_loop_stall_ms`` is the worker's longest event-loop stall meanwhile (its
    loop-lag probe, ``worker.loop_lag_file``)."""
    log(f"latency: {name} at {rate:g} ev/s for {seconds:g} s")
    cpu0 = cpu_seconds(worker.pid)
    scraped = scrape_metrics(run.settings.worker.web_port)
    launched, exited, valid = live(run, world, rate=rate, seconds=seconds, log_path=root / "logs" / "generator.log",
                                   root=root)

    def phase() -> list[tuple[float, float, float]]:
        return [r for r in tap.rows if launched <= r[1] <= exited + 1]

    # wait for the whole phase, however far behind the worker is (bounded: a stuck worker ends the wait)
    deadline = time.time() + min(300.0, max(60.0, 1.5 * valid / max(100.0, expected_rate)))
    while len(phase()) < valid and time.time() < deadline:
        if not worker.alive():
            raise RuntimeError(f"worker died:\n{worker.tail()}")
        time.sleep(0.2)
    rows = phase()
    drained = time.time()
    first = min((r[1] for r in rows), default=launched)
    steady = [r for r in rows if r[1] >= first + warm_s]
    produced_for = max(1e-9, max((r[1] for r in rows), default=first) - first)
    return {
        "rate": rate, "seconds": seconds, "valid_produced": valid, "predictions": len(rows),
        "complete": len(rows) >= valid,
        "measured_after_warmup_s": warm_s,
        "produced_rate": round(len(rows) / produced_for),
        "produce_to_arrival_ms": percentiles([1e3 * (a - e) for a, e, _ in steady]),
        "produce_to_scored_at_ms": percentiles([lat for _, _, lat in steady]),
        "drained_s_after_generator_exit": round(drained - exited, 1),
        "worker_cpu_cores": round((cpu_seconds(worker.pid) - cpu0) / max(1e-9, drained - launched), 2),
        "worker_rss_mb": round(rss_mb(worker.pid)[0], 1),
        "max_loop_stall_ms": (worst_stall_ms(run.settings.worker.loop_lag_file, launched, drained)
                              if run.settings.worker.loop_lag_file else None),
        "worker_metrics": worker_metrics(delta(scraped, scrape_metrics(run.settings.worker.web_port)),
                                         run.settings.topics.transactions.name),
    }


def bench_latency(world: World, root: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """(c) latency: the worker (default settings, then batch_within_s=0.005) under the paced live
    generator (event time = wall clock) at each of ``--rates`` / ``--tuned-rates``. Latency runs from
    the input record's timestamp (CreateTime, set by the producer; the prediction's latency_ms is
    scored_at minus it) to the prediction's arrival at a consumer in this process; produce -> scored_at
    is reported too."""
    configs: list[tuple[str, dict[str, Any], list[float]]] = [
        ("default settings (batch_size 1000, batch_within_s 0.02, producer_linger_ms 5)", {}, args.rates),
        ("batch_within_s 0.005", {"batch_within_s": 0.005}, args.tuned_rates),
    ]
    results: list[dict[str, Any]] = []
    expected_rate = float((out.get("e2e") or {}).get("events_per_s") or 1000.0)  # how fast a backlog drains
    for i, (label, knobs, rates) in enumerate(configs):
        if not rates:
            continue
        run = make_run(world, f"bench-{args.run_id}-lat{i}",
                       worker={**knobs, "loop_lag_file": root / "logs" / f"loop_lag_{i}.jsonl"})
        tap = PredictionTap(run.settings, f"bench-{args.run_id}-lat{i}-tap")
        worker = start_child(run.env, root / "logs" / f"worker_lat{i}.log", root)
        try:
            warm = latency_phase(tap, run, world, rate=200, seconds=4 if QUICK else 8, warm_s=0, worker=worker,
                                 root=root, name=f"{label}: warm-up", expected_rate=expected_rate)
            phases = [latency_phase(tap, run, world, rate=rate, seconds=args.rate_seconds, warm_s=args.warmup_seconds,
                                    worker=worker, root=root, name=label, expected_rate=expected_rate)
                      for rate in rates]
        finally:
            worker.stop()
            tap.close()
        results.append({"worker": label, "warm_up": {"predictions": warm["predictions"]}, "phases": phases})
    out["latency"] = results


# --------------------------------------------------------------------------------------------------- RSS


def bench_rss(world: World, root: Path, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """(e) RSS: bench/bench_worker_rss.py, the worker's runner in-process over --rss-users distinct users."""
    run = make_run(world, f"bench-{args.run_id}-rss")
    result_path = root / "worker_rss.json"
    log(f"rss: the worker's runner in-process over {args.rss_users:,} distinct users")
    child = start_child(run.env, root / "logs" / "worker_rss.log", root,
                        [str(BENCH / "bench_worker_rss.py"), "--users", str(args.rss_users), "--full-users",
                         str(args.rss_full_users), "--merchants", str(world.merchants), "--seed", str(world.seed),
                         "--out", str(result_path)])
    peak = 0.0
    try:
        while child.alive():
            peak = max(peak, rss_mb(child.pid)[0] if child.alive() else 0.0)
            time.sleep(1.0)
    finally:
        child.stop()
    if child.returncode != 0:
        raise RuntimeError(f"bench_worker_rss.py failed:\n{child.tail()}")
    result = json.loads(result_path.read_text())
    result["rss_mb_peak_sampled_from_outside"] = round(peak, 1)
    write_result("worker_rss.json", result)
    out["rss"] = result


# ----------------------------------------------------------------------------------------------- summary


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    def get(*path: str) -> Any:
        node: Any = out
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    e2e = get("e2e", "events_per_s")
    naive = get("naive", "events_per_s")
    passthrough = get("passthrough", "events_per_s")
    def phase_at(rate: float) -> dict[str, Any]:
        for config in out.get("latency") or []:
            for phase in config["phases"]:
                if phase["rate"] == rate and config["worker"].startswith("default"):
                    return dict(phase)
        return {}

    def arrival(rate: float, key: str) -> Any:
        return (phase_at(rate).get("produce_to_arrival_ms") or {}).get(key)

    rss = get("rss", "vm_hwm_mb")
    values = {
        "e2e_events_per_s": e2e,
        "e2e_over_naive": round(e2e / naive, 1) if e2e and naive else None,
        "e2e_over_passthrough": round(e2e / passthrough, 3) if e2e and passthrough else None,
        "p50_ms_at_1k": arrival(1000, "p50"),
        "p99_ms_at_1k": arrival(1000, "p99"),
        "p99_ms_at_2k": arrival(2000, "p99"),
        "two_workers_over_one": get("scale", "two_over_one"),
        "sink_parts_per_view_per_10min": get("sink", "parts_per_view_per_10min"),
        "rss_mb_1m_users": rss,
        "max_loop_stall_ms_at_1k": phase_at(1000).get("max_loop_stall_ms"),
        "metrics_cost_pct": get("metrics_cost", "cost_pct"),
    }
    targets: dict[str, Any] = {
        name: {"value": value, "target": TARGETS[name],
               "met": None if value is None else (value <= TARGETS[name] if name in LOWER_IS_BETTER
                                                  else value >= TARGETS[name])}
        for name, value in values.items()}
    ceiling = get("ceiling", "variants") or {}
    targets["faust_ceiling_passthrough_events_per_s"] = {
        "default": passthrough, **{name: row.get("events_per_s") or row.get("failed") for name, row in ceiling.items()}}
    # the same ratios per CPU-second of the measured process (Kafka's and Redis's CPU not counted): what the
    # ratios would be if each process had a core to itself, as on a quiet machine
    e2e_cpu = get("e2e", "events_per_cpu_second")
    naive_cpu = get("naive", "events_per_cpu_second")
    pt_cpu = get("passthrough", "events_per_cpu_second")
    targets["per_cpu_second"] = {
        "e2e_events": e2e_cpu, "naive_events": naive_cpu, "passthrough_events": pt_cpu,
        "e2e_over_naive": round(e2e_cpu / naive_cpu, 1) if e2e_cpu and naive_cpu else None,
        "e2e_over_passthrough": round(e2e_cpu / pt_cpu, 3) if e2e_cpu and pt_cpu else None,
    }
    return targets


def print_summary(out: dict[str, Any]) -> None:
    print("\n=== streamscore end-to-end benchmark ===")
    print(f"measured: {out['measured_at']}  {out['machine']}  load note: {out['load_note']}")
    for name in ("naive", "passthrough", "passthrough_faust", "calibration", "e2e"):
        section = out.get(name)
        if isinstance(section, dict):
            rate = section.get("events_per_s")
            extra = (f" (10-90%: {section.get('events_per_s_10_to_90pct')}, over {section.get('drain_seconds')} s, "
                     f"{section.get('records'):,} records, {section.get('cpu_cores_used')} cores used)"
                     if "drain_seconds" in section else "")
            extra += f"; {section.get('events_per_cpu_second')} events per CPU-second"
            print(f"{name:<12} {rate:>10,} ev/s{extra}" if rate is not None else f"{name:<12} -")
    for config in out.get("latency") or []:
        print(f"latency, worker with {config['worker']}:")
        for phase in config["phases"]:
            a, s = phase["produce_to_arrival_ms"] or {}, phase["produce_to_scored_at_ms"] or {}
            print(f"  {phase['rate']:>6g} ev/s: produce->arrival p50 {a.get('p50')} p95 {a.get('p95')} "
                  f"p99 {a.get('p99')} ms; produce->scored_at p99 {s.get('p99')} ms (n={a.get('n')}); "
                  f"longest loop stall {phase.get('max_loop_stall_ms')} ms"
                  + ("" if phase["complete"] else f" INCOMPLETE: {phase['predictions']}/{phase['valid_produced']}"))
    scale, sink = out.get("scale"), out.get("sink")
    if isinstance(scale, dict):
        print(f"scale-out: 1 worker {scale['one_worker']['events_per_s']} ev/s, 2 workers (one group) "
              f"{scale['two_workers']['events_per_s']} ev/s = {scale['two_over_one']}x ({scale['records']:,} records)")
    cost = out.get("metrics_cost")
    if isinstance(cost, dict):
        print(f"metrics cost: {cost['cost_pct']} % of throughput; ev/s with metrics on / off: "
              f"{cost['events_per_s']['on']} / {cost['events_per_s']['off']}, {cost['records_per_run']:,} records")
    if isinstance(sink, dict):
        print(f"sink: {sink['parts']} parts in {sink['sink_wall_s']} s ({sink['per_log']}); per view "
              f"{sink['parts_per_view_per_10min']} per 10 min, {sink['parts_per_view_per_hour']} per hour")
    rss = out.get("rss")
    if isinstance(rss, dict):
        print(f"rss: {rss['users']:,} distinct users ({rss['full_path_users']:,} through the whole runner): "
              f"worker RSS {rss['rss_mb_end']} MB at the end, peak {rss['vm_hwm_mb']} MB, "
              f"pool {rss['pool_entries_end']:,} entries")
        extrapolated = rss["redis_mb_for_all_users_full_path_extrapolated"]
        print(f"     Redis used_memory +{rss['redis_used_memory_delta_mb']} MB measured; full path "
              f"{rss['redis_bytes_per_user_full_path']} B/user -> {extrapolated} MB for all users (extrapolated); "
              f"in-process {rss['in_process_events_per_s_full_path']} ev/s (full path)")
    print("targets:")
    for name, row in out["targets"].items():
        if name == "per_cpu_second":
            print(f"  per CPU-second of each process: {row}")
            continue
        if name == "faust_ceiling_passthrough_events_per_s":
            print(f"  Faust passthrough ceiling by settings (ev/s): {row}")
            continue
        state = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        print(f"  {name:<22} {row['value']!s:>10}  target {row['target']!s:>6}  {state}")
    for name, error in out.get("errors", {}).items():
        print(f"ERROR in {name}: {error.splitlines()[-1]}")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the children
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000 if QUICK else 100_000)
    parser.add_argument("--merchants", type=int, default=2_000 if QUICK else 5_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nominal-rate", type=float, default=20_000.0, help="event-time rate of the backlog")
    parser.add_argument("--base-records", type=int, default=50_000 if QUICK else 200_000)
    parser.add_argument("--naive-events", type=int, default=100 if QUICK else 500)
    parser.add_argument("--calibration", type=int, default=10_000 if QUICK else 40_000)
    parser.add_argument("--sustain", type=float, default=10.0 if QUICK else 60.0, help="seconds of e2e drain")
    parser.add_argument("--max-backlog", type=int, default=3_000_000)
    parser.add_argument("--passthrough-min", type=int, default=0, help="passthrough backlog at least (default: "
                        "the e2e backlog)")
    parser.add_argument("--passthrough-variants", nargs="*", default=["worker"], choices=["worker", "faust"],
                        help="publishers for the passthrough: the worker's, and/or Faust's topic.send")
    parser.add_argument("--ceiling", nargs="*", default=list(CEILING_VARIANTS), choices=list(CEILING_VARIANTS),
                        help="passthrough variants with other Faust settings / transport (Faust's ceiling)")
    parser.add_argument("--ceiling-records", type=int, default=30_000 if QUICK else 200_000,
                        help="records each ceiling variant drains (at most the passthrough backlog)")
    parser.add_argument("--scale-seconds", type=float, default=8.0 if QUICK else 30.0,
                        help="seconds of one worker's drain that size the scale-out backlog")
    parser.add_argument("--profile-records", type=int, default=10_000 if QUICK else 60_000)
    parser.add_argument("--profile-top", type=int, default=40, help="functions listed per ordering")
    parser.add_argument("--rates", type=float, nargs="*", default=[1000, 2000, 5000])
    parser.add_argument("--tuned-rates", type=float, nargs="*", default=[2000])
    parser.add_argument("--rate-seconds", type=float, default=6.0 if QUICK else 15.0)
    parser.add_argument("--warmup-seconds", type=float, default=1.0 if QUICK else 3.0)
    parser.add_argument("--rss-users", type=int, default=30_000 if QUICK else 1_000_000)
    parser.add_argument("--rss-full-users", type=int, default=10_000 if QUICK else 120_000,
                        help="of --rss-users, through the whole runner (the rest: window-state path)")
    parser.add_argument("--metrics-seconds", type=float, default=5.0 if QUICK else 20.0,
                        help="seconds of one worker's drain that size each metrics on/off run")
    parser.add_argument("--only", nargs="*", default=["naive", "throughput", "scale", "metrics_cost", "profile",
                                                         "latency", "rss"])
    parser.add_argument("--keep", action="store_true", help="keep the run directory (workspace, logs)")
    args = parser.parse_args()
    args.run_id = uuid.uuid4().hex[:6]
    run_dir = Path(os.environ.get("STREAMSCORE_RUN_DIR", REPO_ROOT / ".run" / "bench"))
    root = run_dir / f"e2e-{args.run_id}"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    settings = base_settings()
    out: dict[str, Any] = {
        **result_header("bench_e2e.py", root),
        "services": {"kafka": settings.kafka.bootstrap_servers, "redis": settings.redis.url},
        "errors": {},
    }
    log(f"run {args.run_id} in {root}")
    world = prepare_world(root / "world", f"bench_{args.run_id}", users=args.users, merchants=args.merchants,
                          days=args.days, seed=args.seed)
    out["world"] = {"users": world.users, "merchants": world.merchants, "history_days": args.days,
                    "history_transactions": world.history_transactions, "seconds": world.seconds,
                    "redis_after_setup": redis_memory(settings.redis.url)}
    log(f"world ready in {world.seconds['total']} s: {world.history_transactions:,} history transactions")

    def section(name: str, work: Callable[[], None]) -> None:
        if name not in args.only:
            return
        started = time.perf_counter()
        try:
            work()
        except Exception:  # noqa: BLE001 - one failed section must not hide the others' numbers
            out["errors"][name] = traceback.format_exc()
            log(f"{name} failed:\n{out['errors'][name]}")
        out.setdefault("section_seconds", {})[name] = round(time.perf_counter() - started, 1)

    def naive() -> None:
        out["naive"] = bench_naive(world, args.naive_events)
        log(f"naive: {out['naive']['events_per_s']} ev/s")

    def throughput() -> None:
        backlog = Backlog(world.users, world.merchants, world.seed, args.nominal_rate,
                          datetime.now(UTC) - timedelta(minutes=30), args.base_records)
        bench_throughput(world, backlog, root, args, out)

    section("naive", naive)
    section("throughput", throughput)
    section("scale", lambda: bench_scale(world, root, args, out))
    section("metrics_cost", lambda: bench_metrics_cost(world, root, args, out))
    section("profile", lambda: profile_worker(world, root, args, out))
    section("latency", lambda: bench_latency(world, root, args, out))
    section("rss", lambda: bench_rss(world, root, args, out))
    out["targets"] = summarize(out)
    out["redis_at_end"] = redis_memory(settings.redis.url)
    path = write_result("e2e.json", out)
    if out.get("latency"):
        write_result("e2e_latency.json", {"command": out["command"], "measured_at": out["measured_at"],
                                          "latency": out["latency"]})
    print_summary(out)
    print(f"\nwrote {path}")
    if not args.keep and not out["errors"]:  # keep the logs and the probe's counters
        for child in root.iterdir():
            if child.is_dir() and child.name != "logs":
                shutil.rmtree(child, ignore_errors=True)
    return 1 if out["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
