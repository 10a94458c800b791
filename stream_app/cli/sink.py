"""``streamscore sink``."""

from __future__ import annotations

import argparse

from stream_app.cli.commands import Commands, stop_on_signals
from stream_app.settings import get_settings
from stream_app.sink.runner import build_sink, serve_metrics


def register(commands: Commands) -> None:
    commands.add_parser(
        "sink", help="write predictions and joined labels to the offline feature log and the label log "
        "(SIGTERM writes the open parts, commits, then stops)",
        description="Consume predictions and labels.joined in the consumer group STREAMSCORE_SINK__GROUP_ID; "
        "write hourly, rolled parquet parts into the Feast repository's offline log and <data_dir>/labels, "
        "committing offsets only once their parts are durable.").set_defaults(run=run_sink)


def run_sink(_: argparse.Namespace) -> int:
    settings = get_settings()
    stop = stop_on_signals()
    build_sink(settings, sensor=serve_metrics(settings, stop)).run(stop)
    return 0
