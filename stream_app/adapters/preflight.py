"""Start-up checks of the long-running commands: connect to Kafka and Redis with the configured settings
before anything starts, so a wrong password or an untrusted certificate ends the start within seconds, with
one line naming the dependency and the cause, instead of clients that retry in the background for ever."""

from __future__ import annotations

import logging
import ssl

from redis import exceptions as rexc

from stream_app.adapters.kafka_admin import wait_for_broker
from stream_app.adapters.redis_client import connect
from stream_app.errors import AccessDeniedError, ServiceUnavailableError
from stream_app.settings import RedisSettings, Settings

log = logging.getLogger(__name__)


def check_redis(settings: RedisSettings) -> None:
    """PING with the configured user, password and TLS (the master, under Sentinel). Raises AccessDeniedError
    when Redis refuses the credentials or its certificate is not trusted, ServiceUnavailableError when it does
    not answer."""
    where = f"Redis at {settings.host}:{settings.port}"
    client = connect(settings)
    try:
        client.ping()
    except rexc.AuthenticationError as exc:  # before ConnectionError: it is one
        raise AccessDeniedError(f"{where} refused the credentials of user "
                                f"{settings.username or 'default'!r}: {exc}") from exc
    except rexc.ResponseError as exc:  # e.g. NOPERM: the user may not run PING
        raise AccessDeniedError(f"{where} refused user {settings.username or 'default'!r}: {exc}") from exc
    except rexc.ConnectionError as exc:
        if _tls_failure(exc):
            raise AccessDeniedError(f"{where}: TLS handshake failed: {exc}") from exc
        raise ServiceUnavailableError(f"{where} does not answer: {exc}") from exc
    except rexc.TimeoutError as exc:
        raise ServiceUnavailableError(f"{where} does not answer: {exc}") from exc
    finally:
        client.close()


def _tls_failure(exc: BaseException) -> bool:
    """Whether the error, or one it was raised from, is a TLS failure (redis-py wraps them)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "SSL" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def check_access(settings: Settings, *, needs_redis: bool = True, kafka_timeout_s: float = 10.0) -> None:
    """Before a long-running command starts: Kafka's metadata, then (``needs_redis``) Redis's PING. A refusal
    (AccessDeniedError) ends the start; a service that does not answer yet is logged and waited for by the
    command itself, as it waits through an outage later."""
    try:
        wait_for_broker(settings.kafka, timeout_s=kafka_timeout_s)
    except ServiceUnavailableError as exc:
        log.warning("start-up check: %s; starting anyway", exc)
    if needs_redis:
        try:
            check_redis(settings.redis)
        except ServiceUnavailableError as exc:
            log.warning("start-up check: %s; starting anyway", exc)
