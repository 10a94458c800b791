"""Writes of a batch's other Redis effects, applied inside the window-state commit's Lua script, and
the hash reads (``HashRead``) the window-state load runs in its own script.

The prediction index entries (``SetValue``, ``RaiseScores``, ``Delete``) and the Feast online rows (``NewerHash``)
are described here as data; ``encode`` turns them into the script's KEYS and ARGV and ``APPLY_LUA`` is
the Lua that applies them. ``RedisWindowStore.commit`` runs it after the state keys in the same script,
so a batch's effects in Redis are one atomic step; ``applier`` runs it alone (one round trip).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis

KeyName = bytes | str


@dataclass(frozen=True, slots=True)
class SetValue:
    """``SET key value [PX ttl_ms]``."""

    key: KeyName
    value: bytes | str
    ttl_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """``DEL key``."""

    key: KeyName


@dataclass(frozen=True, slots=True)
class RaiseScores:
    """``ZADD key GT score member ...``: each member's score only moves up."""

    key: KeyName
    scores: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class NewerHash:
    """A Feast online row: ``HSET key field value ...`` (``fields`` includes ``ts_field``) and, with
    ``ttl_s``, ``EXPIRE``. With ``newer_only``, written only when (``seconds``, ``nanos``) is newer than
    the ``google.protobuf.Timestamp`` stored at ``ts_field`` (or none is stored, or it is zero): Feast's
    rule for its Redis store with ``skip_dedup: false``."""

    key: bytes
    ts_field: bytes | str
    seconds: int
    nanos: int
    fields: Mapping[bytes | str, bytes]
    ttl_s: int | None = None
    newer_only: bool = True


Write = SetValue | Delete | RaiseScores | NewerHash


@dataclass(frozen=True, slots=True)
class HashRead:
    """``HMGET key field ...``: the reply is one value (or None) per field."""

    key: bytes
    fields: tuple[bytes | str, ...]

# apply_writes(k, a): applies the writes whose keys start at KEYS[k] and whose arguments start at ARGV[a]
# (to the end of ARGV), one key per write:
#   'S' value ttl_ms('0' = none) | 'D' | 'Z' m score1 member1 ... | 'H'/'F' ts_field seconds nanos ttl_s('0' = none)
#   m field1 value1 ... ('H': only if newer than the stored Timestamp; 'F': always).
# stored_ts decodes a serialized google.protobuf.Timestamp (field 1 seconds, field 2 nanos, varints).
APPLY_LUA = """
local function stored_ts(raw)
  local seconds, nanos, i = 0, 0, 1
  while i <= #raw do
    local tag = string.byte(raw, i)
    i = i + 1
    local v, mul = 0, 1
    while true do
      local b = string.byte(raw, i)
      i = i + 1
      v = v + (b % 128) * mul
      if b < 128 then break end
      mul = mul * 128
    end
    if tag == 8 then seconds = v elseif tag == 16 then nanos = v end
  end
  return seconds, nanos
end

local function apply_writes(k, a)
  while a <= #ARGV do
    local op, key = ARGV[a], KEYS[k]
    k = k + 1
    if op == 'S' then
      if ARGV[a + 2] == '0' then
        redis.call('SET', key, ARGV[a + 1])
      else
        redis.call('SET', key, ARGV[a + 1], 'PX', ARGV[a + 2])
      end
      a = a + 3
    elseif op == 'D' then
      redis.call('DEL', key)
      a = a + 1
    elseif op == 'Z' then
      local m = tonumber(ARGV[a + 1])
      local args = {}
      for j = 1, 2 * m do args[j] = ARGV[a + 1 + j] end
      redis.call('ZADD', key, 'GT', unpack(args))
      a = a + 2 + 2 * m
    else
      local m = tonumber(ARGV[a + 5])
      local write = op == 'F'
      if not write then
        local raw = redis.call('HGET', key, ARGV[a + 1])
        if not raw then
          write = true
        else
          local s, n = stored_ts(raw)
          local ns, nn = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
          write = (s == 0 and n == 0) or ns > s or (ns == s and nn > n)
        end
      end
      if write then
        local args = {}
        for j = 1, 2 * m do args[j] = ARGV[a + 5 + j] end
        redis.call('HSET', key, unpack(args))
        if ARGV[a + 4] ~= '0' then redis.call('EXPIRE', key, ARGV[a + 4]) end
      end
      a = a + 6 + 2 * m
    end
  end
end
"""

_APPLY_SCRIPT = "#!lua\n" + APPLY_LUA + "\napply_writes(1, 1)\nreturn 0\n"


def encode(writes: Sequence[Write]) -> tuple[list[KeyName], list[bytes | str | int | float]]:
    """The KEYS and ARGV tail that ``apply_writes`` reads, one key per write, in order."""
    keys: list[KeyName] = []
    args: list[bytes | str | int | float] = []
    for w in writes:
        keys.append(w.key)
        if isinstance(w, SetValue):
            args += ["S", w.value, w.ttl_ms or 0]
        elif isinstance(w, Delete):
            args.append("D")
        elif isinstance(w, RaiseScores):
            args += ["Z", len(w.scores)]
            for member, score in w.scores.items():
                args += [repr(float(score)), member]
        else:
            args += ["H" if w.newer_only else "F", w.ts_field, w.seconds, w.nanos, w.ttl_s or 0, len(w.fields)]
            for name, value in w.fields.items():
                args += [name, value]
    return keys, args


def applier(client: redis.Redis[bytes]) -> Callable[[Sequence[Write]], None]:
    """A function applying writes on ``client`` atomically in one round trip (none for no writes). Redis
    errors propagate: callers map them (adapters.redis_errors)."""
    script = client.register_script(_APPLY_SCRIPT)

    def apply(writes: Sequence[Write]) -> None:
        if writes:
            keys, args = encode(writes)
            script(keys=keys, args=args, client=client)

    return apply
