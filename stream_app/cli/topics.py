"""``streamscore create-topics``."""

from __future__ import annotations

import argparse

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.cli.commands import Commands
from stream_app.settings import get_settings


def register(commands: Commands) -> None:
    commands.add_parser("create-topics", help="create the contract's topics (idempotent)",
                        description="Create every topic of the contract that does not exist yet.").set_defaults(
        run=create_topics)


def create_topics(_: argparse.Namespace) -> int:
    settings = get_settings()
    created = ensure_topics(settings.kafka, settings.topics.all())
    for spec in settings.topics.all():
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name:<24} partitions={spec.partitions:<3} {state}")
    return 0
