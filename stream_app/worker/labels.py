"""One micro-batch of ``labels`` records: join each to its prediction (by event_id), feed the merchant's
label windows (fraud rate over 7 days, by label_time), and say what the label log and the online quality
measurement get (the runner applies those after the state commit, so a retried batch counts once),
and what the state commit removes from the prediction index (the entries of the labels that joined).

An undecodable label is a dead letter like an undecodable transaction. A redelivered label is a no-op:
the labels partitions' committed offsets (written in the same commit) recognise it even once its index
entry is gone, and positions in the merchant's label windows as for transactions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from stream_app.adapters.redis_writes import Write
from stream_app.contract import DeadLetter, Label, decode_label
from stream_app.core.engine import FeatureEngine, LabelEvent, WindowState
from stream_app.core.records import Indexed, LabelRow
from stream_app.core.windows import Outcome
from stream_app.errors import InvalidRecordError, LabelsAheadError
from stream_app.worker.ports import PredictionIndexPort, RawRecord, StatePort


@dataclass
class LabelBatchResult:
    """What one label batch produced: dead letters, counts by outcome, the state to commit with its other
    writes (the index entries to remove, the committed offsets), joined rows."""

    dead_letters: list[DeadLetter] = field(default_factory=list)
    applied: int = 0
    replayed: int = 0
    late: int = 0
    unjoined: int = 0
    records: int = 0
    early: int = 0  # unjoined labels that were early (counted as unjoined too) after the wait ran out
    state: WindowState = field(default_factory=WindowState)
    writes: Sequence[Write] = ()  # committed with ``state``: the prediction index's side of the batch
    joined: list[LabelRow] = field(default_factory=list)  # newly applied labels, for the log and quality
    delays_s: list[float] = field(default_factory=list)  # label time - event time of the joined labels known
    # (shadow version, shadow score, is_fraud) of the newly applied labels whose event a shadow scored too
    shadow_joined: list[tuple[str, float, bool]] = field(default_factory=list)


class LabelProcessor:
    """Joins labels to their predictions and applies them to the merchants' label windows.

    A label at or below its partition's committed offset was in a committed batch: it is replayed, not
    looked up (its index entry is gone). Every label that finds its prediction consumes the entry: the
    commit deletes it, whatever the outcome (applied, late, or replayed by positions), so a label sent
    again for the same event (in the same batch or later) is unjoined and only the first one counts.

    A label whose prediction is unknown (older than the index TTL, or scored before this deployment)
    cannot be attributed to a merchant: it is counted as unjoined, not an error. But a label whose
    prediction is missing while the transactions of its partition have not reached its label_time yet
    is EARLY: the transactions side is behind (catching up, a slower worker). ``process`` then raises
    LabelsAheadError and the runner retries the batch later, up to ``label_join_wait_s``; after that,
    ``hold_early=False`` counts such labels as unjoined, so an idle transactions partition cannot stall
    labels for good. Labels are keyed like transactions (user_id) with the same partition count, so
    label partition p waits for transactions partition p only; with different counts, for the slowest
    transactions partition.
    """

    def __init__(self, *, allowed_lateness_s: float, state: StatePort, index: PredictionIndexPort,
                 transaction_partitions: int, label_partitions: int,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.allowed_lateness_s = allowed_lateness_s
        self.transaction_partitions = transaction_partitions
        self.copartitioned = transaction_partitions == label_partitions
        self.state = state
        self.index = index
        self.clock = clock

    def dead_letter(self, record: RawRecord, error: InvalidRecordError) -> DeadLetter:
        """The dead letter that keeps ``record`` with the reason it was refused."""
        return DeadLetter.of(topic=record.topic, partition=record.partition, offset=record.offset, key=record.key,
                             value=record.value, error=error, failed_at=self.clock())

    def process(self, records: Sequence[RawRecord], hold_early: bool = True) -> LabelBatchResult:
        """Decodes, joins and applies the batch (loads state, writes nothing); LabelsAheadError if some
        labels are early and ``hold_early``."""
        result = LabelBatchResult(records=len(records))
        decoded: list[tuple[RawRecord, Label]] = []
        for record in records:
            try:
                decoded.append((record, decode_label(record.value)))
            except InvalidRecordError as error:
                result.dead_letters.append(self.dead_letter(record, error))
        fresh = self._uncommitted(decoded)
        result.replayed = len(decoded) - len(fresh)
        found = self.index.lookup([label.event_id for _, label in fresh])
        joined: list[tuple[RawRecord, Label, Indexed]] = []
        missing: list[tuple[RawRecord, Label]] = []
        taken: set[str] = set()
        for (record, label), hit in zip(fresh, found, strict=True):
            if hit is None:
                missing.append((record, label))
            elif label.event_id in taken:  # sent again in this batch: the first label took the entry
                result.unjoined += 1
            else:
                taken.add(label.event_id)
                joined.append((record, label, hit))
        result.unjoined += len(missing)
        early = self._early(missing)
        if early and hold_early:
            raise LabelsAheadError(f"{early} of {len(decoded)} labels arrived before their transactions were "
                                   "scored (the transactions side is behind); holding the batch")
        result.early = early
        result.writes = self.index.label_writes([label.event_id for _, label, _ in joined], _last_offsets(records))
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
                if hit.event_time is not None:
                    result.delays_s.append(label.label_time.timestamp() - hit.event_time)
                if hit.shadow_score is not None:
                    result.shadow_joined.append((hit.shadow_version, hit.shadow_score, label.is_fraud))
            elif outcome is Outcome.REPLAY:  # applied by a commit that did not delete its entry
                result.replayed += 1
            else:
                result.late += 1
        result.state = state
        return result

    def _uncommitted(self, decoded: list[tuple[RawRecord, Label]]) -> list[tuple[RawRecord, Label]]:
        """The labels above their partition's committed offset (the others are replays)."""
        if not decoded:
            return []
        partitions = sorted({r.partition for r, _ in decoded})
        committed = dict(zip(partitions, self.index.committed_offsets(partitions), strict=True))
        return [(r, label) for r, label in decoded
                if (done := committed[r.partition]) is None or r.offset > done]

    def _early(self, missing: list[tuple[RawRecord, Label]]) -> int:
        """How many unjoined labels are ahead of their transactions partition's watermark."""
        if not missing:
            return 0
        if self.copartitioned:
            partitions = sorted({r.partition for r, _ in missing})
            marks = dict(zip(partitions, self.index.watermarks(partitions), strict=True))
            return sum(1 for r, label in missing if _behind(marks[r.partition], label))
        slowest = self.index.watermarks(range(self.transaction_partitions))
        mark = None if any(m is None for m in slowest) else min(m for m in slowest if m is not None)
        return sum(1 for _, label in missing if _behind(mark, label))


def _behind(watermark: float | None, label: Label) -> bool:
    """Transactions have not reached the label's time (no watermark yet: nothing scored there yet)."""
    return watermark is None or watermark < label.label_time.timestamp()


def _last_offsets(records: Iterable[RawRecord]) -> dict[int, int]:
    """The last offset of each partition among ``records``."""
    last: dict[int, int] = {}
    for r in records:
        last[r.partition] = max(r.offset, last.get(r.partition, r.offset))
    return last
