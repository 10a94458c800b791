"""Micro-benchmark of the pure window core (not a test): in-order throughput over many keys, one hot key
with long windows (cost must not grow with the window), label-window queries, and state size per key.

Run: .venv/bin/python bench/bench_windows.py [--keys 100000] [--obs 1000000]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Sequence

from stream_app.core.window_spec import (
    DAY,
    HOUR,
    MINUTE,
    USER_WINDOWS,
    Entity,
    Function,
    Source,
    WindowSpec,
    windows_for,
)
from stream_app.core.windows import KeyWindows, Observation

T0 = 1_700_000_000.0
LATENESS = 5 * MINUTE


def user_stream(n_keys: int, n_obs: int, days: float, rng: random.Random) -> list[tuple[int, Observation]]:
    """Globally increasing event times, users picked uniformly: in order per key."""
    step = days * DAY / n_obs
    out: list[tuple[int, Observation]] = []
    for i in range(n_obs):
        user = rng.randrange(n_keys)
        values = {"amount": round(rng.uniform(1, 500), 2), "merchant_id": float(rng.randrange(2000))}
        out.append((user, Observation(T0 + i * step, values, (user % 8, i))))
    return out


def bench_users(n_keys: int, n_obs: int, rng: random.Random) -> dict[int, KeyWindows]:
    stream = user_stream(n_keys, n_obs, days=3, rng=rng)
    states: dict[int, KeyWindows] = {}
    gc.collect()
    start = time.perf_counter()
    for user, obs in stream:
        kw = states.get(user)
        if kw is None:
            kw = states[user] = KeyWindows(USER_WINDOWS, LATENESS)
        kw.apply(obs)
    elapsed = time.perf_counter() - start
    print(f"users: {n_obs:,} in-order observations over {n_keys:,} keys (USER_WINDOWS, 9 specs, 3 days): "
          f"{n_obs / elapsed:,.0f} obs/s ({elapsed:.2f} s, {1e6 * elapsed / n_obs:.1f} us/obs)")
    return states


def bench_state_size(states: dict[int, KeyWindows]) -> None:
    sizes = [len(kw.to_bytes()) for kw in states.values()]
    retained = [kw.retained_count for kw in states.values()]
    start = time.perf_counter()
    blobs = [kw.to_bytes() for kw in states.values()]
    dumped = time.perf_counter() - start
    start = time.perf_counter()
    for blob in blobs:
        KeyWindows.from_bytes(USER_WINDOWS, LATENESS, blob)
    loaded = time.perf_counter() - start
    print(f"state: to_bytes {statistics.mean(sizes):.0f} B/key mean (max {max(sizes)}), "
          f"{statistics.mean(retained):.1f} retained obs/key mean; "
          f"to_bytes {len(blobs) / dumped:,.0f} keys/s, from_bytes {len(blobs) / loaded:,.0f} keys/s")
    # in-memory footprint measured by tracemalloc on restored copies of the same states
    sample = blobs[:20_000]
    gc.collect()
    tracemalloc.start()
    kept = [KeyWindows.from_bytes(USER_WINDOWS, LATENESS, blob) for blob in sample]
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    approx = statistics.mean(kw.approx_nbytes() for kw in kept)
    print(f"memory: {current / len(kept):.0f} B/key in memory (tracemalloc over {len(kept):,} keys; "
          f"approx_nbytes says {approx:.0f})")


def bench_hot_key(n_obs: int, window_s: int) -> None:
    """One key at 10 obs/s: retained state grows with the window, the cost per observation must not."""
    specs: Sequence[WindowSpec] = tuple(
        WindowSpec(f"{fn.value}", Entity.USER, Source.TRANSACTION, fn, field, window_s)
        for fn, field in [
            (Function.COUNT, None),
            (Function.SUM, "amount"),
            (Function.MEAN, "amount"),
            (Function.MAX, "amount"),
            (Function.DISTINCT, "merchant_id"),
            (Function.SINCE_PREVIOUS, None),
        ]
    )
    rng = random.Random(7)
    stream = [
        Observation(T0 + i / 10, {"amount": rng.uniform(1, 500), "merchant_id": float(rng.randrange(50))}, (0, i))
        for i in range(n_obs)
    ]
    kw = KeyWindows(specs, LATENESS)
    start = time.perf_counter()
    for obs in stream:
        kw.apply(obs)
    elapsed = time.perf_counter() - start
    print(f"hot key: window {window_s:>6} s, {n_obs:,} obs at 10/s: {n_obs / elapsed:,.0f} obs/s, "
          f"{kw.retained_count:,} retained at the end")


def bench_label_queries(n_queries: int) -> None:
    """A merchant's 7-day label windows read at each transaction's event_time (t >= latest label)."""
    labels = KeyWindows(windows_for(Entity.MERCHANT, Source.LABEL), HOUR)
    rng = random.Random(11)
    for i in range(20_000):  # ~2 labels a minute for a week
        labels.apply(Observation(T0 + i * 30.0, {"is_fraud": float(rng.random() < 0.02)}, (0, i)))
    latest = labels.latest_time
    assert latest is not None
    times = [latest + rng.uniform(0, 120) for _ in range(n_queries)]
    start = time.perf_counter()
    for t in times:
        labels.query(t)
    elapsed = time.perf_counter() - start
    print(f"label query: {n_queries / elapsed:,.0f} queries/s over {labels.retained_count:,} retained labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--obs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}")
    states = bench_users(args.keys, args.obs, random.Random(args.seed))
    bench_state_size(states)
    del states
    for window_s in (MINUTE, HOUR, DAY):
        bench_hot_key(200_000, window_s)
    bench_label_queries(100_000)


if __name__ == "__main__":
    main()
