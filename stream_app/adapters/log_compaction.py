"""Compaction of a log's hour directories: the sink's parquet parts of one hour merged into one part.

``merge_parts`` reads every ``part-stream-*`` part of a directory, drops rows identical in every column,
writes the result atomically (``offline_log.write_part``) and only then removes the parts it read, so a
crash in between leaves identical duplicates (which Feast and ``read_labels`` ignore). A part is removed
only if it is still the file that was read: the sink may rewrite a part of the same name on a replay
(0017), and that version stays for the next pass. Why:
docs/decisions/0020-compacting-closed-hours.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from stream_app.adapters.files import fsync_dir
from stream_app.adapters.offline_log import write_part
from stream_app.core.offline_layout import hour_of
from stream_app.errors import ServiceUnavailableError

log = logging.getLogger(__name__)
STREAM_PARTS = "part-stream-*.parquet"  # the sink's parts and the merged parts; never the backfill's
MERGED_PREFIX = "part-stream-compact-"
_SET_ASIDE = ".merged"  # suffix of a part renamed aside for removal (".<name>.<id>.merged": no glob matches it)

Conform = Callable[[pd.DataFrame], pd.DataFrame]
Identity = tuple[int, int, int, int]  # device, inode, size, mtime: a rewrite (os.replace) changes the inode


@dataclass(frozen=True)
class Merged:
    """One directory's merge: the part written, how many parts it replaced and how many rows it holds."""

    path: Path
    inputs: int
    removed: int  # inputs removed; fewer if some were rewritten or removed by another compaction meanwhile
    rows: int
    duplicates: int  # identical rows dropped


def hour_directories(log_dir: Path) -> list[tuple[datetime, Path]]:
    """The hour directories of a log (``core.offline_layout.hour_dir`` names) with their hour, in order."""
    if not log_dir.is_dir():
        return []
    hours = ((hour_of(d.name), d) for d in log_dir.iterdir() if d.is_dir())
    return sorted((hour, d) for hour, d in hours if hour is not None)


def closed_hours(log_dir: Path, closed_before: datetime) -> list[Path]:
    """The hour directories of ``log_dir`` whose hour ended at or before ``closed_before``."""
    return [d for hour, d in hour_directories(log_dir) if hour + timedelta(hours=1) <= closed_before]


def merge_parts(directory: Path, conform: Conform, sort_by: Sequence[str] = ()) -> Merged | None:
    """Merge the parts of ``directory`` into one if it holds more than one; None if there was nothing to do.

    Rows keep the order readers concatenate them in (parts by name, rows in part order) unless
    ``sort_by`` names columns for a stable sort; ``conform`` gives every part the log's columns and
    dtypes (ValueError if a part has others: the directory is left as it is)."""
    _put_back_set_aside(directory)
    inputs = sorted(p for p in directory.glob(STREAM_PARTS) if p.is_file())
    if len(inputs) < 2:
        return None
    frames, read = [], {}
    for path in inputs:
        try:
            with open(path, "rb") as handle:
                identity = _identity(os.fstat(handle.fileno()))
                frames.append(conform(pd.read_parquet(handle)))
        except FileNotFoundError:  # removed by another compaction, after its merged part was written
            continue
        except OSError as exc:
            raise ServiceUnavailableError(f"log compaction: cannot read {path}: {exc}") from exc
        read[path] = identity
    if len(read) < 2:
        return None
    together = pd.concat(frames, ignore_index=True)
    merged = together.drop_duplicates(ignore_index=True)
    if sort_by:
        merged = merged.sort_values(list(sort_by), kind="stable", ignore_index=True)
    digest = hashlib.sha256("\n".join(p.name for p in read).encode()).hexdigest()[:16]
    target = write_part(merged, directory / f"{MERGED_PREFIX}{digest}.parquet", "compact")
    removed = sum(_remove_if_unchanged(path, identity) for path, identity in read.items() if path != target)
    fsync_dir(directory)
    return Merged(target, len(read), removed, len(merged), len(together) - len(merged))


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _remove_if_unchanged(path: Path, identity: Identity) -> bool:
    """Remove ``path`` if it is still the file that was read. It is first renamed aside (atomically, so a
    rewrite cannot slip in between the check and the removal); a file that turns out to be a rewrite
    goes back under its name."""
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{_SET_ASIDE}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another compaction removed it
        return False
    except OSError as exc:
        raise ServiceUnavailableError(f"log compaction: cannot remove {path}: {exc}") from exc
    try:
        same = _identity(os.stat(aside)) == identity
    except FileNotFoundError:  # another compaction put it back meanwhile
        return False
    if same:
        aside.unlink(missing_ok=True)
        return True
    log.info("log compaction: %s was rewritten while it was merged; kept for the next pass", path)
    _put_back(aside, path)
    return False


def _put_back(aside: Path, path: Path) -> None:
    """``aside`` back under ``path``, unless a part of that name exists again: the sink rewrote it, and
    that version supersedes ``aside`` as the sink's own overwrite would have."""
    try:
        os.link(aside, path)
    except FileExistsError:
        pass
    except FileNotFoundError:  # another compaction put it back first
        return
    aside.unlink(missing_ok=True)


def _put_back_set_aside(directory: Path) -> None:
    """Parts a crashed compaction left renamed aside go back under their names: whether their rows were
    merged or not cannot be told, and a part merged twice is an identical duplicate."""
    for aside in directory.glob(f".part-stream-*{_SET_ASIDE}"):
        name = aside.name[1:-len(_SET_ASIDE)].rsplit(".", 1)[0]
        log.warning("log compaction: putting back %s, set aside by an interrupted compaction", name)
        _put_back(aside, aside.with_name(name))
