"""Topic administration with confluent-kafka's AdminClient: the start-up check that the broker answers and
accepts the configured credentials (``wait_for_broker``), idempotent creation of the contract's topics."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from stream_app.contract import TopicSpec
from stream_app.errors import AccessDeniedError, ConfigError, ServiceUnavailableError
from stream_app.settings import KafkaSettings

log = logging.getLogger(__name__)


def admin_client(kafka: KafkaSettings) -> AdminClient:
    """A confluent-kafka AdminClient configured from settings."""
    return AdminClient(kafka.confluent())


# Errors librdkafka reports (through error_cb) when the broker refuses the credentials or the TLS handshake
# fails (an untrusted certificate, a wrong host name); it retries them for ever, so the check stops at once.
REFUSALS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED})


def wait_for_broker(kafka: KafkaSettings, timeout_s: float = 10.0) -> int:
    """Ask for cluster metadata with the configured security; returns the number of brokers. Raises
    AccessDeniedError as soon as the broker refuses the credentials or the TLS handshake fails, and
    ServiceUnavailableError when no broker answered within ``timeout_s``."""
    refusals: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if error.code() in REFUSALS:
            refusals.append(error)

    conf: dict[str, Any] = {**kafka.confluent(), "log_level": 0, "error_cb": on_error}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    last: KafkaException | None = None
    while True:
        try:
            metadata = admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            last = exc
        else:
            if metadata.brokers:
                return len(metadata.brokers)
        admin.poll(0)  # serves error_cb
        if refusals:
            raise AccessDeniedError(f"Kafka at {kafka.bootstrap_servers} ({kafka.security_protocol}): "
                                    f"authentication or TLS failed: {refusals[0].str()}")
        if time.monotonic() >= deadline:
            cause = f"did not answer: {last}" if last is not None else "reports no brokers"
            raise ServiceUnavailableError(f"Kafka at {kafka.bootstrap_servers} {cause}")


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
    replication factor the cluster cannot hold (more replicas than brokers). Waits up to ``timeout_s`` for
    the broker; a refusal of the credentials or of the TLS handshake is an AccessDeniedError at once."""
    wait_for_broker(kafka, timeout_s)
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
