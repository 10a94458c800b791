"""Delivers predictions, dead letters and joined labels through confluent-kafka and waits for the broker's
acknowledgement, so the runner only persists state for events whose outputs are durable. Why not the
Faust app's producer: docs/decisions/0016-outputs-through-confluent-kafka.md.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Sequence, Sized
from typing import Any, Final, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from stream_app.contract import DeadLetter, JoinedLabel, Prediction, encode
from stream_app.core.records import LabelRow
from stream_app.errors import PermanentDeliveryError, ServiceUnavailableError
from stream_app.settings import Settings

DELIVERY_TIMEOUT_S = 30.0
ENVELOPE_BYTES: Final = 4096  # a record's size beyond its key and value, with margin, within message.max.bytes
# librdkafka error codes of refusals that retrying the same record cannot fix
PERMANENT: Final = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,  # over message.max.bytes (producer), or the topic's max.message.bytes
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,  # the broker refuses the record itself (e.g. no key on a compacted topic)
    KafkaError.TOPIC_EXCEPTION,  # invalid topic name
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
})


def producer_config(settings: Settings, delivery_timeout_s: float = DELIVERY_TIMEOUT_S) -> dict[str, Any]:
    """librdkafka settings of the output producer: idempotent, acks=all, lz4, bounded delivery time."""
    return {
        **settings.kafka.confluent(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.worker.producer_linger_ms,
        "compression.type": "lz4",
        "batch.num.messages": 10_000,
        "delivery.timeout.ms": int(delivery_timeout_s * 1000),
        "message.max.bytes": settings.worker.output_max_bytes,
        "log_level": 3,
    }


def joined_label(row: LabelRow) -> JoinedLabel:
    """The ``labels.joined`` record of a joined label (built from the worker's own values: not re-validated)."""
    return JoinedLabel.model_construct(event_id=row.event_id, user_id=row.user_id, merchant_id=row.merchant_id,
                                       is_fraud=row.is_fraud, label_time=row.label_time, score=row.score,
                                       model_version=row.model_version)


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer the publisher uses."""

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, *,
                on_delivery: Callable[[KafkaError | None, Any], None]) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


class _Batch:
    """Counts one publish call's delivery reports (from the poll thread) and resolves its future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = expected
        self.errors: dict[int, KafkaError] = {}  # position in the call -> why it was not delivered
        self.lock = threading.Lock()

    def delivered(self, position: int, err: KafkaError | None, _msg: Any) -> None:
        with self.lock:
            if err is not None:
                self.errors[position] = err
            self.remaining -= 1
            finished = self.remaining == 0
        if finished:
            self.loop.call_soon_threadsafe(self._resolve)

    def refused(self, position: int, err: KafkaError) -> None:
        """Refused by ``produce`` itself: no delivery report will come."""
        self.delivered(position, err, None)

    def _resolve(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class KafkaPublisher:
    """An idempotent (acks=all) confluent-kafka producer whose delivery reports a poll thread serves,
    handing each publish call's completion back to the event loop.

    A refusal that retrying cannot fix (``PERMANENT``: a record too large, an invalid or unauthorised
    topic) is PermanentDeliveryError, naming the refused outputs (everything else was delivered); any
    other failure is ServiceUnavailableError. A topic that does not exist (yet) counts as unavailable,
    not permanent: topics are created by ``create-topics``, possibly after the worker starts, and waiting
    for it loses nothing, whereas giving up would dead-letter or drop every output until it exists. Dead
    letters are cut to fit the producer's ``message.max.bytes`` (``DeadLetter.fitted``), so a huge
    poison record can always be dead-lettered.
    """

    def __init__(self, settings: Settings, delivery_timeout_s: float = DELIVERY_TIMEOUT_S,
                 producer: ProducerLike | None = None) -> None:
        self.predictions_topic = settings.topics.predictions.name
        self.shadow_topic = settings.topics.predictions_shadow.name
        self.dlq_topic = settings.topics.transactions_dlq.name
        self.labels_topic = settings.topics.labels_joined.name
        self.delivery_timeout_s = delivery_timeout_s
        self.dead_letter_max_bytes = settings.worker.output_max_bytes - ENVELOPE_BYTES
        self._producer: ProducerLike = producer or Producer(producer_config(settings, delivery_timeout_s))
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="publisher-delivery-reports", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.05)

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        """Positions in PermanentDeliveryError count the predictions first, then the dead letters, then the
        joined labels, then the shadow predictions (to ``predictions.shadow``)."""
        records: list[tuple[str, bytes | None, bytes]] = [
            (self.predictions_topic, p.event_id.encode(), encode(p)) for p in predictions]
        for letter in dead_letters:
            fitted = letter.fitted(self.dead_letter_max_bytes)
            records.append((self.dlq_topic, fitted.raw_key(), encode(fitted)))
        records.extend((self.labels_topic, row.event_id.encode(), encode(joined_label(row))) for row in labels)
        records.extend((self.shadow_topic, p.event_id.encode(), encode(p)) for p in shadow)
        await self.publish_raw(records)

    async def publish_raw(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """(topic, key, value) records, delivered on return (also what the passthrough bench sends)."""
        if not records:
            return
        batch = _Batch(asyncio.get_running_loop(), len(records))
        for position, (topic, key, value) in enumerate(records):
            self._produce(topic, key, value, batch, position)
        self._producer.poll(0)
        try:
            await asyncio.wait_for(asyncio.shield(batch.future), timeout=self.delivery_timeout_s + 5)
        except TimeoutError as exc:
            raise ServiceUnavailableError(f"Kafka did not acknowledge {batch.remaining} of {len(records)} "
                                          "outputs in time") from exc
        transient = [err for err in batch.errors.values() if err.code() not in PERMANENT]
        if transient:
            raise ServiceUnavailableError(f"Kafka did not take {len(transient)} of the batch's {len(records)} "
                                          f"outputs: {transient[0]}")
        if batch.errors:
            raise PermanentDeliveryError({position: f"{err.name()}: {err.str()}"
                                          for position, err in sorted(batch.errors.items())})

    def _produce(self, topic: str, key: bytes | None, value: bytes, batch: _Batch, position: int) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key,
                                       on_delivery=functools.partial(batch.delivered, position))
                return
            except BufferError:  # local queue full: wait for deliveries to free room
                self._producer.flush(0.1)
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() in PERMANENT:
                    batch.refused(position, error)
                    return
                raise ServiceUnavailableError(f"Kafka refused an output record: {exc}") from exc

    def queued(self) -> int:
        """Messages in the producer's queue: waiting to be sent or acknowledged."""
        return len(self._producer) if isinstance(self._producer, Sized) else 0

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
        self._closing.set()
        self._poller.join(timeout=1.0)
