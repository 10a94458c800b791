"""The sink's consumer loop: a plain confluent-kafka consumer group (auto-commit off) over
``predictions``, ``labels.joined`` and ``transactions``. Each prediction becomes one row per window view
(derived from the feature vector it carries, ``core.served_rows``), each joined label one label-log row,
each valid transaction one transaction-log row (``adapters.transaction_log``); rows go to
``RollingParts`` under the hour of their event (label) time, and offsets are committed only up to
records whose parts are durable."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, start_http_server

from stream_app.adapters.kafka_lag import LAG_POLL_S, ConsumerLag, poll_every
from stream_app.adapters.label_log import conform as conform_labels
from stream_app.adapters.label_log import label_frame
from stream_app.adapters.offline_log import conform, rows_frame
from stream_app.adapters.prometheus_metrics import SinkMetrics
from stream_app.adapters.transaction_log import conform as conform_transactions
from stream_app.adapters.transaction_log import transaction_frame, transaction_row
from stream_app.contract import decode_joined_label, decode_prediction, decode_transaction
from stream_app.core.offline_layout import LABEL_LOG, MERCHANT_WINDOW_LOG, TRANSACTION_LOG, USER_WINDOW_LOG, hour_dir
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.records import LabelRow
from stream_app.core.served_rows import view_row
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS, WindowSpec
from stream_app.errors import InvalidRecordError, ServiceUnavailableError
from stream_app.settings import Settings
from stream_app.sink.compaction import Compactor, CompactTarget
from stream_app.sink.parts import LogTarget, Position, RollingParts
from stream_app.sink.sensor import NULL_SINK_SENSOR, SinkSensor

log = logging.getLogger(__name__)
USER_LOG, MERCHANT_LOG, LABELS_LOG, TRANSACTIONS_LOG = "user_windows", "merchant_windows", "labels", "transactions"
CONSUME_BATCH = 5000
RETRY_MAX_S = 5.0


class MessageLike(Protocol):
    """The part of confluent_kafka.Message the sink reads."""

    def error(self) -> KafkaError | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...


class ConsumerLike(Protocol):
    """The part of confluent_kafka.Consumer the sink uses."""

    def subscribe(self, topics: list[str], on_revoke: Callable[[Any, list[TopicPartition]], None]) -> None: ...
    def consume(self, num_messages: int, timeout: float) -> Sequence[MessageLike]: ...
    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> Any: ...
    def close(self) -> None: ...


@dataclass
class SinkStats:
    """What a sink has done since it started."""

    predictions: int = 0
    labels: int = 0
    transactions: int = 0  # valid transactions logged
    rejected: int = 0  # transactions that failed validation (the worker dead-letters them): not logged
    invalid: int = 0  # records that did not decode: logged and skipped
    missing: Counter[str] = field(default_factory=Counter)  # predictions lacking a view's feature, by view
    commits: int = 0


def logs_of(settings: Settings) -> dict[str, LogTarget]:
    """The logs the sink writes: the two window views inside the Feast repository, the label log and the
    transaction log."""
    repo = Path(settings.feast.repo_path)
    return {
        USER_LOG: LogTarget(repo / USER_WINDOW_LOG, lambda rows: rows_frame(rows, USER_WINDOWS)),
        MERCHANT_LOG: LogTarget(repo / MERCHANT_WINDOW_LOG, lambda rows: rows_frame(rows, MERCHANT_WINDOWS)),
        LABELS_LOG: LogTarget(settings.data_dir / LABEL_LOG, label_frame),
        TRANSACTIONS_LOG: LogTarget(settings.data_dir / TRANSACTION_LOG, transaction_frame),
    }


def compaction_targets(settings: Settings) -> dict[str, CompactTarget]:
    """How each log the sink writes is compacted: a part read back is checked by the log's ``conform``;
    merged feature rows are in event time order, merged labels in the order ``read_labels`` reads them
    (it keeps the first row of an event_id)."""
    logs = logs_of(settings)
    return {
        USER_LOG: _view_target(logs[USER_LOG].directory, USER_WINDOWS),
        MERCHANT_LOG: _view_target(logs[MERCHANT_LOG].directory, MERCHANT_WINDOWS),
        LABELS_LOG: CompactTarget(logs[LABELS_LOG].directory, conform_labels),
        TRANSACTIONS_LOG: CompactTarget(logs[TRANSACTIONS_LOG].directory, conform_transactions,
                                        ("partition", "offset")),
    }


def _view_target(directory: Path, specs: tuple[WindowSpec, ...]) -> CompactTarget:
    return CompactTarget(directory, lambda frame: conform(frame, specs), (TIMESTAMP, specs[0].entity.value))


class Sink:
    """Consumes predictions, joined labels and (with ``transactions_topic``) transactions into ``parts``;
    ``step`` is one poll, ``run`` loops until stopped. Offsets are committed synchronously after the parts
    due are written, only up to ``RollingParts.commit_positions``; on revocation (and on stop) every open
    part is written first. ``sensor`` is told what each step consumed and how many rows stay buffered."""

    def __init__(self, consumer: ConsumerLike, parts: RollingParts, *, predictions_topic: str, labels_topic: str,
                 poll_s: float, compactor: Compactor | None = None, transactions_topic: str | None = None,
                 sensor: SinkSensor = NULL_SINK_SENSOR) -> None:
        self.consumer = consumer
        self.sensor = sensor
        self.parts = parts
        self.compactor = compactor
        self.predictions_topic = predictions_topic
        self.labels_topic = labels_topic
        self.transactions_topic = transactions_topic
        self.poll_s = poll_s
        self.stats = SinkStats()
        self._committed: dict[tuple[str, int], int] = {}

    def start(self) -> None:
        topics = [self.predictions_topic, self.labels_topic, *filter(None, [self.transactions_topic])]
        self.consumer.subscribe(topics, on_revoke=self._revoked)

    def step(self) -> None:
        """Consume what arrived (waiting up to ``poll_s``), write the parts due, commit what they made safe."""
        consumed: Counter[str] = Counter()
        for message in self.consumer.consume(CONSUME_BATCH, self.poll_s):
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
                continue
            consumed[message.topic() or ""] += 1
            self._record(message)
        for topic, count in consumed.items():
            self.sensor.on_records(topic, count)
        self.parts.close_due()
        self.sensor.on_open_rows(self.parts.pending_rows)
        self.commit()

    def run(self, stop: threading.Event) -> None:
        """``step`` until ``stop`` is set, waiting out an unwritable disk (nothing is committed meanwhile);
        then write every open part, commit, and leave the group. The compactor, if any, runs meanwhile on
        its own thread."""
        self.start()
        if self.compactor is not None:
            self.compactor.start()
        delay = 0.2
        try:
            while not stop.is_set():
                try:
                    self.step()
                    delay = 0.2
                except ServiceUnavailableError as exc:
                    log.warning("sink: %s; retrying in %.1f s", exc, delay)
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
            self.parts.close_all()
            self.commit()
        finally:
            self.consumer.close()
            if self.compactor is not None:
                self.compactor.stop()

    def commit(self, only: Sequence[tuple[str, int]] | None = None) -> None:
        """Commit the positions that changed since the last commit (of ``only`` these partitions, if given).
        A commit the broker refuses (e.g. during a rebalance) is logged and tried again next time."""
        positions = self.parts.commit_positions()
        changed = {where: offset for where, offset in positions.items()
                   if self._committed.get(where) != offset and (only is None or where in only)}
        if not changed:
            return
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in sorted(changed.items())],
                                 asynchronous=False)
        except KafkaException as exc:
            log.warning("sink: commit refused, retrying later: %s", exc)
            return
        self._committed.update(changed)
        self.stats.commits += 1

    def _revoked(self, _consumer: Any, partitions: list[TopicPartition]) -> None:
        revoked = [(tp.topic, tp.partition) for tp in partitions]
        try:
            self.parts.close_all()
        except ServiceUnavailableError as exc:  # the new owner replays from the last commit: duplicates at worst
            log.error("sink: parts of revoked partitions could not be written: %s", exc)
            return
        self.commit(only=revoked)
        self.parts.forget(revoked)
        for where in revoked:
            self._committed.pop(where, None)

    def _record(self, message: MessageLike) -> None:
        where: Position = (message.topic() or "", int(message.partition() or 0), int(message.offset() or 0))
        try:
            if where[0] == self.predictions_topic:
                self._prediction(message.value(), where)
            elif where[0] == self.transactions_topic:
                self._transaction(message.value(), message.key(), where)
            else:
                self._label(message.value(), where)
        except InvalidRecordError as exc:
            self.stats.invalid += 1
            log.error("sink: skipping %s partition %d offset %d: %s", *where, exc)
            self.parts.consumed(where)

    def _prediction(self, value: bytes | None, where: Position) -> None:
        prediction = decode_prediction(value)
        self.stats.predictions += 1
        hour = hour_dir(prediction.event_time)
        added = False
        for name, entity_id, specs in ((USER_LOG, prediction.user_id, USER_WINDOWS),
                                       (MERCHANT_LOG, prediction.merchant_id, MERCHANT_WINDOWS)):
            row = view_row(entity_id, prediction.event_time, prediction.features, specs)
            if row is None:
                self.stats.missing[name] += 1
                if self.stats.missing[name] in (1, 10, 100) or self.stats.missing[name] % 10_000 == 0:
                    log.warning("sink: %d predictions (latest %s, model %s) lack a feature of %s: no row logged",
                                self.stats.missing[name], prediction.event_id, prediction.model_version, name)
                continue
            self.parts.add(name, hour, row, where)
            added = True
        if not added:
            self.parts.consumed(where)

    def _transaction(self, value: bytes | None, key: bytes | None, where: Position) -> None:
        try:
            txn = decode_transaction(value, key)
        except InvalidRecordError:  # the worker dead-letters it with its reason; nothing to train on
            self.stats.rejected += 1
            self.parts.consumed(where)
            return
        self.stats.transactions += 1
        self.parts.add(TRANSACTIONS_LOG, hour_dir(txn.event_time), transaction_row(txn, where[1], where[2]), where)

    def _label(self, value: bytes | None, where: Position) -> None:
        joined = decode_joined_label(value)
        self.stats.labels += 1
        row = LabelRow(event_id=joined.event_id, user_id=joined.user_id, merchant_id=joined.merchant_id,
                       is_fraud=joined.is_fraud, label_time=joined.label_time, score=joined.score,
                       model_version=joined.model_version)
        self.parts.add(LABELS_LOG, hour_dir(joined.label_time), row, where)


def sink_id() -> str:
    """This process's name in temporary file names: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The sink's consumer: its own group, offsets committed by hand, from the start of the topics."""
    return {**settings.kafka.confluent(), "group.id": settings.sink.group_id, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "session.timeout.ms": int(settings.sink.session_timeout_s * 1000),
            "log_level": 3}


def serve_metrics(settings: Settings, stop: threading.Event) -> SinkSensor:
    """The sink's metrics, served at ``/metrics`` on ``metrics_bind``:``metrics_port`` (sink settings) with its
    consumer group's lag measured every few seconds, until ``stop`` is set; NULL_SINK_SENSOR when the
    port is 0, or taken (logged: the sink's work, the logs, matters more than its metrics, and a scrape
    that fails shows as Prometheus's ``up`` = 0)."""
    port = settings.sink.metrics_port
    if not port:
        return NULL_SINK_SENSOR
    registry = CollectorRegistry()
    metrics = SinkMetrics(registry, group=settings.sink.group_id)
    try:
        server, _ = start_http_server(port, addr=settings.sink.metrics_bind, registry=registry)
    except OSError as exc:
        log.error("sink metrics not served: port %d: %s", port, exc)
        return NULL_SINK_SENSOR
    lag = ConsumerLag(settings.kafka, settings.sink.group_id,
                      [settings.topics.predictions.name, settings.topics.labels_joined.name,
                       settings.topics.transactions.name])
    poll_every(LAG_POLL_S, lambda: metrics.lag.set(lag.poll()), stop)

    def shut_down() -> None:
        stop.wait()
        server.shutdown()

    threading.Thread(target=shut_down, name="sink-metrics-stop", daemon=True).start()
    log.info("sink metrics at http://%s:%d/metrics", settings.sink.metrics_bind, port)
    return metrics


def build_sink(settings: Settings, consumer: ConsumerLike | None = None,
               sensor: SinkSensor = NULL_SINK_SENSOR) -> Sink:
    """A sink over the real consumer and the logs' directories from ``settings``, reporting to ``sensor``,
    with a compactor unless ``compact_every_s`` is 0."""
    parts = RollingParts(logs_of(settings), max_rows=settings.sink.part_max_rows,
                         max_age_s=settings.sink.part_max_age_s, writer_id=sink_id(), sensor=sensor)
    # confluent_kafka's own annotations are looser than ConsumerLike (e.g. consume's defaults)
    real = consumer or cast(ConsumerLike, Consumer(consumer_config(settings)))
    sink = settings.sink
    compactor = Compactor(compaction_targets(settings), every_s=sink.compact_every_s, grace_s=sink.compact_grace_s) \
        if sink.compact_every_s > 0 else None
    return Sink(real, parts,
                predictions_topic=settings.topics.predictions.name,
                labels_topic=settings.topics.labels_joined.name, poll_s=settings.sink.poll_s, compactor=compactor,
                transactions_topic=settings.topics.transactions.name, sensor=sensor)
