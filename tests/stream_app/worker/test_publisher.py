"""The worker's publisher on the real broker: outputs are on their topics with their keys when publish
returns; a broker that does not answer is ServiceUnavailableError, not a hang."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime

import pytest

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import DeadLetter, ErrorCode, Prediction
from stream_app.errors import InvalidRecordError, ServiceUnavailableError
from stream_app.settings import KafkaSettings, Settings
from stream_app.worker.process import free_port
from stream_app.worker.publisher import KafkaPublisher
from tests.fixtures.kafka import consume

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def prediction(i: int) -> Prediction:
    return Prediction(event_id=f"e{i}", user_id=i, merchant_id=7, score=i / 1000, decision="approve",
                      model_version="v1", features={"x": float(i), "y": None}, event_time=NOW, scored_at=NOW,
                      latency_ms=1.5)


def test_outputs_are_on_their_topics_when_publish_returns(settings: Settings) -> None:
    ensure_topics(settings.kafka, settings.topics.all())
    publisher = KafkaPublisher(settings)
    letter = DeadLetter.of(topic="transactions", partition=2, offset=9, key=b"\xff42", value=b"{bad",
                           error=InvalidRecordError(ErrorCode.DECODE, "not JSON"), failed_at=NOW)
    try:
        asyncio.run(publisher.publish([prediction(i) for i in range(500)], [letter]))
    finally:
        publisher.close()
    predictions = consume(settings, settings.topics.predictions.name, 500, timeout_s=30, settle_s=0.5)
    assert sorted(k for k, _, _, _ in predictions if k) == sorted(f"e{i}".encode() for i in range(500))
    assert json.loads(predictions[0][1] or b"")["model_version"] == "v1"
    (key, value, _, _), = consume(settings, settings.topics.transactions_dlq.name, 1, timeout_s=30, settle_s=0.5)
    body = json.loads(value or b"")
    assert key == b"\xff42" and base64.b64decode(body["value"]) == b"{bad" and body["error"]["code"] == "decode"


def test_an_unreachable_broker_is_service_unavailable(settings: Settings) -> None:
    dead = settings.model_copy(update={"kafka": KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")})
    publisher = KafkaPublisher(dead, delivery_timeout_s=2.0)
    try:
        with pytest.raises(ServiceUnavailableError):
            asyncio.run(publisher.publish([prediction(1)], []))
    finally:
        publisher.close(timeout_s=0.1)
