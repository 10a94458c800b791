"""Shared fixtures. Integration fixtures start real services (see tests/services.py) and never skip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.contract import Topics, TopicSpec
from stream_app.settings import KafkaSettings, RedisSettings, Settings
from tests.services import ServiceError, Services, kafka_answers, redis_answers, services


@pytest.fixture(scope="session")
def live_services() -> Iterator[Services]:
    try:
        with services() as found:
            yield found
    except ServiceError as exc:
        pytest.fail(f"integration services unavailable: {exc}", pytrace=False)


@pytest.fixture
def kafka_bootstrap(live_services: Services) -> str:
    if not kafka_answers(live_services.kafka_bootstrap, timeout_s=5):
        pytest.fail(f"Kafka at {live_services.kafka_bootstrap} stopped answering", pytrace=False)
    return live_services.kafka_bootstrap


@pytest.fixture
def redis_url(live_services: Services) -> str:
    if not redis_answers(live_services.redis_url):
        pytest.fail(f"Redis at {live_services.redis_url} stopped answering", pytrace=False)
    return live_services.redis_url


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, consumer groups and Feast projects."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path) -> Settings:
    """Settings pointing at the live services, with topic names private to this test."""
    topics = Topics(**{role: TopicSpec(name=f"{spec.name}-{unique}", partitions=spec.partitions)
                       for role, spec in Topics()})
    return Settings(kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap), redis=RedisSettings(url=redis_url),
                    topics=topics, data_dir=tmp_path / "data", models_dir=tmp_path / "registry")
