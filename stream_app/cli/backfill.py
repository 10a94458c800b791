"""``streamscore backfill``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream_app.adapters.feast_store import project_of
from stream_app.backfill import backfill, seed_state
from stream_app.cli.commands import Commands
from stream_app.settings import get_settings


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "backfill", help="replay a history through the stream's feature core into the offline log and profiles",
        description="Replay a generator history (transactions + labels) through the same feature engine the "
        "worker runs; write the offline feature log and the daily batch profiles into the Feast repository.")
    parser.add_argument("--history", type=Path, required=True, help="directory written by `streamscore generate`")
    parser.add_argument("--repo", type=Path, default=None, help="Feast repository (default: settings)")
    parser.add_argument("--lateness", type=float, default=None,
                        help="allowed lateness, seconds (default: STREAMSCORE_WORKER__ALLOWED_LATENESS_S)")
    parser.add_argument("--max-future-skew", type=float, default=None,
                        help="seconds an event may be dated ahead of when it entered Kafka "
                        "(default: STREAMSCORE_WORKER__MAX_FUTURE_SKEW_S)")
    parser.add_argument("--seed-state", action="store_true",
                        help="also write the history's final window state into the worker's state store (Redis, "
                        "namespace <Feast project>:<worker.app_id>), keeping any key the worker already holds: a "
                        "worker started after the history then serves warm windows from its first event")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run_backfill)


def run_backfill(args: argparse.Namespace) -> int:
    repo = args.repo or get_settings().feast.repo_path
    result = backfill(args.history, repo, args.lateness, progress=not args.no_progress,
                      max_future_skew_s=args.max_future_skew)
    print(f"backfill: {result.transactions} transactions + {result.labels} labels ({result.labels_after_end} more "
          f"arrive after the last transaction: not applied) in {result.seconds:.1f} s "
          f"= {result.events_per_s:,.0f} events/s; {len(result.user_rows)} rows served, {result.late} late, "
          f"{result.future} future, {result.duplicates} duplicate event ids", file=sys.stderr)
    if args.seed_state:
        counts = seed_state(result, get_settings(), project_of(repo))
        print("backfill: seeded the worker's window state: "
              + ", ".join(f"{n} {kind.value} keys" for kind, n in counts.written.items())
              + f" written, {counts.kept} already there kept", file=sys.stderr)
    return 0
