"""Recent predictions by event_id, in Redis with a TTL: how a delayed label finds its transaction's
merchant (for the merchant label windows) and its score (for online model quality).

Bounded by time, not count: each entry expires ``ttl_s`` after it was written (default 14 days, the
chargeback horizon the generator and most card schemes use). A label older than that is counted as
unjoinable, not an error. One pipelined round trip per batch in each direction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

from stream_app.contract import Prediction
from stream_app.errors import ServiceUnavailableError
from stream_app.worker.ports import Indexed

DEFAULT_TTL_S = 14 * 24 * 3600


@contextmanager
def _mapped(operation: str) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError) as exc:
        raise ServiceUnavailableError(f"redis {operation}: {exc}") from exc


class PredictionIndex:
    def __init__(self, client: redis.Redis[bytes], namespace: str, ttl_s: int = DEFAULT_TTL_S) -> None:
        self.client = client
        self.prefix = f"{namespace}:pred:"
        self.ttl_s = ttl_s

    def remember(self, predictions: Sequence[Prediction]) -> None:
        if not predictions:
            return
        with _mapped("remember predictions"):
            pipe = self.client.pipeline(transaction=False)
            for p in predictions:
                pipe.set(self.prefix + p.event_id, json.dumps([p.merchant_id, p.score, p.model_version]),
                         ex=self.ttl_s)
            pipe.execute()

    def lookup(self, event_ids: Sequence[str]) -> list[Indexed | None]:
        if not event_ids:
            return []
        with _mapped("look up predictions"):
            raw = self.client.mget([self.prefix + e for e in event_ids])
        out: list[Indexed | None] = []
        for value in raw:
            if value is None:
                out.append(None)
                continue
            merchant, score, version = json.loads(value)
            out.append(Indexed(int(merchant), float(score), str(version)))
        return out
