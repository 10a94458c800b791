"""Crash safety on the real broker, Redis and Feast: the worker runs as a real process and is killed
with SIGKILL at several points mid-stream, then restarted. Afterwards no event is lost, no aggregate
counted an event twice (every served window feature equals a brute-force recomputation from the raw
events), and every duplicate prediction is identical to the first.

Event time runs 30x faster than the wall clock, so a few seconds cover minutes of windows (merchant
windows are served a minute late). One partition: a restarted worker catches up a backlog, and on
several partitions a catch-up at 30x may let partitions drift further apart in event time than the
merchant lag (test_scale_out covers several partitions in live operation)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Topics, TopicSpec, decode_transaction
from stream_app.generator.live import stream_live
from stream_app.settings import Settings, WorkerSettings
from tests.fixtures.kafka import consume
from tests.fixtures.served import predictions_by_event, window_mismatches
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _count(settings: Settings, topic: str) -> int:
    return len(consume(settings, topic, expected=10**9, timeout_s=2.0))


def test_sigkill_mid_stream_loses_nothing_and_counts_nothing_twice(settings: Settings, unique: str, tmp_path: Path,
                                                                   worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "topics": single,
        "worker": WorkerSettings(app_id=f"crash-{unique}", batch_size=50)})
    settings = prepare(settings, tmp_path, f"crash_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    counts = stream_live(settings, rate=500, duration_s=4.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         report=None, time_scale=30.0)
    total = counts.valid
    log = tmp_path / "worker.log"

    kills = 0
    for fraction in (0.2, 0.5, 0.8):
        worker = worker_process(settings, log)
        deadline = time.monotonic() + 120
        try:
            while _count(settings, settings.topics.predictions.name) < fraction * total:
                assert worker.alive(), log.read_text()[-3000:]
                assert time.monotonic() < deadline, f"no progress past {fraction:.0%}\n" + log.read_text()[-3000:]
        finally:
            worker.kill()
            kills += 1

    worker = worker_process(settings, log)
    try:  # duplicates count too: wait for `total` DISTINCT events, not `total` records
        predictions = consume(settings, settings.topics.predictions.name,
                              lambda records: len({key for key, _, _, _ in records}) >= total, timeout_s=180)
    finally:
        worker.stop()
    assert kills == 3

    inputs = [decode_transaction(v, k) for k, v, _, _ in consume(settings, settings.topics.transactions.name, total)]
    served = predictions_by_event(predictions)
    assert set(served) == {t.event_id for t in inputs}, "an event was lost"
    assert window_mismatches(inputs, served) == []
    assert max(body["features"]["merchant_txn_count_1h"] for body in served.values()) > 0  # not vacuous
