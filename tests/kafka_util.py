"""Reading topics back in integration tests, with a deadline instead of sleeps."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError

from stream_app.settings import Settings


def consume(settings: Settings, topic: str, expected: int, timeout_s: float = 60.0,
            settle_s: float = 1.0) -> list[tuple[bytes | None, bytes | None, int, int]]:
    """(key, value, partition, offset) of every record on ``topic`` from the start: waits until
    ``expected`` records arrived, then ``settle_s`` more to catch extras, or until the deadline."""
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"test-reader-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    records: list[tuple[bytes | None, bytes | None, int, int]] = []
    deadline = time.monotonic() + timeout_s
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is None and len(records) >= expected:
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
