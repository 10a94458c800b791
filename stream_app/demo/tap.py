"""What the demo puts into Kafka and what it reads back.

``CountingProducer`` wraps the generator's producer to count records the broker acknowledged, per topic,
as they happen (``stream_live`` only returns its counts at the end). ``TopicTap`` reads ``predictions``,
``transactions.dlq`` and ``labels`` from given offsets in a background thread, so the demo measures only
its own run even on a broker that holds earlier data, and joins labels to predictions by event_id."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from stream_app.demo.records import SeenPrediction, dead_letter_code, parse_label, parse_prediction
from stream_app.generator.live import PRODUCER_TUNING
from stream_app.settings import Settings


class CountingProducer:
    """The ``ProducerLike`` ``stream_live`` takes: the real producer, counting acknowledged records."""

    def __init__(self, settings: Settings) -> None:
        self._producer: Producer | None = Producer({**settings.kafka.confluent(), **PRODUCER_TUNING})
        self.delivered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        def counted(err: Any, msg: Any) -> None:
            (self.failed if err is not None else self.delivered)[topic] += 1
            on_delivery(err, msg)

        self._live().produce(topic, value=value, key=key, on_delivery=counted)

    def poll(self, timeout: float) -> int:
        return int(self._live().poll(timeout))

    def flush(self, timeout: float) -> int:
        return int(self._live().flush(timeout))

    def close(self) -> None:
        """Let librdkafka go now: an interrupted run's traceback would otherwise keep the producer alive,
        reconnecting (and logging) after the broker has been stopped."""
        self._producer = None

    def _live(self) -> Producer:
        if self._producer is None:
            raise RuntimeError("the producer is closed")
        return self._producer


def end_offsets(settings: Settings, topics: list[str], timeout_s: float = 10.0) -> dict[str, dict[int, int]]:
    """The high watermark of every partition of ``topics``: where "from now on" starts."""
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"streamscore-demo-probe-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        out: dict[str, dict[int, int]] = {}
        for topic in topics:
            partitions = metadata.topics[topic].partitions
            out[topic] = {p: int(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1])
                          for p in sorted(partitions)}
        return out
    finally:
        consumer.close()


COORDINATOR_MOVING = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                      KafkaError.COORDINATOR_NOT_AVAILABLE)
COMMIT_ATTEMPTS = 20


def commit_group_offsets(settings: Settings, group: str, offsets: dict[str, dict[int, int]]) -> None:
    """Start consumer group ``group`` at ``offsets``: a new worker group would otherwise begin at the
    earliest offset and replay whatever earlier runs left on the topics. A new group's coordinator may
    still be loading (a busy broker answers "not coordinator"): the commit is retried, half a second
    apart, up to ``COMMIT_ATTEMPTS`` times."""
    consumer = Consumer({**settings.kafka.confluent(), "group.id": group, "enable.auto.commit": False})
    try:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                consumer.commit(offsets=[TopicPartition(topic, p, o) for topic, parts in offsets.items()
                                         for p, o in parts.items()], asynchronous=False)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                moving = isinstance(error, KafkaError) and (error.code() in COORDINATOR_MOVING or error.retriable())
                if not moving or attempt == COMMIT_ATTEMPTS:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


class TopicTap:
    """Reads the worker's outputs and the labels from fixed offsets until ``close``. Counters are only
    written by the reader thread and read (never written) by the display, so no lock is needed for
    progress; ``snapshot`` style reads of the dicts happen after ``close``."""

    def __init__(self, settings: Settings, start: dict[str, dict[int, int]]) -> None:
        topics = settings.topics
        self.predictions_topic = topics.predictions.name
        self.dlq_topic = topics.transactions_dlq.name
        self.labels_topic = topics.labels.name
        self.predictions: dict[str, SeenPrediction] = {}
        self.duplicates = 0
        self.dead_letters: Counter[str] = Counter()
        self.dead_letter_count = 0
        self.labels: dict[str, bool] = {}
        self.unreadable = 0
        self.joined: list[tuple[bool, float]] = []  # (is_fraud, score), appended as pairs complete
        self.recent: deque[SeenPrediction] = deque(maxlen=200)
        self.errors: list[str] = []
        self._consumer = Consumer({**settings.kafka.confluent(), "group.id": f"streamscore-demo-tap-{uuid.uuid4().hex}",
                                   "enable.auto.commit": False, "enable.partition.eof": False})
        self._consumer.assign([TopicPartition(topic, p, o) for topic, parts in start.items() for p, o in parts.items()])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(num_messages=1000, timeout=0.2):
                error = msg.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF and len(self.errors) < 20:
                        self.errors.append(str(error))
                    continue
                self._handle(msg.topic() or "", msg.value(), msg.timestamp()[1])

    def _handle(self, topic: str, value: bytes | None, timestamp_ms: int) -> None:
        if topic == self.predictions_topic:
            seen = parse_prediction(value, timestamp_ms)
            if seen is None:
                self.unreadable += 1
            elif seen.event_id in self.predictions:
                self.duplicates += 1  # at-least-once: a replayed batch re-publishes identical predictions
            else:
                self.predictions[seen.event_id] = seen
                self.recent.append(seen)
                if seen.event_id in self.labels:
                    self.joined.append((self.labels[seen.event_id], seen.score))
        elif topic == self.dlq_topic:
            self.dead_letters[dead_letter_code(value)] += 1
            self.dead_letter_count += 1
        elif topic == self.labels_topic:
            label = parse_label(value)
            if label is None:
                self.unreadable += 1
                return
            event_id, is_fraud = label
            if event_id in self.labels:
                return
            self.labels[event_id] = is_fraud
            if event_id in self.predictions:
                self.joined.append((is_fraud, self.predictions[event_id].score))

    def wait_quiet(self, quiet_s: float = 1.5, timeout_s: float = 10.0) -> None:
        """Wait until nothing new arrived for ``quiet_s`` (records still in flight get read)."""
        deadline = time.monotonic() + timeout_s
        last = (-1, -1, -1)
        since = time.monotonic()
        while time.monotonic() < deadline:
            now = (len(self.predictions) + self.duplicates, self.dead_letter_count, len(self.labels))
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()
