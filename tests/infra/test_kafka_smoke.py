"""The real broker round-trips records with both Python clients the project uses, and topics are
created idempotently from the contract."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import TopicSpec
from stream_app.errors import ConfigError
from stream_app.settings import Settings

pytestmark = pytest.mark.integration


def test_ensure_topics_creates_once_and_refuses_a_partition_mismatch(settings: Settings) -> None:
    specs = settings.topics.all()
    assert sorted(ensure_topics(settings.kafka, specs)) == sorted(s.name for s in specs)
    assert ensure_topics(settings.kafka, specs) == []
    wrong = TopicSpec(name=settings.topics.transactions.name, partitions=settings.topics.transactions.partitions + 1)
    with pytest.raises(ConfigError, match="partitions"):
        ensure_topics(settings.kafka, [wrong])


def test_confluent_kafka_round_trip(settings: Settings, unique: str) -> None:
    topic = TopicSpec(name=f"smoke-confluent-{unique}", partitions=1)
    ensure_topics(settings.kafka, [topic])
    producer = Producer(settings.kafka.confluent())
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
    for key, value in sent:
        producer.produce(topic.name, key=key, value=value)
    assert producer.flush(10) == 0
    consumer = Consumer({**settings.kafka.confluent(), "group.id": f"smoke-{unique}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic.name])
    received: list[tuple[bytes | None, bytes | None]] = []
    try:
        for _ in range(100):
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            received.append((msg.key(), msg.value()))
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent


def test_aiokafka_round_trip(settings: Settings, unique: str) -> None:
    topic = TopicSpec(name=f"smoke-aiokafka-{unique}", partitions=1)
    ensure_topics(settings.kafka, [topic])

    async def round_trip() -> list[tuple[bytes | None, bytes | None]]:
        producer = AIOKafkaProducer(**settings.kafka.aiokafka())
        await producer.start()
        try:
            for i in range(20):
                await producer.send(topic.name, key=f"k{i}".encode(), value=f"v{i}".encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic.name, group_id=f"smoke-{unique}", auto_offset_reset="earliest",
                                    **settings.kafka.aiokafka())
        await consumer.start()
        got: list[tuple[bytes | None, bytes | None]] = []
        try:
            while len(got) < 20:
                batch = await consumer.getmany(timeout_ms=1000)
                got.extend((m.key, m.value) for msgs in batch.values() for m in msgs)
        finally:
            await consumer.stop()
        return got

    received = asyncio.run(asyncio.wait_for(round_trip(), timeout=60))
    assert received == [(f"k{i}".encode(), f"v{i}".encode()) for i in range(20)]
