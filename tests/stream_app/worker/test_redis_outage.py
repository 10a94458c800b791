"""Redis away mid-stream, on the real broker, Redis and Feast: the worker runs as a real process against a
Redis of its own (the session Redis is shared by other tests), events keep arriving, Redis is shut down
for several seconds and started again on the same port and data directory (AOF, fsync always: a Redis
that is away, not one that lost its data). The worker must wait and retry without acking, then catch up.

Checked: while Redis is away (and throughout), the consumer group's committed offset never passes an
event whose prediction or dead letter has not been delivered; afterwards every event has exactly one
prediction (duplicates only if identical: a batch retried after its outputs were sent), each user's last
prediction counts each of its events once, the worker process is still the same one, and its committed
offset reaches the end of the topic.

The topics have one partition, so offset order is processing order (as in test_crash_recovery.py).

A hung Redis (SIGSTOP: connections open, no reply) is the other way to be away; the second test checks that
both of the worker's Redis clients then give up after the configured socket timeout instead of blocking."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from models.dataset import apply_definitions
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.contract import Topics, TopicSpec
from stream_app.core.window_spec import USER_WINDOWS
from stream_app.errors import ServiceUnavailableError
from stream_app.generator.live import LiveCounts, stream_live
from stream_app.settings import RedisSettings, Settings, WorkerSettings
from tests.fixtures.kafka import TopicReader
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.workers import StartWorker
from tests.fixtures.workspace import open_workspace
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 7.0
RATE = 100.0  # events/s produced before, during and after the outage


_COORDINATOR_BUSY = {KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
                     KafkaError.NOT_COORDINATOR}


def committed_offset(admin: AdminClient, group: str, topic: str) -> int:
    """The group's committed offset on partition 0 (0 when nothing is committed yet)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    deadline = time.monotonic() + 30
    while True:
        try:
            result = admin.list_consumer_group_offsets([request])[group].result(timeout=30)
            return max(0, int(result.topic_partitions[0].offset))
        except KafkaException as exc:  # the group coordinator loading or moving: ask again
            if exc.args[0].code() not in _COORDINATOR_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass
class CommitAudit:
    """Samples of (time, committed offset, first offset without a delivered output, events produced)."""

    inputs: TopicReader
    predictions: TopicReader
    dead: TopicReader
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    _offset_of: dict[str, int] = field(default_factory=dict)
    _done: set[int] = field(default_factory=set)
    _seen: list[int] = field(default_factory=lambda: [0, 0, 0])
    _first_open: int = 0

    def sample(self, admin: AdminClient, group: str) -> None:
        # The committed offset first, then every output delivered before now, then the inputs: an event
        # below the committed offset must have its output among what is read here.
        committed = committed_offset(admin, group, self.inputs.topic)
        self.predictions.catch_up()
        self.dead.catch_up()
        self.inputs.catch_up()
        for _, value, offset in self.inputs.records[self._seen[0]:]:
            self._offset_of[json.loads(value or b"{}")["event_id"]] = offset
        for _, value, _ in self.predictions.records[self._seen[1]:]:
            self._done.add(self._offset_of[json.loads(value or b"{}")["event_id"]])
        for _, value, _ in self.dead.records[self._seen[2]:]:
            self._done.add(json.loads(value or b"{}")["offset"])
        self._seen = [len(self.inputs.records), len(self.predictions.records), len(self.dead.records)]
        while self._first_open in self._done:
            self._first_open += 1
        first_open = self._first_open
        self.samples.append((time.monotonic(), committed, first_open, len(self.inputs.records)))
        assert committed <= first_open, f"offset {committed} committed, but offset {first_open} has no output yet"


def test_redis_away_mid_stream_is_waited_for_and_nothing_is_lost_or_counted_twice(
        settings: Settings, unique: str, tmp_path: Path, own_redis: RedisServer, worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "redis": RedisSettings(url=own_redis.url), "topics": single,
        "worker": WorkerSettings(app_id=f"outage-{unique}", batch_size=100)})
    settings = prepare(settings, tmp_path, f"outage_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    log = tmp_path / "worker.log"
    group, topic = settings.worker.app_id, settings.topics.transactions.name
    admin = AdminClient(settings.kafka.confluent())
    inputs = TopicReader(settings, topic)
    predictions = TopicReader(settings, settings.topics.predictions.name)
    dead = TopicReader(settings, settings.topics.transactions_dlq.name)
    audit = CommitAudit(inputs, predictions, dead)

    stop_producing = threading.Event()
    produced: list[LiveCounts] = []
    producer = threading.Thread(target=lambda: produced.append(stream_live(
        settings, rate=RATE, duration_s=120, seed=SEED, users=USERS, merchants=MERCHANTS, stop=stop_producing,
        report=None)))

    def audit_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            assert worker.alive(), log.read_text()[-3000:]
            audit.sample(admin, group)
            time.sleep(0.3)

    try:
        with worker_process(settings, log) as worker:
            deadline = time.monotonic() + 90
            while "[^Worker]: Ready" not in log.read_text():
                assert time.monotonic() < deadline, "worker not ready\n" + log.read_text()[-3000:]
                assert worker.alive(), log.read_text()[-3000:]
                time.sleep(0.2)
            producer.start()
            while len(predictions.records) < 200:  # the worker is in its group and scoring
                assert time.monotonic() < deadline, "no predictions\n" + log.read_text()[-3000:]
                assert worker.alive(), log.read_text()[-3000:]
                time.sleep(0.5)
                predictions.catch_up()
            audit_for(1.0)

            own_redis.stop()
            outage_start = len(audit.samples)
            audit_for(OUTAGE_S)
            during = audit.samples[outage_start:]
            own_redis.start()
            audit_for(3.0)  # events keep arriving after Redis is back
            stop_producing.set()
            producer.join(timeout=60)
            assert produced, "the producer thread failed"
            total = produced[0].valid + produced[0].invalid
            assert produced[0].undelivered == 0 and produced[0].delivery_errors == 0

            deadline = time.monotonic() + 120
            while True:  # catch up: outputs for every event, and the commit at the end of the topic
                audit_for(0.5)
                if audit.samples[-1][1] == total and audit.samples[-1][2] == total:
                    break
                assert time.monotonic() < deadline, f"no catch-up: {audit.samples[-1]}\n" + log.read_text()[-3000:]
            assert worker.alive(), "the worker process died\n" + log.read_text()[-3000:]
    finally:
        stop_producing.set()
        if producer.is_alive():
            producer.join(timeout=60)
        for reader in (inputs, predictions, dead):
            reader.close()

    # The outage was real: the worker retried, and events were waiting unprocessed while Redis was away.
    worker_log = log.read_text()
    assert "dependency unavailable" in worker_log, worker_log[-3000:]
    assert max(produced_now - first_open for _, _, first_open, produced_now in during) > RATE * OUTAGE_S / 2, during
    assert len(inputs.records) == total and not dead.records, [v for _, v, _ in dead.records][:3]

    by_event: dict[str, set[str]] = defaultdict(set)
    latest: dict[str, dict[str, object]] = {}
    for _, value, _ in predictions.records:
        body = json.loads(value or b"{}")
        by_event[body["event_id"]].add(json.dumps({k: body[k] for k in body if k not in ("scored_at", "latency_ms")},
                                                  sort_keys=True))
        latest[body["event_id"]] = body
    events = [json.loads(value or b"{}") for _, value, _ in inputs.records]
    assert set(by_event) == {e["event_id"] for e in events}, "an event was lost"
    assert all(len(v) == 1 for v in by_event.values()), "a duplicate prediction differs from the first"
    per_user: dict[int, int] = defaultdict(int)
    last_of_user: dict[int, str] = {}
    for event in events:  # offset order = processing order on one partition; the run lasts seconds
        per_user[event["user_id"]] += 1
        last_of_user[event["user_id"]] = event["event_id"]
    wrong = {user: (latest[event_id]["features"]["user_txn_count_24h"], per_user[user])  # type: ignore[index]
             for user, event_id in last_of_user.items()
             if latest[event_id]["features"]["user_txn_count_24h"] != per_user[user]}  # type: ignore[index]
    assert not wrong, f"user: (served 24 h count, events) {dict(list(wrong.items())[:10])}"


def _within(seconds: float, call: Callable[[], object]) -> tuple[float, BaseException | None]:
    """Run ``call`` in a thread; (elapsed, what it raised). Fails if it is still blocked after ``seconds``."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    began = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    return time.monotonic() - began, outcome[0]


def test_a_hung_redis_fails_the_workers_calls_within_the_socket_timeout(
        settings: Settings, unique: str, tmp_path: Path, own_redis: RedisServer) -> None:
    """SIGSTOP, not shutdown: the connection opens and no reply comes. Both of the worker's Redis clients
    (the window state's and Feast's online store) must give up after ``socket_timeout_s`` with
    ServiceUnavailableError - without the timeout they would block the worker's event loop for good -
    and work again once Redis answers."""
    timeout_s = 0.5
    settings = settings.model_copy(update={"redis": RedisSettings(url=own_redis.url, socket_timeout_s=timeout_s)})
    workspace = open_workspace(settings, tmp_path, f"hung_{unique}")
    apply_definitions(workspace.store)
    online = OnlineFeatures(workspace.store)
    state = RedisWindowStore(redis.Redis(**settings.redis.client_kwargs()), namespace=f"hung-{unique}",
                             allowed_lateness_s=300.0)
    row = {spec.name: 1.0 for spec in USER_WINDOWS}
    calls: dict[str, Callable[[], object]] = {
        "load window state": lambda: state.load([1], [2]),
        "read profiles": lambda: online.read_profiles([1], [2]),
        "write windows": lambda: online.write_windows([(1, datetime.now(UTC), row)], []),
    }
    for call in calls.values():  # connected and working
        call()

    own_redis.pause()
    try:
        for what, call in calls.items():
            elapsed, raised = _within(10 * timeout_s, call)
            assert isinstance(raised, ServiceUnavailableError), (what, raised)
            assert elapsed < 4 * timeout_s, (what, elapsed)
    finally:
        own_redis.resume()
    for what, call in calls.items():
        elapsed, raised = _within(5.0, call)
        assert raised is None, (what, raised)
