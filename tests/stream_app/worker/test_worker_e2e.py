"""The worker end to end on the real broker, Redis and Feast: generated events including hostile ones
→ every valid event has exactly one prediction, every invalid one a dead letter with its reason,
nothing missing; the served feature rows reach the offline log (through the sink) and the online store."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import decode_transaction
from stream_app.errors import InvalidRecordError
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.wiring import build_worker
from tests.fixtures.kafka import consume
from tests.fixtures.workers import StartSink, wait_for_sink
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

def run_worker_until(settings: Settings, records: int, timeout_s: float = 120.0) -> None:
    worker = build_worker(settings)

    async def scenario() -> None:
        await worker.app.start()
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                await asyncio.sleep(0.2)
                runner = worker.runner() if _started(worker) else None
                if runner is not None and runner.stats.records >= records:
                    return
            raise AssertionError(f"worker did not consume {records} records in {timeout_s} s")
        finally:
            await worker.app.stop()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def _started(worker) -> bool:  # type: ignore[no-untyped-def]
    try:
        worker.runner()
    except Exception:  # noqa: BLE001 - the runner is built lazily by the agent
        return False
    return True


def test_every_valid_event_is_scored_once_and_every_invalid_one_dead_lettered(settings: Settings, unique: str,
                                                                             tmp_path: Path,
                                                                             sink_process: StartSink) -> None:
    settings = prepare(settings, tmp_path, f"worker_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    counts = stream_live(settings, rate=400, duration_s=3.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         invalid_fraction=0.05, label_delay_scale=1e-6, report=None)
    total = counts.valid + counts.invalid
    inputs = consume(settings, settings.topics.transactions.name, total)
    expected_valid: set[str] = set()
    expected_invalid: Counter[str] = Counter()
    for key, value, _, _ in inputs:
        try:
            expected_valid.add(decode_transaction(value, key).event_id)
        except InvalidRecordError as error:
            expected_invalid[error.code] += 1

    sink = sink_process(settings, tmp_path / "sink.log")
    run_worker_until(settings, total)

    predictions = consume(settings, settings.topics.predictions.name, len(expected_valid))
    dead = consume(settings, settings.topics.transactions_dlq.name, counts.invalid)
    predicted = [key.decode() for key, _, _, _ in predictions if key]
    assert len(predicted) == len(set(predicted)), "an event was predicted twice"
    assert set(predicted) == expected_valid
    reasons = Counter(json.loads(value)["error"]["code"] for _, value, _, _ in dead if value)
    assert reasons == expected_invalid
    wait_for_sink(settings, sink)
    log_dir = settings.feast.repo_path / "data" / "offline" / "user_windows"
    logged = pd.concat([pd.read_parquet(p) for p in log_dir.glob("**/part-*.parquet") if "backfill" not in p.name])
    assert len(logged) == len(expected_valid)
