"""The topic creation request carries the replication the settings ask for (on a real cluster:
tests/stream_app/worker/test_broker_loss.py)."""

from __future__ import annotations

from stream_app.adapters.kafka_admin import new_topic
from stream_app.contract import TopicSpec
from stream_app.settings import KafkaSettings

SPEC = TopicSpec(name="transactions", partitions=6)


def test_unset_replication_leaves_it_to_the_cluster() -> None:
    topic = new_topic(KafkaSettings(), SPEC)
    assert (topic.topic, topic.num_partitions, topic.replication_factor, topic.config) == ("transactions", 6, -1, {})


def test_replication_factor_and_min_insync_replicas_come_from_the_settings() -> None:
    topic = new_topic(KafkaSettings(replication_factor=3, min_insync_replicas=2), SPEC)
    assert (topic.num_partitions, topic.replication_factor, topic.config) == (6, 3, {"min.insync.replicas": "2"})
