"""The one Redis error policy, one test per failure kind, on real Redis servers of the test's own (the
session Redis is shared) and, for a loading Redis, a TCP server answering every command with LOADING.

For each kind, every Redis adapter call (window state load and commit, online store write and read,
prediction index remember and lookup) that the kind refuses raises ServiceUnavailableError with the
Redis error as its cause, and the worker's retry loop waits for it: with ``poison_attempts=1`` any other
error would be given up on (dead-lettered) at its first failure. Calls a kind does not refuse (reads
on a read-only replica or a Redis out of memory) succeed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from redis import exceptions as rexc

from models.dataset import apply_definitions
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.adapters.prediction_index import PredictionIndex
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.contract import Prediction
from stream_app.core.engine import FeatureEngine, TransactionEvent
from stream_app.core.window_spec import USER_WINDOWS
from stream_app.errors import ServiceUnavailableError
from stream_app.settings import KafkaSettings, RedisSettings, Settings, WorkerSettings
from stream_app.worker.process import free_port
from stream_app.worker.runner import run_with_retries
from tests.fixtures.redis_server import running_redis
from tests.fixtures.services import Services
from tests.fixtures.workspace import Workspace, open_workspace

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.25  # socket and connect timeout of every client here: a hung Redis costs this per call
FAILURES = 2  # failed attempts the retry loop sees before the dependency "comes back"
RETRY = WorkerSettings(retry_initial_s=0.001, retry_max_s=0.001, poison_attempts=1)
NOW = datetime(2026, 11, 1, tzinfo=UTC)
WRITES = ("state commit", "online write", "index remember")
READS = ("state load", "online read", "index lookup")


def _complete_commands(buffer: bytes) -> tuple[int, bytes]:
    """How many complete RESP commands ``buffer`` starts with, and the incomplete rest."""
    count = 0
    while buffer.startswith(b"*"):
        end = buffer.find(b"\r\n")
        if end < 0:
            break
        pos = end + 2
        for _ in range(int(buffer[1:end])):
            end = buffer.find(b"\r\n", pos)
            if end < 0:
                return count, buffer
            pos = end + 2 + int(buffer[pos + 1:end]) + 2
        if pos > len(buffer):
            break
        count, buffer = count + 1, buffer[pos:]
    return count, buffer


class _Loading(socketserver.BaseRequestHandler):
    """Answers every command like a Redis that is still loading its dataset."""

    def handle(self) -> None:
        buffer = b""
        while chunk := self.request.recv(65536):
            count, buffer = _complete_commands(buffer + chunk)
            self.request.sendall(b"-LOADING Redis is loading the dataset in memory\r\n" * count)


@contextlib.contextmanager
def loading_server() -> Iterator[str]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Loading)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{server.server_address[1]}/0"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def registry(live_services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """A Feast registry with the real definitions applied (on the session Redis)."""
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=live_services.kafka_bootstrap),
                        redis=RedisSettings(url=live_services.redis_url))
    ws = open_workspace(settings, tmp_path_factory.mktemp("feast"), f"redis_errors_{uuid.uuid4().hex[:8]}")
    apply_definitions(ws.store)
    yield ws
    ws.store.teardown()


def online_store_at(registry: Workspace, url: str, root: Path) -> OnlineFeatures:
    """The online store of ``registry``'s definitions with its Redis at ``url``."""
    from feast import FeatureStore  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    repo = root / f"repo-{uuid.uuid4().hex[:6]}"
    repo.mkdir()
    connection = RedisSettings(url=url, socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
    (repo / "feature_store.yaml").write_text(
        f"project: {registry.store.project}\nprovider: local\nregistry: {registry.path / 'data' / 'registry.db'}\n"
        f"online_store:\n  type: redis\n  connection_string: \"{connection.feast_connection_string()}\"\n"
        "offline_store:\n  type: duckdb\nentity_key_serialization_version: 3\n")
    return OnlineFeatures(FeatureStore(repo_path=str(repo)))


def client_at(url: str) -> redis.Redis[bytes]:
    settings = RedisSettings(url=url, socket_timeout_s=TIMEOUT_S, connect_timeout_s=TIMEOUT_S)
    return redis.Redis(**settings.client_kwargs())


def adapter_calls(url: str, registry: Workspace, healthy_url: str, root: Path) -> tuple[
        RedisWindowStore, dict[str, Callable[[], object]]]:
    """Each adapter call against the Redis at ``url``. The state to commit is loaded from the healthy
    session Redis (the failing one may refuse the load)."""
    namespace = f"kinds-{uuid.uuid4().hex[:8]}"
    store = RedisWindowStore(client_at(url), namespace, allowed_lateness_s=300.0)
    healthy = client_at(healthy_url)

    def commit() -> None:
        failing, store._client = store._client, healthy
        try:
            state = store.load([1], [10])
        finally:
            store._client = failing
        FeatureEngine(300.0, state).on_transaction(TransactionEvent("e1", 1, 10, 5.0, NOW.timestamp(), (0, 1)))
        store.commit(state)

    online = online_store_at(registry, url, root)
    row = {spec.name: 1.0 for spec in USER_WINDOWS}
    index = PredictionIndex(client_at(url), namespace)
    prediction = Prediction(event_id="a", user_id=1, merchant_id=7, score=0.5, decision="approve", model_version="v1",
                            features={}, event_time=NOW, scored_at=NOW, latency_ms=1.0)
    return store, {
        "state load": lambda: store.load([1], [10]),
        "state commit": commit,
        "online write": lambda: online.write_windows([(1, NOW, row)], []),
        "online read": lambda: online.read_profiles([1], [7]),
        "index remember": lambda: index.remember([prediction], {0: NOW.timestamp()}),
        "index lookup": lambda: index.lookup(["a"]),
    }


def assert_waited_for(name: str, call: Callable[[], object], cause: type[Exception],
                      store: RedisWindowStore) -> None:
    """``call`` raises ServiceUnavailableError caused by ``cause``, and run_with_retries retries it
    without giving up (which would dead-letter the batch), until it stops failing."""
    failures: list[ServiceUnavailableError] = []
    retries: list[None] = []

    async def attempt() -> str:
        if len(failures) == FAILURES:
            return "recovered"
        try:
            call()
        except ServiceUnavailableError as exc:
            failures.append(exc)
            raise
        raise AssertionError(f"{name} did not fail")

    async def give_up(exc: Exception) -> str:
        raise AssertionError(f"{name}: {type(exc).__name__}: {exc} would be dead-lettered, not waited for")

    result = asyncio.run(run_with_retries(attempt, RETRY, store, give_up=give_up,
                                          on_retry=lambda: retries.append(None), what=name))
    assert result == "recovered" and len(retries) == FAILURES
    for failure in failures:
        assert isinstance(failure.__cause__, cause), f"{name}: caused by {failure.__cause__!r}, not {cause.__name__}"


def check_kind(url: str, cause: type[Exception], refused: tuple[str, ...], *, registry: Workspace,
               redis_url: str, root: Path) -> None:
    store, calls = adapter_calls(url, registry, redis_url, root)
    for name in refused:
        assert_waited_for(name, calls[name], cause, store)
    for name in set(calls) - set(refused):
        calls[name]()  # what the kind does not refuse still works


def test_connection_refused(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    check_kind(url, rexc.ConnectionError, READS + WRITES, registry=registry, redis_url=redis_url, root=tmp_path)


def test_timeout_of_a_busy_redis(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    """Redis alive but answering nobody (a long command holds it) for longer than the socket timeout."""
    with running_redis(tmp_path, "--enable-debug-command", "yes") as server:
        def hold() -> None:
            with contextlib.suppress(redis.RedisError):  # ends when the server is killed
                redis.Redis(port=server.port).execute_command("DEBUG", "SLEEP", 60)

        threading.Thread(target=hold, daemon=True).start()
        time.sleep(0.2)
        check_kind(server.url, rexc.TimeoutError, READS + WRITES, registry=registry, redis_url=redis_url, root=tmp_path)


def test_redis_busy_running_a_script(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    """A script running past busy-reply-threshold: every other command is answered BUSY at once."""
    with running_redis(tmp_path, "--busy-reply-threshold", "100") as server:
        def spin() -> None:
            with contextlib.suppress(redis.RedisError):  # ends when the server is killed
                redis.Redis(port=server.port).eval("while true do end", 0)

        threading.Thread(target=spin, daemon=True).start()
        probe = redis.Redis(port=server.port, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:  # until the script is past the threshold
            try:
                probe.ping()
            except rexc.ResponseError as exc:
                assert str(exc).startswith("BUSY "), exc
                break
            assert time.monotonic() < deadline, "the script never made Redis busy"
            time.sleep(0.05)
        check_kind(server.url, rexc.ResponseError, READS + WRITES, registry=registry, redis_url=redis_url,
                   root=tmp_path)


def test_hung_redis(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    """Connections are accepted (by the kernel) but the stopped process never answers."""
    with running_redis(tmp_path) as server:
        server.pause()
        check_kind(server.url, rexc.TimeoutError, READS + WRITES, registry=registry, redis_url=redis_url, root=tmp_path)


def test_read_only_replica(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    """A failover left the address on a replica: reads are served, writes refused."""
    with running_redis(tmp_path, "--replicaof", "127.0.0.1", str(free_port())) as replica:
        check_kind(replica.url, rexc.ReadOnlyError, WRITES, registry=registry, redis_url=redis_url, root=tmp_path)


def test_out_of_memory(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    """maxmemory reached with noeviction: writes refused, reads served."""
    with running_redis(tmp_path, "--maxmemory", "1", "--maxmemory-policy", "noeviction") as server:
        check_kind(server.url, rexc.OutOfMemoryError, WRITES, registry=registry, redis_url=redis_url, root=tmp_path)  # type: ignore[attr-defined]


def test_loading(registry: Workspace, redis_url: str, tmp_path: Path) -> None:
    """A restarted Redis still loading its dataset answers LOADING to every command."""
    with loading_server() as url:
        check_kind(url, rexc.BusyLoadingError, READS + WRITES, registry=registry, redis_url=redis_url, root=tmp_path)


def test_the_loading_fake_answers_one_error_per_pipelined_command() -> None:
    with loading_server() as url, socket.create_connection(("127.0.0.1", RedisSettings(url=url).port)) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET")
        sock.settimeout(1)
        expected = b"-LOADING Redis is loading the dataset in memory\r\n" * 2
        received = b""
        while len(received) < len(expected):
            received += sock.recv(1024)
        assert received == expected
