"""Where the integration tests find Kafka and Redis, in this order:

1. addresses given in the environment (``STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS``, ``STREAMSCORE_REDIS__URL``);
2. testcontainers, when a Docker engine answers;
3. local processes started by ``infra/kafka.sh`` and ``infra/redis.sh`` on free ports, with their data
   under ``.run/test-<pid>/`` (so concurrent test sessions on one machine never share or stop each
   other's services); stopped at the end of the session.

Whatever the source, the service must answer; otherwise the tests fail with the reason. They never skip.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis
from confluent_kafka.admin import AdminClient

REPO = Path(__file__).resolve().parent.parent
KAFKA_ENV = "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS"
REDIS_ENV = "STREAMSCORE_REDIS__URL"
TEST_RUN_ROOT = REPO / ".run"


class ServiceError(RuntimeError):
    """A service the integration tests need could not be had; the message says which and why."""


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    redis_url: str
    source: str


def kafka_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout_s).brokers)
    except Exception:  # noqa: BLE001 - any failure here means "does not answer"
        return False


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no socket, no permission: all mean "no Docker"
        return False


def _from_env() -> Services | None:
    kafka, url = os.environ.get(KAFKA_ENV), os.environ.get(REDIS_ENV)
    if not (kafka or url):
        return None
    if not (kafka and url):
        raise ServiceError(f"set both {KAFKA_ENV} and {REDIS_ENV}, or neither")
    if not kafka_answers(kafka):
        raise ServiceError(f"Kafka at {kafka} (from {KAFKA_ENV}) does not answer a metadata request")
    if not redis_answers(url):
        raise ServiceError(f"Redis at {url} (from {REDIS_ENV}) does not answer PING")
    return Services(kafka, url, "environment")


@contextlib.contextmanager
def _from_containers() -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka, RedisContainer("redis:7") as rds:
        url = f"redis://{rds.get_container_host_ip()}:{rds.get_exposed_port(6379)}/0"
        yield Services(kafka.get_bootstrap_server(), url, "testcontainers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _script(name: str, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "infra" / name), command], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=180, check=False)


@contextlib.contextmanager
def _from_local_processes() -> Iterator[Services]:
    """Start Redis and Kafka for this session only, and stop them at its end."""
    kafka_port, redis_port = free_port(), free_port()
    env = {"KAFKA_PORT": str(kafka_port), "KAFKA_CONTROLLER_PORT": str(free_port()), "REDIS_PORT": str(redis_port),
           "STREAMSCORE_RUN_DIR": str(TEST_RUN_ROOT / f"test-{os.getpid()}")}
    stops: list[Callable[[], object]] = []
    try:
        for script in ("redis.sh", "kafka.sh"):
            started = _script(script, "start", env)
            stops.append(functools.partial(_script, script, "stop", env))
            if started.returncode != 0:
                raise ServiceError(f"infra/{script} start failed:\n{started.stdout}{started.stderr}")
        yield Services(f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", "local processes")
    finally:
        for stop in reversed(stops):
            stop()
        shutil.rmtree(env["STREAMSCORE_RUN_DIR"], ignore_errors=True)


@contextlib.contextmanager
def services() -> Iterator[Services]:
    from_env = _from_env()
    if from_env is not None:
        yield from_env
        return
    source = _from_containers() if docker_answers() else _from_local_processes()
    with source as found:
        yield found
