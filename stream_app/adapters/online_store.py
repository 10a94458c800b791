"""The stream worker's batched access to Feast's online store: one provider call per view per micro-batch.

``OnlineFeatures`` writes window rows to ``user_windows`` / ``merchant_windows`` and reads the
``user_profile`` / ``merchant_profile`` rows by building the protos itself and calling the provider's
``online_write_batch`` / ``online_read``. What it writes is byte-for-byte what ``write_to_online_store``
would write, so ``FeatureStore.get_online_features`` serves it unchanged. Why not Feast's DataFrame
paths: docs/decisions/0004-online-store-through-provider.md.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from stream_app.adapters.redis_errors import unavailable_when_down
from stream_app.adapters.redis_writes import HashRead, NewerHash
from stream_app.core.profiles import MISSING_PROFILE
from stream_app.core.records import WindowRow
from stream_app.errors import ConfigError

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

USER_WINDOWS_VIEW: Final = "user_windows"
MERCHANT_WINDOWS_VIEW: Final = "merchant_windows"
USER_PROFILE_VIEW: Final = "user_profile"
MERCHANT_PROFILE_VIEW: Final = "merchant_profile"

_INT_CACHE_SIZE: Final = 65_536
_KEY_CACHE_SIZE: Final = 200_000  # Redis keys of entities remembered (emptied when full)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_UNSEEN: Final = object()

# Data passed to the provider: (entity key, feature name -> value, event time, created time).
_ProtoRow = tuple[Any, dict[str, Any], datetime, datetime | None]


@dataclass(frozen=True, slots=True)
class _WindowView:
    """A window view resolved once: the registry object and how to encode each of its features."""

    view: FeatureView
    join_key: str
    int_names: tuple[str, ...]  # Int64 features (counts, distinct counts)
    float_names: tuple[str, ...]  # Float64 features
    key_template: Any
    ts_field: str  # Feast's Redis layout: the hash field of the row's timestamp
    fields: dict[str, bytes]  # feature name -> hash field


@dataclass(frozen=True, slots=True)
class _ProfileView:
    view: FeatureView
    join_key: str
    names: tuple[str, ...]
    defaults: dict[str, Any]
    key_template: Any
    fields: tuple[bytes, ...]  # Feast's Redis layout: the hash field of each of ``names``


Profiles = dict[int, dict[str, Any]]


class ProfileLookup:
    """A batch's profiles: those the worker's cache holds, and ``reads`` (HMGETs in Feast's Redis layout)
    for the rest, for whoever reads Redis for the batch to run (the window-state load's script);
    ``resolve`` takes their replies."""

    def __init__(self, resolve: Callable[[Sequence[Sequence[bytes | None]]], tuple[Profiles, Profiles]],
                 reads: list[HashRead]) -> None:
        self.reads = reads
        self._resolve = resolve

    def resolve(self, replies: Sequence[Sequence[bytes | None]]) -> tuple[Profiles, Profiles]:
        """User and merchant profiles by id (MISSING_PROFILE defaults for unknown entities), given one
        reply per read, in order. The dicts may be the cache's: read them, do not mutate them."""
        if len(replies) != len(self.reads):
            raise ValueError(f"{len(self.reads)} profile reads, {len(replies)} replies")
        return self._resolve(replies)


class ProfileCache:
    """Profiles by (view, entity id), each view's LRU-bounded to ``size`` entries, all dropped when
    ``stamp()`` changes.

    ``stamp()`` names what the online store holds (the profile views' materialization intervals in the
    registry, which Feast records after a materialization's rows are written); it is asked at most every
    ``refresh_s`` seconds of ``clock``, so a materialization is served at most ``refresh_s`` after it
    lands. ``size`` 0 keeps nothing and never asks."""

    def __init__(self, size: int, refresh_s: float, stamp: Callable[[], object],
                 clock: Callable[[], float] = time.monotonic) -> None:
        if size < 0 or not refresh_s > 0:
            raise ConfigError(f"profile cache needs size >= 0 and refresh_s > 0, got {size}, {refresh_s}")
        self.size = size
        self.refresh_s = refresh_s
        self._stamp = stamp
        self._clock = clock
        self._held: dict[str, OrderedDict[int, dict[str, Any]]] = {}
        self._seen: object = _UNSEEN
        self._next_check = float("-inf")
        self.hits = 0
        self.misses = 0
        self.drops = 0  # times a new materialization emptied the cache
        self._first_put: float | None = None  # when the oldest entry held (at most) was put

    def refresh(self) -> None:
        """Drop everything if a materialization landed since the last look (looks at most every
        ``refresh_s``)."""
        if not self.size:
            return
        now = self._clock()
        if now < self._next_check:
            return
        self._next_check = now + self.refresh_s
        stamp = self._stamp()
        if stamp != self._seen:
            if self._seen is not _UNSEEN:
                self.drops += 1
            self._seen = stamp
            self._held.clear()
            self._first_put = None

    def get(self, view: str, entity_id: int) -> dict[str, Any] | None:
        """The cached profile (shared: do not mutate it), None when not held."""
        held = self._held.get(view)
        if held is not None:
            profile = held.get(entity_id)
            if profile is not None:
                self.hits += 1
                held.move_to_end(entity_id)
                return profile
        self.misses += 1
        return None

    def oldest_age_s(self) -> float:
        """Seconds since the first entry still possibly held was put (every entry is at most this old:
        they are dropped together); 0 when nothing is held."""
        return 0.0 if self._first_put is None else self._clock() - self._first_put

    def put(self, view: str, entity_id: int, profile: dict[str, Any]) -> None:
        if not self.size:
            return
        if self._first_put is None:
            self._first_put = self._clock()
        held = self._held.setdefault(view, OrderedDict())
        held[entity_id] = profile
        if len(held) > self.size:
            held.popitem(last=False)


class OnlineFeatures:
    """Batched writes of window rows and reads of profiles through the store's provider.

    Feature views are looked up once here, so batches make no registry calls; a later ``feast apply``
    that changes their schemas needs a new instance (the worker builds one at start-up).

    Profiles change once a day: with ``profile_cache_size`` > 0 they are kept in a ``ProfileCache``
    (per view, LRU) and read from Redis only when not held; the cache is dropped when the registry shows
    a new materialization of a profile view (looked at every ``profile_refresh_s``).

    Redis failures that mean "not now" become ServiceUnavailableError (adapters.redis_errors). How fast
    they surface is the connection string's business: ``RedisSettings.feast_connection_string`` sets
    socket timeouts and turns redis-py's own retries off.
    """

    def __init__(self, store: FeatureStore, *, profile_cache_size: int = 0, profile_refresh_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # feast is imported by whoever built ``store``; importing this module must not import it (~5 s)
        from feast.errors import FeatureViewNotFoundException  # noqa: PLC0415
        from feast.infra.online_stores.helpers import _redis_key  # noqa: PLC0415
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig  # noqa: PLC0415
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # noqa: PLC0415
        from feast.protos.feast.types.Value_pb2 import Value  # noqa: PLC0415
        from google.protobuf.timestamp_pb2 import Timestamp  # type: ignore[import-untyped]  # noqa: PLC0415

        self._config = store.config
        self._provider = store.provider
        online_config = store.config.online_store
        if not isinstance(online_config, RedisOnlineStoreConfig):
            raise ConfigError(f"the worker needs Feast's redis online store, the repository has {online_config}")
        self._redis_key: Callable[..., bytes] = _redis_key
        self._timestamp: Callable[..., Any] = Timestamp
        self._key_ttl_s: int | None = online_config.key_ttl_seconds
        self._newer_only = not online_config.skip_dedup
        self._hash_keys: dict[tuple[str, int], bytes] = {}
        self._entity_key: Callable[..., Any] = EntityKey
        self._value: Callable[..., Any] = Value
        # Shared, never mutated protos: the provider only serialises them. Counts repeat a lot.
        self._absent = Value()
        self._int_values: dict[float, Any] = {}
        try:
            self._user_windows = self._window_view(store.get_feature_view(USER_WINDOWS_VIEW))
            self._merchant_windows = self._window_view(store.get_feature_view(MERCHANT_WINDOWS_VIEW))
            self._user_profile = self._profile_view(store.get_feature_view(USER_PROFILE_VIEW))
            self._merchant_profile = self._profile_view(store.get_feature_view(MERCHANT_PROFILE_VIEW))
        except FeatureViewNotFoundException as exc:
            raise ConfigError(f"{exc} (run `python -m stream_app feast apply`)") from exc
        self._registry = store.registry
        self._project = store.project
        self.profiles = ProfileCache(profile_cache_size, profile_refresh_s, self._materializations, clock)

    def _materializations(self) -> object:
        """The profile views' materialization intervals as the registry holds them now (a file registry
        is re-read only when its file changed)."""
        return tuple(tuple(self._registry.get_feature_view(spec.view.name, self._project,
                                                           allow_cache=True).materialization_intervals)
                     for spec in (self._user_profile, self._merchant_profile))

    # --- construction -------------------------------------------------------------------------------

    @staticmethod
    def _join_key(view: FeatureView) -> str:
        from feast.types import Int64  # noqa: PLC0415  (see __init__)

        columns = view.entity_columns
        if len(columns) != 1 or columns[0].dtype != Int64:
            raise ConfigError(f"view {view.name} must have one Int64 join key, has {columns}")
        return str(columns[0].name)

    def _window_view(self, view: FeatureView) -> _WindowView:
        from feast.infra.online_stores.helpers import _mmh3  # noqa: PLC0415  (see __init__)
        from feast.infra.online_stores.redis import _versioned_fv_name  # noqa: PLC0415  (see __init__)
        from feast.types import Float64, Int64  # noqa: PLC0415  (see __init__)

        unsupported = [f"{field.name}: {field.dtype}" for field in view.features if field.dtype not in (Int64, Float64)]
        if unsupported:
            raise ConfigError(f"window view {view.name} has features {unsupported}; only Int64 and Float64 are written")
        name = _versioned_fv_name(view, self._config)  # what Feast's Redis store names the view's fields by
        return _WindowView(view, self._join_key(view), tuple(f.name for f in view.features if f.dtype == Int64),
                           tuple(f.name for f in view.features if f.dtype == Float64), self._key_template(view),
                           f"_ts:{name}", {f.name: _mmh3(f"{name}:{f.name}") for f in view.features})

    def _profile_view(self, view: FeatureView) -> _ProfileView:
        from feast.infra.online_stores.helpers import _mmh3  # noqa: PLC0415  (see __init__)
        from feast.infra.online_stores.redis import _versioned_fv_name  # noqa: PLC0415  (see __init__)

        names = tuple(field.name for field in view.features)
        undefined = [name for name in names if name not in MISSING_PROFILE]
        if undefined:
            raise ConfigError(f"profile features {undefined} of {view.name} have no MISSING_PROFILE default")
        stored = _versioned_fv_name(view, self._config)
        return _ProfileView(view, self._join_key(view), names, {name: MISSING_PROFILE[name] for name in names},
                            self._key_template(view), tuple(_mmh3(f"{stored}:{name}") for name in names))

    def _key_template(self, view: FeatureView) -> Any:
        """An EntityKey with the view's join key and id 0: copying it is cheaper than building one."""
        return self._entity_key(join_keys=[self._join_key(view)], entity_values=[self._value(int64_val=0)])

    def _hash_key(self, join_key: str, template: Any, entity_id: int) -> bytes:
        """Feast's Redis key of an entity (``_redis_key``: the serialized entity key and the project),
        remembered: every view of an entity shares it."""
        held = self._hash_keys.get((join_key, entity_id))
        if held is None:
            if len(self._hash_keys) >= _KEY_CACHE_SIZE:
                self._hash_keys.clear()
            held = self._redis_key(self._config.project, self._key(template, entity_id),
                                   entity_key_serialization_version=self._config.entity_key_serialization_version)
            self._hash_keys[(join_key, entity_id)] = held
        return held

    def _key(self, template: Any, entity_id: int) -> Any:
        key = self._entity_key()
        key.CopyFrom(template)
        key.entity_values[0].int64_val = int(entity_id)
        return key

    # --- writes -------------------------------------------------------------------------------------

    def write_windows(self, user_rows: Sequence[WindowRow], merchant_rows: Sequence[WindowRow]) -> None:
        """Write a micro-batch's window rows to ``user_windows`` and ``merchant_windows``: one provider
        call per view (none for an empty side). Rows must carry every feature of their view; extra keys
        are ignored. Naive timestamps are taken as UTC, as Feast does.

        - NaN is stored as an absent value (an empty ``Value`` proto), as Feast's DataFrame paths store it
          and as the offline log holds it (parquet null); ``get_online_features`` returns None for it.
        - One row per entity and batch: the latest by event timestamp wins, ties going to the later
          position in the batch (the provider alone would keep the first of equal times).
        - Across batches Feast's per-entity timestamp rule applies (``skip_dedup: false``, the default):
          the provider skips a row whose timestamp is not newer than the stored ``_ts:<view>``. So a
          replay is a no-op, a late row never overwrites a newer one, and a row with the same timestamp
          as the stored one but other values is not applied either. With ``skip_dedup: true`` in
          ``feature_store.yaml`` every row is written and a replay of older rows overwrites newer values.
        - Hence retrying a whole batch after ServiceUnavailableError is safe: rows already written are
          skipped, the rest applied.
        """
        # Encode both sides first: a malformed row refuses the batch before anything is written.
        batches: list[tuple[_WindowView, list[_ProtoRow]]] = [
            (spec, [(self._key(spec.key_template, entity_id), encoded, stamp, None)
                    for entity_id, encoded, stamp in self._encode_windows(spec, rows)])
            for spec, rows in ((self._user_windows, user_rows), (self._merchant_windows, merchant_rows)) if rows]
        for spec, data in batches:
            with unavailable_when_down(f"online store write {spec.view.name}"):
                self._provider.online_write_batch(self._config, spec.view, data, None)

    def window_writes(self, user_rows: Sequence[WindowRow], merchant_rows: Sequence[WindowRow],
                      ) -> list[NewerHash]:
        """What ``write_windows`` writes, as writes for the window-state commit's script (one atomic
        step with the state and the prediction index), in Feast's own Redis layout: the hash of the
        entity key and project (Feast's ``_redis_key``), fields ``mmh3("<view>:<feature>")`` (Feast's
        ``_mmh3``) holding serialized ``Value`` protos and ``_ts:<view>`` holding the serialized
        ``Timestamp``, with Feast's per-entity rule (a row not newer than the stored ``_ts:<view>`` is
        skipped, unless ``skip_dedup``) checked in the script and ``key_ttl_seconds`` applied. Same
        rules as ``write_windows`` otherwise: one row per entity (the latest), NaN absent, a malformed
        row refuses the whole batch (ValueError) before anything is returned."""
        batches = [(spec, self._encode_windows(spec, rows))
                   for spec, rows in ((self._user_windows, user_rows), (self._merchant_windows, merchant_rows))
                   if rows]
        timestamp, ttl, newer_only = self._timestamp, self._key_ttl_s, self._newer_only
        out: list[NewerHash] = []
        for spec, data in batches:
            ts_field, hashed = spec.ts_field, spec.fields
            for entity_id, values, stamp in data:
                # what Timestamp.FromDatetime sets (timegm of the UTC time tuple, microseconds as nanos)
                since = stamp - _EPOCH
                seconds, nanos = since.days * 86_400 + since.seconds, since.microseconds * 1000
                fields: dict[bytes | str, bytes] = {
                    ts_field: timestamp(seconds=seconds, nanos=nanos).SerializeToString()}
                for name, proto in values.items():
                    fields[hashed[name]] = proto.SerializeToString()
                out.append(NewerHash(self._hash_key(spec.join_key, spec.key_template, entity_id), ts_field,
                                     seconds, nanos, fields, ttl, newer_only))
        return out

    def _encode_windows(self, spec: _WindowView, rows: Sequence[WindowRow],
                        ) -> list[tuple[int, dict[str, Any], datetime]]:
        """Value protos for the latest row of each entity (by timestamp, then position in the batch), with
        the entity id and the row's (aware) timestamp."""
        latest: dict[int, tuple[datetime, Mapping[str, float]]] = {}
        for entity_id, timestamp, values in rows:
            stamp = timestamp if timestamp.tzinfo is not None else timestamp.replace(tzinfo=UTC)
            held = latest.get(entity_id)
            if held is None or stamp >= held[0]:
                latest[entity_id] = (stamp, values)

        value, absent, ints, isnan = self._value, self._absent, self._int_values, math.isnan
        data: list[tuple[int, dict[str, Any], datetime]] = []
        for entity_id, (stamp, values) in latest.items():
            encoded: dict[str, Any] = {}
            try:
                for name in spec.int_names:
                    raw = values[name]
                    if isnan(raw):  # stored absent, like Feast's DataFrame paths
                        encoded[name] = absent
                        continue
                    proto = ints.get(raw)
                    if proto is None:
                        proto = value(int64_val=_as_int(raw, name))
                        if len(ints) < _INT_CACHE_SIZE:
                            ints[raw] = proto
                    encoded[name] = proto
                for name in spec.float_names:
                    raw = values[name]
                    encoded[name] = absent if isnan(raw) else value(double_val=raw)
            except KeyError as exc:
                raise ValueError(f"{spec.view.name} row for {spec.join_key}={entity_id} lacks {exc.args[0]}") from None
            data.append((entity_id, encoded, stamp))
        return data

    # --- reads --------------------------------------------------------------------------------------

    def lookup_profiles(self, user_ids: Sequence[int], merchant_ids: Sequence[int]) -> ProfileLookup:
        """The batch's profiles from the cache, and the reads for the ids it does not hold (Feast's hash
        of each entity key, the view's feature fields: what ``online_read`` reads), for the caller to run
        in its own round trip (``RedisWindowStore.load_with``); ``ProfileLookup.resolve`` decodes the
        replies exactly as ``read_profiles`` decodes the provider's and keeps them in the cache."""
        self.profiles.refresh()
        sides = [(spec, *self._held_and_missing(spec, ids))
                 for spec, ids in ((self._user_profile, user_ids), (self._merchant_profile, merchant_ids))]
        reads = [HashRead(self._hash_key(spec.join_key, spec.key_template, i), spec.fields)
                 for spec, _found, missing in sides for i in missing]

        def resolve(replies: Sequence[Sequence[bytes | None]]) -> tuple[Profiles, Profiles]:
            value, at = self._value, 0
            for spec, found, missing in sides:
                for entity_id, reply in zip(missing, replies[at:at + len(missing)], strict=True):
                    protos: dict[str, Any] = {}
                    for name, raw in zip(spec.names, reply, strict=True):
                        if raw:  # absent and empty (a NaN written) alike: the default
                            proto = value()
                            proto.ParseFromString(raw)
                            protos[name] = proto
                    found[entity_id] = self._keep(spec, entity_id, protos)
                at += len(missing)
            return sides[0][1], sides[1][1]

        return ProfileLookup(resolve, reads)

    def read_profiles(self, user_ids: Sequence[int], merchant_ids: Sequence[int],
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Profiles for each requested id, in request order (duplicates allowed), each its own dict, with
        MISSING_PROFILE defaults for unknown entities and absent values. Ids the cache does not hold are
        read with one provider call per view (none when all are held) and then kept. Like
        ``get_online_features``, it does not enforce the view's TTL: stale rows are served."""
        self.profiles.refresh()
        return self._read(self._user_profile, user_ids), self._read(self._merchant_profile, merchant_ids)

    def _held_and_missing(self, spec: _ProfileView, ids: Sequence[int]) -> tuple[Profiles, list[int]]:
        """The cached profiles of ``ids`` by id, and the ids (each once) the cache does not hold."""
        cache, view = self.profiles, spec.view.name
        found: Profiles = {}
        missing: list[int] = []
        for entity_id in dict.fromkeys(ids):
            held = cache.get(view, entity_id)
            if held is None:
                missing.append(entity_id)
            else:
                found[entity_id] = held
        return found, missing

    def _keep(self, spec: _ProfileView, entity_id: int, protos: Mapping[str, Any]) -> dict[str, Any]:
        """The profile the stored ``protos`` (feature name -> Value) make, kept in the cache."""
        profile = dict(spec.defaults)
        for name, proto in protos.items():
            kind = proto.WhichOneof("val")
            if kind is not None and name in profile:
                profile[name] = getattr(proto, kind)
        self.profiles.put(spec.view.name, entity_id, profile)
        return profile

    def _read(self, spec: _ProfileView, ids: Sequence[int]) -> list[dict[str, Any]]:
        if not ids:
            return []
        found, missing = self._held_and_missing(spec, ids)
        if missing:
            keys = [self._key(spec.key_template, i) for i in missing]
            with unavailable_when_down(f"online store read {spec.view.name}"):
                # a fresh list: the Redis store appends its timestamp field to the one it is given
                rows = self._provider.online_read(self._config, spec.view, keys, list(spec.names))
            for entity_id, (_, values) in zip(missing, rows, strict=True):
                found[entity_id] = self._keep(spec, entity_id, values or {})
        return [dict(found[i]) for i in ids]  # copies: callers may mutate them, the cache's stay as read


def _as_int(raw: float, name: str) -> int:
    """Counts arrive as floats from the window core; refuse anything that is not a whole number."""
    if math.isinf(raw) or raw != int(raw):
        raise ValueError(f"{name} is an Int64 feature, got {raw!r}")
    return int(raw)

