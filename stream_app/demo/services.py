"""Redis and Kafka for the demo, and who owns them.

Three cases per service, decided before anything starts:

* its ``STREAMSCORE_*`` address is set: use it as given, never start or stop it;
* this project's service already runs on the default port (``make infra-up``, pid file under ``.run/``):
  reuse it and leave it running;
* otherwise start it with ``infra/<service>.sh`` on the default port and stop it at the end. A default
  port held by some other process is an error with a clear message, never silently shared.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stream_app.settings import KAFKA_ADDRESS_ENV, REDIS_ADDRESS_ENV, REPO_ROOT, RUN_DIR


class ServiceStartError(RuntimeError):
    """A service the demo needs cannot be had; the message says why and what to do."""


@dataclass(frozen=True)
class Service:
    """One of the two services: how to check, start and stop it."""

    name: str  # redis | kafka
    env_var: str  # the STREAMSCORE_* address that means "use that one"
    ports: tuple[int, ...]  # the default ports it binds (Kafka: broker and controller)
    pid_file: Path

    @property
    def script(self) -> Path:
        return REPO_ROOT / "infra" / f"{self.name}.sh"


REDIS = Service("redis", REDIS_ADDRESS_ENV, (6379,), RUN_DIR / "redis-6379" / "redis.pid")
KAFKA = Service("kafka", KAFKA_ADDRESS_ENV, (9092, 9093), RUN_DIR / "kafka-9092" / "kafka.pid")


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def plan(service: Service) -> str:
    """``external`` (address from the environment), ``reuse`` (ours, already running) or ``start``.
    Raises ServiceStartError when a default port is held by a process this project did not start."""
    if os.environ.get(service.env_var):
        return "external"
    if _pid_alive(service.pid_file):
        return "reuse"
    busy = [p for p in service.ports if port_in_use(p)]
    if busy:
        raise ServiceStartError(
            f"{service.name}: port {', '.join(map(str, busy))} on 127.0.0.1 is in use by a process this project "
            f"did not start (no live {service.pid_file.relative_to(REPO_ROOT)}). Stop that process, or point the "
            f"demo at an existing {service.name} with {service.env_var}=...")
    return "start"


def run_script(service: Service, command: str, log: Path, timeout_s: float = 300.0) -> None:
    """``infra/<service>.sh <command>`` with its output appended to ``log``; ServiceStartError on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        done = subprocess.run([str(service.script), command], stdout=out, stderr=subprocess.STDOUT,
                              cwd=REPO_ROOT, timeout=timeout_s, check=False)
    if done.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise ServiceStartError(f"infra/{service.name}.sh {command} failed (exit {done.returncode}):\n{tail}")
