"""The publisher's side of "poison can't stall", with a fake producer at the librdkafka boundary: which
refusals are permanent (PermanentDeliveryError naming the refused outputs) and which are an unavailable
broker (ServiceUnavailableError); and dead letters cut to fit the producer's message size limit."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_app.contract import FITTED_MIN_BYTES, MESSAGE_KEPT, DeadLetter, ErrorCode, Prediction, encode
from stream_app.errors import InvalidRecordError, PermanentDeliveryError, ServiceUnavailableError
from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.publisher import ENVELOPE_BYTES, KafkaPublisher, producer_config

NOW = datetime(2026, 11, 1, tzinfo=UTC)
Report = Callable[[KafkaError | None, Any], None]


class FakeProducer:
    """Takes records like librdkafka: ``refuse`` (key -> code) raises from produce, ``fail`` (key -> code)
    comes back as the delivery report's error; everything else is delivered on the next poll."""

    def __init__(self, refuse: dict[bytes, int] | None = None, fail: dict[bytes, int] | None = None) -> None:
        self.refuse = refuse or {}
        self.fail = fail or {}
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []
        self._reports: list[tuple[Report, KafkaError | None]] = []
        self._lock = threading.Lock()

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                on_delivery: Report) -> None:
        if key in self.refuse:
            raise KafkaException(KafkaError(self.refuse[key]))
        code = self.fail.get(key or b"")
        with self._lock:
            self.sent.append((topic, key, value))
            self._reports.append((on_delivery, None if code is None else KafkaError(code)))

    def poll(self, timeout: float) -> int:
        with self._lock:
            reports, self._reports = self._reports, []
        for report, error in reports:
            report(error, None)
        if not reports:
            time.sleep(min(timeout, 0.005))
        return len(reports)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return 0


def prediction(event_id: str) -> Prediction:
    return Prediction(event_id=event_id, user_id=1, merchant_id=2, score=0.5, decision="approve", model_version="v1",
                      features={"x": 1.0}, event_time=NOW, scored_at=NOW, latency_ms=1.0)


def letter(key: bytes | None, value: bytes | None, message: str = "not JSON") -> DeadLetter:
    return DeadLetter.of(topic="transactions", partition=3, offset=41, key=key, value=value,
                         error=InvalidRecordError(ErrorCode.SCHEMA, message), failed_at=NOW)


def publish(producer: FakeProducer, predictions: list[Prediction], letters: list[DeadLetter],
            settings: Settings | None = None) -> None:
    publisher = KafkaPublisher(settings or Settings(), delivery_timeout_s=2.0, producer=producer)
    try:
        asyncio.run(publisher.publish(predictions, letters))
    finally:
        publisher.close(timeout_s=0.1)


@pytest.mark.parametrize("code", [KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE,
                                  KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.TOPIC_EXCEPTION,
                                  KafkaError.INVALID_RECORD])
@pytest.mark.parametrize("where", ["produce", "delivery report"])
def test_refusals_retrying_cannot_fix_are_permanent_and_name_the_refused_outputs(code: int, where: str) -> None:
    refused = {b"e1": code}
    producer = FakeProducer(refuse=refused) if where == "produce" else FakeProducer(fail=refused)
    with pytest.raises(PermanentDeliveryError) as raised:
        publish(producer, [prediction("e0"), prediction("e1"), prediction("e2")], [letter(b"7", b"{")])
    assert list(raised.value.refused) == [1]  # predictions first, then the dead letters
    assert KafkaError(code).name() in raised.value.refused[1]
    assert not isinstance(raised.value, ServiceUnavailableError)
    delivered = {key for _, key, _ in producer.sent if key not in refused}
    assert delivered == {b"e0", b"e2", b"7"}  # everything else went out in the same call


@pytest.mark.parametrize("code", [KafkaError._MSG_TIMED_OUT, KafkaError._UNKNOWN_TOPIC,
                                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT,
                                  KafkaError.NOT_ENOUGH_REPLICAS])
def test_failures_that_may_pass_are_service_unavailable(code: int) -> None:
    with pytest.raises(ServiceUnavailableError):
        publish(FakeProducer(fail={b"e1": code}), [prediction("e0"), prediction("e1")], [])


def test_an_unavailable_broker_outranks_a_permanent_refusal_in_the_same_call() -> None:
    """The whole call is retried; the refused output is refused again and named then."""
    producer = FakeProducer(fail={b"e0": KafkaError.MSG_SIZE_TOO_LARGE, b"e1": KafkaError._MSG_TIMED_OUT})
    with pytest.raises(ServiceUnavailableError):
        publish(producer, [prediction("e0"), prediction("e1")], [])


def test_a_huge_dead_letter_is_cut_to_fit_the_producers_limit() -> None:
    settings = Settings(worker=WorkerSettings(output_max_bytes=200_000))
    assert producer_config(settings)["message.max.bytes"] == 200_000
    value = b'{"event_id": "' + b"x" * 1_500_000 + b'"}'
    producer = FakeProducer()
    publish(producer, [], [letter(b"42", value)], settings)
    (topic, key, wire), = producer.sent
    assert topic == settings.topics.transactions_dlq.name and key == b"42" and wire is not None
    assert len(wire) + len(key) <= 200_000 - ENVELOPE_BYTES
    body = json.loads(wire)
    prefix = base64.b64decode(body["value"])
    assert body["value_truncated"] is True and body["value_length"] == len(value)
    assert body["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert value.startswith(prefix) and len(prefix) > 100_000  # as much as fits, not a token prefix
    assert (body["source_topic"], body["partition"], body["offset"]) == ("transactions", 3, 41)
    assert body["error"] == {"code": "schema", "message": "not JSON"} and body["key_truncated"] is False


def test_a_dead_letter_that_fits_is_unchanged_and_old_readers_still_parse_it() -> None:
    small = letter(b"42", b"{bad")
    assert small.fitted(FITTED_MIN_BYTES) is small
    body = json.loads(encode(small))
    assert base64.b64decode(body["value"]) == b"{bad" and body["value_truncated"] is False
    old = {k: v for k, v in body.items() if not k.startswith(("value_", "key_"))}  # a dead letter before the cut
    assert DeadLetter.model_validate(old) == small


def test_an_oversized_key_and_message_are_cut_too_and_the_result_always_fits() -> None:
    key, value = bytes(range(256)) * 400, b"v" * 50_000
    huge = letter(key, value, message="m" * 100_000)
    fitted = huge.fitted(FITTED_MIN_BYTES)
    assert fitted.wire_size() <= FITTED_MIN_BYTES
    assert fitted.key_truncated and fitted.key_length == len(key)
    assert fitted.key_sha256 == hashlib.sha256(key).hexdigest() and key.startswith(fitted.raw_key() or b"-")
    assert fitted.error.message == "m" * MESSAGE_KEPT and fitted.value_length == len(value)
    with pytest.raises(ValueError):
        huge.fitted(FITTED_MIN_BYTES - 1)


def test_shadow_predictions_go_to_their_own_topic_and_are_counted_after_the_joined_labels() -> None:
    settings = Settings()
    twin = prediction("e1").model_copy(update={"model_version": "v2", "score": 0.25})
    producer = FakeProducer(refuse={b"e1": KafkaError.MSG_SIZE_TOO_LARGE})
    publisher = KafkaPublisher(settings, delivery_timeout_s=2.0, producer=producer)
    try:
        with pytest.raises(PermanentDeliveryError) as raised:
            asyncio.run(publisher.publish([prediction("e0")], [letter(b"7", b"{")],
                                          shadow=[prediction("e0").model_copy(update={"model_version": "v2"}), twin]))
    finally:
        publisher.close(timeout_s=0.1)
    assert list(raised.value.refused) == [3]  # prediction, dead letter, then the twins: the second twin
    assert [(topic, key) for topic, key, _ in producer.sent] == [
        (settings.topics.predictions.name, b"e0"), (settings.topics.transactions_dlq.name, b"7"),
        (settings.topics.predictions_shadow.name, b"e0")]
    assert settings.topics.predictions_shadow.name == "predictions.shadow"
    assert json.loads(producer.sent[2][2] or b"")["model_version"] == "v2"
