"""Consumer-group lag from the broker: per partition of the group's topics, the end offset minus the
group's committed offset (minus the start offset where nothing is committed yet). Blocking calls: run
``ConsumerLag.poll`` on a thread, every few seconds, never on an event loop or per batch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream_app.settings import KafkaSettings

log = logging.getLogger(__name__)
LAG_POLL_S = 5.0


class ConsumerLag:
    """The lag of consumer group ``group`` over ``topics``. The consumer it asks with never joins the
    group (it only fetches the group's committed offsets), so it cannot disturb its members."""

    def __init__(self, kafka: KafkaSettings, group: str, topics: Sequence[str], timeout_s: float = 5.0) -> None:
        self.group = group
        self.topics = tuple(topics)
        self.timeout_s = timeout_s
        self._consumer = Consumer({**kafka.confluent(), "group.id": group, "enable.auto.commit": False,
                                   "log_level": 3})

    def poll(self) -> dict[tuple[str, int], int]:
        """``{(topic, partition): lag}`` for every partition of the topics that exist; KafkaException when
        the broker does not answer."""
        metadata = self._consumer.list_topics(timeout=self.timeout_s)
        partitions = [TopicPartition(topic, p) for topic in self.topics if topic in metadata.topics
                      for p in sorted(metadata.topics[topic].partitions)]
        if not partitions:
            return {}
        lag: dict[tuple[str, int], int] = {}
        for tp in self._consumer.committed(partitions, timeout=self.timeout_s):
            low, high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                             timeout=self.timeout_s, cached=False)
            start = tp.offset if tp.offset >= 0 else low
            lag[(tp.topic, tp.partition)] = max(0, high - start)
        return lag

    def close(self) -> None:
        self._consumer.close()


def poll_every(interval_s: float, poll: Callable[[], None], stop: threading.Event,
               name: str = "streamscore-lag") -> threading.Thread:
    """Starts a daemon thread calling ``poll()`` every ``interval_s`` until ``stop`` is set; a poll that
    raises KafkaException is logged and tried again next time."""

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                poll()
            except KafkaException as exc:
                log.warning("consumer lag not measured: %s", exc)

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
