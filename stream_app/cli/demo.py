"""``streamscore demo``."""

from __future__ import annotations

import argparse

from stream_app.cli.commands import Commands
from stream_app.demo.config import add_arguments, config_from
from stream_app.demo.run import run_demo


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "demo", help="everything on one machine: services, offline pipeline, worker, live events, summary",
        description="Services, offline pipeline, worker, a minute of live events and labels, a summary "
        "(JSON + PNG); stops what it started.")
    add_arguments(parser)
    parser.set_defaults(run=demo)


def demo(args: argparse.Namespace) -> int:
    return run_demo(config_from(args))
