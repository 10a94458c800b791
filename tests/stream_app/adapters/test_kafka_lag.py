from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException

from stream_app.adapters.kafka_lag import poll_every


def test_polls_repeat_until_stopped_and_a_broker_error_does_not_end_them() -> None:
    calls: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        if len(calls) == 3:
            stop.set()

    thread = poll_every(0.01, poll, stop)
    thread.join(timeout=5)
    assert not thread.is_alive() and len(calls) == 3
