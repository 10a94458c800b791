"""Recent predictions by event_id, in Redis with a TTL: how a delayed label finds its transaction's
merchant (for the merchant label windows) and its score (for online model quality), plus the
transactions' watermark per partition, which tells an early label from an unjoinable one."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import redis

from stream_app.adapters.redis_errors import unavailable_when_down
from stream_app.adapters.redis_writes import RaiseScores, SetValue, Write, applier
from stream_app.contract import Prediction
from stream_app.core.records import Indexed

DEFAULT_TTL_S = 14 * 24 * 3600


class PredictionIndex:
    """Predictions indexed by event_id and per-partition watermarks, under ``{namespace}:`` in Redis.

    Bounded by time, not count: each entry expires ``ttl_s`` after it was written (default 14 days, longer
    than the generator's longest label delay, ``generator.labels.FRAUD_DELAY_US``); a label older than
    that is counted as unjoinable, not an error. The worker commits a batch's entries (``writes``) in
    its window-state commit; ``remember`` applies them alone. One round trip per batch in each direction.
    """

    def __init__(self, client: redis.Redis[bytes], namespace: str, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.client = client
        self.prefix = f"{namespace}:pred:"
        self.watermark_key = f"{namespace}:watermark"
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
                                                           p.event_time.timestamp(), *_twin(twins.get(p.event_id))]),
                     self.ttl_s * 1000) for p in predictions]
        if watermarks:
            out.append(RaiseScores(self.watermark_key, {str(k): v for k, v in watermarks.items()}))
        return out

    def remember(self, predictions: Sequence[Prediction], watermarks: Mapping[int, float] | None = None,
                 shadow: Mapping[str, Prediction] | None = None) -> None:
        """Apply ``writes(predictions, watermarks, shadow)`` now, in one round trip."""
        with unavailable_when_down("remember predictions"):
            self._apply(self.writes(predictions, watermarks, shadow))

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
