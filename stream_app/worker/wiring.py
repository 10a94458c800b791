"""Builds a runnable worker from Settings: the real adapters behind each port, and (with its web server)
the Prometheus sensor serving ``/metrics``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import faust
from prometheus_client import CollectorRegistry

from stream_app.adapters.feast_store import open_store, service_feature_names
from stream_app.adapters.kafka_lag import LAG_POLL_S, ConsumerLag, poll_every
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.adapters.prediction_index import PredictionIndex
from stream_app.adapters.prometheus_metrics import PrometheusSensor, exposition
from stream_app.adapters.redis_client import connect
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.core.online_quality import OnlineQuality
from stream_app.errors import ConfigError, RegistryError
from stream_app.settings import Settings
from stream_app.worker.app import Runners, WorkerApp, create_app
from stream_app.worker.label_runner import LabelRunner
from stream_app.worker.labels import LabelProcessor
from stream_app.worker.lane import Lane
from stream_app.worker.model_source import RegistryModel
from stream_app.worker.processor import BatchProcessor
from stream_app.worker.publisher import KafkaPublisher
from stream_app.worker.runner import BatchRunner
from stream_app.worker.sensor import NULL_SENSOR, TimedState, WorkerSensor
from stream_app.worker.shadow_source import ShadowModel

if TYPE_CHECKING:
    from feast import FeatureStore


def served_features(store: FeatureStore, registry: ModelRegistry, alias: str) -> list[str]:
    """The features the worker serves: those of the FeatureService (in Feast's registry) that the model the
    alias names at start was trained on. A new version must take exactly these to be swapped in."""
    version = registry.get_alias(alias)
    if version is None:
        raise RegistryError(f"alias {alias!r} is not set in {registry.root}; promote a version first")
    name = registry.metadata(version).feature_service
    # feast is imported by whoever built ``store``; importing this module must not import it (~5 s)
    from feast.errors import FeatureServiceNotFoundException  # noqa: PLC0415

    try:
        service = store.get_feature_service(name)
    except FeatureServiceNotFoundException as exc:
        raise ConfigError(f"the FeatureService {name!r} of {alias} ({version}) is not in Feast's registry: {exc} "
                          "(run `python -m stream_app feast apply`)") from exc
    return service_feature_names(service)


def build_runners(settings: Settings, app: faust.App, sensor: PrometheusSensor | None = None) -> Runners:
    """The transactions and labels runners over the real adapters (Feast, Redis, Kafka), reporting to
    ``sensor`` if given."""
    store = open_store(settings)
    online = OnlineFeatures(store, profile_cache_size=settings.worker.profile_cache_size,
                            profile_refresh_s=settings.worker.profile_refresh_s)
    client = connect(settings.redis)
    store_state = RedisWindowStore.for_worker(client, settings, store.project)
    namespace = store_state.namespace
    sensed: WorkerSensor = NULL_SENSOR if sensor is None else sensor
    state = store_state if sensor is None else TimedState(store_state, sensor)
    index = PredictionIndex(client, namespace)
    registry = ModelRegistry(settings.models_dir)
    model = RegistryModel(registry, settings.worker.model_alias, settings.worker.model_poll_s, sensor=sensed,
                          served=served_features(store, registry, settings.worker.model_alias), background=True)
    shadow = ShadowModel(registry, settings.worker.model_poll_s)
    processor = BatchProcessor(allowed_lateness_s=settings.worker.allowed_lateness_s, state=state, online=online,
                               model=model, max_future_skew_s=settings.worker.max_future_skew_s, shadow=shadow)
    publisher = KafkaPublisher(settings)
    lane = Lane()  # both runners: they share the state store, which is used from one thread only
    transactions = BatchRunner(processor=processor, publisher=publisher, online=online, state=state,
                               settings=settings.worker, index=index, lane=lane, sensor=sensed)
    quality = OnlineQuality()
    labels = LabelRunner(
        processor=LabelProcessor(allowed_lateness_s=settings.worker.allowed_lateness_s, state=state, index=index,
                                 transaction_partitions=settings.topics.transactions.partitions,
                                 label_partitions=settings.topics.labels.partitions),
        publisher=publisher, state=state, quality=quality, settings=settings.worker, lane=lane, sensor=sensed)
    if sensor is not None:
        sensor.watch(publisher_queue=publisher.queued, profile_cache_age=online.profiles.oldest_age_s,
                     quality=quality)
    return Runners(transactions, labels)


def build_worker(settings: Settings, web_enabled: bool = False) -> WorkerApp:
    """The worker app, its runners built from ``settings`` on first use. With its web server (and
    ``worker.metrics``), the worker serves its metrics at ``/metrics`` and measures its consumer group's lag
    every few seconds."""
    if not web_enabled or not settings.worker.metrics:
        return create_app(settings, lambda app: build_runners(settings, app), web_enabled=web_enabled)
    registry = CollectorRegistry()
    sensor = PrometheusSensor(registry, group=settings.worker.app_id, sample_rows=settings.worker.drift_sample_rows)
    lag = ConsumerLag(settings.kafka, settings.worker.app_id,
                      [settings.topics.transactions.name, settings.topics.labels.name])
    poll_every(LAG_POLL_S, lambda: sensor.lag.set(lag.poll()), threading.Event())
    return create_app(settings, lambda app: build_runners(settings, app, sensor), web_enabled=True,
                      metrics=lambda: exposition(registry), on_paused=sensor.on_partitions_paused)
