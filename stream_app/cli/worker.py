"""``streamscore worker``."""

from __future__ import annotations

import argparse

import faust

from stream_app.adapters.preflight import check_access
from stream_app.cli.commands import Commands
from stream_app.settings import get_settings
from stream_app.worker.wiring import build_worker


def register(commands: Commands) -> None:
    commands.add_parser(
        "worker", help="run the stream worker (SIGTERM finishes the batch in flight, then stops)",
        description="Consume transactions and labels, serve predictions. Scale out by starting more workers "
        "with the same STREAMSCORE_WORKER__APP_ID (one consumer group).").set_defaults(run=run_worker)


def run_worker(_: argparse.Namespace) -> int:
    settings = get_settings()
    check_access(settings)
    worker = build_worker(settings, web_enabled=True)
    faust.Worker(worker.app, loglevel="INFO").execute_from_commandline()
    return 0
