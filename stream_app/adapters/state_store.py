"""Durable window state of every user and merchant, in Redis, loaded and committed one batch at a time.

One Redis string per (kind, entity), ``{namespace}:win:{kind}:{id}`` with kind in ``user | merchant_txn
| merchant_label``; the value is an 8-byte commit token followed by ``KeyWindows.to_bytes()``, and each
kind has its own TTL. ``load`` fetches a batch's keys in one round trip; ``commit`` writes the changed
keys in one atomic Lua script, or nothing. Needs a single-instance Redis (the script spans many keys);
not thread-safe: one thread loads and commits (``invalidate`` may be called from any thread). Design
decisions: docs/decisions/0001 (Redis, not Faust tables), 0002 (optimistic atomic commit), 0003 (TTLs
per kind). Replicated Redis: with ``wait_replicas`` a commit also waits for replicas (``commit``).
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from stream_app.adapters.redis_errors import unavailable_when_down
from stream_app.adapters.redis_writes import APPLY_LUA, HashRead, KeyName, SetValue, Write, encode
from stream_app.core.engine import MERCHANT_LABEL_SPECS, MERCHANT_TXN_SPECS, USER_TXN_SPECS, WindowState
from stream_app.core.window_spec import DAY, WindowSpec
from stream_app.core.windows import KeyWindows
from stream_app.errors import ConfigError, ServiceUnavailableError, StateConflictError
from stream_app.settings import DEFAULT_STATE_CACHE_SIZE, Settings

_TOKEN_BYTES = 8
DEFAULT_GRACE_S = float(DAY)
DEFAULT_USER_TTL_S = 30.0 * DAY
_MERGE_ATTEMPTS = 20  # merchant merges per commit before giving up (each means another worker committed)

# KEYS: the batch's n state keys, then one key per hash read; ARGV: n, then per state key the token of its
# pooled copy ("" = none), then per hash read its field count m and m fields. Returns per state key: 1 = the
# pooled copy is current, 0 = no such key, else the stored value; then per hash read its HMGET reply.
_LOAD_SCRIPT = """#!lua flags=no-writes
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  local key, known = KEYS[i], ARGV[1 + i]
  if known ~= '' and redis.call('GETRANGE', key, 0, 7) == known then
    out[i] = 1
  else
    local value = redis.call('GET', key)
    if value then out[i] = value else out[i] = 0 end
  end
end
local a = n + 2
for r = n + 1, #KEYS do
  local m = tonumber(ARGV[a])
  out[r] = redis.call('HMGET', KEYS[r], unpack(ARGV, a + 1, a + m))
  a = a + 1 + m
end
return out
"""

# KEYS: the n state keys to write, then one key per other write; ARGV: n, then n loaded tokens ("" = the key
# did not exist), n new values ("" = delete), n TTLs in ms ("0" = none), then the other writes
# (redis_writes.encode). Writes nothing and returns the 1-based indices of the state keys whose token changed
# since they were loaded, or writes every key and the other writes and returns {}. "#!lua" without flags:
# Redis refuses the whole script up front when over maxmemory, so it cannot stop half-way on OOM.
_COMMIT_SCRIPT = "#!lua\n" + APPLY_LUA + """
local n = tonumber(ARGV[1])
local stale = {}
for i = 1, n do
  if redis.call('GETRANGE', KEYS[i], 0, 7) ~= ARGV[1 + i] then stale[#stale + 1] = i end
end
if #stale > 0 then return stale end
for i = 1, n do
  local value = ARGV[1 + n + i]
  local ttl = ARGV[1 + 2 * n + i]
  if value == '' then
    redis.call('DEL', KEYS[i])
  elseif ttl == '0' then
    redis.call('SET', KEYS[i], value)
  else
    redis.call('SET', KEYS[i], value, 'PX', ttl)
  end
end
apply_writes(n + 1, 3 * n + 2)
return stale
"""
_COMMIT_SHA = hashlib.sha1(_COMMIT_SCRIPT.encode()).hexdigest()  # how Redis names the script (EVALSHA)


def state_namespace(project: str, app_id: str) -> str:
    """The state namespace of a worker: its Feast project and its consumer group (``worker.app_id``)."""
    return f"{project}:{app_id}"


@dataclass(frozen=True)
class SeedCounts:
    """What ``RedisWindowStore.seed`` did: keys written per kind, and keys left as they were (they existed)."""

    written: dict[Kind, int]
    kept: int


class Kind(StrEnum):
    """Which windows of an entity a key holds (part of the Redis key)."""

    USER = "user"
    MERCHANT_TXN = "merchant_txn"
    MERCHANT_LABEL = "merchant_label"


@dataclass
class StoreStats:
    """Counters since the store was created (for metrics and the bench)."""

    loads: int = 0
    keys_loaded: int = 0
    pool_hits: int = 0
    missing: int = 0
    lazy_fetches: int = 0  # keys the engine asked for that load() was not given: one round trip each
    commits: int = 0
    keys_written: int = 0
    keys_deleted: int = 0
    keys_unchanged: int = 0  # touched but byte-identical: not rewritten
    bytes_written: int = 0
    conflicts: int = 0  # commits that found keys changed by another writer
    merges: int = 0  # of which merchant keys were merged and the commit retried


class _Entry:
    """One key as a unit of work (or the pool) holds it."""

    __slots__ = ("digest", "token", "touched", "windows")

    def __init__(self, windows: KeyWindows | None, token: bytes, digest: bytes | None) -> None:
        self.windows = windows
        self.token = token  # b"" when the key did not exist in Redis
        self.digest = digest  # of the serialized state as loaded; None for a missing key
        self.touched = False


def _digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=16).digest()


class _Table(MutableMapping[int, KeyWindows]):
    """One kind's view of a unit of work; records every key the engine reads or writes."""

    __slots__ = ("_entries", "_kind", "_unit")

    def __init__(self, unit: _Unit, kind: Kind) -> None:
        self._unit = unit
        self._kind = kind
        self._entries = unit.entries[kind]

    def _entry(self, key: int) -> _Entry:
        unit = self._unit
        if not unit.open:
            raise RuntimeError("this window state was already committed or abandoned; load() a new one")
        entry = self._entries.get(key)
        if entry is None:
            entry = unit.fetch_one(self._kind, key)
        return entry

    def __getitem__(self, key: int) -> KeyWindows:
        entry = self._entry(key)
        if entry.windows is None:
            raise KeyError(key)
        entry.touched = True  # the engine mutates what it reads, sometimes without assigning it back
        return entry.windows

    def get(self, key: int, default: Any = None) -> Any:
        entry = self._entry(key)
        if entry.windows is None:
            return default
        entry.touched = True
        return entry.windows

    def __setitem__(self, key: int, value: KeyWindows) -> None:
        self._unit.store._check_windows(self._kind, value)
        entry = self._entry(key)
        entry.windows = value
        entry.touched = True

    def __delitem__(self, key: int) -> None:
        entry = self._entry(key)
        if entry.windows is None:
            raise KeyError(key)
        entry.windows = None
        entry.touched = True

    def __iter__(self) -> Iterator[int]:
        if not self._unit.open:
            raise RuntimeError("this window state was already committed or abandoned")
        return iter([k for k, e in self._entries.items() if e.windows is not None])

    def __len__(self) -> int:
        return sum(1 for e in self._entries.values() if e.windows is not None)


class _Unit:
    """The keys of one batch between load() and commit()."""

    __slots__ = ("entries", "open", "state", "store")

    def __init__(self, store: RedisWindowStore) -> None:
        self.store = store
        self.open = True
        self.entries: dict[Kind, dict[int, _Entry]] = {kind: {} for kind in Kind}
        self.state = WindowState(users=_Table(self, Kind.USER), merchant_txns=_Table(self, Kind.MERCHANT_TXN),
                                 merchant_labels=_Table(self, Kind.MERCHANT_LABEL))

    def fetch_one(self, kind: Kind, key: int) -> _Entry:
        self.store.stats.lazy_fetches += 1
        self.store._fetch(self, [(kind, key)])
        return self.entries[kind][key]


class RedisWindowStore:
    """Window state of every user and merchant in Redis, as units of work: ``load`` a batch's keys, let the
    engine mutate the returned WindowState, ``commit`` it (all or nothing).

    Pool: decoded KeyWindows of committed batches are kept (LRU, ``cache_size`` entries) with their
    token. A pooled object is handed to at most one open unit (checked out, returned on commit), so
    several units may be open at once (transaction and label batches interleave between calls)
    without sharing mutable objects. A pooled copy is used only while Redis still holds its token, so
    the pool never serves stale state.

    Errors: Redis's "not now" errors become ServiceUnavailableError (adapters.redis_errors); a commit
    that failed that way may or may not have reached Redis, and both are safe to replay.

    ``ttl_s`` overrides the per-kind TTLs of ``default_ttl_s`` (None = never expire). ``wait_replicas``
    > 0: a commit succeeds only once that many replicas hold it (``commit``).
    """

    def __init__(self, client: redis.Redis[bytes], namespace: str, *, allowed_lateness_s: float,
                 user_specs: tuple[WindowSpec, ...] = USER_TXN_SPECS,
                 merchant_txn_specs: tuple[WindowSpec, ...] = MERCHANT_TXN_SPECS,
                 merchant_label_specs: tuple[WindowSpec, ...] = MERCHANT_LABEL_SPECS,
                 ttl_s: Mapping[Kind, float | None] | None = None,
                 cache_size: int = DEFAULT_STATE_CACHE_SIZE, wait_replicas: int = 0, wait_timeout_ms: int = 1000,
                 ) -> None:
        if not namespace or any(c.isspace() for c in namespace):
            raise ConfigError(f"state store namespace must be non-empty without spaces, got {namespace!r}")
        if cache_size < 0:
            raise ConfigError("cache_size must be >= 0")
        if wait_replicas < 0 or wait_timeout_ms <= 0:
            raise ConfigError("wait_replicas must be >= 0 and wait_timeout_ms > 0 (WAIT 0 would block for good)")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigError("the state store needs a redis client with decode_responses=False (binary values)")
        self._client = client
        self.namespace = namespace
        self.allowed_lateness_s = float(allowed_lateness_s)
        self._specs = {Kind.USER: user_specs, Kind.MERCHANT_TXN: merchant_txn_specs,
                       Kind.MERCHANT_LABEL: merchant_label_specs}
        ttl: dict[Kind, float | None] = {
            kind: self.default_ttl_s(kind, specs, self.allowed_lateness_s) for kind, specs in self._specs.items()}
        ttl.update(ttl_s or {})
        for kind, seconds in ttl.items():
            if seconds is not None and not seconds > 0:
                raise ConfigError(f"ttl for {kind} must be > 0 seconds or None, got {seconds!r}")
        self.ttl_s = ttl
        self._ttl_ms = {kind: None if s is None else max(1, round(s * 1000)) for kind, s in ttl.items()}
        self._prefix = {kind: f"{namespace}:win:{kind.value}:" for kind in Kind}
        self._cache_size = cache_size
        self._pool: OrderedDict[tuple[Kind, int], _Entry] = OrderedDict()
        self._load_script = client.register_script(_LOAD_SCRIPT)
        self._commit_script = client.register_script(_COMMIT_SCRIPT)
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        self._fence_key = f"{namespace}:committed"
        self.stats = StoreStats()

    @classmethod
    def for_worker(cls, client: redis.Redis[bytes], settings: Settings, project: str) -> RedisWindowStore:
        """The store of the worker ``settings`` describe in Feast project ``project``: its namespace
        (``state_namespace``), allowed lateness, pool size and replica wait."""
        worker = settings.worker
        return cls(client, state_namespace(project, worker.app_id), allowed_lateness_s=worker.allowed_lateness_s,
                   cache_size=worker.state_cache_size, wait_replicas=settings.redis.wait_replicas,
                   wait_timeout_ms=settings.redis.wait_timeout_ms)

    @staticmethod
    def default_ttl_s(kind: Kind, specs: Sequence[WindowSpec], allowed_lateness_s: float) -> float:
        """Max window + lateness + a day of grace; 30 days at least for users (SINCE_PREVIOUS parity).

        After that long without a write, every observation of a merchant key is out of every window, so an
        expired key serves what the kept one would (counts 0, rate 0.0); the grace covers a worker that
        was down or is catching up (the TTL runs on the wall clock, the windows on event time). Users keep
        longer so ``user_seconds_since_prev`` stays exact for dormant accounts, as in the backfill; a user
        idle longer is served as new (NaN). Why: docs/decisions/0003-window-state-ttls.md.
        """
        ttl = max(s.window_s for s in specs) + allowed_lateness_s + DEFAULT_GRACE_S
        return max(ttl, DEFAULT_USER_TTL_S) if kind is Kind.USER else ttl

    def key(self, kind: Kind, entity_id: int) -> str:
        """The Redis key holding one entity's windows of one kind."""
        return f"{self._prefix[kind]}{int(entity_id)}"

    # ----------------------------------------------------------------------------------- unit of work

    def load(self, user_ids: Iterable[int], merchant_ids: Iterable[int]) -> WindowState:
        """A new unit of work holding the users' windows and the merchants' transaction and label windows,
        fetched in one round trip (a read-only script that returns only the values whose token differs
        from the pooled copy's). The returned WindowState records which keys the engine touches; keys
        beyond these are fetched one by one (one round trip each, still correct). A state that is never
        committed changes nothing."""
        return self.load_with(user_ids, merchant_ids, ())[0]

    def load_with(self, user_ids: Iterable[int], merchant_ids: Iterable[int], reads: Sequence[HashRead],
                  ) -> tuple[WindowState, list[list[bytes | None]]]:
        """``load``, and the batch's other ``reads`` (the profiles the worker does not hold) in the same
        script: one round trip. Returns the state and one HMGET reply per read, in order."""
        unit = _Unit(self)
        unit.state.journal = True
        merchants = list(dict.fromkeys(int(m) for m in merchant_ids))
        wanted = [(Kind.USER, u) for u in dict.fromkeys(int(u) for u in user_ids)]
        wanted += [(Kind.MERCHANT_TXN, m) for m in merchants]
        wanted += [(Kind.MERCHANT_LABEL, m) for m in merchants]
        self.stats.loads += 1
        replies = self._fetch(unit, wanted, reads) if wanted or reads else []
        return unit.state, replies

    def commit(self, state: WindowState, also: Sequence[Write] = ()) -> None:
        """Persist every key of ``state`` whose bytes changed, and the batch's other writes ``also`` (the
        prediction index entries and the Feast online rows, adapters.redis_writes), in one atomic script,
        or nothing.

        Writes only if every key still holds the token this unit loaded (optimistic concurrency). The
        positions inside each KeyWindows then say exactly which events are applied, so replaying a batch
        after a crash is idempotent. Merchant keys changed by another worker are merged (``_merge``) and
        the commit retried; a changed user key (a zombie writer after a rebalance) raises
        StateConflictError: the batch must be re-processed from a fresh ``load``. Reads are not checked.
        Why: docs/decisions/0002-window-state-optimistic-commit.md.

        ``state`` must come from this store's ``load``; an empty plain WindowState (a batch that loaded
        nothing) is accepted (only ``also`` is written). Raises StateConflictError if another writer got there first,
        ServiceUnavailableError if Redis failed; either way the state is closed and must be re-loaded.

        With ``wait_replicas``, the commit is followed by WAIT on the same connection (one round trip, a
        pipeline) and counts only if that many replicas acknowledged it within ``wait_timeout_ms``; else
        ServiceUnavailableError: the batch is retried, never acknowledged, so its Kafka offsets are not
        committed while the only copy of its state is the master's, and a failover (Sentinel promotes the
        replica with the most replicated data) cannot lose it. Such a commit may have reached the
        master; its retry finds the batch applied there or (after a failover) not, and either is a
        correct replay. WAIT covers what its connection wrote, so every commit writes at least one key (the
        namespace's ``committed`` key, the commit's token), even a replay that changes nothing: that
        makes its WAIT cover the state it loaded, which an earlier, unacknowledged attempt may have written.
        """
        unit = self._unit_of(state)
        if unit is None:
            if also:
                self._transact([], [], [], b"", [*also, *self._fence(os.urandom(_TOKEN_BYTES))])
            return
        unit.open = False
        names: list[str] = []
        expected: list[bytes] = []
        writes: list[tuple[Kind, int, _Entry, bytes | None]] = []  # payload None = delete
        unchanged = 0
        for kind, entries in unit.entries.items():
            for entity, entry in entries.items():
                if not entry.touched:
                    continue
                if entry.windows is None:
                    if entry.token:
                        writes.append((kind, entity, entry, None))
                    continue
                payload = entry.windows.to_bytes()
                if _digest(payload) == entry.digest:
                    unchanged += 1
                    continue
                writes.append((kind, entity, entry, payload))
        self.stats.keys_unchanged += unchanged
        if writes or also or self._wait_replicas:
            token = os.urandom(_TOKEN_BYTES)
            also = [*also, *self._fence(token)]
            for kind, entity, pending, _data in writes:
                names.append(self.key(kind, entity))
                expected.append(pending.token)
            for attempt in range(_MERGE_ATTEMPTS + 1):
                stale = self._transact(names, expected, writes, token, also)
                if not stale:
                    break
                self.stats.conflicts += 1
                if attempt == _MERGE_ATTEMPTS or any(writes[i][0] is Kind.USER for i in stale):
                    raise StateConflictError([names[i] for i in stale])
                self._merge(unit, writes, expected, stale)
            written = 0
            for _kind, _entity, done, data in writes:
                if data is None:
                    self.stats.keys_deleted += 1
                    done.token, done.digest = b"", None
                else:
                    written += 1
                    self.stats.bytes_written += _TOKEN_BYTES + len(data)
                    done.token, done.digest = token, _digest(data)
            self.stats.keys_written += written
        self.stats.commits += 1
        self._return_to_pool(unit)

    def seed(self, state: WindowState, chunk: int = 1000) -> SeedCounts:
        """Write the windows of a state built elsewhere (the backfill's engine: plain dicts) as this store's
        keys, so a worker starting on this namespace serves warm windows from its first event.

        Each key is written only if it does not exist (SET NX): state a worker already committed is newer
        than any backfill and stays, and seeding again changes nothing. The written copies forget their
        source positions (``KeyWindows.forget_positions``): they are the backfill's arrival ranks, not
        offsets of this deployment's topics, and would make its first records look like replays. Event
        keys stay, so a historical event re-sent to the stream is a DUPLICATE. ``chunk`` keys per
        pipelined round trip; with ``wait_replicas``, each round trip also waits for the replicas."""
        token = os.urandom(_TOKEN_BYTES)
        tables = ((Kind.USER, state.users), (Kind.MERCHANT_TXN, state.merchant_txns),
                  (Kind.MERCHANT_LABEL, state.merchant_labels))
        pending = [(kind, entity, windows) for kind, table in tables for entity, windows in table.items()]
        written = dict.fromkeys(Kind, 0)
        kept = 0
        for start in range(0, len(pending), chunk):
            part = pending[start:start + chunk]
            pipe = self._client.pipeline(transaction=False)
            for kind, entity, windows in part:
                self._check_windows(kind, windows)
                copy = KeyWindows.from_bytes(windows.specs, windows.allowed_lateness_s, windows.to_bytes())
                copy.forget_positions()
                pipe.set(self.key(kind, entity), token + copy.to_bytes(), px=self._ttl_ms[kind], nx=True)
            if self._wait_replicas:
                pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)  # type: ignore[no-untyped-call]
            with unavailable_when_down("seed window state"):
                replies = pipe.execute()
            if self._wait_replicas and int(replies[-1]) < self._wait_replicas:
                raise ServiceUnavailableError(
                    f"redis: seeded state reached {replies[-1]} of {self._wait_replicas} replicas within "
                    f"{self._wait_timeout_ms} ms")
            for (kind, _entity, _windows), reply in zip(part, replies, strict=False):
                if reply:
                    written[kind] += 1
                else:
                    kept += 1
        return SeedCounts(written, kept)

    def invalidate(self) -> None:
        """Drop the in-process pool (after a rebalance or an error). Open units stay valid: their commit
        checks tokens against Redis anyway. Safe from any thread: the pool is replaced, not emptied, so a
        load or commit running meanwhile finishes on the pool it started with."""
        self._pool = OrderedDict()

    # ---------------------------------------------------------------------------------------- inspection

    def memory_usage(self, kind: Kind, entity_id: int) -> int | None:
        """Bytes Redis attributes to one key (MEMORY USAGE, exact: SAMPLES 0), None if absent."""
        with unavailable_when_down("MEMORY USAGE"):
            used = self._client.memory_usage(self.key(kind, entity_id), samples=0)
        return None if used is None else int(used)

    @property
    def cached(self) -> int:
        """Decoded states held in the pool."""
        return len(self._pool)

    # ------------------------------------------------------------------------------------------ internals

    def _check_windows(self, kind: Kind, windows: KeyWindows) -> None:
        """Refuse state of other specs under a key: it would not decode (or mean something else) later."""
        if not isinstance(windows, KeyWindows):
            raise TypeError(f"window state must be KeyWindows, got {type(windows).__name__}")
        if windows.specs != self._specs[kind] or windows.allowed_lateness_s != self.allowed_lateness_s:
            raise ValueError(f"KeyWindows for {kind} keys must use this store's {kind} specs and lateness")

    def _fence(self, token: bytes) -> list[Write]:
        """The write every commit makes when it waits for replicas (see ``commit``); none otherwise."""
        return [SetValue(self._fence_key, token)] if self._wait_replicas else []

    def _unit_of(self, state: WindowState) -> _Unit | None:
        tables = (state.users, state.merchant_txns, state.merchant_labels)
        units = {t._unit for t in tables if isinstance(t, _Table)}
        if not units:
            if any(len(t) for t in tables):
                raise ValueError("commit() takes the WindowState returned by load(); this one holds plain state")
            return None
        unit = units.pop()
        if units or unit.store is not self or not all(isinstance(t, _Table) for t in tables):
            raise ValueError("commit() takes the WindowState returned by this store's load()")
        if not unit.open:
            raise RuntimeError("this window state was already committed or abandoned; load() a new one")
        return unit

    def _fetch(self, unit: _Unit, wanted: Sequence[tuple[Kind, int]], reads: Sequence[HashRead] = (),
               ) -> list[list[bytes | None]]:
        """Fill ``unit`` with ``wanted`` keys: pooled copies whose token Redis still holds, else Redis's.
        Returns the replies of ``reads``, run in the same script."""
        names: list[bytes | str] = []
        known: list[bytes | str | int] = []
        pooled: list[_Entry | None] = []
        pool = self._pool
        for kind, entity in wanted:
            entry = pool.pop((kind, entity), None)  # checked out: no other unit can get this object
            names.append(self.key(kind, entity))
            known.append(entry.token if entry is not None else b"")
            pooled.append(entry)
        for read in reads:
            names.append(read.key)
            known += [len(read.fields), *read.fields]
        with unavailable_when_down("load window state"):
            replies = self._load_script(keys=names, args=[len(wanted), *known], client=self._client)
        self.stats.keys_loaded += len(wanted)
        for (kind, entity), name, reply, cached in zip(wanted, names, replies, pooled, strict=False):
            if reply == 1 and cached is not None:
                self.stats.pool_hits += 1
                cached.touched = False
                entry = cached
            elif reply == 0:
                self.stats.missing += 1
                entry = _Entry(None, b"", None)
            else:
                entry = self._decode(kind, str(name), bytes(reply))
            unit.entries[kind][entity] = entry
        return list(replies[len(wanted):])

    def _decode(self, kind: Kind, name: str, value: bytes) -> _Entry:
        token, payload = value[:_TOKEN_BYTES], value[_TOKEN_BYTES:]
        try:
            windows = KeyWindows.from_bytes(self._specs[kind], self.allowed_lateness_s, payload)
        except ValueError as exc:
            raise ConfigError(f"{name} holds window state this build cannot read ({exc}); the window specs "
                              "changed? use a new state namespace") from exc
        return _Entry(windows, token, _digest(payload))

    def _transact(self, names: list[str], expected: list[bytes],
                  writes: list[tuple[Kind, int, _Entry, bytes | None]], token: bytes,
                  also: Sequence[Write]) -> list[int]:
        """Check the loaded tokens and write every key and ``also``, atomically in one script. Returns the
        (0-based) indices of the keys changed since they were loaded; then nothing was written.

        A Lua script rather than MULTI/EXEC: Redis runs it with no other command in between, as it runs
        EXEC, and it checks the tokens before its first write in the same round trip (MULTI/EXEC needs
        WATCH and a separate check, and redis-py parses one QUEUED reply per key). ``#!lua`` without flags
        makes Redis refuse the whole script when over maxmemory, and its SETs cannot fail otherwise, so
        it never stops half-way."""
        values = [b"" if payload is None else token + payload for _kind, _entity, _entry, payload in writes]
        ttls = [self._ttl_ms[kind] or 0 for kind, _entity, _entry, _payload in writes]
        other_keys, other_args = encode(also)
        keys = [*names, *other_keys]
        args = [len(names), *expected, *values, *ttls, *other_args]
        with unavailable_when_down("commit window state"):
            if self._wait_replicas:
                stale = self._commit_and_wait(keys, args)
            else:
                stale = self._commit_script(keys=keys, args=args, client=self._client)
        return [int(i) - 1 for i in stale]

    def _commit_and_wait(self, keys: Sequence[KeyName], args: Sequence[bytes | str | int | float]) -> list[int]:
        """The commit script, then ``WAIT wait_replicas wait_timeout_ms``, pipelined on one connection (WAIT
        waits for what its own connection wrote). Returns the script's reply; raises ServiceUnavailableError
        when the script wrote and fewer replicas acknowledged it in time."""
        for _ in range(2):  # a second time after loading the script into a Redis that lacked it
            pipe = self._client.pipeline(transaction=False)
            pipe.evalsha(_COMMIT_SHA, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self._wait_replicas, self._wait_timeout_ms)  # type: ignore[no-untyped-call]
            stale, acked = pipe.execute(raise_on_error=False)
            if not isinstance(stale, redis.exceptions.NoScriptError):
                break
            self._client.script_load(_COMMIT_SCRIPT)  # type: ignore[no-untyped-call]
        for reply in (stale, acked):
            if isinstance(reply, Exception):
                raise reply
        if not stale and int(acked) < self._wait_replicas:
            raise ServiceUnavailableError(
                f"redis: the commit reached {acked} of {self._wait_replicas} replicas within "
                f"{self._wait_timeout_ms} ms; not acknowledged, to be retried")
        return list(stale)

    def _merge(self, unit: _Unit, writes: list[tuple[Kind, int, _Entry, bytes | None]], expected: list[bytes],
               stale: list[int]) -> None:
        """Re-read the stale merchant keys and re-apply this unit's observations on top (in place).

        Merchant keys are written by every worker (transactions of all partitions reach a merchant), so
        another worker's commit is merged rather than the batch re-processed: this unit's journal
        (``WindowState.journal``) re-applies its own observations over the other's, replays being
        recognised by position. The values already served stay valid, since merchant windows are read
        ``window_spec.MERCHANT_LAG_S`` in the past."""
        journals = {Kind.MERCHANT_TXN: unit.state.merchant_txns_applied,
                    Kind.MERCHANT_LABEL: unit.state.merchant_labels_applied}
        names = [self.key(writes[i][0], writes[i][1]) for i in stale]
        with unavailable_when_down("re-read merchant state"):
            fresh = self._client.mget(names)
        for i, name, value in zip(stale, names, fresh, strict=True):
            kind, entity = writes[i][0], writes[i][1]
            if value is None:
                entry = _Entry(KeyWindows(self._specs[kind], self.allowed_lateness_s), b"", None)
            else:
                entry = self._decode(kind, name, bytes(value))
            assert entry.windows is not None
            for obs in journals[kind].get(entity, ()):
                entry.windows.apply(obs)
            entry.touched = True
            unit.entries[kind][entity] = entry
            writes[i] = (kind, entity, entry, entry.windows.to_bytes())
            expected[i] = entry.token
        self.stats.merges += 1

    def _return_to_pool(self, unit: _Unit) -> None:
        if not self._cache_size:
            return
        pool = self._pool
        for kind, entries in unit.entries.items():
            for entity, entry in entries.items():
                if entry.windows is None:
                    continue
                entry.touched = False
                pool[(kind, entity)] = entry
                pool.move_to_end((kind, entity))
        while len(pool) > self._cache_size:
            pool.popitem(last=False)

