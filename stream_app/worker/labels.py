"""One micro-batch of ``labels`` records: join each to its prediction (by event_id), feed the merchant's
label windows (fraud rate over 7 days, by label_time), and say what the label log and the online quality
measurement get (the runner applies those after the state commit, so a retried batch counts once).

A label whose prediction is unknown (older than the index TTL, or scored before this deployment) can't
be attributed to a merchant: it is counted as unjoined, not an error. An undecodable label is a dead
letter like an undecodable transaction. State commit and replay work as for transactions: positions in
the merchant's label windows make a redelivered label a no-op."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stream_app.adapters.label_log import LabelRow
from stream_app.contract import DeadLetter, Label, decode_label
from stream_app.core.engine import FeatureEngine, LabelEvent, WindowState
from stream_app.core.windows import Outcome
from stream_app.errors import InvalidRecordError
from stream_app.worker.ports import PredictionIndexPort, RawRecord, StatePort


@dataclass
class LabelBatchResult:
    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    replayed: int = 0
    late: int = 0
    unjoined: int = 0
    records: int = 0
    state: WindowState = field(default_factory=WindowState)
    joined: list[LabelRow] = field(default_factory=list)  # newly applied labels, for the log and quality


class LabelProcessor:
    def __init__(self, *, allowed_lateness_s: float, state: StatePort, index: PredictionIndexPort,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.allowed_lateness_s = allowed_lateness_s
        self.state = state
        self.index = index
        self.clock = clock

    def dead_letter(self, record: RawRecord, error: InvalidRecordError) -> DeadLetter:
        return DeadLetter.of(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                             value=record.value, error=error, failed_at=self.clock())

    def process(self, records: Sequence[RawRecord]) -> LabelBatchResult:
        result = LabelBatchResult(records=len(records))
        decoded: list[tuple[RawRecord, Label]] = []
        for record in records:
            try:
                decoded.append((record, decode_label(record.value)))
            except InvalidRecordError as error:
                result.dead_letters.append(self.dead_letter(record, error))
        found = self.index.lookup([label.event_id for _, label in decoded])
        joined = [(r, label, hit) for (r, label), hit in zip(decoded, found, strict=True) if hit is not None]
        result.unjoined = len(decoded) - len(joined)
        if not joined:
            return result
        merchants = sorted({int(hit.merchant_id) for _, _, hit in joined})
        state = self.state.load([], merchants)
        engine = FeatureEngine(self.allowed_lateness_s, state)
        for record, label, hit in joined:
            outcome = engine.on_label(LabelEvent(label.event_id, int(hit.merchant_id),
                                                 label.is_fraud, label.label_time.timestamp(),
                                                 (record.partition, record.offset)))
            if outcome is Outcome.APPLIED:
                result.applied += 1
                result.joined.append(LabelRow(label.event_id, label.user_id, int(hit.merchant_id), label.is_fraud,
                                              label.label_time, hit.score, hit.model_version))
            elif outcome is Outcome.REPLAY:
                result.replayed += 1
            else:
                result.late += 1
        result.state = state
        return result
