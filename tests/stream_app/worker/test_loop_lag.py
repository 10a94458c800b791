from __future__ import annotations

import asyncio
import gc
import json
import time
from pathlib import Path

from stream_app.worker.loop_lag import probe_loop_lag, worst_stall_ms


def test_a_blocking_call_shows_as_a_stall_of_about_its_length(tmp_path: Path) -> None:
    path = tmp_path / "lag.jsonl"

    collecting_s = 0.0

    async def main() -> None:
        nonlocal collecting_s
        probe = asyncio.create_task(probe_loop_lag(path, tick_s=0.002, report_s=0.05))
        await asyncio.sleep(0.12)
        time.sleep(0.08)  # blocks the loop
        collect_started = time.perf_counter()
        gc.collect()  # blocks it too, for as long as this process's heap takes (long in a full test session)
        collecting_s = time.perf_counter() - collect_started
        await asyncio.sleep(0.12)
        probe.cancel()

    started, callbacks = time.time(), len(gc.callbacks)
    asyncio.run(main())
    reports = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(reports) >= 3
    assert all(r["ticks"] >= 1 for r in reports)
    assert max(r["gc_max_ms"] for r in reports) > 0
    assert len(gc.callbacks) == callbacks  # the probe removes its callback when cancelled
    worst = worst_stall_ms(path, started, time.time())
    assert worst is not None and 70 <= worst < 500 + collecting_s * 1e3
    assert sorted(r["max_ms"] for r in reports)[0] < 70  # the quiet reports show no such stall
    assert worst_stall_ms(path, 0, 1) is None
    assert worst_stall_ms(tmp_path / "absent", 0, time.time()) is None
