"""The stream worker (``python -m stream_app worker``, unchanged) with a cProfile of its event loop's thread
switched on by SIGRTMIN and switched off and written to ``BENCH_PROFILE_OUT`` by SIGRTMIN+1, so a benchmark
profiles the steady state only (not start-up, imports or shutdown). Run by bench/bench_e2e.py; stop it
with SIGTERM.

    BENCH_PROFILE_OUT=worker.cprofile STREAMSCORE_* .venv/bin/python bench/profiled_worker.py
"""

from __future__ import annotations

import cProfile
import os
import signal
import sys
from types import FrameType

from stream_app.cli import main

START, STOP = signal.SIGRTMIN, signal.SIGRTMIN + 1  # Faust's worker (mode) handles SIGUSR1/SIGUSR2 itself


def install(profiler: cProfile.Profile, out: str) -> None:
    """Signal handlers that run in the main thread, the one the event loop runs in."""

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(f"{out}.tmp")
        os.replace(f"{out}.tmp", out)  # the file appears complete

    signal.signal(START, start)
    signal.signal(STOP, stop)


if __name__ == "__main__":
    install(cProfile.Profile(), os.environ["BENCH_PROFILE_OUT"])
    sys.exit(main(["worker"]))
