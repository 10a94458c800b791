"""The real redis-server answers with the client settings the project builds."""

from __future__ import annotations

import pytest
import redis

from stream_app.settings import Settings

pytestmark = pytest.mark.integration


def test_redis_set_get_and_hash(settings: Settings, unique: str) -> None:
    client = redis.Redis(**settings.redis.client_kwargs())
    client.set(f"smoke:{unique}", b"value", ex=60)
    client.hset(f"smoke:h:{unique}", mapping={"a": "1", "b": "2"})
    assert client.get(f"smoke:{unique}") == b"value"
    assert client.hgetall(f"smoke:h:{unique}") == {b"a": b"1", b"b": b"2"}
    client.delete(f"smoke:{unique}", f"smoke:h:{unique}")
    assert client.get(f"smoke:{unique}") is None
