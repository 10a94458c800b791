"""``streamscore``: one command with a subcommand for every operational entry point.

Each module here registers the subcommands of one concept. Packages above ``stream_app`` (training, in
``models``) add theirs through the ``streamscore.commands`` entry-point group, so ``stream_app`` never
imports them. ``python -m stream_app <command>`` runs the same parser."""

from stream_app.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
