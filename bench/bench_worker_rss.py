"""Worker memory with many users in state (not a test). The worker's own runner, built by
``stream_app.worker.wiring.build_worker`` as ``streamscore worker`` builds it, is driven in-process with
batches of new users' transactions: first through the whole runner but Kafka (``--full-users``), then
through the window-state path only (up to ``--users``). Reports this process's RSS, the state pool's
size and Redis memory as users accumulate, and writes a cProfile of the full path to
``bench/results/worker_profile.txt`` (where the time goes inside the runner without Kafka).

Needs the environment of a prepared world (bench/bench_e2e.py passes it):
    .venv/bin/python bench/bench_worker_rss.py [--users 1000000 --full-users 150000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import redis
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from harness import RESULTS, redis_memory, rss_mb  # bench/ is on sys.path when run as a script

from stream_app.adapters.state_store import Kind
from stream_app.contract import decode_transaction, encode
from stream_app.core.engine import FeatureEngine, TransactionEvent
from stream_app.generator.population import MERCHANT_ID_BASE
from stream_app.settings import get_settings
from stream_app.worker.ports import RawRecord
from stream_app.worker.wiring import build_worker

BATCH = 1000
PAIRS = [("EUR", "DE"), ("EUR", "FR"), ("USD", "US"), ("GBP", "GB"), ("PLN", "PL"), ("EUR", "ES"), ("SEK", "SE")]
CHANNELS = ["pos", "web", "app"]


class DroppingPublisher:
    """Encodes what the real publisher would send, sends nothing."""

    def __init__(self) -> None:
        self.sent = 0
        self.bytes = 0

    async def publish(self, predictions: Sequence[Any], dead_letters: Sequence[Any], labels: Sequence[Any] = (),
                      shadow: Sequence[Any] = ()) -> None:
        for record in [*predictions, *dead_letters, *shadow]:
            self.bytes += len(encode(record))
        self.sent += len(predictions) + len(dead_letters) + len(shadow)


def records(users: np.ndarray, merchants: np.ndarray, first: int, *, rng: np.random.Generator,  # type: ignore[type-arg]
            t0_us: int, rate: float, topic: str) -> list[Any]:
    n = len(users)
    amounts = np.round(rng.lognormal(3.5, 1.0, n), 2).clip(0.01, 1e6).tolist()
    pairs = rng.integers(0, len(PAIRS), n).tolist()
    channels = rng.integers(0, 3, n).tolist()
    now_ms = int(time.time() * 1000)
    out = []
    for i, (user, merchant) in enumerate(zip(users.tolist(), merchants.tolist(), strict=True)):
        seq = first + i
        us = t0_us + int(seq * 1e6 / rate)
        stamp = datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        currency, country = PAIRS[pairs[i]]
        value = (f'{{"event_id":"rss-{seq}","user_id":{user},"merchant_id":{merchant},"amount":{amounts[i]},'
                 f'"currency":"{currency}","country":"{country}","channel":"{CHANNELS[channels[i]]}",'
                 f'"event_time":"{stamp}"}}').encode()
        out.append(RawRecord(topic, user % 4, seq, str(user).encode(), value, now_ms))
    return out


def key_sizes(client: Any, runner: Any, users: Sequence[int], seqs: Sequence[int]) -> dict[str, float]:
    """Mean MEMORY USAGE (bytes, exact) of one user's keys of each kind, over sampled phase-1 users."""
    project = runner.online._config.project

    def usage(keys: list[bytes | str]) -> float:
        sizes = [client.memory_usage(k, samples=0) or 0 for k in keys]
        return round(statistics.fmean(sizes), 1) if sizes else float("nan")

    feast_keys: list[bytes | str] = [
        _redis_key(project, EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=u)]), 3) for u in users]
    out = {"window_state_key": usage([runner.state.key(Kind.USER, u) for u in users]),
           "feast_user_hash": usage(feast_keys)}
    index = getattr(runner, "index", None)
    if index is not None:
        out["prediction_index_key"] = usage([f"{index.prefix}rss-{seq}" for seq in seqs])
    return out


def main() -> int:
    """Drive the runner over ``--users`` new users in batches of ``BATCH`` records, one per user.

    1. The first ``--full-users`` go through ``BatchRunner.handle``: everything the worker does but Kafka
       (the publisher encodes every prediction as the real one does and drops it).
    2. The rest go through the window state path only, in the same process and store: ``load`` ->
       ``FeatureEngine.on_transaction`` per event -> ``commit``, what ``BatchProcessor.process`` and the
       runner do with the state. Profile reads, scoring, the online-store write, the offline log and the
       prediction index are skipped: none of them keeps per-user data in the process.

    So the process ends with every user's state handled by its store and pool, while Redis holds Feast
    rows and prediction-index entries only for phase 1; the Redis bytes of a full-path user (``used_memory``
    delta and MEMORY USAGE of sampled keys) are extrapolated to ``--users``, labelled as such. Reported
    every tenth of the users: RSS (VmRSS, peak VmHWM), pool size, Redis ``used_memory`` and key count, and
    the rate. A cProfile of ``--profile-batches`` batches of phase 1 goes to worker_profile.txt."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--full-users", type=int, default=150_000, help="users through the whole runner")
    parser.add_argument("--merchants", type=int, default=5_000, help="merchant ids of the world's population")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile-batches", type=int, default=50)
    parser.add_argument("--out", type=Path, default=RESULTS / "worker_rss.json")
    args = parser.parse_args()

    settings = get_settings()
    pid = os.getpid()
    rss_start = rss_mb(pid)
    worker = build_worker(settings)
    built: Any = worker.runners()
    runner: Any = built.transactions
    publisher = DroppingPublisher()
    runner.publisher = publisher
    store: Any = runner.state
    lateness = runner.processor.allowed_lateness_s
    rss_built = rss_mb(pid)
    redis_before = redis_memory(settings.redis.url)
    client = redis.Redis.from_url(settings.redis.url)

    rng = np.random.default_rng(args.seed)
    user_ids = rng.permutation(args.users).astype(np.int64) + 50_000_000  # distinct, none in the history
    weights = 1.0 / np.arange(1, args.merchants + 1)
    merchant_ids = MERCHANT_ID_BASE + rng.choice(args.merchants, size=args.users, p=weights / weights.sum())
    t0_us = int((time.time() - 600) * 1e6)
    topic = settings.topics.transactions.name
    loop = asyncio.new_event_loop()
    full = min(args.full_users, args.users)
    checkpoints: list[dict[str, Any]] = []
    every = max(BATCH, args.users // 10)
    profile_from = max(0, min((full // BATCH) // 2, full // BATCH - args.profile_batches))
    profiler = cProfile.Profile()
    phase_s = {"full": 0.0, "state_only": 0.0}
    redis_after_full: dict[str, Any] = {}
    sizes: dict[str, float] = {}
    last_t, last_n = time.perf_counter(), 0
    for batch_no, first in enumerate(range(0, args.users, BATCH)):
        batch = records(user_ids[first:first + BATCH], merchant_ids[first:first + BATCH], first, rng=rng,
                        t0_us=t0_us, rate=20_000.0, topic=topic)
        mark = time.perf_counter()
        if first < full:
            profiling = profile_from <= batch_no < profile_from + args.profile_batches
            if profiling:
                profiler.enable()
            loop.run_until_complete(runner.handle(batch))
            if profiling:
                profiler.disable()
            phase_s["full"] += time.perf_counter() - mark
        else:  # the window-state path of BatchProcessor.process + the runner's commit
            txns = [(r, decode_transaction(r.value, r.key)) for r in batch]
            state = store.load(sorted({t.user_id for _, t in txns}), sorted({t.merchant_id for _, t in txns}))
            engine = FeatureEngine(lateness, state)
            for r, t in txns:
                engine.on_transaction(TransactionEvent(t.event_id, t.user_id, t.merchant_id, t.amount,
                                                       t.event_time.timestamp(), (r.partition, r.offset)))
            store.commit(state)
            phase_s["state_only"] += time.perf_counter() - mark
        done = first + len(batch)
        if done == full:
            redis_after_full = redis_memory(settings.redis.url)
            sample = rng.choice(full, size=min(500, full), replace=False)
            sizes = key_sizes(client, runner, [int(user_ids[i]) for i in sample], [int(i) for i in sample])
        if done % every == 0 or done in (full, args.users):
            now = time.perf_counter()
            rss, hwm = rss_mb(pid)
            point = {"users": done, "phase": "full" if done <= full else "state_only", "rss_mb": round(rss, 1),
                     "vm_hwm_mb": round(hwm, 1), "pool_entries": getattr(store, "cached", None),
                     "events_per_s": round((done - last_n) / (now - last_t)), **redis_memory(settings.redis.url)}
            checkpoints.append(point)
            print(json.dumps(point), file=sys.stderr, flush=True)
            last_t, last_n = now, done
    loop.close()
    stats = runner.stats
    redis_after = redis_memory(settings.redis.url)
    rss, hwm = rss_mb(pid)

    text = io.StringIO()
    ps = pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime")
    ps.print_stats(30)
    ps.sort_stats("cumulative").print_stats(45)
    (RESULTS / "worker_profile.txt").write_text(
        f"cProfile of {args.profile_batches} batches x {BATCH} events (batches {profile_from}.."
        f"{profile_from + args.profile_batches - 1}) of BatchRunner.handle, in-process, publisher dropping "
        f"(see bench/bench_worker_rss.py). cProfile roughly doubles the time of Python-heavy code.\n\n"
        + text.getvalue())
    full_mb = redis_after_full.get("used_memory_mb", float("nan")) - redis_before["used_memory_mb"]
    per_full_user = full_mb * 2**20 / full if full else float("nan")
    state_mb = redis_after["used_memory_mb"] - redis_after_full.get("used_memory_mb", float("nan"))
    per_state_user = state_mb * 2**20 / (args.users - full) if args.users > full else float("nan")
    result = {
        "command": " ".join([".venv/bin/python bench/bench_worker_rss.py", *sys.argv[1:]]),
        "what": f"the worker's runner (build_worker) in-process, one transaction per distinct user, batches of "
                f"{BATCH}: the first {full:,} users through BatchRunner.handle (all but Kafka: predictions "
                f"encoded and dropped), the remaining {args.users - full:,} through the window-state path only "
                f"(load -> engine -> commit on the same store)",
        "users": args.users,
        "full_path_users": full,
        "predictions": int(stats.predictions),
        "dead_letters": dict(stats.dead_letters),
        "rss_mb_at_start": round(rss_start[0], 1),
        "rss_mb_after_build": round(rss_built[0], 1),
        "rss_mb_end": round(rss, 1),
        "vm_hwm_mb": round(hwm, 1),
        "pool_entries_end": getattr(store, "cached", None),
        # RunnerStats keeps every prediction's latency: 8 B of list slot + a 24 B float per prediction, forever
        "runner_stats_latencies_kept": len(getattr(stats, "latencies_ms", [])),
        "runner_stats_latencies_mb": round((sys.getsizeof(getattr(stats, "latencies_ms", []))
                                            + 24 * len(getattr(stats, "latencies_ms", []))) / 2**20, 1),
        "redis_before": redis_before,
        "redis_after_full_path": redis_after_full,
        "redis_after": redis_after,
        "redis_used_memory_delta_mb": round(redis_after["used_memory_mb"] - redis_before["used_memory_mb"], 1),
        "redis_bytes_per_user_full_path": round(per_full_user),
        "redis_bytes_per_user_state_only": round(per_state_user) if args.users > full else None,
        "redis_memory_usage_per_key_bytes": sizes,
        "redis_mb_for_all_users_full_path_extrapolated": round(per_full_user * args.users / 2**20, 1),
        "in_process_events_per_s_full_path": round(full / phase_s["full"]) if phase_s["full"] else None,
        "in_process_events_per_s_state_only": (round((args.users - full) / phase_s["state_only"])
                                               if phase_s["state_only"] else None),
        "checkpoints": checkpoints,
        "profile": "bench/results/worker_profile.txt",
    }
    if publisher.sent != full:
        result["warning"] = f"{publisher.sent} outputs for {full} full-path events"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "checkpoints"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
