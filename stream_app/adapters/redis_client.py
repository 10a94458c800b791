"""The one place a Redis client is built from settings: a plain ``redis.Redis`` on ``url``, or, with
Sentinel, a client of whichever node the sentinels name master (it asks them again on every new
connection, so after a failover the next call reaches the promoted replica)."""

from __future__ import annotations

import redis
from redis.sentinel import Sentinel

from stream_app.settings import RedisSettings


def connect(settings: RedisSettings) -> redis.Redis[bytes]:
    """A client of the master ``settings`` name, with their timeouts and no redis-py retries (the
    caller retries; adapters.redis_errors). Under Sentinel, the sentinels are asked with the same
    timeouts and no retries either; a failover shows as ConnectionError (MasterNotFoundError while no
    master is agreed, "the previous master is now a slave" on a demoted one) until it is over."""
    kwargs = settings.client_kwargs()
    addresses = settings.sentinel_addresses
    if not addresses:
        return redis.Redis(**kwargs)
    del kwargs["host"], kwargs["port"]
    sentinel = Sentinel(addresses, sentinel_kwargs={
        "socket_timeout": settings.socket_timeout_s, "socket_connect_timeout": settings.connect_timeout_s,
        "retry": None})
    client: redis.Redis[bytes] = sentinel.master_for(settings.sentinel_master, **kwargs)
    return client
