"""A minimal Faust app, started in this process against the real broker, handles a record and replies."""

from __future__ import annotations

import asyncio

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import TopicSpec
from stream_app.settings import Settings

pytestmark = pytest.mark.integration


def test_faust_agent_consumes_and_replies(settings: Settings, unique: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    requests, replies = TopicSpec(name=f"faust-in-{unique}", partitions=1), TopicSpec(name=f"faust-out-{unique}",
                                                                                        partitions=1)
    ensure_topics(settings.kafka, [requests, replies])

    async def scenario() -> list[bytes | None]:
        app = faust.App(f"smoke-{unique}", broker=settings.kafka.faust_broker(), web_enabled=False,
                        store="memory://", datadir=str(tmp_path), topic_disable_leader=True,
                        consumer_auto_offset_reset="earliest")
        inbound = app.topic(requests.name, value_serializer="raw", key_serializer="raw")
        outbound = app.topic(replies.name, value_serializer="raw", key_serializer="raw")

        @app.agent(inbound)
        async def shout(stream):  # type: ignore[no-untyped-def]
            async for event in stream.events():
                await outbound.send(key=event.key, value=event.value.upper())

        producer = AIOKafkaProducer(**settings.kafka.aiokafka())
        consumer = AIOKafkaConsumer(replies.name, group_id=f"reader-{unique}", auto_offset_reset="earliest",
                                    **settings.kafka.aiokafka())
        await app.start()
        await producer.start()
        await consumer.start()
        try:
            for word in (b"hello", b"faust"):
                await producer.send_and_wait(requests.name, key=word, value=word)
            got: list[bytes | None] = []
            while len(got) < 2:
                batch = await consumer.getmany(timeout_ms=1000)
                got.extend(m.value for msgs in batch.values() for m in msgs)
            return got
        finally:
            await consumer.stop()
            await producer.stop()
            await app.stop()

    loop = asyncio.new_event_loop()
    try:
        replies_seen = loop.run_until_complete(asyncio.wait_for(scenario(), timeout=90))
    finally:
        loop.close()
    assert replies_seen == [b"HELLO", b"FAUST"]
