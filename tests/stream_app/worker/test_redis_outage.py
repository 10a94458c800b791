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
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from models.dataset import apply_definitions
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.contract import Topics, TopicSpec
from stream_app.core.window_spec import USER_WINDOWS
from stream_app.errors import ServiceUnavailableError
from stream_app.settings import RedisSettings, Settings, WorkerSettings
from tests.fixtures.audit import AuditedStream
from tests.fixtures.redis_server import RedisServer
from tests.fixtures.served import predictions_by_event
from tests.fixtures.workers import StartWorker
from tests.fixtures.workspace import open_workspace
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 7.0
RATE = 100.0  # events/s produced before, during and after the outage


def test_redis_away_mid_stream_is_waited_for_and_nothing_is_lost_or_counted_twice(
        settings: Settings, unique: str, tmp_path: Path, own_redis: RedisServer, worker_process: StartWorker) -> None:
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = settings.model_copy(update={
        "redis": RedisSettings(url=own_redis.url), "topics": single,
        "worker": WorkerSettings(app_id=f"outage-{unique}", batch_size=100)})
    settings = prepare(settings, tmp_path, f"outage_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    log = tmp_path / "worker.log"
    with AuditedStream(settings, log, rate=RATE, seed=SEED, users=USERS, merchants=MERCHANTS) as run, \
            worker_process(settings, log) as worker:
        run.start(worker)
        own_redis.stop()
        outage_start = len(run.audit.samples)
        run.audit_for(OUTAGE_S)
        during = run.audit.samples[outage_start:]
        own_redis.start()
        run.audit_for(3.0)  # events keep arriving after Redis is back
        total = run.finish()
    inputs, predictions, dead = run.inputs, run.predictions, run.dead

    # The outage was real: the worker retried, and events were waiting unprocessed while Redis was away.
    worker_log = log.read_text()
    assert "dependency unavailable" in worker_log, worker_log[-3000:]
    assert max(produced_now - first_open for _, _, first_open, produced_now in during) > RATE * OUTAGE_S / 2, during
    assert len(inputs.records) == total and not dead.records, [v for _, v, _ in dead.records][:3]

    latest = predictions_by_event((key, value, 0, offset) for key, value, offset in predictions.records)
    events = [json.loads(value or b"{}") for _, value, _ in inputs.records]
    assert set(latest) == {e["event_id"] for e in events}, "an event was lost"
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
