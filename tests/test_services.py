"""The service resolution fails loudly, with the reason, when a given service does not answer."""

from __future__ import annotations

import pytest

from stream_app.settings import KAFKA_ADDRESS_ENV, REDIS_ADDRESS_ENV
from stream_app.worker.process import free_port
from tests.fixtures import services
from tests.fixtures.services import ServiceError


def test_dead_kafka_from_environment_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KAFKA_ADDRESS_ENV, f"127.0.0.1:{free_port()}")
    monkeypatch.setenv(REDIS_ADDRESS_ENV, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ServiceError, match="does not answer a metadata request"), services.services():
        pass


def test_dead_redis_from_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "kafka_answers", lambda bootstrap, timeout_s=5.0: True)
    monkeypatch.setenv(KAFKA_ADDRESS_ENV, "127.0.0.1:1")
    monkeypatch.setenv(REDIS_ADDRESS_ENV, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(ServiceError, match="does not answer PING"), services.services():
        pass


def test_half_configured_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REDIS_ADDRESS_ENV, raising=False)
    monkeypatch.setenv(KAFKA_ADDRESS_ENV, "127.0.0.1:9")
    with pytest.raises(ServiceError, match="set both"), services.services():
        pass
