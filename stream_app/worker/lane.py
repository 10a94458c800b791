"""Where the worker's blocking calls run: off the event loop, one at a time, on one thread.

Redis round trips (redis-py's client blocks), decoding, the window engine, XGBoost scoring and the model
registry's poll would each stall the event loop for milliseconds to hundreds of milliseconds, and with
it Kafka fetches, heartbeats, delivery reports and every other batch. ``Lane.run`` hands them to a
dedicated thread instead and awaits the result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")


class Lane:
    """Runs blocking calls in submission order on one dedicated thread (``threaded=False``: in the caller,
    for unit tests with in-memory fakes).

    One thread, not a pool: a runner's calls for one batch keep their order, and the window state store
    (not thread-safe) is always used from the same thread. Both runners of a worker share one lane, since
    they share the state store; their calls interleave only between calls, as they did on the event loop.
    """

    def __init__(self, name: str = "streamscore-lane", *, threaded: bool = True) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name) if threaded else None

    async def run(self, call: Callable[[], R]) -> R:
        """``call()``'s result (or its exception), computed on the lane's thread."""
        if self._executor is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)


INLINE = Lane(threaded=False)
