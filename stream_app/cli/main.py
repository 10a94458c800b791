"""The root parser: built-in command modules plus the ``streamscore.commands`` entry points."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from stream_app.cli import backfill, demo, feature_store, generate, sink, topics, worker
from stream_app.cli.commands import Commands
from stream_app.cli_types import configure_logging
from stream_app.errors import StreamscoreError

ENTRY_POINT_GROUP = "streamscore.commands"
_BUILT_IN = (topics, worker, sink, feature_store, generate, backfill, demo)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand, each with its own ``--help``."""
    parser = argparse.ArgumentParser(
        prog="streamscore",
        description="Streaming fraud scoring: Kafka -> features in Redis/Feast -> XGBoost -> Kafka. "
        "Settings come from STREAMSCORE_* environment variables (see README).")
    commands: Commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _BUILT_IN:
        module.register(commands)
    for plugin in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        plugin.load()(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; a StreamscoreError is printed as one line, exit code 1."""
    args = build_parser().parse_args(argv)
    configure_logging()
    try:
        return int(args.run(args) or 0)
    except StreamscoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
