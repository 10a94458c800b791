"""A probe of the event loop's stalls: how late a short sleep wakes up, and the longest garbage
collection meanwhile (enabled by a setting; the bench turns it on)."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path
from typing import Any

TICK_S = 0.005
REPORT_S = 1.0


class _Collections:
    """The longest garbage collection (any thread: it holds the GIL throughout) since the last ``take``."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._started)

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest


async def probe_loop_lag(path: Path, tick_s: float = TICK_S, report_s: float = REPORT_S) -> None:
    """Sleeps ``tick_s`` again and again and measures how much later than asked each sleep ends: the
    longest time the loop ran something else without yielding (or could not run). Every ``report_s``
    appends one JSON line ``{"t": wall clock, "max_ms": the worst lateness of those seconds, "ticks":
    wake-ups, "gc_max_ms": the longest garbage collection}`` to ``path``; runs until cancelled."""
    loop = asyncio.get_running_loop()
    collections = _Collections()
    gc.callbacks.append(collections)
    try:
        with path.open("a", buffering=1) as out:
            worst, ticks, since = 0.0, 0, loop.time()
            while True:
                asked = loop.time()
                await asyncio.sleep(tick_s)
                woke = loop.time()
                worst = max(worst, woke - asked - tick_s)
                ticks += 1
                if woke - since >= report_s:
                    out.write(json.dumps({"t": time.time(), "max_ms": round(worst * 1e3, 2), "ticks": ticks,
                                          "gc_max_ms": round(collections.take() * 1e3, 2)}) + "\n")
                    worst, ticks, since = 0.0, 0, woke
    finally:
        gc.callbacks.remove(collections)


def worst_stall_ms(path: Path, start: float, end: float, field: str = "max_ms") -> float | None:
    """The longest stall (``field="gc_max_ms"``: garbage collection) ``probe_loop_lag`` wrote to ``path`` in
    reports from ``start`` to ``end`` (wall clock), None if there is none."""
    if not path.exists():
        return None
    reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stalls = [float(r[field]) for r in reports if start <= r["t"] <= end]
    return max(stalls) if stalls else None
