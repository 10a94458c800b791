"""The offline pipeline as the Makefile runs it (history → backfill → feast apply → train → promote →
materialize), through the same ``streamscore`` commands (``python -m stream_app``), each a subprocess
with its output in ``logs/<step>.log``.

Running the CLIs rather than calling the libraries keeps the demo honest: it shows what ``make
pipeline`` does. The environment points them at the demo's private workspace."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stream_app.demo.config import DemoConfig
from stream_app.settings import REPO_ROOT


class StepError(RuntimeError):
    """A pipeline step exited non-zero; the message carries the tail of its log."""


@dataclass(frozen=True)
class Step:
    """One pipeline step: its name (also its log's) and the command line that runs it."""

    name: str
    argv: list[str]


def pipeline_steps(config: DemoConfig, now: datetime | None = None, ends_by: datetime | None = None) -> list[Step]:
    """The Makefile's ``pipeline`` with the demo's sizes. History ends at the midnight (UTC) on or before
    ``ends_by`` (default: today's, as in the Makefile), so ``materialize-incremental`` (whose first run
    starts at now - TTL) loads the latest daily profiles. The backfill also seeds the worker's window state
    (``--seed-state``): a live stream after the history continues it."""
    now = now or datetime.now(UTC)
    cli = [sys.executable, "-m", "stream_app"]
    history = str(config.history_dir)
    start = ((ends_by or now) - timedelta(days=config.days)).strftime("%Y-%m-%d")
    return [
        Step("history", [*cli, "generate", "history", "--days", str(config.days),
                         "--users", str(config.users), "--merchants", str(config.merchants),
                         "--seed", str(config.seed), "--start", start, "--out", history]),
        Step("backfill", [*cli, "backfill", "--history", history, "--seed-state", "--no-progress"]),
        Step("feast-apply", [*cli, "feast", "apply"]),
        Step("train", [*cli, "train", "--history", history]),
        Step("promote", [*cli, "promote", "latest"]),
        Step("materialize", [*cli, "feast", "materialize-incremental",
                             now.strftime("%Y-%m-%dT%H:%M:%S"), "--views", "user_profile",
                             "--views", "merchant_profile"]),
    ]


def last_line(text: str, *, containing: str | None = None) -> str:
    """The last non-empty line (the last one containing ``containing`` when given), for a one-line report."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if containing is not None:
        lines = [line for line in lines if containing in line] or lines
    return lines[-1] if lines else ""


def run_step(argv: Sequence[str], env: Mapping[str, str], log: Path, timeout_s: float = 900.0) -> float:
    """Run one CLI to completion with output in ``log``; returns seconds taken. The child is in its own
    session so a Ctrl-C reaches only the demo, which then stops the child itself."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=REPO_ROOT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout_s)
        except BaseException:  # Ctrl-C, SIGTERM or timeout: don't leave the child running
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    if rc != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise StepError(f"{' '.join(argv[1:4])} ... failed (exit {rc}); last lines of {log}:\n{tail}")
    return time.monotonic() - t0
