"""OnlineFeatures on the real Redis through a private Feast workspace: what it writes is what
``FeatureStore.get_online_features`` serves, profiles come back with MISSING_PROFILE defaults, and an
unreachable Redis surfaces as ServiceUnavailableError."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from models.dataset import apply_definitions
from stream_app.adapters.feast_store import in_repo
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.adapters.redis_writes import SetValue
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.core.offline_layout import BATCH_DIR
from stream_app.core.profiles import MISSING_PROFILE
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS, Function
from stream_app.errors import ConfigError, ServiceUnavailableError
from stream_app.settings import RedisSettings, Settings
from stream_app.worker.process import free_port
from tests.fixtures.workspace import Workspace, open_workspace

pytestmark = pytest.mark.integration

USER_REFS = [f"user_windows:{spec.name}" for spec in USER_WINDOWS]
MERCHANT_REFS = [f"merchant_windows:{spec.name}" for spec in MERCHANT_WINDOWS]
USER_PROFILE_NAMES = ["home_country", "user_account_age_days", "user_avg_amount_30d", "user_txn_count_30d"]
MERCHANT_PROFILE_NAMES = ["merchant_avg_amount_30d", "merchant_txn_count_30d"]
NAN = float("nan")


@pytest.fixture
def workspace(settings: Settings, tmp_path: Path, unique: str) -> Iterator[Workspace]:
    ws = open_workspace(settings, tmp_path, f"online_{unique}")
    apply_definitions(ws.store)
    yield ws
    ws.store.teardown()  # drops this project's Redis keys


@pytest.fixture
def online(workspace: Workspace) -> OnlineFeatures:
    return OnlineFeatures(workspace.store)


def user_row(seed: float, since_prev: float = 5.0) -> dict[str, float]:
    """A user window row whose every value derives from ``seed`` (counts whole, as the core serves)."""
    row = {spec.name: float(int(seed) + i) if spec.function in (Function.COUNT, Function.DISTINCT)
           else seed + i / 4 for i, spec in enumerate(USER_WINDOWS)}
    row["user_seconds_since_prev"] = since_prev
    return row


def merchant_row(seed: float) -> dict[str, float]:
    return {"merchant_txn_count_1h": float(int(seed)), "merchant_label_count_7d": 2.0,
            "merchant_fraud_rate_7d": seed / 100}


def served(row: dict[str, float]) -> dict[str, Any]:
    """What get_online_features returns for a written row: ints for counts, None for NaN."""
    kinds = {spec.name: spec.function in (Function.COUNT, Function.DISTINCT) for spec in (*USER_WINDOWS,
                                                                                           *MERCHANT_WINDOWS)}
    return {name: None if math.isnan(v) else int(v) if kinds[name] else v for name, v in row.items()}


def online_rows(ws: Workspace, refs: list[str], key: str, ids: list[int]) -> list[dict[str, Any]]:
    got = ws.store.get_online_features(features=refs, entity_rows=[{key: i} for i in ids]).to_dict()
    names = [ref.split(":")[1] for ref in refs]
    return [{name: got[name][n] for name in names} for n in range(len(ids))]


def count_calls(monkeypatch: pytest.MonkeyPatch, online: OnlineFeatures, method: str) -> list[tuple[str, int]]:
    """Record (view, rows) of each provider call the adapter makes."""
    provider = online._provider
    real = getattr(provider, method)
    calls: list[tuple[str, int]] = []

    def spy(config: Any, table: Any, data: Any, *rest: Any) -> Any:
        calls.append((table.name, len(data)))
        return real(config, table, data, *rest)

    monkeypatch.setattr(provider, method, spy)
    return calls


def test_write_windows_serves_the_latest_row_per_entity(workspace: Workspace, online: OnlineFeatures,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    s = timedelta(seconds=1)
    calls = count_calls(monkeypatch, online, "online_write_batch")
    user_rows = [
        (1, t, user_row(1)),
        (2, t, user_row(20, since_prev=NAN)),  # a user's first event: no "since previous"
        (1, t + s, user_row(3)),
        (1, t + s, user_row(4)),  # same instant as the row before: the later position wins
        (1, t - s, user_row(5)),  # older than what the batch already holds for user 1: loses
        (3, (t + 2 * s).replace(tzinfo=None), user_row(30)),  # naive = UTC, as in Feast
    ]
    merchant_rows = [(10, t + s, merchant_row(7)), (10, t, merchant_row(8)), (11, t, merchant_row(9))]

    online.write_windows(user_rows, merchant_rows)

    assert calls == [("user_windows", 3), ("merchant_windows", 2)]  # one call per view, one row per entity
    assert online_rows(workspace, USER_REFS, "user_id", [1, 2, 3, 4]) == [
        served(user_row(4)), served(user_row(20, since_prev=NAN)), served(user_row(30)),
        dict.fromkeys(served(user_row(1)))]
    assert online_rows(workspace, MERCHANT_REFS, "merchant_id", [10, 11]) == [
        served(merchant_row(7)), served(merchant_row(9))]
    # The FeatureService path (with the on-demand view) serves the same rows.
    service = workspace.store.get_feature_service("fraud_model_v1")
    got = workspace.store.get_online_features(features=service, entity_rows=[{
        "user_id": 1, "merchant_id": 10, "amount": 10.0, "country": "DE", "channel": "web", "event_hour": 3}],
    ).to_dict()
    assert got["user_txn_count_24h"] == [served(user_row(4))["user_txn_count_24h"]]
    assert got["merchant_fraud_rate_7d"] == [0.07]

    online.write_windows([], [])  # an empty batch costs no call
    assert len(calls) == 2


def test_nan_is_stored_exactly_as_feasts_own_write_path_stores_it(workspace: Workspace,
                                                                 online: OnlineFeatures) -> None:
    """Same bytes as write_to_online_store: NaN is an absent value, counts Int64, the rest Float64."""
    t = datetime.now(UTC) - timedelta(minutes=1)
    row = user_row(6, since_prev=NAN) | {"user_amount_max_24h": NAN}
    frame = pd.DataFrame([{"user_id": 100, "event_timestamp": t, "created_timestamp": t} | served(row)])
    frame = frame.astype({"user_amount_max_24h": "float64", "user_seconds_since_prev": "float64"})
    workspace.store.write_to_online_store("user_windows", frame)
    online.write_windows([(101, t, row)], [])

    from feast.protos.feast.types.EntityKey_pb2 import EntityKey  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)
    from feast.protos.feast.types.Value_pb2 import Value  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    view = workspace.store.get_feature_view("user_windows")
    keys = [EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=i)]) for i in (100, 101)]
    (ts_feast, by_feast), (ts_ours, by_ours) = workspace.store.provider.online_read(
        workspace.store.config, view, keys, None)
    assert by_feast is not None
    assert by_ours is not None
    assert ts_ours == ts_feast
    assert {k: v.SerializeToString() for k, v in by_ours.items()} == {
        k: v.SerializeToString() for k, v in by_feast.items()}
    assert by_ours["user_seconds_since_prev"].WhichOneof("val") is None
    assert by_ours["user_txn_count_1h"].WhichOneof("val") == "int64_val"


def test_later_batches_follow_feasts_per_entity_timestamps(workspace: Workspace, online: OnlineFeatures) -> None:
    """skip_dedup is off: a row is applied only when newer than the stored one, so a replay is a no-op
    and a late row never overwrites; a different row at the stored instant is not applied either."""
    t = datetime.now(UTC) - timedelta(minutes=10)
    online.write_windows([(1, t, user_row(10))], [(5, t, merchant_row(10))])
    online.write_windows([(1, t, user_row(10))], [(5, t, merchant_row(10))])  # replayed batch
    online.write_windows([(1, t - timedelta(seconds=30), user_row(11))], [])  # late row
    online.write_windows([(1, t, user_row(12))], [])  # same instant, other values
    assert online_rows(workspace, USER_REFS, "user_id", [1]) == [served(user_row(10))]
    online.write_windows([(1, t + timedelta(microseconds=1), user_row(13))], [])  # newer by 1 µs
    assert online_rows(workspace, USER_REFS, "user_id", [1]) == [served(user_row(13))]
    assert online_rows(workspace, MERCHANT_REFS, "merchant_id", [5]) == [served(merchant_row(10))]


def test_bad_rows_refuse_the_whole_batch_before_anything_is_written(workspace: Workspace,
                                                                     online: OnlineFeatures) -> None:
    t = datetime.now(UTC)
    incomplete = merchant_row(1)
    del incomplete["merchant_fraud_rate_7d"]
    with pytest.raises(ValueError, match="lacks merchant_fraud_rate_7d"):
        online.write_windows([(1, t, user_row(1))], [(10, t, incomplete)])
    with pytest.raises(ValueError, match="Int64 feature"):
        online.write_windows([(1, t, user_row(1) | {"user_txn_count_1h": 2.5})], [])
    assert online_rows(workspace, USER_REFS, "user_id", [1]) == [dict.fromkeys(user_row(1))]


def test_read_profiles_returns_stored_values_and_missing_defaults(workspace: Workspace, online: OnlineFeatures,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    day = pd.Timestamp.now(tz="UTC").floor("D")
    workspace.store.write_to_online_store("user_profile", pd.DataFrame({
        "user_id": [1, 2], "event_timestamp": [day, day],
        "home_country": ["DE", None],  # user 2 signed up today: nothing known yet
        "user_account_age_days": [400.5, NAN], "user_avg_amount_30d": [42.25, NAN], "user_txn_count_30d": [17, 0],
    }))
    workspace.store.write_to_online_store("merchant_profile", pd.DataFrame({
        "merchant_id": [10], "event_timestamp": [day], "merchant_avg_amount_30d": [99.5],
        "merchant_txn_count_30d": [1234],
    }))
    calls = count_calls(monkeypatch, online, "online_read")

    users, merchants = online.read_profiles([1, 2, 999, 1], [10, 777])

    assert calls == [("user_profile", 3), ("merchant_profile", 2)]  # one call per view, each id once
    missing_user = {name: MISSING_PROFILE[name] for name in USER_PROFILE_NAMES}
    missing_merchant = {name: MISSING_PROFILE[name] for name in MERCHANT_PROFILE_NAMES}
    known: dict[str, Any] = {
        "home_country": "DE", "user_account_age_days": 400.5, "user_avg_amount_30d": 42.25, "user_txn_count_30d": 17}
    expected_users = [known, missing_user, missing_user, known]  # user 2's stored row says "nothing known"
    assert [_nan_safe(p) for p in users] == [_nan_safe(p) for p in expected_users]
    assert [type(users[0][n]) for n in USER_PROFILE_NAMES] == [str, float, float, int]
    assert users[0] is not users[3]  # duplicates get their own dicts
    assert [_nan_safe(p) for p in merchants] == [
        _nan_safe({"merchant_avg_amount_30d": 99.5, "merchant_txn_count_30d": 1234}), _nan_safe(missing_merchant)]

    # Feast's own read agrees: its value where it has one, else what MISSING_PROFILE says.
    refs = [f"user_profile:{name}" for name in USER_PROFILE_NAMES]
    theirs: list[dict[str, Any]] = [
        {name: MISSING_PROFILE[name] if value is None else value for name, value in row.items()}
              for row in online_rows(workspace, refs, "user_id", [1, 2, 999])]
    assert [_nan_safe(p) for p in theirs] == [_nan_safe(p) for p in users[:3]]

    assert online.read_profiles([], []) == ([], [])
    assert len(calls) == 2


def _nan_safe(profile: dict[str, Any]) -> dict[str, Any]:
    return {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in profile.items()}


def test_unreachable_redis_raises_service_unavailable(workspace: Workspace, tmp_path: Path) -> None:
    """A second store config on the same registry, pointing at a port nothing listens on. ``retry=null``
    (redis-py: no retries) keeps the test fast; with the default policy (3 retries, exponential
    backoff) the same error arrives after ~10 s."""
    dead = Settings(redis=RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0"))
    repo = tmp_path / "dead_repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        f"project: {workspace.store.project}\nprovider: local\n"
        f"registry: {workspace.path / 'data' / 'registry.db'}\n"
        f"online_store:\n  type: redis\n  connection_string: \"{dead.redis.feast_connection_string()},retry=null\"\n"
        "offline_store:\n  type: duckdb\nentity_key_serialization_version: 3\n")
    from feast import FeatureStore  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    online = OnlineFeatures(FeatureStore(repo_path=str(repo)))
    with pytest.raises(ServiceUnavailableError, match="write user_windows"):
        online.write_windows([(1, datetime.now(UTC), user_row(1))], [])
    with pytest.raises(ServiceUnavailableError, match="read user_profile"):
        online.read_profiles([1], [2])


def test_unapplied_definitions_are_a_config_error(settings: Settings, tmp_path: Path, unique: str) -> None:
    ws = open_workspace(settings, tmp_path, f"empty_{unique}")
    with pytest.raises(ConfigError, match="user_windows"):
        OnlineFeatures(ws.store)


def test_cached_profiles_are_served_until_the_next_materialization_is_seen(
        workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cache: profiles are read from Redis once, then served from the worker; a materialization of
    new values is served after the next registry look (profile_refresh_s later), not before."""

    now = [0.0]
    online = OnlineFeatures(workspace.store, profile_cache_size=100, profile_refresh_s=10.0, clock=lambda: now[0])
    calls = count_calls(monkeypatch, online, "online_read")
    day = pd.Timestamp.now(tz="UTC").floor("D")
    batch = workspace.path / BATCH_DIR
    batch.mkdir(parents=True, exist_ok=True)

    def materialize(snapshot: pd.Timestamp, avg: float) -> None:
        at = pd.DatetimeIndex([snapshot]).as_unit("us")  # Feast's DuckDB store reads microseconds only
        pd.DataFrame({"user_id": [1], "event_timestamp": at, "home_country": ["DE"],
                      "user_account_age_days": [10.0], "user_avg_amount_30d": [avg], "user_txn_count_30d": [3]},
                     ).to_parquet(batch / "user_profile.parquet", index=False)
        pd.DataFrame({"merchant_id": [7], "event_timestamp": at, "merchant_avg_amount_30d": [avg],
                      "merchant_txn_count_30d": [5]}).to_parquet(batch / "merchant_profile.parquet", index=False)
        with in_repo(workspace.store):
            workspace.store.materialize(start_date=(snapshot - pd.Timedelta(hours=1)).to_pydatetime(),
                                        end_date=(snapshot + pd.Timedelta(hours=1)).to_pydatetime(),
                                        feature_views=["user_profile", "merchant_profile"])

    def served_avg() -> tuple[float, float]:
        users, merchants = online.read_profiles([1], [7])
        return users[0]["user_avg_amount_30d"], merchants[0]["merchant_avg_amount_30d"]

    materialize(day - pd.Timedelta(days=1), 1.5)
    assert served_avg() == (1.5, 1.5)
    assert len(calls) == 2
    now[0] += 60.0  # the registry is looked at again: nothing new, still no read
    assert served_avg() == (1.5, 1.5)
    assert len(calls) == 2

    materialize(day, 2.5)
    assert served_avg() == (1.5, 1.5)  # before the next look: the cached values
    assert len(calls) == 2
    now[0] += 9.0
    assert served_avg() == (1.5, 1.5)
    now[0] += 1.0  # profile_refresh_s after the last look: the materialization is seen
    assert served_avg() == (2.5, 2.5)
    assert len(calls) == 4  # read once more per view, then cached again
    assert served_avg() == (2.5, 2.5)
    assert len(calls) == 4
    assert online.profiles.drops == 1


def test_rows_committed_with_the_state_are_byte_for_byte_what_the_provider_writes(
        workspace: Workspace, online: OnlineFeatures, settings: Settings, unique: str) -> None:
    """The same batches written through Feast's provider (write_windows) and through the window-state
    commit's script (window_writes + RedisWindowStore.commit) leave the same raw Redis hashes after every
    batch, and get_online_features serves the same values: NaN absent, the latest row per entity, replays
    and late or same-instant rows skipped, a row newer by 1 µs applied, and the windows sharing each
    entity's hash with its profile (one hash per entity key and project)."""
    client = redis.Redis(**settings.redis.client_kwargs())
    state = RedisWindowStore(client, f"test-commit-{unique}", allowed_lateness_s=300.0)
    project = workspace.store.project.encode()
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    s = timedelta(seconds=1)
    batches = [
        ([(1, t, user_row(1)), (2, t, user_row(20, since_prev=NAN) | {"user_amount_max_24h": NAN}),
          (1, t + s, user_row(3)), (1, t + s, user_row(4)), (3, t.replace(tzinfo=None), user_row(30))],
         [(1, t, merchant_row(7)), (11, t - s, merchant_row(9))]),
        ([(1, t + s, user_row(4)), (2, t, user_row(20, since_prev=NAN) | {"user_amount_max_24h": NAN})],
         [(1, t, merchant_row(7))]),  # a replayed batch
        ([(1, t - s, user_row(5)), (2, t, user_row(21)), (3, t + timedelta(microseconds=1), user_row(31))],
         [(11, t, merchant_row(10))]),  # late, same instant with other values, newer by 1 µs, newer
    ]

    def seed_profiles() -> None:  # users 1 and 3 already have a profile in their hash
        workspace.store.write_to_online_store("user_profile", pd.DataFrame({
            "user_id": [1, 3], "event_timestamp": [t - timedelta(days=1)] * 2, "home_country": ["DE", "FR"],
            "user_account_age_days": [4.0, 5.0], "user_avg_amount_30d": [6.0, 7.0], "user_txn_count_30d": [8, 9]}))

    def raw() -> dict[bytes, tuple[dict[bytes, bytes], int]]:
        keys = [k for k in client.scan_iter(count=1000) if k.endswith(project)]
        return {k: (client.hgetall(k), client.ttl(k)) for k in keys}

    def served_now() -> list[list[dict[str, Any]]]:
        return [online_rows(workspace, USER_REFS, "user_id", [1, 2, 3]),
                online_rows(workspace, MERCHANT_REFS, "merchant_id", [1, 11]),
                online_rows(workspace, ["user_profile:home_country"], "user_id", [1, 3])]

    def provider(users: list[Any], merchants: list[Any]) -> None:
        online.write_windows(users, merchants)

    def committed(users: list[Any], merchants: list[Any]) -> None:
        unit = state.load([u for u, _, _ in users], [m for m, _, _ in merchants])
        state.commit(unit, online.window_writes(users, merchants))

    runs = []
    for write in (provider, committed):
        for key in raw():
            client.delete(key)
        seed_profiles()
        snapshots = []
        for users, merchants in batches:
            write(users, merchants)
            snapshots.append((raw(), served_now()))
        runs.append(snapshots)
    theirs, ours = runs
    assert len(theirs[0][0]) == 5  # users 1, 2, 3 and merchants 1, 11: one hash each, windows beside profiles
    for (raw_theirs, served_theirs), (raw_ours, served_ours) in zip(theirs, ours, strict=True):
        assert raw_ours == raw_theirs
        assert [[_nan_safe(r) for r in rows] for rows in served_ours] == [
            [_nan_safe(r) for r in rows] for rows in served_theirs]
    users_served = ours[-1][1][0]
    assert users_served[0] == served(user_row(4))  # late row skipped
    assert users_served[1] == served(user_row(20, since_prev=NAN) | {"user_amount_max_24h": NAN})  # same instant
    assert users_served[2] == served(user_row(31))  # newer by 1 µs
    assert users_served[1]["user_seconds_since_prev"] is None
    assert ours[-1][1][2] == [{"home_country": "DE"}, {"home_country": "FR"}]  # profiles kept in the same hash
    assert ours[-1][1][1][1] == served(merchant_row(10))
    client.close()


def test_profiles_read_in_the_state_load_are_what_the_provider_reads_in_one_round_trip(
        workspace: Workspace, settings: Settings, unique: str) -> None:
    """lookup_profiles + RedisWindowStore.load_with: the profiles the cache does not hold are read in the
    state load's one script, decoded as read_profiles decodes the provider's rows, then served from the
    cache (no read left); the commit with the online rows is one more script call."""
    day = pd.Timestamp.now(tz="UTC").floor("D")
    workspace.store.write_to_online_store("user_profile", pd.DataFrame({
        "user_id": [1, 2], "event_timestamp": [day, day], "home_country": ["DE", None],
        "user_account_age_days": [400.5, NAN], "user_avg_amount_30d": [42.25, NAN], "user_txn_count_30d": [17, 0],
    }))
    workspace.store.write_to_online_store("merchant_profile", pd.DataFrame({
        "merchant_id": [10], "event_timestamp": [day], "merchant_avg_amount_30d": [99.5],
        "merchant_txn_count_30d": [1234]}))
    client = redis.Redis(**settings.redis.client_kwargs())
    state = RedisWindowStore(client, f"test-load-{unique}", allowed_lateness_s=300.0)
    cached = OnlineFeatures(workspace.store, profile_cache_size=100)
    users, merchants = [1, 2, 999], [10, 777]
    expected = OnlineFeatures(workspace.store).read_profiles(users, merchants)

    warm, _ = state.load_with([5], [6], [])  # each script is loaded into Redis once; count from here
    state.commit(warm, [SetValue(f"test-load-{unique}:warm", "x", 60_000)])
    commands: list[str] = []
    real = client.execute_command

    def spy(*args: Any, **options: Any) -> Any:
        commands.append(str(args[0]))
        return real(*args, **options)

    client.execute_command = spy  # type: ignore[method-assign]
    lookup = cached.lookup_profiles(users, merchants)
    assert len(lookup.reads) == 5
    unit, replies = state.load_with(users, merchants, lookup.reads)
    assert commands == ["EVALSHA"]  # window state and profiles: one round trip
    state.commit(unit, cached.window_writes([(1, datetime.now(UTC), user_row(1))], [(10, datetime.now(UTC),
                                                                                       merchant_row(1))]))
    assert commands == ["EVALSHA", "EVALSHA"]  # and one to commit, the online rows with it
    got_users, got_merchants = lookup.resolve(replies)
    assert [_nan_safe(got_users[i]) for i in users] == [_nan_safe(p) for p in expected[0]]
    assert [_nan_safe(got_merchants[i]) for i in merchants] == [_nan_safe(p) for p in expected[1]]
    assert [type(got_users[1][n]) for n in USER_PROFILE_NAMES] == [str, float, float, int]

    again = cached.lookup_profiles(users, merchants)
    assert again.reads == []  # all held now
    assert again.resolve([]) == (got_users, got_merchants)
    client.close()
