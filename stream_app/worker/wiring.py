"""Builds a runnable worker from Settings: the real adapters behind each port."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

import faust
import redis

from stream_app.adapters.feast_store import open_store
from stream_app.adapters.label_log import LabelLogWriter
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.adapters.offline_log import OfflineLogWriter
from stream_app.adapters.online_store import OnlineFeatures
from stream_app.adapters.prediction_index import PredictionIndex
from stream_app.adapters.state_store import RedisWindowStore
from stream_app.core.online_quality import OnlineQuality
from stream_app.core.records import WindowRow
from stream_app.settings import Settings
from stream_app.worker.app import Runners, WorkerApp, create_app
from stream_app.worker.label_runner import LabelRunner
from stream_app.worker.labels import LabelProcessor
from stream_app.worker.model_source import RegistryModel
from stream_app.worker.processor import BatchProcessor
from stream_app.worker.publisher import KafkaPublisher
from stream_app.worker.runner import BatchRunner


class OfflineLog:
    """The OfflineLogPort over the parquet log writer: one durable part per batch. A part left buffered by
    a failed write (disk full, ...) is written first; the runner's retry then re-appends the same batch."""

    def __init__(self, writer: OfflineLogWriter) -> None:
        self.writer = writer

    def append_rows(self, user_rows: Sequence[WindowRow], merchant_rows: Sequence[WindowRow], batch_id: str) -> None:
        if self.writer.pending_rows:
            self.writer.flush()
        self.writer.append_rows(user_rows, merchant_rows, batch_id)


def worker_id() -> str:
    """This process's name in the files it writes: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def build_runners(settings: Settings, app: faust.App) -> Runners:
    """The transactions and labels runners over the real adapters (Feast, Redis, Kafka, files)."""
    store = open_store(settings)
    online = OnlineFeatures(store, profile_cache_size=settings.worker.profile_cache_size,
                            profile_refresh_s=settings.worker.profile_refresh_s)
    client = redis.Redis(**settings.redis.client_kwargs())
    namespace = f"{store.project}:{settings.worker.app_id}"
    state = RedisWindowStore(client, namespace=namespace, allowed_lateness_s=settings.worker.allowed_lateness_s)
    index = PredictionIndex(client, namespace)
    model = RegistryModel(ModelRegistry(settings.models_dir), settings.worker.model_alias, settings.worker.model_poll_s)
    processor = BatchProcessor(allowed_lateness_s=settings.worker.allowed_lateness_s, state=state, online=online,
                               model=model, max_future_skew_s=settings.worker.max_future_skew_s)
    publisher = KafkaPublisher(settings)
    offline = OfflineLog(OfflineLogWriter(Path(settings.feast.repo_path), worker_id()))
    transactions = BatchRunner(processor=processor, publisher=publisher, online=online, offline=offline, state=state,
                               settings=settings.worker, index=index)
    labels = LabelRunner(
        processor=LabelProcessor(allowed_lateness_s=settings.worker.allowed_lateness_s, state=state, index=index,
                                 transaction_partitions=settings.topics.transactions.partitions,
                                 label_partitions=settings.topics.labels.partitions),
        publisher=publisher, log=LabelLogWriter(settings.data_dir / "labels", worker_id()), state=state,
        quality=OnlineQuality(), settings=settings.worker)
    return Runners(transactions, labels)


def build_worker(settings: Settings, web_enabled: bool = False) -> WorkerApp:
    """The worker app, its runners built from ``settings`` on first use."""
    return create_app(settings, lambda app: build_runners(settings, app), web_enabled=web_enabled)
