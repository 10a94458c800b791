"""The passthrough limit's process: the worker's own Faust app (``stream_app.worker.app.create_app``: same
consumer settings, same ``take_events`` agent, same batch size and wait) and the worker's own publisher
(``stream_app.worker.publisher.KafkaPublisher``, as ``wiring`` builds it), with a runner that does no work:
every record of a batch is sent unchanged (same key, same value) to the predictions topic and the batch
waits for the broker's acknowledgements, exactly as the worker's runner waits for its outputs.
``BENCH_PASSTHROUGH_SEND=faust`` sends with the Faust app's ``topic.send`` per record instead, for
comparison. ``BENCH_FAUST_CONF`` (a JSON object) overrides keyword arguments of the worker's ``faust.App``
(e.g. ``{"stream_buffer_maxsize": 32768}``; ``"broker_scheme": "confluent"`` swaps the transport driver of
the broker URLs), for measuring Faust's own ceiling under other settings. Run by bench/bench_e2e.py; stop
it with SIGTERM.

    STREAMSCORE_* settings in the environment; .venv/bin/python bench/passthrough_worker.py
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Sequence
from typing import Any, cast

import faust

from stream_app.settings import Settings, get_settings
from stream_app.worker.app import Runners, create_app
from stream_app.worker.ports import RawRecord
from stream_app.worker.publisher import KafkaPublisher


class _NoState:
    def invalidate(self) -> None:
        """Nothing cached."""


class PassthroughRunner:
    """What the agent calls (``handle``), what rebalances touch (``state.invalidate``) and what shutdown
    calls (``stop``: nothing to give up, a batch is one publish)."""

    def __init__(self, app: faust.App, settings: Settings, send: str) -> None:
        self.out = settings.topics.predictions.name
        self.send = send
        self.state = _NoState()
        self.records = 0
        if send == "faust":
            self.topic = app.topic(self.out, value_serializer="raw", key_serializer="raw")
        else:
            self.publisher = KafkaPublisher(settings)

    async def handle(self, records: Sequence[RawRecord]) -> None:
        if self.send == "faust":
            pending: list[Awaitable[Any]] = []
            for record in records:
                pending.append(await self.topic.send(key=record.key, value=record.value))
            if pending:
                await asyncio.gather(*pending)
        else:
            await self.publisher.publish_raw([(self.out, r.key, r.value or b"") for r in records])
        self.records += len(records)

    def stop(self) -> None:
        pass


def app_with_overrides(overrides: dict[str, Any]) -> Any:
    """``faust.App`` with ``overrides`` replacing the caller's keyword arguments (``broker_scheme``: the
    broker URLs' transport, e.g. ``confluent``)."""
    make_app = faust.App
    scheme = overrides.pop("broker_scheme", None)

    def build(*args: Any, **kwargs: Any) -> faust.App:
        if scheme is not None:
            kwargs["broker"] = ";".join(f"{scheme}://{url.split('://', 1)[1]}" for url in kwargs["broker"].split(";"))
        return make_app(*args, **{**kwargs, **overrides})

    return build


def main() -> None:
    settings = get_settings()
    send = os.environ.get("BENCH_PASSTHROUGH_SEND", "worker")
    overrides = json.loads(os.environ.get("BENCH_FAUST_CONF") or "{}")
    if overrides:
        faust.App = app_with_overrides(overrides)  # type: ignore[misc]  # create_app builds its app through it
    worker = create_app(settings, lambda app: Runners(cast(Any, PassthroughRunner(app, settings, send)), None),
                        web_enabled=False)
    faust.Worker(worker.app, loglevel="INFO").execute_from_commandline()


if __name__ == "__main__":
    main()
