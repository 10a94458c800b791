"""The one Redis error policy of every adapter: which Redis failures mean "not now" (the same call may
succeed later, so the worker waits and retries the batch) and how they become ServiceUnavailableError.
Any other Redis error (a wrong command, wrong type) is a bug and propagates unchanged."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Final

from redis import exceptions as rexc

from stream_app.errors import ServiceUnavailableError

NOT_NOW: Final[tuple[type[Exception], ...]] = (
    rexc.ConnectionError,  # refused, reset, and BusyLoadingError (a restarted Redis loading its data)
    rexc.TimeoutError,  # a hung or overloaded Redis: no reply within the socket timeout
    rexc.ReadOnlyError,  # failover: the address leads to a replica
    rexc.OutOfMemoryError,  # type: ignore[attr-defined]  # (types-redis predates it) maxmemory + noeviction
    rexc.MasterDownError,  # a replica that lost its master and serves no stale data
    rexc.TryAgainError,
    rexc.ClusterDownError,
    ConnectionError,  # the socket layer's own, should a client let one through unwrapped
    TimeoutError,
)

_BUSY: Final = re.compile(r"(^|caused error: )BUSY ")


@contextlib.contextmanager
def unavailable_when_down(what: str) -> Iterator[None]:
    """Map Redis's "not now" errors raised inside to ServiceUnavailableError naming ``what``, keeping
    the cause. Usable as ``with unavailable_when_down("load x"):`` or as a decorator."""
    try:
        yield
    except NOT_NOW as exc:
        raise ServiceUnavailableError(f"redis: {what} failed: {type(exc).__name__}: {exc}") from exc
    except rexc.ResponseError as exc:
        if not is_busy(exc):
            raise
        raise ServiceUnavailableError(f"redis: {what} failed: {exc}") from exc


def is_busy(exc: rexc.ResponseError) -> bool:
    """Redis answers BUSY while a script runs past ``busy-reply-threshold``; redis-py has no class for it,
    so it arrives as a plain ResponseError whose message starts with the code (after "Command # n (...) of
    pipeline caused error: " when it came from a pipeline)."""
    return _BUSY.search(str(exc)) is not None
