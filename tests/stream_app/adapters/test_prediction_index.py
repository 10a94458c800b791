from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from stream_app.adapters.prediction_index import PredictionIndex
from stream_app.adapters.state_store import Kind, RedisWindowStore
from stream_app.contract import Prediction
from stream_app.core.records import Indexed
from stream_app.errors import ServiceUnavailableError
from stream_app.settings import Settings
from stream_app.worker.labels import LabelProcessor
from stream_app.worker.ports import RawRecord

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def prediction(event_id: str, merchant: int, score: float) -> Prediction:
    return Prediction(event_id=event_id, user_id=1, merchant_id=merchant, score=score, decision="approve",
                      model_version="v3", features={}, event_time=NOW, scored_at=NOW, latency_ms=1.0)


def test_remember_then_lookup_with_expiry(settings: Settings, unique: str) -> None:
    client = redis.Redis(**settings.redis.client_kwargs())
    index = PredictionIndex(client, f"t{unique}", ttl_s=60)
    index.remember([prediction("a", 7, 0.25), prediction("b", 8, 0.75)])
    assert index.lookup(["b", "missing", "a"]) == [Indexed(8, 0.75, "v3"), None, Indexed(7, 0.25, "v3")]
    assert 0 < client.ttl(f"t{unique}:pred:a") <= 60


def test_a_shadow_twins_score_and_version_are_indexed_beside_the_champions(settings: Settings, unique: str) -> None:
    index = PredictionIndex(redis.Redis(**settings.redis.client_kwargs()), f"t{unique}")
    twin = prediction("a", 7, 0.125).model_copy(update={"model_version": "v4"})
    index.remember([prediction("a", 7, 0.25), prediction("b", 8, 0.75)], shadow={"a": twin})
    a, b = index.lookup(["a", "b"])
    assert a == Indexed(7, 0.25, "v3", shadow_score=0.125, shadow_version="v4")
    assert b == Indexed(8, 0.75, "v3") and b.shadow_score is None and b.event_time == NOW.timestamp()


def test_a_dead_redis_is_service_unavailable() -> None:
    index = PredictionIndex(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5), "x")
    with pytest.raises(ServiceUnavailableError):
        index.lookup(["a"])


def test_watermarks_only_move_forward(settings: Settings, unique: str) -> None:
    index = PredictionIndex(redis.Redis(**settings.redis.client_kwargs()), f"t{unique}")
    assert index.watermarks([0, 1]) == [None, None]
    index.remember([], {0: 100.0, 1: 50.0})
    index.remember([prediction("a", 7, 0.5)], {0: 90.0, 1: 60.5})  # partition 0 replayed older events
    assert index.watermarks([0, 1, 2]) == [100.0, 60.5, None]


def label_record(offset: int, event_id: str, fraud: bool) -> RawRecord:
    body = {"event_id": event_id, "user_id": 1, "is_fraud": fraud,
            "label_time": (NOW + timedelta(hours=offset)).isoformat()}
    return RawRecord("labels", 0, offset, b"1", json.dumps(body).encode())


def test_a_label_batchs_commit_removes_its_entries_and_its_redelivery_is_a_replay(settings: Settings,
                                                                                   unique: str) -> None:
    client = redis.Redis(**settings.redis.client_kwargs())
    namespace = f"t{unique}"
    index = PredictionIndex(client, namespace)

    def labels_processor() -> tuple[LabelProcessor, RedisWindowStore]:  # a fresh worker's
        state = RedisWindowStore(client, namespace, allowed_lateness_s=300)
        return LabelProcessor(allowed_lateness_s=300, state=state, index=index, transaction_partitions=1,
                              label_partitions=1), state

    index.remember([prediction("a", 7, 0.9), prediction("b", 7, 0.2), prediction("waiting", 8, 0.5)],
                   {0: (NOW + timedelta(days=1)).timestamp()})
    entry = f"{namespace}:pred:"
    processor, state = labels_processor()
    batch = [label_record(0, "a", True), label_record(1, "b", False), label_record(2, "zzz", True)]
    result = processor.process(batch)
    assert (result.applied, result.unjoined) == (2, 1)
    assert client.exists(entry + "a", entry + "b") == 2  # processing writes nothing
    state.commit(result.state, result.writes)
    assert client.exists(entry + "a", entry + "b") == 0 and client.exists(entry + "waiting") == 1
    assert index.committed_offsets([0, 1]) == [2, None]
    windows = client.get(state.key(Kind.MERCHANT_LABEL, 7))
    assert windows is not None

    processor, state = labels_processor()  # the batch redelivered to a restarted worker
    again = processor.process(batch)
    assert (again.replayed, again.applied, again.unjoined, again.joined) == (3, 0, 0, [])
    state.commit(again.state, again.writes)
    assert client.get(state.key(Kind.MERCHANT_LABEL, 7)) == windows

    resent = processor.process([label_record(3, "a", False)])  # a's label sent again, corrected
    assert (resent.applied, resent.unjoined, resent.early, resent.joined) == (0, 1, 0, [])
    state.commit(resent.state, resent.writes)
    assert client.get(state.key(Kind.MERCHANT_LABEL, 7)) == windows and index.committed_offsets([0]) == [3]
