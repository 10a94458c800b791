"""The Redis window store on a real Redis: what the engine serves through load/commit equals what it
serves from memory, a batch is persisted whole or not at all, and replays after a restart are recognised."""

from __future__ import annotations

import math
import random
import socket
import time
from collections.abc import Iterator, Sequence

import pytest
import redis

from stream_app.adapters.state_store import Kind, RedisWindowStore
from stream_app.core.engine import (
    MERCHANT_TXN_SPECS,
    FeatureEngine,
    LabelEvent,
    TransactionEvent,
    WindowRows,
    WindowState,
)
from stream_app.core.windows import KeyWindows, Outcome
from stream_app.errors import RetryBatchError, ServiceUnavailableError, StateConflictError
from stream_app.settings import RedisSettings

pytestmark = pytest.mark.integration

LATENESS = 300.0
T0 = 1_800_000_000.0
Event = TransactionEvent | LabelEvent
Served = WindowRows | Outcome


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    rds = redis.Redis(**RedisSettings(url=redis_url).client_kwargs())
    yield rds
    rds.close()


@pytest.fixture
def namespace(client: redis.Redis[bytes], unique: str) -> Iterator[str]:
    ns = f"test-state-{unique}"
    yield ns
    keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
    if keys:
        client.delete(*keys)


def events(n: int, seed: int = 3, users: int = 40, merchants: int = 8) -> list[Event]:
    """Transactions of several users over 4 partitions (a few out of order, a few late) and labels."""
    rng = random.Random(seed)
    offsets = [0] * 4
    label_offset = 0
    out: list[Event] = []
    t = T0
    for i in range(n):
        t += rng.expovariate(1 / 40)
        if rng.random() < 0.15 and out:
            label_offset += 1
            out.append(LabelEvent(f"l{i}", rng.randrange(merchants), rng.random() < 0.3, t, (0, label_offset)))
            continue
        user = rng.randrange(users)
        partition = user % 4
        offsets[partition] += 1
        when = t - rng.choice([0, 0, 0, 0, 0, 120, 1000])  # in order, out of order, late
        out.append(TransactionEvent(f"e{i}", user, rng.randrange(merchants), round(rng.uniform(1, 900), 2), when,
                                    (partition, offsets[partition])))
    return out


def apply(engine: FeatureEngine, batch: Sequence[Event]) -> list[Served]:
    return [engine.on_transaction(e) if isinstance(e, TransactionEvent) else engine.on_label(e) for e in batch]


def keys_of(batch: Sequence[Event]) -> tuple[list[int], list[int]]:
    users = sorted({e.user_id for e in batch if isinstance(e, TransactionEvent)})
    return users, sorted({e.merchant_id for e in batch})


def run_batch(store: RedisWindowStore, batch: Sequence[Event], commit: bool = True) -> list[Served]:
    state = store.load(*keys_of(batch))
    served = apply(FeatureEngine(LATENESS, state), batch)
    if commit:
        store.commit(state)
    return served


def batches(stream: Sequence[Event], size: int) -> list[Sequence[Event]]:
    return [stream[i : i + size] for i in range(0, len(stream), size)]


def plain(served: Sequence[Served]) -> list[object]:
    """Comparable form (NaN == NaN)."""
    def clean(row: dict[str, float]) -> dict[str, object]:
        return {k: "nan" if math.isnan(v) else v for k, v in row.items()}
    return [(clean(s.user), clean(s.merchant)) if isinstance(s, WindowRows) else s for s in served]


def snapshot(client: redis.Redis[bytes], namespace: str) -> dict[bytes, bytes | None]:
    return {k: client.get(k) for k in sorted(client.scan_iter(match=f"{namespace}:*", count=1000))}


def store_for(client: redis.Redis[bytes], namespace: str, **kwargs: object) -> RedisWindowStore:
    return RedisWindowStore(client, namespace, allowed_lateness_s=LATENESS, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("cache_size", [100_000, 16, 0])  # every key pooled, some evicted, none pooled
def test_state_through_redis_serves_exactly_what_memory_serves(client: redis.Redis[bytes], namespace: str,
                                                               cache_size: int) -> None:
    stream = events(1500)
    reference = FeatureEngine(LATENESS)
    expected = apply(reference, stream)
    assert {type(s) for s in expected} >= {WindowRows, Outcome}  # applied, late and label outcomes

    store = store_for(client, namespace, cache_size=cache_size)
    got: list[Served] = []
    for batch in batches(stream, 100):
        got.extend(run_batch(store, batch))
    assert plain(got) == plain(expected)
    assert store.stats.lazy_fetches == 0 and store.stats.conflicts == 0
    assert (store.stats.pool_hits > 0) == (cache_size > 0) and store.cached <= cache_size
    for kind, table in ((Kind.USER, reference.state.users), (Kind.MERCHANT_TXN, reference.state.merchant_txns),
                        (Kind.MERCHANT_LABEL, reference.state.merchant_labels)):
        for entity, windows in table.items():
            stored = client.get(store.key(kind, entity))
            assert stored is not None and stored[8:] == windows.to_bytes(), (kind, entity)


def test_an_uncommitted_batch_leaves_redis_and_the_next_load_unchanged(client: redis.Redis[bytes],
                                                                       namespace: str) -> None:
    first, second, third = batches(events(600), 200)
    reference = FeatureEngine(LATENESS)
    apply(reference, first)
    expected_second = apply(reference, second)

    store = store_for(client, namespace)
    run_batch(store, first)
    before = snapshot(client, namespace)
    abandoned = run_batch(store, second, commit=False)  # e.g. a crash before the commit
    assert plain(abandoned) == plain(expected_second)
    assert snapshot(client, namespace) == before
    # the same store (and its pool) serves the batch again from the committed state, not the abandoned one
    assert plain(run_batch(store, second)) == plain(expected_second)
    assert plain(run_batch(store, third)) == plain(apply(reference, third))


def test_a_replayed_batch_is_recognised_by_a_fresh_store_and_rewrites_nothing(client: redis.Redis[bytes],
                                                                              namespace: str) -> None:
    parts = batches(events(800), 200)
    reference = FeatureEngine(LATENESS)
    for batch in parts[:2]:
        apply(reference, batch)
    crashed = store_for(client, namespace)
    for batch in parts[:2]:
        run_batch(crashed, batch)  # committed, but the offsets were not: Kafka redelivers parts[1]
    before = snapshot(client, namespace)

    restarted = store_for(client, namespace)  # a new process: empty pool
    replayed = run_batch(restarted, parts[1])
    assert all(s is Outcome.REPLAY for s in replayed)
    assert restarted.stats.keys_written == 0 and restarted.stats.keys_unchanged > 0
    assert snapshot(client, namespace) == before
    for batch in parts[2:]:
        assert plain(run_batch(restarted, batch)) == plain(apply(reference, batch))


def test_keys_carry_a_ttl_and_an_expired_key_starts_afresh(client: redis.Redis[bytes], namespace: str) -> None:
    store = store_for(client, namespace)
    txn = TransactionEvent("e1", 1, 10, 5.0, T0, (0, 1))
    run_batch(store, [txn, LabelEvent("l1", 10, True, T0, (0, 1))])
    day = 86_400
    for kind, ttl in ((Kind.USER, 30 * day), (Kind.MERCHANT_TXN, 3600 + LATENESS + day),
                      (Kind.MERCHANT_LABEL, 7 * day + LATENESS + day)):
        assert store.ttl_s[kind] == ttl
        assert ttl * 1000 - 60_000 < client.pttl(store.key(kind, 1 if kind is Kind.USER else 10)) <= ttl * 1000

    short = store_for(client, namespace, ttl_s={Kind.USER: 0.5})
    run_batch(short, [TransactionEvent("e2", 2, 10, 5.0, T0, (2, 1))])
    assert client.exists(short.key(Kind.USER, 2))
    time.sleep(0.7)
    assert not client.exists(short.key(Kind.USER, 2))
    again = run_batch(short, [TransactionEvent("e3", 2, 10, 5.0, T0 + 60, (2, 2))])[0]
    assert isinstance(again, WindowRows) and again.user["user_txn_count_24h"] == 1.0  # a new user again
    assert math.isnan(again.user["user_seconds_since_prev"])


def test_a_dead_redis_is_service_unavailable(client: redis.Redis[bytes], namespace: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1)
    with pytest.raises(ServiceUnavailableError, match="ConnectionError"):
        store_for(dead, namespace).load([1], [10])

    store = store_for(client, namespace)
    state = store.load([1], [10])
    apply(FeatureEngine(LATENESS, state), [TransactionEvent("e1", 1, 10, 5.0, T0, (1, 1))])
    monkeypatch.setattr(store, "_client", dead)  # Redis goes away between load and commit
    with pytest.raises(ServiceUnavailableError, match="commit window state"):
        store.commit(state)
    assert snapshot(client, namespace) == {}
    with pytest.raises(RuntimeError, match="already committed or abandoned"):
        state.users.get(1)


def test_concurrent_writers_of_a_merchant_are_merged_and_lose_no_update(client: redis.Redis[bytes],
                                                                         namespace: str) -> None:
    a, b = store_for(client, namespace), store_for(client, namespace)
    state_a = a.load([1], [10])
    state_b = b.load([2], [10])  # another worker, another partition, the same merchant
    apply(FeatureEngine(LATENESS, state_a), [TransactionEvent("e1", 1, 10, 5.0, T0, (1, 1)),
                                             LabelEvent("l1", 10, True, T0, (0, 1))])
    apply(FeatureEngine(LATENESS, state_b), [TransactionEvent("e2", 2, 10, 7.0, T0 + 1, (2, 1)),
                                             LabelEvent("l2", 10, False, T0 + 1, (0, 2))])
    a.commit(state_a)
    b.commit(state_b)  # b's merchant keys were changed by a: merged, not refused
    assert (b.stats.conflicts, b.stats.merges) == (1, 1)
    assert client.exists(b.key(Kind.USER, 1)) and client.exists(b.key(Kind.USER, 2))
    later = run_batch(a, [TransactionEvent("e3", 1, 10, 1.0, T0 + 100, (1, 2))])[0]
    assert isinstance(later, WindowRows)
    assert later.merchant["merchant_txn_count_1h"] == 2.0  # e1 and e2, each once
    assert later.merchant["merchant_label_count_7d"] == 2.0 and later.merchant["merchant_fraud_rate_7d"] == 0.5


def test_a_user_key_changed_by_another_writer_conflicts_and_writes_nothing(client: redis.Redis[bytes],
                                                                           namespace: str) -> None:
    a, b = store_for(client, namespace), store_for(client, namespace)
    state_a = a.load([1], [10])
    state_b = b.load([1], [11])  # a zombie worker still processing the user's partition
    apply(FeatureEngine(LATENESS, state_a), [TransactionEvent("e1", 1, 10, 5.0, T0, (1, 1))])
    batch_b = [TransactionEvent("e2", 1, 11, 7.0, T0 + 1, (1, 2))]
    apply(FeatureEngine(LATENESS, state_b), batch_b)
    a.commit(state_a)
    before = snapshot(client, namespace)
    with pytest.raises(StateConflictError, match="user:1") as conflict:
        b.commit(state_b)
    assert isinstance(conflict.value, RetryBatchError)  # the runner re-processes the batch
    assert not isinstance(conflict.value, ServiceUnavailableError)  # nothing is down
    assert snapshot(client, namespace) == before  # b's merchant key was not written either: all or nothing
    assert b.stats.conflicts == 1 and b.stats.merges == 0

    retried = run_batch(b, batch_b)[0]  # the runner's retry: a fresh load sees a's update
    assert isinstance(retried, WindowRows) and retried.user["user_txn_count_10m"] == 2.0


def test_units_open_at_once_on_one_store_share_no_objects(client: redis.Redis[bytes], namespace: str) -> None:
    store = store_for(client, namespace)
    run_batch(store, [TransactionEvent("e1", 1, 10, 5.0, T0, (1, 1)), LabelEvent("l0", 10, False, T0, (0, 1))])
    transactions = store.load([1], [10])  # a transaction batch awaits its publish ...
    labels = store.load([], [10])  # ... while a label batch runs
    assert labels.merchant_labels[10] is not transactions.merchant_labels[10]
    assert apply(FeatureEngine(LATENESS, labels), [LabelEvent("l1", 10, True, T0 + 5, (0, 2))]) == [Outcome.APPLIED]
    store.commit(labels)
    rows = apply(FeatureEngine(LATENESS, transactions), [TransactionEvent("e2", 1, 10, 5.0, T0 + 70, (1, 2))])[0]
    assert isinstance(rows, WindowRows) and rows.merchant["merchant_label_count_7d"] == 1.0  # read before l1
    store.commit(transactions)  # it wrote no label state, so no conflict
    after = run_batch(store, [TransactionEvent("e3", 1, 10, 5.0, T0 + 80, (1, 3))])[0]
    assert isinstance(after, WindowRows)  # merchant windows as of T0 + 20: e1, l0 and l1
    assert after.merchant["merchant_label_count_7d"] == 2.0 and after.merchant["merchant_txn_count_1h"] == 1.0


def test_a_pooled_copy_is_not_used_once_another_writer_changed_the_key(client: redis.Redis[bytes],
                                                                       namespace: str) -> None:
    a, b = store_for(client, namespace), store_for(client, namespace)
    run_batch(a, [TransactionEvent("e1", 1, 10, 5.0, T0, (1, 1))])  # pooled in a
    run_batch(b, [TransactionEvent("e2", 1, 10, 6.0, T0 + 1, (1, 2))])  # the partition moved to b
    hits = a.stats.pool_hits
    rows = run_batch(a, [TransactionEvent("e3", 1, 10, 7.0, T0 + 2, (1, 3))])[0]  # and back to a
    assert isinstance(rows, WindowRows) and rows.user["user_txn_count_10m"] == 3.0
    assert a.stats.pool_hits == hits


def test_state_handles_are_checked(client: redis.Redis[bytes], namespace: str) -> None:
    store = store_for(client, namespace)
    store.commit(WindowState())  # a batch that loaded nothing
    with pytest.raises(ValueError, match="plain state"):
        store.commit(WindowState(users={1: KeyWindows(store._specs[Kind.USER], LATENESS)}))
    state = store.load([1], [10])
    with pytest.raises(ValueError, match="specs and lateness"):
        state.users[1] = KeyWindows(MERCHANT_TXN_SPECS, LATENESS)
    state.users[1] = KeyWindows(store._specs[Kind.USER], LATENESS)
    store.commit(state)
    with pytest.raises(RuntimeError, match="already committed"):
        store.commit(state)
    lazy = store.load([], [])
    assert lazy.users.get(1) is not None and store.stats.lazy_fetches == 1  # not loaded: fetched on demand
    assert 1 in lazy.users and 2 not in lazy.users
    with pytest.raises(ValueError, match="this store"):
        store_for(client, namespace).commit(lazy)


def test_memory_usage_reports_the_key(client: redis.Redis[bytes], namespace: str) -> None:
    store = store_for(client, namespace)
    run_batch(store, [TransactionEvent(f"e{i}", 1, 10, 5.0, T0 + i, (1, i)) for i in range(10)])
    used = store.memory_usage(Kind.USER, 1)
    assert used is not None and used > len(client.get(store.key(Kind.USER, 1)) or b"")
    assert store.memory_usage(Kind.USER, 999) is None
