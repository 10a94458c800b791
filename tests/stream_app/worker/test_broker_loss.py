"""A broker dies mid-stream, on a real three-node cluster (topics replicated three times, min.insync.replicas
2, every producer acks=all), the session Redis and Feast: the worker runs as a real process, events keep
arriving, the broker that leads the ``transactions`` partition is killed with SIGKILL (no controlled
shutdown: the cluster notices it only when its session with the controller expires), events keep arriving
on the two survivors, and the broker is started again.

Checked: producing never failed (2 in-sync replicas are enough) and went on while the broker was away; the
worker kept scoring while it was away and its process is the same one throughout; afterwards every event
has a prediction and none was dead-lettered, every duplicate equals the first, and every served window
feature equals a brute-force recomputation from the raw events.

One partition per topic, so offset order is processing order (as in test_crash_recovery.py); event time
runs 10x faster than the wall clock."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import Topics, TopicSpec, decode_transaction
from stream_app.errors import ConfigError
from stream_app.generator.live import LiveCounts, stream_live
from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.process import WorkerProcess
from tests.fixtures.kafka import TopicReader, consume
from tests.fixtures.kafka_cluster import NODES, KafkaCluster
from tests.fixtures.served import predictions_by_event, window_mismatches
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

# The first test's setup starts the cluster: three JVMs, on top of the session's services.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

RATE = 100.0  # events/s produced before, during and after the broker's loss
AWAY_S = 15.0  # how long the killed broker stays down (longer than its 9 s session with the controller)


def _seen(reader: TopicReader) -> int:
    """Records read so far on ``reader``'s topic, reading on if its partition's leader answers now."""
    with contextlib.suppress(KafkaException, AssertionError):  # no leader at the moment: count what was read
        reader.catch_up(timeout_s=10)
    return len(reader.records)


def _watch(worker: WorkerProcess, seconds: float) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert worker.alive(), "the worker exited\n" + worker.tail(60)
        time.sleep(0.5)


def test_topics_are_replicated_as_the_settings_ask_and_a_mismatch_is_refused(
        settings: Settings, kafka_cluster: KafkaCluster) -> None:
    kafka = kafka_cluster.kafka_settings()
    spec = TopicSpec(name=settings.topics.transactions.name, partitions=2)
    assert ensure_topics(kafka, [spec]) == [spec.name]
    admin = AdminClient(kafka.confluent())
    partitions = admin.list_topics(spec.name, timeout=10).topics[spec.name].partitions
    assert [len(p.replicas) for p in partitions.values()] == [NODES, NODES]
    resource = ConfigResource(ResourceType.TOPIC, spec.name)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["min.insync.replicas"].value == str(NODES - 1)
    with pytest.raises(ConfigError, match="replication factor"):  # changing it is not create-topics' business
        ensure_topics(kafka.model_copy(update={"replication_factor": NODES - 1, "min_insync_replicas": 1}), [spec])
    more = TopicSpec(name=f"{spec.name}-more", partitions=1)
    with pytest.raises(ConfigError, match=more.name):  # more replicas than brokers
        ensure_topics(kafka.model_copy(update={"replication_factor": NODES + 1}), [more])


def test_a_broker_killed_mid_stream_loses_nothing_and_the_worker_carries_on(
        settings: Settings, unique: str, tmp_path: Path, kafka_cluster: KafkaCluster,
        worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "kafka": kafka_cluster.kafka_settings(), "topics": single,
        # event time runs ahead of the records' Kafka timestamps, soon by more than the default skew allowed
        "worker": WorkerSettings(app_id=f"loss-{unique}", batch_size=100, max_future_skew_s=86_400)})
    settings = prepare(settings, tmp_path, f"loss_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    topic = settings.topics.transactions.name
    inputs = TopicReader(settings, topic)
    predictions = TopicReader(settings, settings.topics.predictions.name)
    log = tmp_path / "worker.log"

    stop_producing = threading.Event()
    produced: list[LiveCounts] = []
    producer = threading.Thread(target=lambda: produced.append(stream_live(
        settings, rate=RATE, duration_s=300, seed=SEED, users=USERS, merchants=MERCHANTS, stop=stop_producing,
        report=None, time_scale=10.0)))
    try:
        with worker_process(settings, log) as worker:
            pid = worker.pid
            deadline = time.monotonic() + 120
            while "[^Worker]: Ready" not in worker.output():
                assert time.monotonic() < deadline, "worker not ready\n" + worker.tail(60)
                _watch(worker, 0.2)
            producer.start()
            while _seen(predictions) < 200:  # the worker is in its group and scoring
                assert time.monotonic() < deadline, "no predictions\n" + worker.tail(60)
                _watch(worker, 0.5)

            victim = kafka_cluster.leader(topic)
            kafka_cluster.kill(victim)
            killed = time.monotonic()
            killed_at = (_seen(inputs), _seen(predictions))
            deadline = time.monotonic() + 120
            while _seen(predictions) < killed_at[1] + 2 * RATE:  # scored on, with a broker away
                assert time.monotonic() < deadline, "no progress after the broker's loss\n" + worker.tail(60)
                _watch(worker, 0.5)
            _watch(worker, max(0.0, AWAY_S - (time.monotonic() - killed)))
            assert kafka_cluster.leader(topic) != victim
            restarted_at = _seen(inputs)
            kafka_cluster.start(victim)
            _watch(worker, 3.0)  # events keep arriving after the broker is back
            stop_producing.set()
            producer.join(timeout=60)
            assert produced, "the producer thread failed"
            counts = produced[0]
            total = counts.valid + counts.invalid

            records = consume(settings, settings.topics.predictions.name,
                              lambda rs: len({key for key, _, _, _ in rs}) >= total, timeout_s=180)
            assert worker.alive() and worker.pid == pid, "the worker exited\n" + worker.tail(60)
    finally:
        stop_producing.set()
        if producer.is_alive():
            producer.join(timeout=60)
        inputs.close()
        predictions.close()

    assert counts.undelivered == 0 and counts.delivery_errors == 0, counts
    assert restarted_at > killed_at[0], "nothing was produced while the broker was away"
    assert victim in kafka_cluster.in_sync(topic), "the restarted broker did not catch up"
    transactions = [decode_transaction(v, k) for k, v, _, _ in consume(settings, topic, total)]
    assert len(transactions) == total
    served = predictions_by_event(records)  # asserts every duplicate equals the first
    assert set(served) == {t.event_id for t in transactions}, "an event was lost"
    assert window_mismatches(transactions, served) == []
    assert consume(settings, settings.topics.transactions_dlq.name, 1, timeout_s=3) == [], "dead letters"
    assert max(body["features"]["merchant_txn_count_1h"] for body in served.values()) > 0  # not vacuous
