"""Predictions waiting for their label, by event_id, in Redis: how a delayed label finds its
transaction's merchant (for the merchant label windows) and its score (for online model quality), plus
the transactions' watermark per partition, which tells an early label from an unjoinable one, and the
labels' committed offset per partition, which tells a replayed label from an unjoined one."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import redis

from stream_app.adapters.redis_errors import unavailable_when_down
from stream_app.adapters.redis_writes import Delete, RaiseScores, SetValue, Write, applier
from stream_app.contract import Prediction
from stream_app.core.records import Indexed

DEFAULT_TTL_S = 14 * 24 * 3600


class PredictionIndex:
    """Predictions indexed by event_id, per-partition watermarks and the labels' committed offsets, under
    ``{namespace}:`` in Redis.

    An entry lives until its label joins (``label_writes`` deletes it in the label batch's commit) or,
    for a transaction never labelled, until ``ttl_s`` after it was written (default 14 days, longer than
    the generator's longest label delay, ``generator.labels.FRAUD_DELAY_US``): the index holds about
    rate x label delay entries, plus the never-labelled ones of the last ``ttl_s``. A label older than
    that is counted as unjoinable, not an error. The worker commits a batch's entries (``writes``) in
    its window-state commit; ``remember`` applies them alone. One round trip per read or write.
    """

    def __init__(self, client: redis.Redis[bytes], namespace: str, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.client = client
        self.prefix = f"{namespace}:pred:"
        self.watermark_key = f"{namespace}:watermark"
        self.label_offsets_key = f"{namespace}:label_offsets"
        self.ttl_s = ttl_s
        self._apply = applier(client)

    def writes(self, predictions: Sequence[Prediction], watermarks: Mapping[int, float] | None = None,
               shadow: Mapping[str, Prediction] | None = None) -> list[Write]:
        """The writes that index ``predictions`` (with the score and version of each one's shadow twin in
        ``shadow``, by event id, when there is one) and move the partitions' ``watermarks`` (epoch seconds)
        forward (ZADD GT)."""
        twins = shadow or {}
        out: list[Write] = [
            SetValue(self.prefix + p.event_id, json.dumps([p.merchant_id, p.score, p.model_version,
                                                           p.event_time.timestamp(), *_twin(twins.get(p.event_id))],
                                                          separators=(",", ":")),
                     self.ttl_s * 1000) for p in predictions]
        if watermarks:
            out.append(RaiseScores(self.watermark_key, {str(k): v for k, v in watermarks.items()}))
        return out

    def remember(self, predictions: Sequence[Prediction], watermarks: Mapping[int, float] | None = None,
                 shadow: Mapping[str, Prediction] | None = None) -> None:
        """Apply ``writes(predictions, watermarks, shadow)`` now, in one round trip."""
        with unavailable_when_down("remember predictions"):
            self._apply(self.writes(predictions, watermarks, shadow))

    def label_writes(self, event_ids: Sequence[str], offsets: Mapping[int, int]) -> list[Write]:
        """The writes, for a label batch's state commit, that delete the entries of ``event_ids`` (the
        labels that found their prediction) and move the labels partitions' committed ``offsets`` (the
        batch's last offset in each) forward (ZADD GT).

        Deleted, not kept with a short grace TTL: a grace TTL costs rate x grace entries and still
        miscounts a batch redelivered after it (a worker down longer than the grace), while the offsets,
        committed in the same atomic step as the deletions and the label windows, recognise a replayed
        label at any age without its entry (``committed_offsets``). A label sent again for an event
        whose label has joined finds no entry: it is unjoined, so the first label of an event is the
        one applied. Why: docs/decisions/0027-prediction-index-bounded-by-label-delay.md."""
        out: list[Write] = [Delete(self.prefix + e) for e in event_ids]
        if offsets:
            out.append(RaiseScores(self.label_offsets_key, {str(k): float(v) for k, v in offsets.items()}))
        return out

    def committed_offsets(self, partitions: Sequence[int]) -> list[int | None]:
        """The labels partitions' last committed offsets, None where no label batch was committed yet.

        A label at or below its partition's offset was in a committed batch (a partition's batches are
        committed in order, one in flight): its redelivery is a replay, whether its entry is gone or not."""
        if not partitions:
            return []
        with unavailable_when_down("read label offsets"):
            scores = self.client.zmscore(self.label_offsets_key, [str(p) for p in partitions])  # type: ignore[no-untyped-call]
        return [None if v is None else int(v) for v in scores]

    def watermarks(self, partitions: Sequence[int]) -> list[float | None]:
        """The transactions partitions' watermarks (epoch seconds), None where none was recorded yet.

        A watermark is the newest event_time indexed for the partition (a sorted set updated with
        ZADD GT, so it only moves forward). A label whose prediction is missing while the watermark is
        still behind its label_time is early (its transaction has not been scored yet), not unjoinable."""
        if not partitions:
            return []
        with unavailable_when_down("read watermarks"):
            scores = self.client.zmscore(self.watermark_key, [str(p) for p in partitions])  # type: ignore[no-untyped-call]
        return [None if v is None else float(v) for v in scores]

    def lookup(self, event_ids: Sequence[str]) -> list[Indexed | None]:
        """The indexed prediction of each event id, in order; None where none is indexed (or it expired)."""
        if not event_ids:
            return []
        with unavailable_when_down("look up predictions"):
            raw = self.client.mget([self.prefix + e for e in event_ids])
        out: list[Indexed | None] = []
        for value in raw:
            if value is None:
                out.append(None)
                continue
            merchant, score, version, *rest = json.loads(value)
            out.append(Indexed(int(merchant), float(score), str(version), float(rest[0]) if rest else None,
                               float(rest[1]) if len(rest) > 2 else None, str(rest[2]) if len(rest) > 2 else ""))
        return out


def _twin(shadow: Prediction | None) -> list[float | str]:
    """The shadow twin's score and version, as the index entry's last two items (none without a twin)."""
    return [] if shadow is None else [shadow.score, shadow.model_version]
