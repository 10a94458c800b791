"""A probe of the event loop's stalls: how late a short sleep wakes up (enabled by a setting; the bench
turns it on)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

TICK_S = 0.005
REPORT_S = 1.0


async def probe_loop_lag(path: Path, tick_s: float = TICK_S, report_s: float = REPORT_S) -> None:
    """Sleeps ``tick_s`` again and again and measures how much later than asked each sleep ends: the
    longest time the loop ran something else without yielding. Every ``report_s`` appends one JSON line
    ``{"t": wall clock, "max_ms": the worst lateness of those seconds, "ticks": wake-ups}`` to ``path``;
    runs until cancelled."""
    loop = asyncio.get_running_loop()
    with path.open("a", buffering=1) as out:
        worst, ticks, since = 0.0, 0, loop.time()
        while True:
            asked = loop.time()
            await asyncio.sleep(tick_s)
            woke = loop.time()
            worst = max(worst, woke - asked - tick_s)
            ticks += 1
            if woke - since >= report_s:
                out.write(json.dumps({"t": time.time(), "max_ms": round(worst * 1e3, 2), "ticks": ticks}) + "\n")
                worst, ticks, since = 0.0, 0, woke


def worst_stall_ms(path: Path, start: float, end: float) -> float | None:
    """The longest stall ``probe_loop_lag`` wrote to ``path`` in reports from ``start`` to ``end`` (wall
    clock), None if there is none."""
    if not path.exists():
        return None
    reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    stalls = [float(r["max_ms"]) for r in reports if start <= r["t"] <= end]
    return max(stalls) if stalls else None
