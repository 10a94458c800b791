"""The start-up checks against services that are not there: that is no refusal, so the start goes on (the
command waits for them as through any outage); refusals are tested for real in test_secure_connections."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.adapters.kafka_admin import wait_for_broker
from stream_app.adapters.preflight import check_access, check_redis
from stream_app.errors import AccessDeniedError, ServiceUnavailableError
from stream_app.settings import KafkaSettings, RedisSettings, Settings
from stream_app.worker.process import free_port


def test_absent_services_are_unavailable_not_refused() -> None:
    with pytest.raises(ServiceUnavailableError) as kafka:
        wait_for_broker(KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"), timeout_s=1.0)
    with pytest.raises(ServiceUnavailableError) as redis:
        check_redis(RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"))
    assert not isinstance(kafka.value, AccessDeniedError) and not isinstance(redis.value, AccessDeniedError)
    assert "Kafka at 127.0.0.1:" in str(kafka.value) and "Redis at 127.0.0.1:" in str(redis.value)


def test_the_start_goes_on_when_services_do_not_answer_yet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"),
                        redis=RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"), data_dir=tmp_path)
    check_access(settings, kafka_timeout_s=1.0)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("start-up check:")]
    assert [w.split(" at ")[0] for w in warnings] == ["start-up check: Kafka", "start-up check: Redis"]
