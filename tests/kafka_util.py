"""Reading topics back in integration tests, with a deadline instead of sleeps."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError

from stream_app.settings import Settings

Record = tuple[bytes | None, bytes | None, int, int]


def consume(settings: Settings, topic: str, expected: int | Callable[[list[Record]], bool],
            timeout_s: float = 60.0, settle_s: float = 1.0) -> list[Record]:
    """(key, value, partition, offset) of every record on ``topic`` from the start: waits until
    ``expected`` records arrived (or, given a predicate, until it holds for the records so far), then
    ``settle_s`` more to catch extras, or until the deadline."""
    enough = expected if callable(expected) else (lambda records: len(records) >= expected)
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"test-reader-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and enough(records):
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise RuntimeError(f"consuming {topic}: {error}")
            records.append((msg.key(), msg.value(), int(msg.partition() or 0), int(msg.offset() or 0)))
    finally:
        consumer.close()
    return records
