"""The stream worker as a child process (``python -m stream_app worker``; the sink, ``SINK_ARGS``, alike), as
it runs in production, with its output appended to a log file. Used by the demo, the benchmarks and the
integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from stream_app.settings import REPO_ROOT

WORKER_ARGS = ("-m", "stream_app", "worker")
SINK_ARGS = ("-m", "stream_app", "sink")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a worker's web server or a local service)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """``python <args>`` (the worker unless told otherwise) with ``os.environ`` updated by ``env``, unbuffered
    output appended to ``log``, running in ``cwd`` (Faust creates its data directory there).

    The child runs in its own session: a Ctrl-C in the terminal reaches the parent only, which then stops
    the child with ``stop`` (SIGTERM: the worker finishes the batch in flight before acking) or ``kill``.
    As a context manager it is stopped on exit."""

    def __init__(self, env: Mapping[str, str], log: Path, *, args: Sequence[str] = WORKER_ARGS,
                 cwd: Path = REPO_ROOT) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, *args], cwd=cwd,
                                     env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                                     stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)
        self._terminated = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while the process runs."""
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """Everything in the log so far ("" if it cannot be read)."""
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 25) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.output().splitlines()[-lines:])

    def terminate(self) -> None:
        """SIGTERM (once) without waiting: several processes can be told to stop at once, then ``stop``ped."""
        if self.alive() and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``. Returns the exit code."""
        try:
            if self.alive():
                self.terminate()
                try:
                    self.proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=30)
            return int(self.proc.returncode)
        finally:
            self._out.close()

    def kill(self) -> int:
        """SIGKILL (a crash: nothing in flight finishes) and wait for the exit. Returns the exit code."""
        try:
            self.proc.send_signal(signal.SIGKILL)
            return int(self.proc.wait(timeout=30))
        finally:
            self._out.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
