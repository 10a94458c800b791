"""``python -m stream_app <command>``: the operational entry points."""

from __future__ import annotations

import argparse
import logging
import sys

from stream_app.errors import StreamscoreError


def _create_topics(_: argparse.Namespace) -> None:
    from stream_app.adapters.kafka_admin import ensure_topics
    from stream_app.settings import get_settings

    settings = get_settings()
    created = ensure_topics(settings.kafka, settings.topics.all())
    for spec in settings.topics.all():
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name:<24} partitions={spec.partitions:<3} {state}")


def _feast(args: argparse.Namespace) -> None:
    from stream_app.adapters.feast_store import run_feast_cli
    from stream_app.settings import get_settings

    print(run_feast_cli(get_settings(), args.feast_args), end="")


def _worker(_: argparse.Namespace) -> None:
    import faust

    from stream_app.settings import get_settings
    from stream_app.worker.wiring import build_worker

    worker = build_worker(get_settings(), web_enabled=True)
    faust.Worker(worker.app, loglevel="INFO").execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_app", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("create-topics", help="create the contract's topics (idempotent)").set_defaults(
        run=_create_topics
    )
    commands.add_parser("worker", help="run the stream worker (SIGTERM finishes the batch, then stops)").set_defaults(
        run=_worker)
    feast = commands.add_parser("feast", help="run the feast CLI on feature_repo with the Redis address from settings")
    feast.add_argument("feast_args", nargs=argparse.REMAINDER, help="e.g. apply | plan | materialize-incremental END")
    feast.set_defaults(run=_feast)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.run(args)
    except StreamscoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
