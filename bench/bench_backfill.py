"""Backfill throughput: the feature engine over a generated history, as `streamscore backfill`
runs it (no file output, so it measures the engine and the arrival-order merge).

    .venv/bin/python bench/bench_backfill.py [--days 30 --users 20000 --merchants 2000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from stream_app import backfill
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--merchants", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/results/backfill.json"))
    args = parser.parse_args()
    history = generate_history(HistoryConfig(days=args.days, users=args.users, merchants=args.merchants,
                                             seed=args.seed))
    started = time.perf_counter()
    result = backfill.run(history.transactions, history.labels)
    seconds = time.perf_counter() - started
    summary = {
        "command": "bench/bench_backfill.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
        "transactions": result.transactions, "labels": result.labels, "seconds": round(seconds, 2),
        "events_per_s": round((result.transactions + result.labels) / seconds),
        "transactions_per_s": round(result.transactions / seconds),
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
