"""Benchmark of the Redis window store (not a test): load + commit cost per key for batches of 1000
transactions of 1000 distinct users with realistic state, and Redis memory per key (MEMORY USAGE).

State is realistic: a population's history (users with lognormal activity around --per-day transactions a
day, Zipf-popular merchants, labels for a share of transactions) is run through the in-memory engine for
--days, then written to Redis. Measured batches then carry one new transaction per user at the end of the
history: load (one round trip), the engine, commit (one atomic token-checking script), in two modes:
cold (no in-process pool: every key fetched and decoded) and warm (pool hits: only tokens compared).

Run: .venv/bin/python bench/bench_state_store.py [--url redis://127.0.0.1:6379/15] [--users 20000]
Writes bench/results/state_store.json. Uses a private namespace and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

import redis

from stream_app.adapters.state_store import Kind, RedisWindowStore
from stream_app.core.engine import FeatureEngine, LabelEvent, TransactionEvent
from stream_app.core.window_spec import DAY

T0 = 1_800_000_000.0
LATENESS = 300.0
RESULTS = Path(__file__).resolve().parent / "results" / "state_store.json"


def history(users: int, merchants: int, days: float, per_day: float, rng: random.Random,
            ) -> list[TransactionEvent | LabelEvent]:
    """Time-ordered transactions and labels (labels a few hours after 2% of the transactions)."""
    rates = [per_day * rng.lognormvariate(0, 1) / 1.6487 for _ in range(users)]  # mean per_day
    cum = list(itertools.accumulate(1 / (rank + 1) for rank in range(merchants)))
    events: list[TransactionEvent | LabelEvent] = []
    offsets = [0] * 8
    for user, rate in enumerate(rates):
        t = T0 + rng.uniform(0, DAY / max(rate, 1e-3))
        while t < T0 + days * DAY:
            merchant = rng.choices(range(merchants), cum_weights=cum)[0]
            events.append(TransactionEvent("", user, merchant, round(rng.lognormvariate(3.5, 1.0), 2), t, (0, 0)))
            if rng.random() < 0.02:
                events.append(LabelEvent("", merchant, rng.random() < 0.5, t + rng.uniform(3600, 6 * 3600), (0, 0)))
            t += rng.expovariate(rate / DAY)
    events.sort(key=lambda e: e.time)
    out: list[TransactionEvent | LabelEvent] = []
    for e in events:  # positions in arrival order: users on 8 partitions, labels on one
        if isinstance(e, TransactionEvent):
            offsets[e.user_id % 8] += 1
            out.append(TransactionEvent(f"e{len(out)}", e.user_id, e.merchant_id, e.amount, e.time,
                                        (e.user_id % 8, offsets[e.user_id % 8])))
        elif e.time < T0 + days * DAY:
            out.append(LabelEvent(f"l{len(out)}", e.merchant_id, e.is_fraud, e.time, (100, len(out))))
    return out


def seed_redis(store: RedisWindowStore, engine: FeatureEngine) -> None:
    """Write the in-memory engine's state through the store, 1000 users per commit."""
    users = list(engine.state.users.items())
    merchants = set(engine.state.merchant_txns) | set(engine.state.merchant_labels)
    for i in range(0, len(users), 1000):
        chunk = users[i : i + 1000]
        state = store.load([u for u, _ in chunk], [])
        for user, windows in chunk:
            state.users[user] = windows
        store.commit(state)
    state = store.load([], sorted(merchants))
    for m in merchants:
        if m in engine.state.merchant_txns:
            state.merchant_txns[m] = engine.state.merchant_txns[m]
        if m in engine.state.merchant_labels:
            state.merchant_labels[m] = engine.state.merchant_labels[m]
    store.commit(state)


def measure(store: RedisWindowStore, batches: list[list[TransactionEvent]]) -> dict[str, float]:
    loads, engines, commits, keys = [], [], [], []
    for batch in batches:
        users = sorted({e.user_id for e in batch})
        merchants = sorted({e.merchant_id for e in batch})
        started = time.perf_counter()
        state = store.load(users, merchants)
        loaded = time.perf_counter()
        engine = FeatureEngine(LATENESS, state)
        for e in batch:
            engine.on_transaction(e)
        applied = time.perf_counter()
        store.commit(state)
        done = time.perf_counter()
        loads.append(loaded - started)
        engines.append(applied - loaded)
        commits.append(done - applied)
        keys.append(len(users) + 2 * len(merchants))
    per_key = statistics.mean(keys)
    load_ms, commit_ms = 1e3 * statistics.median(loads), 1e3 * statistics.median(commits)
    return {
        "batches": len(batches),
        "keys_per_batch": round(per_key, 1),
        "load_ms_p50": round(load_ms, 2),
        "load_ms_p95": round(1e3 * sorted(loads)[int(0.95 * (len(loads) - 1))], 2),
        "commit_ms_p50": round(commit_ms, 2),
        "commit_ms_p95": round(1e3 * sorted(commits)[int(0.95 * (len(commits) - 1))], 2),
        "engine_ms_p50": round(1e3 * statistics.median(engines), 2),
        "load_us_per_key": round(1e3 * load_ms / per_key, 2),
        "commit_us_per_key": round(1e3 * commit_ms / per_key, 2),
        "load_plus_commit_us_per_user_event": round(1e3 * (load_ms + commit_ms) / len(batches[0]), 2),
    }


def next_batches(engine: FeatureEngine, n_batches: int, size: int, *, start: float, merchants: int,
                 rng: random.Random) -> list[list[TransactionEvent]]:
    """Batches of one transaction for each of ``size`` distinct users, after the history."""
    users = list(engine.state.users)
    cum = list(itertools.accumulate(1 / (rank + 1) for rank in range(merchants)))
    out = []
    offset = 10**9  # beyond every history offset
    for b in range(n_batches):
        batch = []
        for i, user in enumerate(rng.sample(users, size)):
            offset += 1
            batch.append(TransactionEvent(f"n{offset}", user, rng.choices(range(merchants), cum_weights=cum)[0],
                                          round(rng.lognormvariate(3.5, 1.0), 2), start + b * 60 + i * 0.05,
                                          (user % 8, offset)))
        out.append(batch)
    return out


def memory(store: RedisWindowStore, client: redis.Redis[bytes], kind: Kind, ids: list[int]) -> dict[str, float]:
    used = [store.memory_usage(kind, i) or 0 for i in ids]
    values = [len(client.get(store.key(kind, i)) or b"") for i in ids]
    used.sort()
    return {"keys_sampled": len(ids), "memory_usage_bytes_mean": round(statistics.mean(used), 1),
            "memory_usage_bytes_p50": used[len(used) // 2], "memory_usage_bytes_p95": used[int(0.95 * (len(used) - 1))],
            "value_bytes_mean": round(statistics.mean(values), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--per-day", type=float, default=1.0, help="mean transactions per user per day")
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results/state_store.json")
    args = parser.parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    rng = random.Random(args.seed)
    client: redis.Redis[bytes] = redis.Redis.from_url(args.url)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        started = time.perf_counter()
        stream = history(args.users, args.merchants, args.days, args.per_day, rng)
        engine = FeatureEngine(LATENESS)
        for e in stream:
            if isinstance(e, TransactionEvent):
                engine.on_transaction(e)
            else:
                engine.on_label(e)
        retained = [w.retained_count for w in engine.state.users.values()]
        print(f"history: {len(stream):,} events over {args.days} days, {len(engine.state.users):,} users, "
              f"{statistics.mean(retained):.2f} retained obs/user (max {max(retained)}) "
              f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        seed_redis(RedisWindowStore(client, namespace, allowed_lateness_s=LATENESS, cache_size=0), engine)

        end = T0 + args.days * DAY
        size = min(1000, len(engine.state.users))
        batches = next_batches(engine, 2 * args.batches, size, start=end, merchants=args.merchants, rng=rng)
        cold = measure(RedisWindowStore(client, namespace, allowed_lateness_s=LATENESS, cache_size=0),
                       batches[: args.batches])
        warm_store = RedisWindowStore(client, namespace, allowed_lateness_s=LATENESS)
        warm_batches = batches[args.batches :]
        measure(warm_store, warm_batches)  # fills the pool with exactly these keys
        later = [[TransactionEvent(e.event_id + "w", e.user_id, e.merchant_id, e.amount, e.time + 600,
                                   (e.position[0], e.position[1] + 10**8)) for e in batch] for batch in warm_batches]
        hits, loaded = warm_store.stats.pool_hits, warm_store.stats.keys_loaded
        warm = measure(warm_store, later)
        warm["pool_hit_ratio"] = round((warm_store.stats.pool_hits - hits) / (warm_store.stats.keys_loaded - loaded), 3)
        sample_users = rng.sample(list(engine.state.users), min(2000, len(engine.state.users)))
        busiest = sorted(engine.state.users, key=lambda u: engine.state.users[u].retained_count)[-20:]
        result = {
            "command": " ".join([".venv/bin/python bench/bench_state_store.py", *given]),
            "population": {"users": len(engine.state.users), "merchants": args.merchants, "days": args.days,
                           "txn_per_user_day": args.per_day, "batch_transactions": size,
                           "retained_obs_per_user_mean": round(statistics.mean(retained), 2)},
            "cold_pool": cold,
            "warm_pool": warm,
            "memory_user_key": memory(warm_store, client, Kind.USER, sample_users),
            "memory_busiest_user_keys": memory(warm_store, client, Kind.USER, busiest),
            "memory_merchant_txn_key": memory(warm_store, client, Kind.MERCHANT_TXN,
                                              sorted(engine.state.merchant_txns)[:200]),
            "memory_merchant_label_key": memory(warm_store, client, Kind.MERCHANT_LABEL,
                                                sorted(engine.state.merchant_labels)[:200]),
            "redis": client.info("server")["redis_version"],
            "machine": f"{platform.machine()} CPython {platform.python_version()}",
        }
    finally:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=5000))
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i : i + 5000])
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
