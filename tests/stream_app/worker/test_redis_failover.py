"""Redis fails over mid-stream, on the real broker and Feast: the worker runs as a real process and reaches
Redis through Sentinel (a set of its own: master, replica, three sentinels; ``redis_sentinel``), every
window-state commit waiting for the replica (``wait_replicas=1``).

Events arrive at a steady rate. The replica falls behind (paused behind a replication stream longer than
the sockets buffer), so the master holds commits the replica lacks; none of them may be acknowledged.
Then the master is SIGKILLed and the replica resumed: Sentinel promotes it, without those commits. The
promoted master has no replica of its own, so commits still are not acknowledged until the old node
rejoins as its replica (``infra/redis-sentinel.sh start``); then the worker catches up.

Checked: the consumer group's committed offset never passes an event whose output is not delivered
(``tests.fixtures.audit.CommitAudit``, as in test_redis_outage); afterwards every event has a prediction, duplicates are
identical, every served window feature equals a brute-force recomputation from the raw events (so
nothing the lost master held had been acknowledged, and nothing was counted twice); the worker is the
same process throughout; and Feast's own online reads, through Sentinel, find the new master's rows.

The topics have one partition, so offset order is processing order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stream_app.adapters.feast_store import open_store
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.online_store import USER_WINDOWS_VIEW
from stream_app.contract import Topics, TopicSpec, decode_transaction
from stream_app.settings import Settings, WorkerSettings
from tests.fixtures.audit import AuditedStream
from tests.fixtures.redis_sentinel import SentinelSet
from tests.fixtures.served import predictions_by_event, window_mismatches
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 100.0  # events/s produced before, during and after the failover
LAG_S = 2.0  # how long the replica lags before the master dies


def test_a_failover_mid_stream_loses_nothing_acknowledged_and_counts_nothing_twice(
        settings: Settings, unique: str, tmp_path: Path, redis_sentinel: SentinelSet,
        worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "redis": redis_sentinel.settings(wait_replicas=1, wait_timeout_ms=500, socket_timeout_s=2.0),
        "topics": single,
        "worker": WorkerSettings(app_id=f"failover-{unique}", batch_size=100, retry_max_s=1.0)})
    settings = prepare(settings, tmp_path, f"failover_{unique}")  # Feast materializes through Sentinel
    ensure_topics(settings.kafka, settings.topics.all())
    log = tmp_path / "worker.log"
    old, replica = redis_sentinel.node_ports
    with AuditedStream(settings, log, rate=RATE, seed=SEED, users=USERS, merchants=MERCHANTS) as run, \
            worker_process(settings, log) as worker:
        run.start(worker)
        redis_sentinel.fall_behind(replica)
        try:
            run.audit_for(LAG_S)
            assert redis_sentinel.kill_master() == old
        finally:
            redis_sentinel.resume(replica)
        assert redis_sentinel.wait_for_failover(old, between=run.sample) == replica
        run.audit_for(2.0)  # a master without replica: still nothing acknowledged
        redis_sentinel.rejoin()
        run.audit_for(3.0)  # events keep arriving after the old node rejoined
        total = run.finish()
    inputs, predictions, dead = run.inputs, run.predictions, run.dead

    worker_log = log.read_text()
    assert "0 of 1 replicas" in worker_log, worker_log[-3000:]  # commits were held back, not acknowledged
    assert len(inputs.records) == total and not dead.records, [v for _, v, _ in dead.records][:3]
    transactions = [decode_transaction(value, key) for key, value, _ in inputs.records]
    served = predictions_by_event((key, value, 0, offset) for key, value, offset in predictions.records)
    assert set(served) == {t.event_id for t in transactions}, "an event was lost"
    assert window_mismatches(transactions, served) == []
    busiest, count = Counter(t.user_id for t in transactions).most_common(1)[0]
    assert count > 1  # not vacuous: windows counted several events of a user

    # Feast's own client, through Sentinel, reads the promoted master's online row of that user: the
    # windows as of its newest event.
    newest = max((t for t in transactions if t.user_id == busiest), key=lambda t: t.event_time)
    rows = open_store(settings).get_online_features(features=[f"{USER_WINDOWS_VIEW}:user_txn_count_24h"],
                                                    entity_rows=[{"user_id": busiest}]).to_dict()
    assert rows["user_txn_count_24h"] == [served[newest.event_id]["features"]["user_txn_count_24h"]]
