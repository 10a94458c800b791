"""Online-store cost per row: OnlineFeatures.write_windows (prebuilt protos -> provider.online_write_batch)
against Feast's DataFrame paths (write_to_online_store, push), and OnlineFeatures.read_profiles against
get_online_features. Not a test; needs Redis at STREAMSCORE_REDIS__URL (default redis://127.0.0.1:6379/0)
and works in a private Feast workspace (own project, registry and temp dir) whose keys it deletes at the end.

    .venv/bin/python bench/bench_online_store.py [--sizes 1 100 1000] [--rows-per-size 20000]

Writes go to user_windows; every call carries newer timestamps than the stored rows, so each row is
really applied. The DataFrame paths are timed with the frame already built; building it from the
worker's row tuples is timed on its own line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from feast import FeatureStore
from feast import __version__ as feast_version
from feast.data_source import PushMode

from models.dataset import apply_definitions
from stream_app.adapters.feast_store import feast_env, prepare_workspace
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.core.records import WindowRow
from stream_app.core.window_spec import USER_WINDOWS, Function
from stream_app.settings import FEATURE_REPO, REPO_ROOT, RedisSettings, Settings

COUNTS = {spec.name for spec in USER_WINDOWS if spec.function in (Function.COUNT, Function.DISTINCT)}
USER_PROFILE = ["home_country", "user_account_age_days", "user_avg_amount_30d", "user_txn_count_30d"]
MERCHANT_PROFILE = ["merchant_avg_amount_30d", "merchant_txn_count_30d"]


class Clock:
    """Strictly increasing event times, so Feast's per-entity timestamp check applies every row."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) - timedelta(minutes=30)

    def tick(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def window_rows(n: int, clock: Clock, seed: int) -> list[WindowRow]:
    stamp = clock.tick()
    return [(i, stamp, {spec.name: float(seed + k) if spec.name in COUNTS else seed + k / 3 + i / 7
                        for k, spec in enumerate(USER_WINDOWS)} | {"user_seconds_since_prev": math.nan if i % 10 == 0
                                                                   else 12.5})
            for i in range(n)]


def frame_of(rows: Sequence[WindowRow]) -> pd.DataFrame:
    """The DataFrame Feast's paths need, from the worker's row tuples."""
    frame = pd.DataFrame([{"user_id": entity, "event_timestamp": stamp, "created_timestamp": stamp, **values}
                          for entity, stamp, values in rows])
    return frame.astype(dict.fromkeys(COUNTS, "int64"))


def timed(calls: Sequence[Callable[[], object]]) -> float:
    """Median seconds of the calls, each run once (after one warm-up call)."""
    calls[0]()
    samples = []
    for call in calls[1:]:
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def write_repo(workspace: Path, dest: Path, skip_dedup: bool) -> Path:
    """A second store config on the same registry, differing only in skip_dedup."""
    dest.mkdir(parents=True)
    yaml = (workspace / "feature_store.yaml").read_text()
    yaml = yaml.replace("registry: data/registry.db", f"registry: {workspace / 'data' / 'registry.db'}")
    yaml = yaml.replace("  type: redis\n", f"  type: redis\n  skip_dedup: {str(skip_dedup).lower()}\n")
    (dest / "feature_store.yaml").write_text(yaml)
    return dest


def bench_writes(store: Any, fast_store: Any, sizes: Sequence[int], rows_per_size: int,
                 ) -> list[dict[str, Any]]:
    online, online_fast = OnlineFeatures(store), OnlineFeatures(fast_store)
    clock = Clock()
    results: list[dict[str, Any]] = []
    for size in sizes:
        reps = max(5, min(300, rows_per_size // size)) + 1
        batches = [window_rows(size, clock, seed) for seed in range(reps)]

        def record(method: str, seconds: float, size: int = size) -> None:
            results.append({"method": method, "batch": size, "ms_per_call": round(seconds * 1e3, 3),
                            "us_per_row": round(seconds * 1e6 / size, 1)})

        record("write_windows", timed([partial(online.write_windows, b, []) for b in batches]))
        batches = [window_rows(size, clock, seed) for seed in range(reps)]
        record("write_windows (skip_dedup)", timed([partial(online_fast.write_windows, b, []) for b in batches]))
        batches = [window_rows(size, clock, seed) for seed in range(reps)]
        record("DataFrame build from rows", timed([partial(frame_of, b) for b in batches]))
        frames = [frame_of(window_rows(size, clock, seed)) for seed in range(reps)]
        record("write_to_online_store", timed([partial(store.write_to_online_store, "user_windows", f)
                                               for f in frames]))
        frames = [frame_of(window_rows(size, clock, seed)) for seed in range(reps)]
        record("push(ONLINE)", timed([partial(store.push, "user_window_push", f, to=PushMode.ONLINE)
                                      for f in frames]))
        # Sanity: the last push was applied (it carries the newest timestamps).
        got = store.get_online_features(features=["user_windows:user_txn_count_10m"],
                                        entity_rows=[{"user_id": 0}]).to_dict()
        assert got["user_txn_count_10m"] == [reps - 1], got
    return results


def bench_reads(store: Any, sizes: Sequence[int]) -> list[dict[str, Any]]:
    online = OnlineFeatures(store)
    n = max(sizes)
    day = pd.Timestamp.now(tz="UTC").floor("D")
    store.write_to_online_store("user_profile", pd.DataFrame({
        "user_id": range(n), "event_timestamp": day, "home_country": ["DE"] * n,
        "user_account_age_days": [float(i) for i in range(n)], "user_avg_amount_30d": 50.0,
        "user_txn_count_30d": range(n)}))
    store.write_to_online_store("merchant_profile", pd.DataFrame({
        "merchant_id": range(n), "event_timestamp": day, "merchant_avg_amount_30d": 80.0,
        "merchant_txn_count_30d": range(n)}))
    refs = [f"user_profile:{name}" for name in USER_PROFILE] + [f"merchant_profile:{name}" for name in MERCHANT_PROFILE]
    results: list[dict[str, Any]] = []
    for size in sizes:
        ids = list(range(size))
        reps = max(10, min(300, 20_000 // size)) + 1
        rows = [{"user_id": i, "merchant_id": i} for i in ids]
        users, merchants = online.read_profiles(ids, ids)
        assert users[-1]["user_txn_count_30d"] == size - 1 and merchants[-1]["merchant_txn_count_30d"] == size - 1
        for method, call in (
            ("read_profiles", lambda ids=ids: online.read_profiles(ids, ids)),
            ("get_online_features().to_dict()", lambda rows=rows: store.get_online_features(
                features=refs, entity_rows=rows).to_dict()),
        ):
            seconds = timed([call] * reps)
            results.append({"method": method, "entities": size, "ms_per_call": round(seconds * 1e3, 3),
                            "us_per_entity": round(seconds * 1e6 / size, 1)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--read-sizes", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--rows-per-size", type=int, default=20_000, help="rows written per method and size")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "online_store.json")
    args = parser.parse_args()

    redis_settings = RedisSettings(url=os.environ.get("STREAMSCORE_REDIS__URL", "redis://127.0.0.1:6379/0"))
    client = redis.Redis(**redis_settings.client_kwargs())
    server = client.info("server")["redis_version"]
    project = f"bench_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench_online_store_") as tmp:
        path = prepare_workspace(FEATURE_REPO, Path(tmp) / "feature_repo", project)
        os.environ.update(feast_env(Settings(redis=redis_settings)))

        store = FeatureStore(repo_path=str(path))
        apply_definitions(store)
        fast_store = FeatureStore(repo_path=str(write_repo(path, Path(tmp) / "skip_dedup", skip_dedup=True)))
        try:
            writes = bench_writes(store, fast_store, args.sizes, args.rows_per_size)
            reads = bench_reads(store, args.read_sizes)
        finally:
            store.teardown()  # type: ignore[no-untyped-call]  # deletes this project's keys (and the temp registry)

    where = f"{redis_settings.host}:{redis_settings.port}"
    print(f"\nwrites to user_windows (9 features), per row; Redis {server} at {where}")
    methods = list(dict.fromkeys(r["method"] for r in writes))
    print(f"{'method':<30}" + "".join(f"{f'batch {s} (µs/row)':>22}" for s in args.sizes))
    for method in methods:
        cells = {r["batch"]: r for r in writes if r["method"] == method}
        print(f"{method:<30}" + "".join(f"{cells[s]['us_per_row']:>22,.1f}" for s in args.sizes))
    print("\nprofile reads (user_profile + merchant_profile per entity pair)")
    print(f"{'method':<34}" + "".join(f"{f'{s} entities (µs/entity)':>26}" for s in args.read_sizes))
    for method in dict.fromkeys(r["method"] for r in reads):
        cells = {r["entities"]: r for r in reads if r["method"] == method}
        print(f"{method:<34}" + "".join(f"{cells[s]['us_per_entity']:>26,.1f}" for s in args.read_sizes))

    summary = {
        "command": "bench/bench_online_store.py " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if k != "out"),
        "redis": f"{server} at {redis_settings.host}:{redis_settings.port}",
        "feast": feast_version,
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}, "
                   f"{os.cpu_count()} cpus",
        "writes": writes,
        "reads": reads,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
