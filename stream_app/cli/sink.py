"""``streamscore sink`` and ``streamscore sink compact``."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from stream_app.adapters.preflight import check_access
from stream_app.cli.commands import Commands, stop_on_signals
from stream_app.cli_types import non_negative
from stream_app.settings import get_settings
from stream_app.sink.compaction import compact_closed_hours, utc_now
from stream_app.sink.runner import build_sink, compaction_targets, serve_metrics


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "sink", help="write predictions, joined labels and valid transactions to the offline feature log, "
        "the label log and the transaction log "
        "(SIGTERM writes the open parts, commits, then stops)",
        description="Consume predictions, labels.joined and transactions in the consumer group "
        "STREAMSCORE_SINK__GROUP_ID; write hourly, rolled parquet parts into the Feast repository's offline log, "
        "<data_dir>/labels and <data_dir>/transactions, "
        "committing offsets only once their parts are durable. Every STREAMSCORE_SINK__COMPACT_EVERY_S "
        "(0: never) it merges each closed hour's parts into one file, as `sink compact` does.")
    parser.set_defaults(run=run_sink)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    compact = actions.add_parser(
        "compact", help="merge the parts of each closed hour of every log into one file, once (idempotent)",
        description="Merge the parquet parts of each hour directory of the offline feature log, the label "
        "log and the transaction log whose hour ended at least the grace ago into one file, dropping identical "
        "rows; the merged file is written before the parts are removed. Safe alongside running sinks and readers.")
    compact.add_argument("--grace", type=non_negative, default=None,
                         help="seconds after an hour's end before it is closed "
                         "(default: STREAMSCORE_SINK__COMPACT_GRACE_S; 0: every hour that has ended)")
    compact.set_defaults(run=run_compact)


def run_sink(_: argparse.Namespace) -> int:
    settings = get_settings()
    check_access(settings, needs_redis=False)
    stop = stop_on_signals()
    build_sink(settings, sensor=serve_metrics(settings, stop)).run(stop)
    return 0


def run_compact(args: argparse.Namespace) -> int:
    settings = get_settings()
    grace = settings.sink.compact_grace_s if args.grace is None else args.grace
    report = compact_closed_hours(compaction_targets(settings), utc_now() - timedelta(seconds=grace))
    for merged in report.merged:
        print(f"{merged.path}: {merged.inputs} parts -> {merged.rows} rows ({merged.duplicates} duplicates dropped)")
    for directory, reason in report.failed:
        print(f"error: {directory}: {reason}", file=sys.stderr)
    print(f"compacted {len(report.merged)} hour directories, {len(report.failed)} failed", file=sys.stderr)
    return 1 if report.failed else 0
