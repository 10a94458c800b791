"""The one settings object. Every value comes from ``STREAMSCORE_*`` environment variables (nested with
``__``, e.g. ``STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS``) or its default; secrets are SecretStr so they never
print. Clients are configured from here and nowhere else."""

from __future__ import annotations

import json
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_app.contract import Topics
from stream_app.core.alignment import DEFAULT_MAX_AHEAD_S, DEFAULT_MAX_IDLE_S
from stream_app.core.drift import DEFAULT_SAMPLE_ROWS
from stream_app.core.engine import DEFAULT_MAX_FUTURE_SKEW_S
from stream_app.core.window_spec import MERCHANT_LAG_S
from stream_app.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = REPO_ROOT / ".run"  # local service processes (infra/*.sh), bench and test runs
KAFKA_ADDRESS_ENV = "STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS"  # the variables that point at running services
REDIS_ADDRESS_ENV = "STREAMSCORE_REDIS__URL"
DEFAULT_STATE_CACHE_SIZE = 20_000  # decoded window states a worker keeps (WorkerSettings.state_cache_size)
FEATURE_REPO = REPO_ROOT / "feature_repo"  # the Feast definitions; runtime copies of its configuration hold the data

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseModel):
    """Broker address and security, passed identically to confluent-kafka, aiokafka and Faust; and the
    replication of the topics ``create-topics`` makes.

    ``replication_factor`` and ``min_insync_replicas`` unset take the cluster's own defaults
    (``default.replication.factor``, ``min.insync.replicas``): ``infra/kafka.sh`` sets them from its node
    count (3 nodes: 3 and 2). Set them where the cluster's defaults are not what the topics need. Every
    producer sends with acks=all, so with min.insync.replicas = replication factor - 1 a record the
    broker acknowledged survives the loss of any one broker, and producing goes on while one is away.
    ``ssl_ca_location`` is the CA bundle that signs the brokers' certificates (unset: the system's)."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a validation error must not print the password

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "streamscore"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    replication_factor: int | None = Field(default=None, ge=1)
    min_insync_replicas: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(f"{self.security_protocol} needs sasl_mechanism, sasl_username and sasl_password")
        return self

    @model_validator(mode="after")
    def _isr_within_replicas(self) -> KafkaSettings:
        if (self.replication_factor is not None and self.min_insync_replicas is not None
                and self.min_insync_replicas > self.replication_factor):
            raise ValueError(f"min_insync_replicas {self.min_insync_replicas} exceeds "
                             f"replication_factor {self.replication_factor}: no write could succeed")
        return self

    def confluent(self) -> dict[str, Any]:
        """librdkafka properties for confluent-kafka clients (admin, producer, consumer)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = str(self.ssl_ca_location)
        return conf

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        cafile = str(self.ssl_ca_location) if self.ssl_ca_location else None
        return ssl.create_default_context(cafile=cafile)

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's AIOKafkaProducer/AIOKafkaConsumer."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        return kwargs

    def faust_broker(self) -> str:
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(","))


class RedisSettings(BaseModel):
    """The Redis behind Feast's online store and the window state. ``url`` is redis://host:port/db
    (rediss:// for TLS); the ACL ``username`` (unset: Redis's ``default`` user) and the password live apart,
    the password as a secret. ``ssl_ca_certs`` is the CA bundle that signs Redis's certificate (unset: the
    system's); the certificate must name the url's host.

    The worker calls Redis synchronously from its event loop, so every call must fail fast when Redis is
    away: ``connect_timeout_s`` bounds connecting, ``socket_timeout_s`` a reply (a hung Redis), and
    redis-py's own retries are off (its default, 3 retries with exponential backoff, blocks the loop for
    seconds per call). The worker waits for Redis itself: it retries the whole batch with backoff.

    Replicated Redis under Sentinel (``infra/redis-sentinel.sh``): with ``sentinels`` set, every client
    (``adapters.redis_client.connect`` and Feast's, through ``feast_connection_string``) asks them for the
    master named ``sentinel_master`` and follows a failover; ``url`` then gives only the scheme and the db.
    ``wait_replicas`` > 0 makes a window-state commit count only once that many replicas acknowledged it
    (Redis's WAIT, within ``wait_timeout_ms``; shorter than the socket timeout, which would cut it off), so
    a failover never loses a commit whose Kafka offsets were committed."""

    model_config = ConfigDict(hide_input_in_errors=True)  # a validation error must not print the password

    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_certs: Path | None = None
    socket_timeout_s: float = Field(default=2.0, gt=0)
    connect_timeout_s: float = Field(default=1.0, gt=0)
    sentinels: str = ""  # "host:port,host:port": the sentinels; empty: ``url`` is the one Redis
    sentinel_master: str = Field(default="streamscore", min_length=1)
    wait_replicas: int = Field(default=0, ge=0)
    wait_timeout_ms: int = Field(default=1000, gt=0)

    @model_validator(mode="after")
    def _parseable(self) -> RedisSettings:
        parts = urlsplit(self.url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError(f"redis url must look like redis://host:port/db, got scheme {parts.scheme!r} "
                             f"and host {parts.hostname!r}")
        if parts.password is not None or parts.username is not None:
            raise ValueError("the redis url must not carry credentials: set username and password apart")
        for name, value in (("username", self.username), ("password", self.password),
                            ("ssl_ca_certs", self.ssl_ca_certs)):
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value or "")
            if "," in text:  # Feast's connection string is comma-separated
                raise ValueError(f"the redis {name} must not contain a comma")
        self.sentinel_addresses  # noqa: B018 - raises ValueError when malformed
        if self.wait_replicas and self.wait_timeout_ms >= self.socket_timeout_s * 1000:
            raise ValueError(f"wait_timeout_ms ({self.wait_timeout_ms}) must be shorter than socket_timeout_s "
                             f"({self.socket_timeout_s} s), which would cut the WAIT off")
        return self

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """(host, port) of each sentinel; empty without Sentinel."""
        addresses: list[tuple[str, int]] = []
        for item in filter(None, (part.strip() for part in self.sentinels.split(","))):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"sentinels must look like host:port,host:port, got {self.sentinels!r}")
            addresses.append((host, int(port)))
        return addresses

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    @property
    def db(self) -> int:
        path = urlsplit(self.url).path.strip("/")
        return int(path) if path else 0

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "rediss"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis``."""
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "db": self.db,
            "username": self.username,
            "password": self.password.get_secret_value() if self.password else None,
            "ssl": self.tls,
            "socket_timeout": self.socket_timeout_s,
            "socket_connect_timeout": self.connect_timeout_s,
            "retry": None,  # redis-py: no retries (see the class docstring)
        }
        if self.tls and self.ssl_ca_certs:
            kwargs["ssl_ca_certs"] = str(self.ssl_ca_certs)
        return kwargs

    def feast_connection_string(self) -> str:
        """Feast's own format: ``host:port,db=N,<redis.Redis keyword>=<JSON value>...[,password=...]``.
        Feast passes the keywords to ``redis.Redis``: the same timeouts, and ``retry=null`` (no retries).
        Feast JSON-decodes each value, so a string that would decode to something else (a password like
        ``123``) is JSON-quoted. With Sentinel the addresses are the sentinels' (``feast_redis_type`` tells
        Feast so).
        It carries the password: hand it to Feast only, never to a log or an error message."""
        addresses = self.sentinel_addresses or [(self.host, self.port)]
        parts = [*(f"{host}:{port}" for host, port in addresses), f"db={self.db}"]
        if self.tls:
            parts.append("ssl=true")
            if self.ssl_ca_certs:
                parts.append(f"ssl_ca_certs={_feast_string(str(self.ssl_ca_certs))}")
        parts += [f"socket_timeout={self.socket_timeout_s!r}", f"socket_connect_timeout={self.connect_timeout_s!r}",
                  "retry=null"]
        if self.username:
            parts.append(f"username={_feast_string(self.username)}")
        if self.password:
            parts.append(f"password={_feast_string(self.password.get_secret_value())}")
        return ",".join(parts)

    @property
    def feast_redis_type(self) -> Literal["redis", "redis_sentinel"]:
        """Feast's ``online_store.redis_type`` for these settings."""
        return "redis_sentinel" if self.sentinel_addresses else "redis"


def _feast_string(text: str) -> str:
    """``text`` as a value of Feast's connection string, which JSON-decodes what it can."""
    try:
        json.loads(text)
    except ValueError:
        return text
    return json.dumps(text)


class FeastSettings(BaseModel):
    """Where the Feast repository this process uses lives: a copy of ``FEATURE_REPO``'s configuration
    (made on first use) whose ``data/`` holds Feast's registry, the offline feature log and the batch
    profiles. ``feature_store.yaml`` reads the Redis address from ``STREAMSCORE_FEAST_REDIS_CONNECTION``
    (and whether it is Sentinel's from ``STREAMSCORE_FEAST_REDIS_TYPE`` and
    ``STREAMSCORE_FEAST_REDIS_SENTINEL_MASTER``), which the adapter sets from ``redis`` above."""

    repo_path: Path


class WorkerSettings(BaseModel):
    """How the stream worker consumes and retries."""

    app_id: str = "streamscore-worker"
    batch_size: int = Field(default=1000, ge=1)
    batch_within_s: float = Field(default=0.02, gt=0)
    allowed_lateness_s: float = Field(default=300.0, ge=0)
    # An event dated more than this ahead of its record's Kafka timestamp is dead-lettered as `future`.
    max_future_skew_s: float = Field(default=DEFAULT_MAX_FUTURE_SKEW_S, ge=0)
    model_alias: Literal["production", "shadow"] = "production"
    model_poll_s: float = Field(default=5.0, gt=0)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=5.0, gt=0)
    poison_attempts: int = Field(default=3, ge=1)  # unexpected failures of one batch before it is dead-lettered
    producer_linger_ms: int = Field(default=5, ge=0)
    # The producer's message.max.bytes: the largest output record. Dead letters are cut to fit under it.
    output_max_bytes: int = Field(default=1_000_000, ge=64 * 1024, le=100_000_000)
    web_port: int = Field(default=6066, ge=0, le=65535)
    # The address the web server (and so /metrics) listens on; 0.0.0.0 where a scraper on another host or
    # container must reach it (docker-compose.yml).
    web_bind: str = Field(default="127.0.0.1", min_length=1)
    # Serve the Prometheus metrics at /metrics (the sensor and the consumer-lag poller); off, the web server
    # runs without them (the bench measures their cost with and without).
    metrics: bool = True
    # The latest served feature vectors the drift PSI and the missing shares are measured on.
    drift_sample_rows: int = Field(default=DEFAULT_SAMPLE_ROWS, ge=1)
    # Static consumer-group membership (stream_app.worker.app.group_instance_id,
    # docs/decisions/0015-static-group-membership.md): unset, it is "<app_id>-<hostname>-<web_port>";
    # "" turns static membership off.
    instance_id: str | None = Field(default=None, max_length=249)
    # How long the broker waits for a silent member before moving its partitions (a worker that died
    # for good); the broker's group.min.session.timeout.ms (6 s by default) is the floor.
    session_timeout_s: float = Field(default=10.0, ge=1, le=90)
    # Daily profiles kept in the worker, per view (LRU; 0 = read every batch's profiles from Redis), and how
    # often the Feast registry is asked whether a materialization of the profile views landed (which
    # drops them): a new materialization is served at most this long after it lands.
    profile_cache_size: int = Field(default=200_000, ge=0)
    profile_refresh_s: float = Field(default=10.0, gt=0)
    # Decoded window states kept between batches (LRU; 0 = none): a kept state whose token Redis still holds
    # is neither transferred nor decoded again. Each costs the cycle collector about eight objects to walk in
    # every full collection, which stalls the whole worker (docs/decisions/0029-a-small-window-state-pool.md).
    state_cache_size: int = Field(default=DEFAULT_STATE_CACHE_SIZE, ge=0)
    # A label whose prediction is not indexed yet, while transactions are behind its label_time, is held
    # (its batch retried) for up to this long before it is counted as unjoinable.
    label_join_wait_s: float = Field(default=30.0, ge=0)
    # Event-time-aligned catch-up (stream_app.worker.alignment, docs/decisions/0024-event-time-aligned-catch-up.md):
    # a transactions partition more than align_max_ahead_s ahead in event time of the slowest one with records
    # left is paused; a partition with records left that hands over nothing for align_max_idle_s stops holding
    # the others back. Beyond the merchant lag the merchant windows would depend on the interleaving anyway.
    align_partitions: bool = True
    align_max_ahead_s: float = Field(default=DEFAULT_MAX_AHEAD_S, ge=0, le=MERCHANT_LAG_S)
    align_max_idle_s: float = Field(default=DEFAULT_MAX_IDLE_S, gt=0)
    # When set, the worker measures its event loop's stalls and appends them to this file once a second
    # (stream_app.worker.loop_lag; the bench sets it).
    loop_lag_file: Path | None = None


class SinkSettings(BaseModel):
    """How the sink (``streamscore sink``) consumes predictions and joined labels into the offline feature
    log and the label log: its consumer group, and when a part is closed (whichever comes first)."""

    group_id: str = Field(default="streamscore-sink", min_length=1, max_length=249)
    part_max_rows: int = Field(default=100_000, ge=1)  # rows of one log and hour buffered before a part is written
    part_max_age_s: float = Field(default=60.0, gt=0)  # seconds a part stays open after its first row
    poll_s: float = Field(default=0.2, gt=0)  # the longest wait for records before checking part ages
    # How long the broker waits for a silent sink before handing its partitions to another member (or to
    # its own restart: a sink that crashed holds its partitions this long); the broker's floor is 6 s.
    session_timeout_s: float = Field(default=10.0, ge=1, le=90)
    # Compaction (stream_app.sink.compaction, docs/decisions/0020-compacting-closed-hours.md): every
    # compact_every_s (0: never; `streamscore sink compact` does it on demand) the sink merges the parts of
    # each hour that ended compact_grace_s ago into one file. The grace covers the rows that still arrive
    # for an hour after it ends: events within the worker's allowed lateness (300 s), labels held for
    # their prediction (30 s), the part age (60 s) and minutes of consumer lag; a later row is merged on
    # a later pass.
    compact_every_s: float = Field(default=300.0, ge=0)
    compact_grace_s: float = Field(default=900.0, ge=0)
    metrics_port: int = Field(default=9108, ge=0, le=65535)  # Prometheus /metrics on this port (0 = off)
    metrics_bind: str = Field(default="127.0.0.1", min_length=1)  # its address (0.0.0.0: scraped from elsewhere)


class Settings(BaseSettings):
    """Everything streamscore can be told. Construct once (``get_settings()``) and pass it down."""

    model_config = SettingsConfigDict(env_prefix="STREAMSCORE_", env_nested_delimiter="__", extra="ignore",
                                      hide_input_in_errors=True)  # errors must not print secrets

    # runtime data: histories, the Feast repository's data, the model registry, reports, the label log
    data_dir: Path = REPO_ROOT / "data"
    models_dir: Path = Field(default_factory=lambda given: given["data_dir"] / "registry")  # the model registry
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: Topics = Field(default_factory=Topics)
    feast: FeastSettings = Field(
        default_factory=lambda given: FeastSettings(repo_path=given["data_dir"] / "feature_repo"))
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)


def settings_env(settings: BaseModel, prefix: str = "STREAMSCORE_") -> dict[str, str]:
    """The STREAMSCORE_* variables that reproduce ``settings`` in another process (secrets included:
    hand them to that process only)."""
    env: dict[str, str] = {}
    for name, value in settings:
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            env.update(settings_env(value, f"{key}__"))
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif value is not None:
            env[key] = str(value)
    return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once; a bad value is a ConfigError."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigError(f"invalid STREAMSCORE_* settings: {exc}") from exc
