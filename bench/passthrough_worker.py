"""The passthrough limit's process: the worker's own Faust app (``stream_app.worker.app.create_app``: same
consumer/producer settings, same ``take_events`` agent, same batch size and wait) with a runner that
does no work - every record of a batch is sent unchanged (same key, same value) to the predictions topic
and the batch waits for the broker's acknowledgements, exactly as ``FaustPublisher`` does.

    STREAMSCORE_* settings in the environment; .venv/bin/python bench/passthrough_worker.py worker

Run by bench/bench_e2e.py; stop it with SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import faust

from stream_app.settings import get_settings
from stream_app.worker.app import Runners, create_app
from stream_app.worker.ports import RawRecord


class _NoState:
    def invalidate(self) -> None:
        """Nothing cached."""


class PassthroughRunner:
    """What the agent calls (``handle``) and what rebalances touch (``state.invalidate``)."""

    def __init__(self, app: faust.App, topic_name: str) -> None:
        self.topic = app.topic(topic_name, value_serializer="raw", key_serializer="raw")
        self.state = _NoState()
        self.records = 0

    async def handle(self, records: Sequence[RawRecord]) -> None:
        pending: list[Awaitable[Any]] = []
        for record in records:
            pending.append(await self.topic.send(key=record.key, value=record.value))
        if pending:
            await asyncio.gather(*pending)
        self.records += len(records)


def main() -> None:
    settings = get_settings()
    out = settings.topics.predictions.name
    worker = create_app(settings, lambda app: Runners(cast(Any, PassthroughRunner(app, out)), None),
                        web_enabled=False)
    faust.Worker(worker.app, loglevel="INFO").execute_from_commandline()


if __name__ == "__main__":
    main()
