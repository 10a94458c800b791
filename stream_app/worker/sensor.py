"""The one interface through which the worker reports what happens: the runners, the model source and the
state store's timing wrapper call a ``WorkerSensor``; ``NULL_SENSOR`` ignores everything (unit tests, bench
harnesses). The Prometheus implementation is ``stream_app.adapters.prometheus_metrics.PrometheusSensor``.
See docs/decisions/0019-metrics-through-one-sensor.md."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Literal, Protocol

import numpy as np

from stream_app.adapters.redis_writes import HashRead, Write
from stream_app.contract import DeadLetter
from stream_app.core.engine import WindowState
from stream_app.core.observations import BatchSeen, ScoredSeen, ServedModel, ShadowSeen
from stream_app.errors import RetryBatchError
from stream_app.worker.ports import BatchStatePort, RawRecord
from stream_app.worker.processor import BatchResult

RetryReason = Literal["unavailable", "conflict", "labels_ahead", "error"]
RedisOp = Literal["load", "commit"]
USER_VIEW, MERCHANT_VIEW = "user_windows", "merchant_windows"


class WorkerSensor(Protocol):
    """Told what happened; must be cheap (called on the event loop, ``on_redis`` on the lane thread)."""

    def on_batch(self, batch: BatchSeen) -> None:
        """A batch of either topic went through its effects."""
    def on_scored(self, scored: ScoredSeen) -> None:
        """A transactions batch's predictions were acknowledged and its state committed."""
    def on_labels(self, delays_s: Sequence[float]) -> None:
        """Labels were joined to their predictions and committed; their label time - event time."""
    def on_retry(self, reason: RetryReason) -> None:
        """A batch is to be attempted again."""
    def on_outage(self, seconds: float) -> None:
        """``seconds`` were spent waiting for an unavailable dependency."""
    def on_redis(self, op: RedisOp, seconds: float, failed: bool) -> None:
        """One Redis round trip of the window state store."""
    def on_model_loaded(self, model: ServedModel) -> None:
        """``model`` serves from now on (at start, and after each successful reload)."""
    def on_model_failed(self) -> None:
        """A new version was refused (it could not be loaded or failed its checks); the previous one still serves."""


class NullSensor:
    """A sensor that ignores everything."""

    def on_batch(self, batch: BatchSeen) -> None: ...
    def on_scored(self, scored: ScoredSeen) -> None: ...
    def on_labels(self, delays_s: Sequence[float]) -> None: ...
    def on_retry(self, reason: RetryReason) -> None: ...
    def on_outage(self, seconds: float) -> None: ...
    def on_redis(self, op: RedisOp, seconds: float, failed: bool) -> None: ...
    def on_model_loaded(self, model: ServedModel) -> None: ...
    def on_model_failed(self) -> None: ...


NULL_SENSOR: WorkerSensor = NullSensor()


def batch_seen(records: Sequence[RawRecord], seconds: float, dead_letters: Sequence[DeadLetter]) -> BatchSeen:
    """What ``on_batch`` is told about a batch of ``records`` (one topic per agent)."""
    topic = records[0].topic if records else ""
    return BatchSeen(topic, Counter(r.partition for r in records), seconds,
                     Counter(str(d.error.code) for d in dead_letters))


def scored_seen(result: BatchResult) -> ScoredSeen:
    """What ``on_scored`` is told about a transactions batch whose outputs were acknowledged (at
    ``result.acked_at``). A record without a broker timestamp measures latency from its event time."""
    predictions = result.predictions
    n = len(predictions)
    if n == len(result.scores):
        scores = result.scores
    else:  # the broker refused some predictions for good (dead-lettered instead)
        scores = np.fromiter((p.score for p in predictions), dtype=np.float64, count=n)
    entered = np.fromiter((r.timestamp_ms / 1000 if r.timestamp_ms is not None else p.event_time.timestamp()
                           for p, r in zip(predictions, result.sources, strict=True)), dtype=np.float64, count=n)
    newest = {view: _newest(rows) for view, rows in ((USER_VIEW, result.user_rows),
                                                     (MERCHANT_VIEW, result.merchant_rows)) if rows}
    shadow = (ShadowSeen(result.shadow[0].model_version, result.shadow_threshold, result.champion_threshold,
                         result.scores, result.shadow_scores) if result.shadow else None)
    return ScoredSeen(valid=len(result.scores), replayed=result.replayed, scores=scores,
                      declined=sum(1 for p in predictions if p.decision == "decline"),
                      latencies_s=np.maximum(result.acked_at - entered, 0.0), model_version=result.model_version,
                      features=result.features, matrix=result.matrix, newest=newest, shadow=shadow)


def _newest(rows: Sequence[tuple[int, datetime, object]]) -> float:
    return max(row[1] for row in rows).timestamp()


class TimedState:
    """A window state store whose loads and commits are timed and reported to ``sensor.on_redis``; a
    failure other than a detected conflict (the round trip worked) counts as failed."""

    def __init__(self, state: BatchStatePort, sensor: WorkerSensor) -> None:
        self.state = state
        self.sensor = sensor

    @contextlib.contextmanager
    def _timed(self, op: RedisOp) -> Iterator[None]:
        """Reports the round trip inside the block as ``op``; failed unless it returned or found a conflict."""
        started, failed = time.perf_counter(), True
        try:
            yield
            failed = False
        except RetryBatchError:
            failed = False
            raise
        finally:
            self.sensor.on_redis(op, time.perf_counter() - started, failed)

    def load(self, user_ids: Sequence[int], merchant_ids: Sequence[int]) -> WindowState:
        with self._timed("load"):
            return self.state.load(user_ids, merchant_ids)

    def load_with(self, user_ids: Sequence[int], merchant_ids: Sequence[int], reads: Sequence[HashRead],
                  ) -> tuple[WindowState, list[list[bytes | None]]]:
        with self._timed("load"):
            return self.state.load_with(user_ids, merchant_ids, reads)

    def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
        with self._timed("commit"):
            self.state.commit(state, also)

    def invalidate(self) -> None:
        self.state.invalidate()
