"""Catch-up after an outage on the real broker, Redis and Feast: the worker is stopped while producers go on
for minutes of event time, then restarted; it consumes its partitions in event-time order, so every merchant
window it serves equals the brute force, as if it had never been down.

Transactions are keyed by user, so every merchant's transactions spread over the 4 partitions. During the
outage partition 0 carries a sixth of partition 1's events per second of event time, and partitions 2 and 3
none (caught up, they must not hold the others back): a catch-up that takes records from the partitions at
similar rates (as the fetcher does) consumes partition 0 minutes of event time ahead, past the merchant lag
(60 s), and partition 0's merchant features then miss partition 1's events. The backlog is written
partition by partition. Event times lie in the past (minutes of them are produced in seconds); records
enter Kafka now, so none is judged future-dated. Partition 0's rate keeps one fetch of it (about 200
records) well inside the half of the lag the alignment leaves for it."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Transaction, decode_transaction, encode, user_key
from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.process import free_port
from tests.fixtures.kafka import Record, consume
from tests.fixtures.served import predictions_by_event, window_mismatches
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1200)]  # a world, then two worker runs

PARTITIONS = 4
LIVE_RATES = (10.0, 10.0, 10.0, 10.0)  # events per second of event time, per partition, before the outage
BACKLOG_RATES = (30.0, 180.0, 0.0, 0.0)  # and during it: partition 0 is sparse, 2 and 3 are idle
LIVE_S, BACKLOG_S = 20.0, 120.0  # event time served live before the outage, and produced during it


def _transactions(partition: int, start: datetime, seconds: float, rate: float,
                  rng: random.Random) -> list[Transaction]:
    """Evenly spaced transactions of ``partition``'s users (user % PARTITIONS), to any merchant."""
    users = [u for u in range(USERS) if u % PARTITIONS == partition]
    n = round(rate * seconds)
    return [Transaction(event_id=f"p{partition}-{start.timestamp():.0f}-{i}", user_id=rng.choice(users),
                        merchant_id=rng.randrange(MERCHANTS), amount=round(rng.uniform(1, 300), 2),
                        currency="EUR", country="FR", channel="web",
                        event_time=(start + timedelta(seconds=i * seconds / n)).isoformat())
            for i in range(n)]


def _produce(settings: Settings, by_partition: list[list[Transaction]]) -> None:
    """Each partition's transactions in event-time order, one partition after the other."""
    producer = Producer({**settings.kafka.confluent(), "linger.ms": 5})
    for partition, transactions in enumerate(by_partition):
        for txn in transactions:
            producer.produce(settings.topics.transactions.name, encode(txn), user_key(txn.user_id),
                             partition=partition)
        assert producer.flush(30) == 0


def _distinct(expected: int) -> Callable[[list[Record]], bool]:
    def enough(records: list[Record]) -> bool:  # a duplicate must not count twice
        return len({key for key, _, _, _ in records}) >= expected
    return enough


def test_a_catch_up_serves_the_merchant_windows_it_would_have_served_live(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    settings = settings.model_copy(update={"worker": WorkerSettings(app_id=f"catch-up-{unique}", batch_size=200,
                                                                      align_partitions=True)})
    assert settings.topics.transactions.partitions == PARTITIONS
    settings = prepare(settings, tmp_path, f"catch_up_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    rng = random.Random(SEED)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=LIVE_S + BACKLOG_S + 60)
    live = [_transactions(p, start, LIVE_S, LIVE_RATES[p], rng) for p in range(PARTITIONS)]
    backlog = [_transactions(p, start + timedelta(seconds=LIVE_S), BACKLOG_S, BACKLOG_RATES[p], rng)
               for p in range(PARTITIONS)]
    log, port = tmp_path / "worker.log", free_port()

    with worker_process(settings, log, web_port=port):
        _produce(settings, live)
        n_live = sum(map(len, live))
        consume(settings, settings.topics.predictions.name, _distinct(n_live), timeout_s=300)
    _produce(settings, backlog)  # the outage: minutes of event time, sparse partition first
    total = n_live + sum(map(len, backlog))
    with worker_process(settings, log, web_port=port):  # the same static member: it takes its partitions back
        predictions = consume(settings, settings.topics.predictions.name, _distinct(total), timeout_s=600)

    inputs = sorted((decode_transaction(v, k) for k, v, _, _ in
                     consume(settings, settings.topics.transactions.name, total)), key=lambda t: t.event_time)
    served = predictions_by_event(predictions)
    assert set(served) == {t.event_id for t in inputs}, "an event was lost"
    assert min(served[t.event_id]["features"]["merchant_txn_count_1h"] for t in inputs[-100:]) > 0  # not vacuous
    mismatches = window_mismatches(inputs, served)
    assert mismatches == [], f"{len(mismatches)} served window features differ from the brute force, " \
        f"e.g. {mismatches[:5]}"
