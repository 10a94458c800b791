"""Rolled parts: rows buffered per log and hour, written as one parquet part when the buffer is full or
old enough, and the consumed positions that are safe to commit (nothing in an unwritten part).

A part is named after the first source position of each partition it holds (``part-stream-p0-10+p3-7``,
``offline_log.part_name``). After a crash the sink resumes from its committed positions, which are never
past a record of an unwritten part, so every record of a part is replayed whenever its first positions
are: a replayed part with the same name holds the same rows and maybe more, never fewer (the rest go to
the next part). A replayed part with another name duplicates rows identically; Feast keeps one row per
entity, event and created timestamp, and ``read_labels`` one per event_id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stream_app.adapters.files import make_dirs_durable
from stream_app.adapters.offline_log import part_name, write_part
from stream_app.sink.sensor import NULL_SINK_SENSOR, SinkSensor

log = logging.getLogger(__name__)
TopicPartition = tuple[str, int]
Position = tuple[str, int, int]  # (topic, partition, offset) of a consumed record


@dataclass(frozen=True)
class LogTarget:
    """One log the sink writes: its directory (one sub-directory per hour) and how rows become a frame."""

    directory: Path
    frame: Callable[[Sequence[Any]], pd.DataFrame]


@dataclass
class OpenPart:
    """The rows of one log and hour not written yet, with the first position of each partition in it."""

    opened_at: float
    rows: list[Any] = field(default_factory=list)
    first: dict[TopicPartition, int] = field(default_factory=dict)


PartKey = tuple[str, str]  # (log, hour directory)


class RollingParts:
    """Buffers rows per (log, hour); a part is closed when it holds ``max_rows`` rows (the next row opens
    another) or is ``max_age_s`` old, and ``close_due`` writes the closed parts. ``commit_positions`` says
    how far each partition may be committed. ``sensor`` is told of each part written."""

    def __init__(self, logs: Mapping[str, LogTarget], *, max_rows: int, max_age_s: float, writer_id: str,
                 clock: Callable[[], float] = time.monotonic, sensor: SinkSensor = NULL_SINK_SENSOR) -> None:
        self.logs = dict(logs)
        self.sensor = sensor
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self.writer_id = writer_id
        self.clock = clock
        self.parts_written = 0
        self.rows_written = 0
        self._open: dict[PartKey, OpenPart] = {}  # the part of each log and hour that takes new rows
        self._full: list[tuple[PartKey, OpenPart]] = []  # parts that reached max_rows, not written yet
        self._next: dict[TopicPartition, int] = {}  # the position after the last record consumed
        self._start: dict[TopicPartition, int] = {}  # the first position consumed: nothing to commit before it

    @property
    def pending_rows(self) -> int:
        return sum(len(p.rows) for _, p in self._parts())

    def consumed(self, where: Position) -> None:
        """Record the record at ``where`` as consumed, whether or not it produced a row."""
        topic, partition, offset = where
        self._start.setdefault((topic, partition), offset)
        self._next[(topic, partition)] = offset + 1

    def add(self, log_name: str, hour: str, row: Any, where: Position) -> None:
        """Buffer ``row`` (from the record at ``where``) in its log's part of ``hour``."""
        if log_name not in self.logs:
            raise ValueError(f"unknown log {log_name!r}")
        key = (log_name, hour)
        part = self._open.get(key)
        if part is None:
            part = self._open[key] = OpenPart(opened_at=self.clock())
        part.rows.append(row)
        part.first.setdefault(where[:2], where[2])
        self.consumed(where)
        if len(part.rows) >= self.max_rows:
            self._full.append((key, self._open.pop(key)))

    def close_due(self) -> list[Path]:
        """Write the parts that are full or old enough; durable on return."""
        now = self.clock()
        return self._close([key for key, part in self._open.items() if now - part.opened_at >= self.max_age_s])

    def close_all(self) -> list[Path]:
        """Write every part; durable on return."""
        return self._close(list(self._open))

    def commit_positions(self) -> dict[TopicPartition, int]:
        """Per partition with something to commit: the first record still in an unwritten part, or the
        position after the last record consumed."""
        positions = dict(self._next)
        for _, part in self._parts():
            for where, offset in part.first.items():
                positions[where] = min(positions.get(where, offset), offset)
        return {where: offset for where, offset in positions.items() if offset > self._start[where]}

    def forget(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop tracking ``partitions`` (revoked); call after ``close_all``."""
        for where in partitions:
            self._next.pop(where, None)
            self._start.pop(where, None)

    def _parts(self) -> list[tuple[PartKey, OpenPart]]:
        return [*self._full, *self._open.items()]

    def _close(self, keys: Sequence[PartKey]) -> list[Path]:
        """Write the full parts, then the open parts of ``keys``; each is dropped only once durable, so a
        failed write keeps it (and its records uncommitted) for the retry."""
        written = []
        while self._full:
            key, part = self._full[0]
            written.append(self._write(key, part))
            self._full.pop(0)
        for key in keys:
            written.append(self._write(key, self._open[key]))
            del self._open[key]
        return written

    def _write(self, key: PartKey, part: OpenPart) -> Path:
        log_name, hour = key
        started = time.perf_counter()
        target = self.logs[log_name]
        directory = target.directory / hour
        make_dirs_durable(directory)
        name = part_name("stream", [f"p{partition}-{offset}" for (_, partition), offset in sorted(part.first.items())])
        path = write_part(target.frame(part.rows), directory / name, self.writer_id)
        self.parts_written += 1
        self.rows_written += len(part.rows)
        self.sensor.on_part_written(log_name, len(part.rows), time.perf_counter() - started)
        log.info("wrote %d rows to %s", len(part.rows), path)
        return path
