"""``streamscore feast ...``: the real Feast CLI on the configured repository."""

from __future__ import annotations

import argparse

from stream_app.adapters.feast_store import run_feast_cli
from stream_app.cli.commands import Commands
from stream_app.settings import get_settings


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "feast", help="run the feast CLI on the feature repository with the Redis address from settings",
        description="Run `feast <args>` inside STREAMSCORE_FEAST__REPO_PATH with the online store's address "
        "derived from STREAMSCORE_REDIS__URL.")
    parser.add_argument("feast_args", nargs=argparse.REMAINDER, help="e.g. apply | plan | materialize-incremental END")
    parser.set_defaults(run=feast)


def feast(args: argparse.Namespace) -> int:
    print(run_feast_cli(get_settings(), args.feast_args), end="")
    return 0
