from __future__ import annotations

from pathlib import Path

import pytest
import redis
from pydantic import SecretStr, ValidationError
from redis.sentinel import SentinelConnectionPool

from stream_app.adapters.feast_store import feast_env, prepare_workspace
from stream_app.adapters.redis_client import connect
from stream_app.errors import ConfigError
from stream_app.settings import (
    FEATURE_REPO,
    KafkaSettings,
    RedisSettings,
    Settings,
    WorkerSettings,
    get_settings,
    settings_env,
)


def test_nested_environment_variables_configure_every_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("STREAMSCORE_REDIS__URL", "rediss://cache:6380/3")
    monkeypatch.setenv("STREAMSCORE_TOPICS__TRANSACTIONS__NAME", "txns.v2")
    monkeypatch.setenv("STREAMSCORE_TOPICS__TRANSACTIONS__PARTITIONS", "12")
    settings = Settings()
    assert settings.kafka.confluent()["bootstrap.servers"] == "k1:9092,k2:9092"
    assert settings.kafka.faust_broker() == "kafka://k1:9092;kafka://k2:9092"
    assert (settings.redis.host, settings.redis.port, settings.redis.db, settings.redis.tls) == ("cache", 6380, 3, True)
    assert settings.topics.transactions.name == "txns.v2"
    assert settings.topics.transactions.partitions == 12
    assert settings.topics.labels.name == "labels"


def test_sasl_credentials_reach_both_clients_and_stay_secret() -> None:
    kafka = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                          sasl_username="svc", sasl_password="s3cret")  # type: ignore[arg-type]
    assert kafka.confluent()["sasl.password"] == "s3cret"
    assert kafka.aiokafka()["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(kafka)
    assert "s3cret" not in str(kafka.model_dump())


def test_sasl_without_credentials_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs sasl_mechanism"):
        KafkaSettings(security_protocol="SASL_SSL")


def test_topic_replication_comes_from_the_environment_and_min_isr_cannot_exceed_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert (KafkaSettings().replication_factor, KafkaSettings().min_insync_replicas) == (None, None)  # the cluster's
    monkeypatch.setenv("STREAMSCORE_KAFKA__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("STREAMSCORE_KAFKA__MIN_INSYNC_REPLICAS", "2")
    settings = Settings()
    assert (settings.kafka.replication_factor, settings.kafka.min_insync_replicas) == (3, 2)
    assert settings_env(settings)["STREAMSCORE_KAFKA__MIN_INSYNC_REPLICAS"] == "2"  # reaches the worker
    with pytest.raises(ValidationError, match="exceeds replication_factor"):
        KafkaSettings(replication_factor=2, min_insync_replicas=3)
    with pytest.raises(ValidationError):
        KafkaSettings(replication_factor=0)


def test_redis_password_goes_to_feast_and_client_but_not_repr() -> None:
    redis = RedisSettings(url="redis://r:6379/1", password="pw")  # type: ignore[arg-type]
    assert redis.feast_connection_string().startswith("r:6379,db=1,")
    assert redis.feast_connection_string().endswith(",password=pw")
    assert redis.client_kwargs()["password"] == "pw"
    assert "pw" not in repr(redis)


def test_redis_url_must_be_a_redis_url() -> None:
    with pytest.raises(ValidationError, match="redis url"):
        RedisSettings(url="http://nope")


def test_redis_clients_fail_fast_with_the_configured_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both Redis clients of the worker (ours and Feast's) get the timeouts and no redis-py retries: the
    worker retries whole batches itself, and redis-py's default backoff blocks the event loop ~10 s."""
    monkeypatch.setenv("STREAMSCORE_REDIS__URL", "redis://cache:6380/2")
    monkeypatch.setenv("STREAMSCORE_REDIS__SOCKET_TIMEOUT_S", "0.75")
    monkeypatch.setenv("STREAMSCORE_REDIS__CONNECT_TIMEOUT_S", "0.25")
    settings = Settings().redis
    ours = redis.Redis(**settings.client_kwargs())
    connection = ours.get_connection_kwargs()
    assert (connection["socket_timeout"], connection["socket_connect_timeout"]) == (0.75, 0.25)
    assert ours.connection_pool.make_connection().retry.get_retries() == 0

    from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    config = RedisOnlineStoreConfig(connection_string=settings.feast_connection_string())
    feasts = RedisOnlineStore()._get_client(config)
    connection = feasts.get_connection_kwargs()
    assert (connection["socket_timeout"], connection["socket_connect_timeout"]) == (0.75, 0.25)
    assert (connection["host"], connection["port"], connection["db"]) == ("cache", "6380", 2)
    assert feasts.connection_pool.make_connection().retry.get_retries() == 0


def test_sentinel_settings_reach_our_client_and_feasts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With sentinels, both clients ask them for the named master (with the timeouts, no retries, the db
    and password of the settings), and Feast learns it from the same environment as the address."""
    monkeypatch.setenv("STREAMSCORE_REDIS__URL", "redis://ignored:1/4")
    monkeypatch.setenv("STREAMSCORE_REDIS__PASSWORD", "pw")
    monkeypatch.setenv("STREAMSCORE_REDIS__SENTINELS", "s1:26379, s2:26380")
    monkeypatch.setenv("STREAMSCORE_REDIS__SENTINEL_MASTER", "main")
    monkeypatch.setenv("STREAMSCORE_REDIS__SOCKET_TIMEOUT_S", "0.75")
    monkeypatch.setenv("STREAMSCORE_REDIS__WAIT_REPLICAS", "1")
    monkeypatch.setenv("STREAMSCORE_REDIS__WAIT_TIMEOUT_MS", "500")
    settings = Settings().redis
    assert settings.sentinel_addresses == [("s1", 26379), ("s2", 26380)]
    assert (settings.wait_replicas, settings.wait_timeout_ms) == (1, 500)

    ours = connect(settings)
    pool = ours.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "main"
    assert [(s.get_connection_kwargs()["host"], s.get_connection_kwargs()["port"])
            for s in pool.sentinel_manager.sentinels] == [("s1", 26379), ("s2", 26380)]
    assert all(s.connection_pool.make_connection().retry.get_retries() == 0 for s in pool.sentinel_manager.sentinels)
    connection = pool.connection_kwargs
    assert (connection["db"], connection["password"], connection["socket_timeout"]) == (4, "pw", 0.75)
    assert "host" not in connection and pool.make_connection().retry.get_retries() == 0  # type: ignore[attr-defined]

    from feast.infra.online_stores.redis import RedisOnlineStore  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)
    from feast.repo_config import load_repo_config  # noqa: PLC0415  (as above)

    repo = prepare_workspace(FEATURE_REPO, tmp_path / "repo")
    for key, value in feast_env(Settings()).items():
        monkeypatch.setenv(key, value)
    config = load_repo_config(repo, repo / "feature_store.yaml").online_store
    assert (config.redis_type, config.sentinel_master) == ("redis_sentinel", "main")
    feasts = RedisOnlineStore()._get_client(config)
    pool = feasts.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "main"
    assert [(s.get_connection_kwargs()["host"], s.get_connection_kwargs()["port"])
            for s in pool.sentinel_manager.sentinels] == [("s1", 26379), ("s2", 26380)]
    connection = pool.connection_kwargs
    assert (connection["db"], connection["password"], connection["socket_timeout"]) == (4, "pw", 0.75)
    assert pool.make_connection().retry.get_retries() == 0  # type: ignore[attr-defined]


def test_without_sentinels_feast_is_told_plain_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from feast.repo_config import load_repo_config  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    repo = prepare_workspace(FEATURE_REPO, tmp_path / "repo")
    for key, value in feast_env(Settings(redis=RedisSettings(url="redis://r:7/1"))).items():
        monkeypatch.setenv(key, value)
    config = load_repo_config(repo, repo / "feature_store.yaml").online_store
    assert config.redis_type == "redis" and config.connection_string.startswith("r:7,db=1,")


@pytest.mark.parametrize(("fields", "error"), [
    ({"sentinels": "s1:26379,nope"}, "host:port"),
    ({"sentinels": "s1:x"}, "host:port"),
    ({"wait_replicas": 1, "wait_timeout_ms": 2000, "socket_timeout_s": 2.0}, "shorter than socket_timeout_s"),
    ({"wait_replicas": 1, "wait_timeout_ms": 0}, "greater than 0"),
])
def test_malformed_sentinel_settings_are_refused(fields: dict[str, object], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        RedisSettings(**fields)  # type: ignore[arg-type]


def test_redis_timeouts_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        RedisSettings(socket_timeout_s=0)


def test_settings_env_reproduces_the_settings_in_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(kafka=KafkaSettings(bootstrap_servers="k:1", sasl_mechanism="PLAIN", sasl_username="u",
                                            sasl_password=SecretStr("p@ss"), security_protocol="SASL_SSL"),
                        redis=RedisSettings(url="redis://r:2/3", socket_timeout_s=0.5, sentinels="s:1,t:2",
                                            wait_replicas=1, wait_timeout_ms=100),
                        worker=WorkerSettings(app_id="w7", batch_size=7, label_join_wait_s=1.5),
                        data_dir=Path("/tmp/d"))
    env = settings_env(original)
    assert env["STREAMSCORE_KAFKA__SASL_PASSWORD"] == "p@ss" and env["STREAMSCORE_WORKER__APP_ID"] == "w7"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_runtime_data_lives_under_one_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).models_dir == tmp_path / "registry"
    assert Settings(data_dir=tmp_path, models_dir=tmp_path / "elsewhere").models_dir == tmp_path / "elsewhere"
    assert not Settings().models_dir.is_relative_to(Path(__file__).resolve().parents[2] / "models")


def test_renaming_a_topic_keeps_its_roles_partition_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_TOPICS__TRANSACTIONS_DLQ__NAME", "dead.letters")
    monkeypatch.setenv("STREAMSCORE_TOPICS__LABELS__PARTITIONS", "8")
    topics = Settings().topics
    assert (topics.transactions_dlq.name, topics.transactions_dlq.partitions) == ("dead.letters", 1)
    assert (topics.labels.name, topics.labels.partitions) == ("labels", 8)
    assert topics.transactions.partitions == 4


def test_the_feast_repository_in_use_lives_under_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(data_dir=tmp_path).feast.repo_path == tmp_path / "feature_repo"
    monkeypatch.setenv("STREAMSCORE_FEAST__REPO_PATH", str(tmp_path / "elsewhere"))
    assert Settings(data_dir=tmp_path).feast.repo_path == tmp_path / "elsewhere"


def test_a_redis_acl_user_and_ca_reach_both_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_REDIS__URL", "rediss://cache:6380/2")
    monkeypatch.setenv("STREAMSCORE_REDIS__USERNAME", "svc")
    monkeypatch.setenv("STREAMSCORE_REDIS__PASSWORD", "12345")
    monkeypatch.setenv("STREAMSCORE_REDIS__SSL_CA_CERTS", "/etc/ca/redis.pem")
    settings = Settings().redis
    kwargs = settings.client_kwargs()
    assert (kwargs["username"], kwargs["password"], kwargs["ssl"], kwargs["ssl_ca_certs"]) == (
        "svc", "12345", True, "/etc/ca/redis.pem")

    from feast.infra.online_stores.redis import RedisOnlineStore  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    _, params = RedisOnlineStore._parse_connection_string(settings.feast_connection_string())
    # Feast JSON-decodes values: the numeric-looking password must still arrive as a string
    assert (params["username"], params["password"], params["ssl"], params["ssl_ca_certs"]) == (
        "svc", "12345", True, "/etc/ca/redis.pem")


def test_the_ca_goes_to_redis_only_over_tls() -> None:
    assert "ssl_ca_certs" not in RedisSettings(url="redis://r:1/0", ssl_ca_certs=Path("/ca")).client_kwargs()


@pytest.mark.parametrize("env", [
    {"STREAMSCORE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "STREAMSCORE_KAFKA__SASL_PASSWORD": "Sekr1t-kafka"},
    {"STREAMSCORE_REDIS__PASSWORD": "Sekr1t-redis", "STREAMSCORE_REDIS__SOCKET_TIMEOUT_S": "-1"},
    {"STREAMSCORE_REDIS__PASSWORD": "Sekr1t,redis"},
    {"STREAMSCORE_REDIS__URL": "redis://svc:Sekr1t-url@r:1/0"},
    {"STREAMSCORE_REDIS__URL": "http://svc:Sekr1t-url@r:1/0"},
])
def test_invalid_settings_never_print_a_secret(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as raised:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert "invalid STREAMSCORE_* settings" in str(raised.value)
    assert "Sekr1t" not in str(raised.value)
