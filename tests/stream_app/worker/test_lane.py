from __future__ import annotations

import asyncio
import functools
import threading
import time

import pytest

from stream_app.worker.lane import Lane


def test_calls_run_in_order_on_one_thread_that_is_not_the_loops() -> None:
    lane = Lane()
    seen: list[tuple[int, int]] = []

    def call(i: int) -> int:
        time.sleep(0.001 * (5 - i))  # later calls are shorter: a pool would finish them first
        seen.append((i, threading.get_ident()))
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(lane.run(functools.partial(call, i)) for i in range(5))))

    assert asyncio.run(main()) == list(range(5))
    assert [i for i, _ in seen] == list(range(5))
    assert len({thread for _, thread in seen}) == 1
    assert seen[0][1] != threading.get_ident()


def test_the_loop_keeps_running_while_a_call_blocks() -> None:
    lane = Lane()

    async def main() -> int:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await lane.run(lambda: time.sleep(0.2))
        ticker.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


def test_an_error_reaches_the_caller() -> None:
    def fail() -> None:
        raise KeyError("x")

    with pytest.raises(KeyError):
        asyncio.run(Lane().run(fail))


def test_inline_runs_in_the_callers_thread() -> None:
    assert asyncio.run(Lane(threaded=False).run(threading.get_ident)) == threading.get_ident()
