"""Topic administration with confluent-kafka's AdminClient: idempotent creation of the contract's topics."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_app.contract import TopicSpec
from stream_app.errors import ConfigError, ServiceUnavailableError
from stream_app.settings import KafkaSettings

log = logging.getLogger(__name__)


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """A confluent-kafka AdminClient configured from settings."""
    return AdminClient(kafka.confluent())


def wait_for_broker(kafka: KafkaSettings, timeout_s: float = 10.0) -> int:
    """Ask for cluster metadata; returns the number of brokers or raises ServiceUnavailableError."""
    try:
        metadata = admin_client(kafka).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceUnavailableError(f"Kafka at {kafka.bootstrap_servers} did not answer: {exc}") from exc
    if not metadata.brokers:
        raise ServiceUnavailableError(f"Kafka at {kafka.bootstrap_servers} reports no brokers")
    return len(metadata.brokers)


def new_topic(kafka: KafkaSettings, spec: TopicSpec) -> NewTopic:
    """The creation request for ``spec``: its partitions, and the replication factor and
    min.insync.replicas of the settings (the cluster's defaults where they are unset)."""
    config = {} if kafka.min_insync_replicas is None else {"min.insync.replicas": str(kafka.min_insync_replicas)}
    return NewTopic(spec.name, num_partitions=spec.partitions,
                    replication_factor=-1 if kafka.replication_factor is None else kafka.replication_factor,
                    config=config)


def ensure_topics(kafka: KafkaSettings, topics: Iterable[TopicSpec], timeout_s: float = 30.0) -> list[str]:
    """Create the topics that don't exist; returns the names created. An existing topic with a
    different partition count is a ConfigError (Kafka can't shrink partitions, and growing them
    silently would move keys between partitions), and so is one with another replication factor than
    the settings ask for (changing it is a partition reassignment, an operator's decision), or a
    replication factor the cluster cannot hold (more replicas than brokers)."""
    admin = admin_client(kafka)
    wanted = {spec.name: spec for spec in topics}
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise ServiceUnavailableError(f"Kafka at {kafka.bootstrap_servers} did not answer: {exc}") from exc
    for name, spec in wanted.items():
        if name not in existing:
            continue
        partitions = existing[name].partitions
        if len(partitions) != spec.partitions:
            raise ConfigError(
                f"topic {name!r} exists with {len(partitions)} partitions, settings ask for {spec.partitions}"
            )
        replicas = {len(p.replicas) for p in partitions.values()}
        if kafka.replication_factor is not None and replicas != {kafka.replication_factor}:
            raise ConfigError(f"topic {name!r} exists with replication factor {sorted(replicas)}, "
                              f"settings ask for {kafka.replication_factor}")
    missing = [new_topic(kafka, spec) for name, spec in wanted.items() if name not in existing]
    created: list[str] = []
    if not missing:
        return created
    for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent creator won the race
                continue
            if error.code() in (KafkaError.INVALID_REPLICATION_FACTOR, KafkaError.INVALID_CONFIG):
                raise ConfigError(f"could not create topic {name!r}: {error.str()}") from exc
            raise ServiceUnavailableError(f"could not create topic {name!r}: {error.str()}") from exc
    log.info("created topics %s", created)
    return created
