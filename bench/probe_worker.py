"""The real worker with timing counters around its stages, for the "where does the time go" breakdown.

It is ``streamscore worker`` built the same way (``stream_app.worker.wiring.build_runners`` inside
``create_app``), with wrappers added from the outside (no package code changed): per batch, the runner's
steps (process / publish / encoding the online rows and index entries / the state commit that writes
them with the window state) and, inside ``process``, the profile cache, the state load (with the
profiles the cache does not hold) and scoring; per event, decode, the window engine, request features,
feature-dict building and prediction encoding. Each wrapper adds two perf_counter reads per call. The
counters are written to ``$BENCH_PROBE_OUT`` after every batch.

    STREAMSCORE_* settings in the environment; BENCH_PROBE_OUT=probe.json .venv/bin/python bench/probe_worker.py
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import faust

from stream_app.core import request_features
from stream_app.core.engine import FeatureEngine
from stream_app.core.scoring import Scorer
from stream_app.settings import get_settings
from stream_app.worker import processor as processor_module
from stream_app.worker import publisher as publisher_module
from stream_app.worker import wiring
from stream_app.worker.app import create_app

F = TypeVar("F", bound=Callable[..., Any])


class Timers:
    """Seconds and calls per named stage, and the batches and records seen, for the probe's JSON output."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.first_batch: float | None = None
        self.last_batch_end: float | None = None
        self.records = 0
        self.batches = 0

    def add(self, name: str, elapsed: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        self.calls[name] = self.calls.get(name, 0) + 1

    def sync(self, name: str, fn: F) -> F:
        add, clock = self.add, time.perf_counter

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                add(name, clock() - started)

        return timed  # type: ignore[return-value]

    def coro(self, name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        add, clock = self.add, time.perf_counter

        @functools.wraps(fn)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                add(name, clock() - started)

        return timed

    def snapshot(self) -> dict[str, Any]:
        wall = (self.last_batch_end - self.first_batch) if self.first_batch and self.last_batch_end else 0.0
        return {"records": self.records, "batches": self.batches, "wall_s_first_to_last_batch": wall,
                "seconds": self.seconds, "calls": self.calls}


def instrument(runner: Any, timers: Timers, dump: Callable[[], None]) -> None:
    """Wrap the runner's collaborators (instance attributes) and the per-event functions the processor
    and publisher look up at call time (module and class attributes of this process only)."""
    handle = runner.handle

    async def timed_handle(records: Any) -> Any:
        started = time.perf_counter()
        if timers.first_batch is None:
            timers.first_batch = started
        try:
            return await handle(records)
        finally:
            ended = time.perf_counter()
            timers.add("handle", ended - started)
            timers.last_batch_end = ended
            timers.records += len(records)
            timers.batches += 1
            dump()  # after every batch, so the last batch's counters survive SIGTERM

    runner.handle = timed_handle
    proc = runner.processor
    proc.process = timers.sync("process", proc.process)
    proc._score = timers.sync("process.score_batch", proc._score)
    index = getattr(runner, "index", None)
    if index is not None:  # the prediction index for label joins, when the runner has one
        index.writes = timers.sync("prediction_index_writes (encode)", index.writes)
    state: Any = runner.state
    state.load_with = timers.sync("process.state_load (+ profile cache misses)", state.load_with)
    state.commit = timers.sync("state_commit (+ online rows + index)", state.commit)
    online: Any = runner.online
    online.lookup_profiles = timers.sync("process.profile_cache_lookup", online.lookup_profiles)
    online.window_writes = timers.sync("online_window_writes (encode)", online.window_writes)
    publisher: Any = runner.publisher
    publisher.publish = timers.coro("publish", publisher.publish)
    module: Any = processor_module  # names the processor module looks up at call time
    module.decode_transaction = timers.sync("process.decode (per event)", module.decode_transaction)
    module.assemble = timers.sync("process.score_batch.assemble", module.assemble)
    module.as_features = timers.sync("process.score_batch.as_features (per event)", module.as_features)
    request_features.compute = timers.sync("process.score_batch.request_features (per event)",
                                           request_features.compute)
    FeatureEngine.on_transaction = timers.sync("process.engine (per event)",  # type: ignore[method-assign]
                                               FeatureEngine.on_transaction)
    Scorer.score = timers.sync("process.score_batch.xgboost", Scorer.score)  # type: ignore[method-assign]
    publishing: Any = publisher_module
    publishing.encode = timers.sync("publish.encode (per record)", publishing.encode)


def main() -> None:
    settings = get_settings()
    out = Path(os.environ.get("BENCH_PROBE_OUT", "probe.json"))
    timers = Timers()

    def dump() -> None:
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(timers.snapshot()))
        os.replace(tmp, out)

    def factory(app: faust.App) -> Any:
        built: Any = wiring.build_runners(settings, app)  # Runners(transactions, labels)
        instrument(built.transactions, timers, dump)
        return built

    worker = create_app(settings, factory, web_enabled=False)

    faust.Worker(worker.app, loglevel="INFO").execute_from_commandline()


if __name__ == "__main__":
    main()
