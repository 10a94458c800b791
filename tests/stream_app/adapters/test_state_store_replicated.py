"""The window store on a replicated Redis under Sentinel, with ``wait_replicas=1``: a commit succeeds only
once the replica holds it; one the replica did not acknowledge in time fails (the worker retries the
batch and never acks it), even when it is a replay that writes nothing; and after a failover to a
replica that lacks an unacknowledged commit, the retried batch is applied exactly once.

A replica "lags" here as it would behind a slow link: paused behind a replication stream longer than
the sockets buffer (``SentinelSet.fall_behind``), so a master killed meanwhile takes its last writes along."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from stream_app.adapters.redis_client import connect
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.core.engine import FeatureEngine
from stream_app.core.windows import Outcome
from stream_app.errors import ServiceUnavailableError
from tests.fixtures.redis_sentinel import SentinelSet
from tests.stream_app.adapters.test_state_store import LATENESS, apply, batches, events, plain, run_batch, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_MS = 300
R = TypeVar("R")


def replicated_store(sentinels: SentinelSet, namespace: str) -> RedisWindowStore:
    settings = sentinels.settings(wait_replicas=1, wait_timeout_ms=WAIT_MS, socket_timeout_s=2.0)
    return RedisWindowStore(connect(settings), namespace, allowed_lateness_s=LATENESS,
                            wait_replicas=settings.wait_replicas, wait_timeout_ms=settings.wait_timeout_ms)


def retried(store: RedisWindowStore, call: Callable[[], R], timeout_s: float = 60.0,
            between: Callable[[], object] = lambda: None) -> tuple[R, int]:
    """``call()`` until Redis takes it, as the worker's retries do (the pool dropped after each failure);
    returns its result and the number of failures."""
    deadline = time.monotonic() + timeout_s
    failures = 0
    while True:
        try:
            return call(), failures
        except ServiceUnavailableError:
            failures += 1
            store.invalidate()
            assert time.monotonic() < deadline, "Redis never took the call"
            between()
            time.sleep(0.1)


def test_a_commit_returns_once_the_replica_holds_it(redis_sentinel: SentinelSet, unique: str) -> None:
    namespace = f"repl-{unique}"
    store = replicated_store(redis_sentinel, namespace)
    master, replica = redis_sentinel.node_ports
    stream = events(600)
    reference = FeatureEngine(LATENESS)
    for batch in batches(stream, 100):
        assert plain(run_batch(store, batch)) == plain(apply(reference, batch))
        # read at once, no polling: WAIT returned only after the replica had it
        assert snapshot(redis_sentinel.node(replica), namespace) == snapshot(redis_sentinel.node(master), namespace)


def test_a_commit_the_replica_does_not_acknowledge_fails_and_so_does_its_replay(
        redis_sentinel: SentinelSet, unique: str) -> None:
    namespace = f"repl-{unique}"
    store = replicated_store(redis_sentinel, namespace)
    master, replica = redis_sentinel.node_ports
    first, second, third = batches(events(600), 200)
    reference = FeatureEngine(LATENESS)
    for batch in (first, second):
        apply(reference, batch)
    run_batch(store, first)

    redis_sentinel.pause(replica)
    try:
        began = time.monotonic()
        with pytest.raises(ServiceUnavailableError, match="0 of 1 replicas"):
            run_batch(store, second)  # written on the master, not acknowledged
        assert time.monotonic() - began < 1.5  # the WAIT timeout, well within the socket timeout
        store.invalidate()
        # The retry finds the batch applied on the master and changes no key, yet is not acknowledged
        # either: the master alone holds that state.
        written = store.stats.keys_written
        with pytest.raises(ServiceUnavailableError, match="0 of 1 replicas"):
            run_batch(store, second)
        store.invalidate()
    finally:
        redis_sentinel.resume(replica)
    replayed, _ = retried(store, lambda: run_batch(store, second))
    assert replayed and all(s is Outcome.REPLAY for s in replayed)
    assert store.stats.keys_written == written
    assert snapshot(redis_sentinel.node(replica), namespace) == snapshot(redis_sentinel.node(master), namespace)
    assert plain(run_batch(store, third)) == plain(apply(reference, third))


def test_after_a_failover_an_unacknowledged_batch_is_applied_once(redis_sentinel: SentinelSet, unique: str) -> None:
    """The replica lags while a batch is committed on the master only; the master dies; the replica is
    promoted without that batch. The batch was never acknowledged, so the worker retries it: on the new
    master it is applied anew, exactly once, and what follows is exact."""
    namespace = f"repl-{unique}"
    store = replicated_store(redis_sentinel, namespace)
    old, replica = redis_sentinel.node_ports
    first, second, third = batches(events(600), 200)
    reference = FeatureEngine(LATENESS)
    run_batch(store, first)
    apply(reference, first)
    expected_second = apply(reference, second)

    redis_sentinel.fall_behind(replica)
    try:
        with pytest.raises(ServiceUnavailableError, match="0 of 1 replicas"):
            run_batch(store, second)
        assert redis_sentinel.kill_master() == old
    finally:
        redis_sentinel.resume(replica)
    assert redis_sentinel.wait_for_failover(old) == replica
    # The new master never had the batch: it applies anew (computed here, not committed).
    served, _ = retried(store, lambda: run_batch(store, second, commit=False))
    assert plain(served) == plain(expected_second)

    # The promoted replica has no replica of its own: commits (which do reach it) are not acknowledged
    # until the old node rejoins as its replica; the retry after that is a replay of the last of them.
    rejoined: list[bool] = []

    def rejoin_once() -> None:
        if not rejoined:
            redis_sentinel.rejoin()
            rejoined.append(True)

    served, failures = retried(store, lambda: run_batch(store, second), between=rejoin_once)
    assert failures > 0 and rejoined
    assert plain(served) == plain(expected_second) or all(s is Outcome.REPLAY for s in served)
    assert plain(run_batch(store, third)) == plain(apply(reference, third))  # the second counted once
    assert snapshot(redis_sentinel.node(old), namespace) == snapshot(redis_sentinel.node(replica), namespace)
