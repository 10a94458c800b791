"""Labels that arrive ahead of their transactions are held, and the transactions must keep flowing
meanwhile: both agents share one Faust fetcher, and a held labels agent whose stream buffer fills must
not block the fetcher (it would starve the transactions the held labels are waiting for)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import redis
from confluent_kafka import Producer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Label, decode_transaction, encode, user_key
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from tests.fixtures.kafka import consume
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TRANSACTIONS = 16_000
LABELS = 7_000  # more than the labels agent's stream buffer (4,096) holds: its queue fills while it waits


def test_labels_held_for_their_transactions_do_not_starve_the_transactions(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    project = f"held_{unique}"
    settings = prepare(settings, tmp_path, project)
    # the labels wait for their transactions as long as the catch-up takes: none may be given up unjoined
    settings = settings.model_copy(update={"worker": settings.worker.model_copy(
        update={"label_join_wait_s": 600.0})})
    ensure_topics(settings.kafka, settings.topics.all())
    counts = stream_live(settings, rate=TRANSACTIONS, duration_s=2.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         label_delay_scale=100.0, report=None)  # labels years away: none sent
    assert counts.labels == 0
    transactions = [decode_transaction(value, key)
                    for key, value, _, _ in consume(settings, settings.topics.transactions.name,
                                                    counts.valid + counts.invalid)]
    # labels for the LAST transactions, the very last first: the labels agent's first batch must wait
    # until the transactions agent has scored (nearly) the whole backlog
    labelled = sorted(transactions, key=lambda t: t.event_time, reverse=True)[:LABELS]
    producer = Producer({**settings.kafka.confluent(), "linger.ms": 5})
    for txn in labelled:
        label = Label(event_id=txn.event_id, user_id=txn.user_id, is_fraud=False,
                      label_time=(txn.event_time + timedelta(seconds=1)).isoformat())
        producer.produce(settings.topics.labels.name, encode(label), user_key(txn.user_id))
    assert producer.flush(30) == 0

    with worker_process(settings, tmp_path / "worker.log"):
        predictions = consume(settings, settings.topics.predictions.name, len(transactions), timeout_s=150.0)
        joined = consume(settings, settings.topics.labels_joined.name, LABELS, timeout_s=60.0)

    assert len({key for key, _, _, _ in predictions}) == len(transactions)
    assert {key.decode() for key, _, _, _ in joined if key} == {t.event_id for t in labelled}
    # the index keeps only the predictions still waiting for a label: the joined labels' entries are gone
    client = redis.Redis(**settings.redis.client_kwargs())
    entry = f"{project}:{settings.worker.app_id}:pred:"
    waiting = {key.decode() for key, _, _, _ in predictions if key} - {t.event_id for t in labelled}
    assert client.exists(*(entry + t.event_id for t in labelled)) == 0
    assert client.exists(*(entry + e for e in waiting)) == len(waiting) > 0

