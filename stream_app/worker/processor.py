"""One micro-batch of ``transactions`` records in, everything the worker must emit out.

``BatchProcessor.process`` computes: it reads window state and the profiles the worker does not hold in
one round trip, and writes nothing; the runner applies the effects afterwards (``BatchRunner``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_app.contract import (
    DeadLetter,
    ErrorCode,
    Prediction,
    Transaction,
    decode_transaction,
)
from stream_app.core import request_features
from stream_app.core.engine import (
    DEFAULT_MAX_FUTURE_SKEW_S,
    FeatureEngine,
    TransactionEvent,
    WindowRows,
    WindowState,
)
from stream_app.core.records import WindowRow
from stream_app.core.scoring import as_features, assemble
from stream_app.core.windows import Outcome
from stream_app.errors import InvalidRecordError
from stream_app.worker.ports import BatchStatePort, ModelPort, OnlineStorePort, RawRecord, ShadowPort


@dataclass
class BatchResult:
    """What one transactions batch produced: outputs, served rows, the state to commit, watermarks, and what
    the model scored."""

    predictions: list[Prediction] = field(default_factory=list)
    sources: list[RawRecord] = field(default_factory=list)  # the record each prediction answers
    dead_letters: list[DeadLetter] = field(default_factory=list)
    user_rows: list[WindowRow] = field(default_factory=list)
    merchant_rows: list[WindowRow] = field(default_factory=list)
    state: WindowState = field(default_factory=WindowState)
    replayed: int = 0
    records: int = 0
    watermarks: dict[int, float] = field(default_factory=dict)  # partition -> newest valid event_time
    # what the model scored: its version, its features, the (events × features) matrix and the scores
    model_version: str = ""
    features: tuple[str, ...] = ()
    matrix: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty((0, 0), dtype=np.float64))
    scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    acked_at: float = 0.0  # when the broker acknowledged the outputs (epoch seconds; 0: not yet)
    # the shadow model's twin of each prediction (same order), its threshold and scores; empty without a shadow
    shadow: list[Prediction] = field(default_factory=list)
    shadow_threshold: float = 0.0
    shadow_scores: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    champion_threshold: float = 0.0


@dataclass(frozen=True, slots=True)
class _Served:
    record: RawRecord
    txn: Transaction
    rows: WindowRows


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


class BatchProcessor:
    """Decodes, validates, windows, enriches and scores a batch of transactions; writes nothing.

    With a ``shadow`` model set, each prediction gets a shadow twin: the shadow's score and decision of the
    same event, from one more batched predict (on the champion's matrix when both models take the same
    features, else on the shadow's own matrix assembled from the same parts). Only the champion's
    prediction decides; the twin is published to ``predictions.shadow`` for comparison. A shadow that
    fails to score leaves the batch without twins (logged) and never fails the champion's predictions."""

    def __init__(self, *, allowed_lateness_s: float, state: BatchStatePort, online: OnlineStorePort, model: ModelPort,
                 clock: Callable[[], datetime] = _now, max_future_skew_s: float = DEFAULT_MAX_FUTURE_SKEW_S,
                 shadow: ShadowPort | None = None) -> None:
        self.allowed_lateness_s = allowed_lateness_s
        self.max_future_skew_s = max_future_skew_s
        self.state = state
        self.online = online
        self.model = model
        self.shadow = shadow
        self.clock = clock

    def process(self, records: Sequence[RawRecord]) -> BatchResult:
        result = BatchResult(records=len(records))
        decoded: list[tuple[RawRecord, Transaction]] = []
        for record in records:
            try:
                decoded.append((record, decode_transaction(record.value, record.key)))
            except InvalidRecordError as error:
                result.dead_letters.append(self.dead_letter(record, error))
        if not decoded:
            return result
        user_ids, merchant_ids = sorted({t.user_id for _, t in decoded}), sorted({t.merchant_id for _, t in decoded})
        lookup = self.online.lookup_profiles(user_ids, merchant_ids)
        state, replies = self.state.load_with(user_ids, merchant_ids, lookup.reads)
        profiles = lookup.resolve(replies)
        engine = FeatureEngine(self.allowed_lateness_s, state, self.max_future_skew_s)
        served: list[_Served] = []
        for record, txn in decoded:
            entered = None if record.timestamp_ms is None else record.timestamp_ms / 1000
            outcome = engine.on_transaction(TransactionEvent(
                txn.event_id, txn.user_id, txn.merchant_id, txn.amount, txn.event_time.timestamp(),
                (record.partition, record.offset), entered))
            if outcome is Outcome.REPLAY:
                result.replayed += 1
            elif outcome is Outcome.FUTURE:
                result.dead_letters.append(self.dead_letter(record, InvalidRecordError(
                    ErrorCode.FUTURE, f"event_time {txn.event_time.isoformat()} is more than "
                    f"{self.max_future_skew_s:g} s ahead of the record's Kafka timestamp "
                    f"{datetime.fromtimestamp(entered or 0.0, UTC).isoformat()}")))
            elif outcome is Outcome.DUPLICATE:
                result.dead_letters.append(self.dead_letter(record, InvalidRecordError(
                    ErrorCode.DUPLICATE, f"event_id {txn.event_id!r} was already applied for user {txn.user_id} "
                    "(a re-sent record, or the id reused): its prediction was published then; not counted again")))
            elif outcome is Outcome.LATE:
                result.dead_letters.append(self.dead_letter(record, InvalidRecordError(
                    ErrorCode.LATE, f"event_time {txn.event_time.isoformat()} is older than the allowed lateness "
                    f"({self.allowed_lateness_s:g} s) behind user {txn.user_id}'s newest event")))
            elif isinstance(outcome, WindowRows):
                served.append(_Served(record, txn, outcome))
            if outcome is not Outcome.FUTURE:  # a future-dated event must not move the partition's clock
                t = txn.event_time.timestamp()
                if t > result.watermarks.get(record.partition, float("-inf")):
                    result.watermarks[record.partition] = t
        result.state = state
        if served:
            self._score(served, result, *profiles)
            self.model.scored(result.features, result.matrix)
        return result

    def _score(self, served: list[_Served], result: BatchResult, users: Mapping[int, Mapping[str, Any]],
               merchants: Mapping[int, Mapping[str, Any]]) -> None:
        scorer = self.model.current()
        parts = []
        for item in served:
            txn = item.txn
            user_profile, merchant_profile = users[txn.user_id], merchants[txn.merchant_id]
            request = request_features.compute(
                amount=txn.amount, country=txn.country, channel=txn.channel, event_hour=txn.event_time.hour,
                user_mean_24h=item.rows.user.get("user_amount_mean_24h"),
                home_country=user_profile.get("home_country"))
            parts.append([item.rows.user, item.rows.merchant, user_profile, merchant_profile, request])
            result.user_rows.append((txn.user_id, txn.event_time, item.rows.user))
            result.merchant_rows.append((txn.merchant_id, txn.event_time, item.rows.merchant))
        matrix = assemble(scorer.features, parts)
        scores = scorer.score(matrix)
        decisions = scorer.decide(scores)
        scored_at = self.clock()
        result.model_version, result.features, result.matrix, result.scores, result.champion_threshold = (
            scorer.version, scorer.features, matrix, scores, scorer.threshold)
        shadow = None if self.shadow is None else self.shadow.current()
        if shadow is not None:
            try:
                shadow_matrix = matrix if shadow.features == scorer.features else assemble(shadow.features, parts)
                shadow_scores = shadow.score(shadow_matrix)
            except ValueError:  # XGBoostError too: the shadow must never fail the champion's batch
                log.exception("shadow model %s could not score the batch: no shadow predictions", shadow.version)
                shadow = None
            else:
                result.shadow_scores, result.shadow_threshold = shadow_scores, shadow.threshold
                shadow_decisions = shadow.decide(shadow_scores)
        for i, item in enumerate(served):
            entered = (_EPOCH + timedelta(milliseconds=item.record.timestamp_ms)
                       if item.record.timestamp_ms is not None else item.txn.event_time)
            prediction = Prediction(
                event_id=item.txn.event_id, user_id=item.txn.user_id, merchant_id=item.txn.merchant_id,
                score=float(scores[i]), decision=decisions[i], model_version=scorer.version,
                features=as_features(scorer.features, matrix[i]), event_time=item.txn.event_time,
                scored_at=scored_at, latency_ms=max(0.0, (scored_at - entered) / timedelta(milliseconds=1)))
            result.predictions.append(prediction)
            result.sources.append(item.record)
            if shadow is not None:
                result.shadow.append(prediction.model_copy(update={
                    "score": float(result.shadow_scores[i]), "decision": shadow_decisions[i],
                    "model_version": shadow.version, "features": as_features(shadow.features, shadow_matrix[i])}))

    def dead_letter(self, record: RawRecord, error: InvalidRecordError) -> DeadLetter:
        return DeadLetter.of(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                             value=record.value, error=error, failed_at=self.clock())
