"""What the worker reports to its sensor about each batch (``stream_app.worker.sensor``): plain values and
arrays, built once per batch, so a sensor needs no per-event work and no worker types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _empty() -> FloatArray:
    return np.empty(0, dtype=np.float64)


@dataclass(frozen=True)
class BatchSeen:
    """One batch of one topic through its effects: records per partition, wall time, dead letters by
    reason (a contract ErrorCode)."""

    topic: str
    partitions: Mapping[int, int]
    seconds: float
    dead_letters: Mapping[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(self.partitions.values())


@dataclass(frozen=True)
class ShadowSeen:
    """A shadow model's scoring of a batch's events: its version and threshold, the champion's threshold,
    and both models' scores of the same events in the same order."""

    version: str
    threshold: float
    champion_threshold: float
    champion_scores: FloatArray
    scores: FloatArray


@dataclass(frozen=True)
class ScoredSeen:
    """A transactions batch's scoring: events applied and scored (``valid``), replays, the published
    predictions' scores, declines and latencies (record timestamp -> acknowledged, seconds), the feature
    matrix the model scored (events × ``features``, NaN = missing) and, per window view, the newest event
    time (epoch seconds) written to the online store."""

    valid: int = 0
    replayed: int = 0
    scores: FloatArray = field(default_factory=_empty)
    declined: int = 0
    latencies_s: FloatArray = field(default_factory=_empty)
    model_version: str = ""
    features: tuple[str, ...] = ()
    matrix: FloatArray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float64))
    newest: Mapping[str, float] = field(default_factory=dict)
    shadow: ShadowSeen | None = None  # the shadow model's scores of the same events, when one is set


@dataclass(frozen=True)
class ServedModel:
    """The model a worker serves now: version, alias, threshold, features and reference distributions."""

    version: str
    alias: str
    threshold: float
    features: tuple[str, ...]
    reference: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
