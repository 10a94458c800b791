"""Delivers predictions and dead letters and waits for the broker's acknowledgement, so the runner only
persists state for events whose outputs are durable.

Why confluent-kafka here and not the Faust app's producer: ``topic.send`` costs one coroutine, one
future and one aiokafka batch append per record; publishing was the largest stage of the worker's time
(``bench/bench_e2e.py`` breakdown). librdkafka takes a record in ~1 µs from Python and batches, compresses
and retries in C threads. The producer is idempotent (retries neither duplicate nor reorder) with
acks=all; delivery reports are served by a poll thread and hand the batch's completion back to the
event loop."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from stream_app.contract import DeadLetter, Prediction, encode
from stream_app.errors import ServiceUnavailableError
from stream_app.settings import Settings

DELIVERY_TIMEOUT_S = 30.0


def producer_config(settings: Settings, delivery_timeout_s: float = DELIVERY_TIMEOUT_S) -> dict[str, Any]:
    return {
        **settings.kafka.confluent(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.worker.producer_linger_ms,
        "compression.type": "lz4",
        "batch.num.messages": 10_000,
        "delivery.timeout.ms": int(delivery_timeout_s * 1000),
        "log_level": 3,
    }


class _Batch:
    """Counts one publish call's delivery reports (from the poll thread) and resolves its future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = expected
        self.error: KafkaError | None = None
        self.lock = threading.Lock()

    def delivered(self, err: KafkaError | None, _msg: Any) -> None:
        with self.lock:
            if err is not None and self.error is None:
                self.error = err
            self.remaining -= 1
            finished = self.remaining == 0
        if finished:
            self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class KafkaPublisher:
    def __init__(self, settings: Settings, delivery_timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        self.predictions_topic = settings.topics.predictions.name
        self.dlq_topic = settings.topics.transactions_dlq.name
        self.delivery_timeout_s = delivery_timeout_s
        self._producer = Producer(producer_config(settings, delivery_timeout_s))
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="publisher-delivery-reports", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter]) -> None:
        records: list[tuple[str, bytes | None, bytes]] = [
            (self.predictions_topic, p.event_id.encode(), encode(p)) for p in predictions]
        records += [(self.dlq_topic, None if d.key is None else base64.b64decode(d.key), encode(d))
                    for d in dead_letters]
        await self.publish_raw(records)

    async def publish_raw(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """(topic, key, value) records, delivered on return (also what the passthrough bench sends)."""
        if not records:
            return
        batch = _Batch(asyncio.get_running_loop(), len(records))
        for topic, key, value in records:
            self._produce(topic, key, value, batch)
        self._producer.poll(0)
        try:
            await asyncio.wait_for(asyncio.shield(batch.future), timeout=self.delivery_timeout_s + 5)
        except TimeoutError as exc:
            raise ServiceUnavailableError(f"Kafka did not acknowledge {batch.remaining} of {len(records)} "
                                          "outputs in time") from exc
        if batch.error is not None:
            raise ServiceUnavailableError(f"Kafka did not take the batch's outputs: {batch.error}")

    def _produce(self, topic: str, key: bytes | None, value: bytes, batch: _Batch) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=batch.delivered)
                return
            except BufferError:  # local queue full: wait for deliveries to free room
                self._producer.flush(0.1)
            except KafkaException as exc:
                raise ServiceUnavailableError(f"Kafka refused an output record: {exc}") from exc

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._closing.set()
        self._poller.join(timeout=1.0)
