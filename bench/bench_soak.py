#!/usr/bin/env python
"""Soak (a benchmark, not a test): one worker under the live generator (``--realistic``, with labels) at half
its measured capacity for ``--duration`` seconds (default 20 min). Every ``--scrape`` seconds it reads the
worker's RSS (/proc), Redis's ``used_memory`` (INFO memory) and the worker's /metrics; every
``--interval`` seconds (default 60) the points are aggregated into a sample (bench/soak.py: RSS, Redis
memory, consumer lag mean/max over partitions, event latency p50/p99 from the worker's histogram, the
rates achieved). After the run each of worker RSS, Redis memory and consumer lag is judged on the
samples after the warm-up (a tenth of the run, and until labels arrive at their steady rate): its last
half must grow no faster than half as fast as its first half, or be flat, or (lag) stay under 5 s of
input (``soak.judge``); one that keeps growing fails the soak (exit 1).

The rate is ``--rate``, else half of ``--capacity``, else half the worker's end-to-end rate in
bench/results/e2e.json (``make bench`` writes it just before), else half of a capacity measured here (one
worker draining a backlog, as the e2e benchmark's scale-out runs do).

Needs Kafka and Redis from the environment (bench/run.sh starts them; ``bash bench/run.sh soak`` runs this
alone). Writes bench/results/soak.json and soak.png. BENCH_QUICK=1 shrinks it to 2 minutes.

    .venv/bin/python bench/bench_soak.py [--duration 1200 --interval 60 --rate R ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from bench_e2e import Run, group_settled, make_run, outputs, scale_run
from confluent_kafka import KafkaException
from harness import (
    QUICK,
    RESULTS,
    Backlog,
    FastProducer,
    OutputMeter,
    World,
    log,
    prepare_world,
    record_pid,
    redis_memory,
    result_header,
    rss_mb,
    scrape_metrics,
    start_child,
    write_result,
)
from soak import Point, aggregate, capacity_from, event_speed, judge_run, labels_steady_s, write_chart

from stream_app.settings import REPO_ROOT
from stream_app.worker.loop_lag import worst_stall_ms
from stream_app.worker.process import WorkerProcess


def choose_rate(args: argparse.Namespace, world: World, root: Path) -> tuple[float, dict[str, Any]]:
    """The soak's input rate and where it came from (see the module docstring for the order)."""
    if args.rate:
        return args.rate, {"source": "--rate"}
    if args.capacity:
        return args.capacity / 2, {"source": "--capacity", "capacity_events_per_s": args.capacity}
    previous = RESULTS / "e2e.json"
    if previous.exists():
        result = json.loads(previous.read_text())
        capacity = capacity_from(result)
        if capacity:
            return capacity / 2, {"source": str(previous.relative_to(REPO_ROOT)), "capacity_events_per_s": capacity,
                                  "measured_at": result.get("measured_at"), "command": result.get("command")}
    log(f"capacity: no e2e rate in {previous}; one worker drains {args.capacity_records:,} records to measure it")
    run = make_run(world, f"bench-{args.run_id}-soakcap")
    source = Backlog(world.users, world.merchants, world.seed + 5, 20_000.0,
                     datetime.now(UTC) - timedelta(minutes=30), min(args.capacity_records, 200_000))
    drain = scale_run(run, "worker_soak_capacity", 1, source, n=args.capacity_records, root=root,
                      timeout_s=max(300.0, args.capacity_records / 100))
    capacity = float(drain["events_per_s"])
    return capacity / 2, {"source": "measured here: one worker draining a backlog", "capacity_events_per_s": capacity,
                          "records": args.capacity_records}


def generator(run_env: dict[str, str], world: World, args: argparse.Namespace, rate: float, *, log_path: Path,
              root: Path) -> subprocess.Popen[str]:
    """``streamscore generate live --realistic`` (labels included) for the soak's duration."""
    command = [sys.executable, "-m", "stream_app", "generate", "live", "--realistic", "--rate", f"{rate:.0f}",
               "--duration", str(args.duration), "--users", str(world.users), "--merchants", str(world.merchants),
               "--seed", str(world.seed), "--label-delay-scale", str(args.label_delay_scale),
               "--invalid-fraction", str(args.invalid_fraction)]
    with log_path.open("ab") as sink:
        child = subprocess.Popen(command, env={**os.environ, **run_env}, cwd=root, stdout=subprocess.PIPE,
                                 stderr=sink, text=True)
    record_pid(child.pid)
    return child


def warm_up(world: World, run: Run, worker: WorkerProcess, records: int) -> None:
    """Until the worker has scored ``records`` warm-up records and its group has settled, so the soak starts
    from a running worker (model, profiles, connections loaded), not from its start-up. The records are
    stamped months before the realistic stream, so none of its events is late after them. The run's
    topics are new (empty) and may still be electing their leaders: a count that fails is tried again."""
    producer = FastProducer(run.settings.kafka)
    source = Backlog(world.users, world.merchants, world.seed + 6, 200.0, datetime.now(UTC) - timedelta(days=90),
                     records)
    producer.send(run.settings.topics.transactions.name, source.take(records))
    producer.flush()
    meter = outputs(run)
    deadline = time.monotonic() + 300
    try:
        while True:
            try:
                scored = meter.count()
            except KafkaException:
                scored = 0
            if scored >= records and group_settled([worker]) and scrape_metrics(run.settings.worker.web_port):
                return
            if not worker.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not warm up ({scored:,} of {records:,} scored):\n{worker.tail()}")
            time.sleep(1.0)
    finally:
        meter.close()


def worker_keys(url: str, app_id: str, sample_every: int = 50) -> dict[str, dict[str, float]]:
    """The worker's own Redis keys (``<project>:<app_id>:<kind>:...``) by kind (``pred`` the prediction index,
    ``win`` the window state, ...): how many, and their memory estimated from every ``sample_every``-th
    key's MEMORY USAGE. Whatever else is in Redis (Feast's online rows, other runs) is left out."""
    client = redis.Redis.from_url(url)
    counts: dict[str, int] = {}
    sampled: dict[str, int] = {}
    for i, key in enumerate(client.scan_iter(match=f"*:{app_id}:*", count=10_000)):
        kind = key.decode(errors="replace").split(f":{app_id}:", 1)[1].split(":", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
        if i % sample_every == 0:
            sampled[kind] = sampled.get(kind, 0) + int(client.memory_usage(key) or 0) * sample_every
    return {kind: {"keys": n, "mb_estimated": round(sampled.get(kind, 0) / 2**20, 1)}
            for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def soak(world: World, run: Run, root: Path, args: argparse.Namespace, out: dict[str, Any]) -> list[Point]:
    """Runs the worker and the generator, scraping every ``--scrape`` seconds; returns the points."""
    port = run.settings.worker.web_port
    worker = start_child(run.env, root / "logs" / "worker_soak.log", root)
    points: list[Point] = []
    produced = OutputMeter(run.settings.kafka, [run.settings.topics.transactions])
    try:
        warm_up(world, run, worker, args.warm_up_records)

        def point(t: float) -> Point:
            memory = redis_memory(run.settings.redis.url)
            try:
                records: int | None = produced.count()
            except KafkaException:
                records = None
            return Point(t, rss_mb(worker.pid)[0], memory["used_memory_mb"], memory["keys"], records,
                         scrape_metrics(port))

        rate = out["rate"]
        log(f"soak: worker warmed up; generator at {rate:,.0f} ev/s for {args.duration:g} s, sampling every "
            f"{args.interval:g} s")
        origin = time.monotonic()
        out["started_at_epoch_s"] = time.time()  # the loop-lag probe's reports are stamped with the wall clock
        points.append(point(0.0))
        gen = generator(run.env, world, args, rate, log_path=root / "logs" / "generator_soak.log", root=root)
        tx, labels = run.settings.topics.transactions.name, run.settings.topics.labels.name
        reported = 0
        try:
            while gen.poll() is None:
                tick = args.scrape * (math.floor((time.monotonic() - origin) / args.scrape) + 1)
                time.sleep(max(0.0, origin + tick - time.monotonic()))
                if not worker.alive():
                    raise RuntimeError(f"the worker exited during the soak:\n{worker.tail()}")
                points.append(point(tick))  # stamped with its tick, so each falls in its interval
                complete = aggregate(points, args.interval, tx, labels)
                for s in complete[reported:]:
                    log(f"soak {s['t_s'] / 60:5.1f} min: RSS {s['worker_rss_mb']} MB, Redis {s['redis_used_mb']} MB "
                        f"({s['redis_keys']:,} keys), lag mean {s['lag_sum_mean']} (largest partition "
                        f"{s['lag_partition_max']}), latency p50 {s['latency_p50_ms']} p99 {s['latency_p99_ms']} "
                        f"ms, {s['produced_per_s']} ev/s produced, {s['events_per_s']} consumed, "
                        f"{s['labels_per_s']} labels/s")
                reported = len(complete)
            stdout = gen.stdout.read() if gen.stdout else ""
        finally:
            if gen.poll() is None:
                gen.terminate()
            gen.wait(timeout=60)
        if gen.returncode != 0:
            raise RuntimeError(f"the generator failed ({gen.returncode}): {stdout[-500:]}")
        out["generator"] = stdout.strip()
        out["redis_worker_keys_at_end"] = worker_keys(run.settings.redis.url, run.settings.worker.app_id)
        out["worker_log"] = str(worker.log)
    finally:
        worker.stop()
        produced.close()
    return points


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the children
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0 if QUICK else 1200.0, help="seconds of stream")
    parser.add_argument("--interval", type=float, default=20.0 if QUICK else 60.0, help="seconds per sample")
    parser.add_argument("--scrape", type=float, default=5.0, help="seconds between points (the worker polls its "
                        "lag every 5 s)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds not judged (default: a tenth of the "
                        "duration, at least one interval, and at least until labels arrive at their steady rate)")
    parser.add_argument("--rate", type=float, default=None, help="events/s (default: half the capacity)")
    parser.add_argument("--capacity", type=float, default=None, help="the worker's capacity, events/s (default: "
                        "bench/results/e2e.json's, else measured)")
    parser.add_argument("--capacity-records", type=int, default=20_000 if QUICK else 60_000,
                        help="records drained to measure the capacity when it is not known")
    parser.add_argument("--warm-up-records", type=int, default=500, help="scored before the stream starts")
    parser.add_argument("--label-delay-scale", type=float, default=0.1,
                        help="labels' delay in event time, scaled (0.1: a 1-3 day chargeback after 2.4-7.2 h)")
    parser.add_argument("--invalid-fraction", type=float, default=0.01)
    parser.add_argument("--users", type=int, default=20_000 if QUICK else 100_000)
    parser.add_argument("--merchants", type=int, default=2_000 if QUICK else 5_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the run directory (workspace, logs)")
    args = parser.parse_args()
    args.run_id = uuid.uuid4().hex[:6]
    warmup = args.warmup if args.warmup is not None else max(args.interval, args.duration / 10)
    root = Path(os.environ.get("STREAMSCORE_RUN_DIR", REPO_ROOT / ".run" / "bench")) / f"soak-{args.run_id}"
    (root / "logs").mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        **result_header("bench_soak.py", root),
        "how": __doc__.split("\n\n")[0] if __doc__ else "",
        "settings": {"duration_s": args.duration, "interval_s": args.interval, "scrape_s": args.scrape,
                     "warmup_s": warmup, "label_delay_scale": args.label_delay_scale,
                     "invalid_fraction": args.invalid_fraction, "users": args.users, "merchants": args.merchants},
    }
    log(f"soak {args.run_id} in {root}")
    world = prepare_world(root / "world", f"bench_{args.run_id}", users=args.users, merchants=args.merchants,
                          days=args.days, seed=args.seed)
    log(f"world ready in {world.seconds['total']} s")
    rate, source = choose_rate(args, world, root)
    out["rate"], out["rate_from"] = round(rate), source
    stalls = root / "logs" / "loop_lag_soak.jsonl"
    run = make_run(world, f"bench-{args.run_id}-soak", worker={"loop_lag_file": stalls})
    points = soak(world, run, root, args, out)
    topics = run.settings.topics
    samples = aggregate(points, args.interval, topics.transactions.name, topics.labels.name)
    for s in samples:  # the worker's longest event-loop stall and garbage collection in each interval
        end = out["started_at_epoch_s"] + s["t_s"]
        s["loop_stall_max_ms"] = worst_stall_ms(stalls, end - args.interval, end)
        s["gc_max_ms"] = worst_stall_ms(stalls, end - args.interval, end, field="gc_max_ms")
    speed = event_speed((root / "logs" / "generator_soak.log").read_text(errors="replace"))
    if speed and args.warmup is None:  # not judged until the labels arrive at their steady rate
        out["labels_steady_after_s"] = round(labels_steady_s(speed, args.label_delay_scale), 1)
        warmup = max(warmup, out["labels_steady_after_s"])
    out["event_time_speed"] = speed
    out["settings"]["warmup_s"] = warmup
    judgement = judge_run(samples, rate, warmup)
    out["judgement"], out["samples"] = judgement, samples
    path = write_result("soak.json", out)
    chart = write_chart(RESULTS / "soak.png", samples, judgement, rate=rate,
                        title=f"Soak: {args.duration / 60:g} min at {rate:,.0f} ev/s")
    print(f"\n=== soak: {args.duration / 60:g} min at {rate:,.0f} ev/s ({source['source']}) ===")
    for name, verdict in judgement["series"].items():
        print(f"  {name:<14} {verdict['verdict']:<11} first half {verdict.get('first_half_per_min')}/min, last half "
              f"{verdict.get('last_half_per_min')}/min (flat below {verdict['flat_per_min']:g}/min)")
    kinds = ", ".join(f"{kind} {v['keys']:,} keys (~{v['mb_estimated']} MB)"
                      for kind, v in out.get("redis_worker_keys_at_end", {}).items())
    print(f"  the worker's Redis keys at the end: {kinds or 'none'}")
    print(f"  judgement: {'levels off' if judgement['ok'] else 'GROWS' if judgement['ok'] is False else 'not judged'}")
    print(f"wrote {path} and {chart}")
    if not args.keep:  # keep the logs
        shutil.rmtree(root / "world", ignore_errors=True)
    return 0 if judgement["ok"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
