"""Compaction of closed hours: each log's hour directories whose hour ended ``grace_s`` ago and hold
several parts are merged into one part (``adapters.log_compaction.merge_parts``), so the files of an
hour are bounded whatever the rate. ``compact_closed_hours`` is one pass (``streamscore sink compact``);
``Compactor`` runs passes on a thread of the sink, off its poll loop. Why:
docs/decisions/0020-compacting-closed-hours.md."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stream_app.adapters.log_compaction import Conform, Merged, closed_hours, merge_parts
from stream_app.errors import ServiceUnavailableError

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CompactTarget:
    """One log to compact: its directory (one sub-directory per hour), how a part read back is checked and
    given the log's dtypes, and the columns merged rows are sorted by (none: the order readers read them)."""

    directory: Path
    conform: Conform
    sort_by: tuple[str, ...] = ()


@dataclass
class CompactionReport:
    """What one pass did: the merges, and the hour directories it could not merge (with why)."""

    merged: list[Merged] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def compact_closed_hours(logs: Mapping[str, CompactTarget], closed_before: datetime,
                         stop: threading.Event | None = None) -> CompactionReport:
    """Merge the parts of every hour directory of ``logs`` whose hour ended by ``closed_before``; an hour
    holding one part is left as it is. A directory that cannot be merged (unreadable, or a part with other
    columns) is reported and skipped. With ``stop``, the pass ends early once it is set."""
    report = CompactionReport()
    for target in logs.values():
        for directory in closed_hours(target.directory, closed_before):
            if stop is not None and stop.is_set():
                return report
            try:
                merged = merge_parts(directory, target.conform, target.sort_by)
            except (OSError, ServiceUnavailableError, ValueError) as exc:  # pyarrow's invalid files: ValueError
                log.error("compaction: cannot merge %s: %s", directory, exc)
                report.failed.append((directory, str(exc)))
                continue
            if merged is not None:
                log.info("compaction: merged %d parts of %s into %s (%d rows, %d duplicates dropped)",
                         merged.inputs, directory, merged.path.name, merged.rows, merged.duplicates)
                report.merged.append(merged)
    return report


class Compactor:
    """Runs ``compact_closed_hours`` every ``every_s`` seconds (the first pass ``every_s`` after ``start``)
    on a thread of its own: a pass reads and writes whole hours, which must not hold up the sink's polls
    and offset commits. ``stop`` lets the directory being merged finish, then joins the thread."""

    def __init__(self, logs: Mapping[str, CompactTarget], *, every_s: float, grace_s: float,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.logs = dict(logs)
        self.every_s = every_s
        self.grace = timedelta(seconds=grace_s)
        self.clock = clock
        self.passes = 0
        self.merged = 0  # hour directories merged since start
        self.failed = 0  # hour directories that could not be merged, counted once per pass
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> CompactionReport:
        """One pass over the hours closed by now."""
        report = compact_closed_hours(self.logs, self.clock() - self.grace, self._stop)
        self.passes += 1
        self.merged += len(report.merged)
        self.failed += len(report.failed)
        return report

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sink-compactor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:  # a failed pass must not end compaction for the sink's lifetime: retried next time
                log.exception("compaction: the pass failed")
