"""The stream worker as a real subprocess (``python -m stream_app worker``), as it runs in production: the
demo talks to it only through Kafka. Stopped with SIGTERM so the batch in flight finishes before acks."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from stream_app.settings import REPO_ROOT


class WorkerProcess:
    """A started ``python -m stream_app worker`` child with its output appended to ``log``."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._out = log.open("ab")
        # own session: a Ctrl-C in the terminal reaches the demo only, which then stops the worker cleanly
        self.proc = subprocess.Popen([sys.executable, "-m", "stream_app", "worker"], env=dict(env), cwd=REPO_ROOT,
                                     stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 45.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``. Returns the exit code."""
        try:
            if self.alive():
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            return int(self.proc.returncode)
        finally:
            self._out.close()
