"""The Faust application: topics, the transactions and labels agents, rebalance and shutdown handling.

One agent consumes ``transactions`` in micro-batches (``take_events``: up to ``batch_size`` records or
``batch_within_s``) and hands each batch to the BatchRunner; another does the same for ``labels`` with
the LabelRunner. The worker is a static group member (``group_instance_id``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from stream_app.core.alignment import Alignment
from stream_app.errors import BatchAbandonedError
from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.alignment import PartitionAligner, scheduling
from stream_app.worker.label_runner import LabelRunner
from stream_app.worker.loop_lag import probe_loop_lag
from stream_app.worker.ports import RawRecord
from stream_app.worker.runner import BatchRunner

log = logging.getLogger(__name__)


def broker_credentials(settings: Settings) -> Any:
    """Faust's credentials object for the configured Kafka security (None for PLAINTEXT)."""
    kafka = settings.kafka
    context = kafka.ssl_context()
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        return faust.SASLCredentials(username=kafka.sasl_username, password=password,
                                     mechanism=kafka.sasl_mechanism, ssl_context=context)
    if context is not None:
        return faust.SSLCredentials(context)
    return None


async def finish_even_if_cancelled(work: Awaitable[object], on_cancel: Callable[[], None] | None = None,
                                   events: Sequence[Any] = ()) -> None:
    """Graceful SIGTERM: Faust cancels agents on shutdown, and ``take_events`` acks the batch as the
    cancellation unwinds. Let the batch finish first (outputs delivered, state committed), then
    propagate the cancellation. ``on_cancel`` tells the work to stop waiting (for optional things, and
    for a retry). Work that gives its batch up at shutdown (BatchAbandonedError, cancelled or not)
    leaves ``events`` unacked."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if on_cancel is not None:
            on_cancel()
        await _unless_abandoned(task, events)
        raise
    except BatchAbandonedError as exc:
        _abandoned(exc, events)


async def _unless_abandoned(task: Awaitable[object], events: Sequence[Any]) -> None:
    try:
        await task
    except BatchAbandonedError as exc:
        _abandoned(exc, events)


def _abandoned(exc: BatchAbandonedError, events: Sequence[Any]) -> None:
    withhold_acks(events)
    log.warning("%s", exc)


def withhold_acks(events: Sequence[Any]) -> None:
    """Keeps the events' offsets out of every commit: each message is marked acked without telling the
    consumer, so the ack ``take_events`` sends as the cancellation unwinds finds nothing to do (the
    consumer records offsets only on a message's first ack) and the shutdown's wait for unacked
    messages counts them as done. Kafka delivers them again to the next owner of the partition."""
    for event in events:
        event.message.acked = True


@dataclass(frozen=True)
class Runners:
    """The runners the agents hand their batches to."""

    transactions: BatchRunner
    labels: LabelRunner | None = None  # None: this app does not consume labels

    def stop(self) -> None:
        """Shutting down: batches waiting to be retried are given up, unacked."""
        self.transactions.stop()
        if self.labels is not None:
            self.labels.stop()


@dataclass(frozen=True)
class WorkerApp:
    """The Faust app and its runners (built on first use)."""

    app: faust.App
    runners: Callable[[], Runners]  # built on first use; their stats feed progress displays

    def runner(self) -> BatchRunner:
        return self.runners().transactions


def _records(events: Any) -> list[RawRecord]:
    """Faust's messages as RawRecords; a record without a timestamp (Kafka's -1) gets None."""
    return [RawRecord(e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value,
                      _timestamp_ms(e.message.timestamp)) for e in events]


def _timestamp_ms(seconds: float | None) -> int | None:
    return None if seconds is None or seconds < 0 else round(seconds * 1000)


def group_instance_id(worker: WorkerSettings, hostname: str) -> str | None:
    """The worker's static consumer-group member id, None for dynamic membership.

    With a static id, a worker restarted under the same id (a crash, a deploy in place) takes its
    partitions back as soon as it rejoins, with no rebalance; without one, the group waits for the
    killed member's session to expire first. The default, ``<app_id>-<hostname>-<web_port>``, is stable
    across restarts on one host and unique among live workers: each worker serves its web port, so two
    on one host cannot share it (web port 0, a random port, gets dynamic membership). The price: a
    static member does not leave the group when it stops, so partitions of a worker that is gone for
    good (or comes back under another id, e.g. a new hostname) wait ``session_timeout_s`` before they
    move to the others. Orchestrators should set a stable per-replica ``instance_id`` (e.g. a
    StatefulSet pod name). See docs/decisions/0015-static-group-membership.md."""
    if worker.instance_id is not None:
        return worker.instance_id or None
    if worker.web_port == 0:
        return None
    return f"{worker.app_id}-{hostname}-{worker.web_port}"


def faust_datadir(settings: Settings) -> Path:
    """Faust's data directory for this app (its versioned table directories): under the configured
    ``data_dir``, next to the deployment's other runtime data, never relative to the working directory
    (Faust's default ``<app_id>-data``)."""
    return settings.data_dir / "faust" / settings.worker.app_id


def stream_buffer_size(worker: WorkerSettings) -> int:
    """Records Faust buffers per topic for its agent (``stream_buffer_maxsize``)."""
    return max(4096, 4 * worker.batch_size)


def max_poll_records(buffer_size: int, partitions: int) -> int:
    """Records one fetch hands to Faust (``broker_max_poll_records``): the fifth of a topic's buffer above
    its pressure mark, shared by the topic's ``partitions``.

    Both agents are fed by one fetch loop, which waits when it meets a record for a full buffer — and
    then feeds neither. The labels agent stops reading its buffer while it holds labels that arrived
    before their transactions were scored; if its buffer filled, the loop would wait, the transactions
    agent would get nothing more, and the held labels' transactions would never come. Faust stops
    fetching a partition once a put of that partition finds its topic's buffer 80 % full (the queue's
    pressure mark), but every partition of the topic is stopped separately and still hands over the
    rest of the fetch in hand; unbounded (Faust's default), that rest can be thousands of records. With
    each fetch at most a fifth of the buffer divided by the partitions, all of them together fit above
    the mark, so a held agent's buffer does not fill.
    """
    return max(1, (buffer_size - math.floor(buffer_size / 1.25)) // max(1, partitions) - 1)


def _built(runner_factory: Callable[[faust.App], Runners], app: faust.App) -> Runners:
    """The runners; then what startup left alive (Feast's registry, the model, imported modules) is kept
    out of the cyclic collector's scans: otherwise every full collection walks it all while holding the
    GIL, stalling the event loop for hundreds of milliseconds. Reference counting still frees these
    objects; startup's cyclic garbage is collected first, or it would stay."""
    built = runner_factory(app)
    gc.collect()
    gc.freeze()
    return built


def create_app(settings: Settings, runner_factory: Callable[[faust.App], Runners],
               web_enabled: bool = False, metrics: Callable[[], tuple[bytes, str]] | None = None,
               on_paused: Callable[[int], None] | None = None) -> WorkerApp:
    """The worker app. ``runner_factory`` builds the runners from the app; it is called lazily, on first
    use (an agent's first batch, or ``WorkerApp.runner``), so nothing connects at import. With the web
    server enabled, ``metrics()`` (the exposition and its content type) is served at ``/metrics``. With
    ``align_partitions``, transactions partitions running ahead in event time are paused
    (``stream_app.worker.alignment``); ``on_paused`` is told how many are, after each change.

    Each agent has concurrency 1: with more, faust-streaming #606 commits offsets past events still in
    flight. Scale out with partitions and workers in one consumer group instead."""
    worker = settings.worker
    datadir = faust_datadir(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust creates the last level only
    app = faust.App(
        worker.app_id,
        datadir=datadir,
        broker=settings.kafka.faust_broker(),
        broker_credentials=broker_credentials(settings),
        value_serializer="raw",
        key_serializer="raw",
        store="memory://",
        web_enabled=web_enabled,
        web_port=worker.web_port,
        web_bind=worker.web_bind,
        topic_disable_leader=True,
        topic_allow_declare=False,  # topics are created by `streamscore create-topics`
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=worker.producer_linger_ms,
        producer_acks=-1,  # acks=all, as every producer here (outputs go through KafkaPublisher, not this one)
        broker_commit_every=worker.batch_size,
        broker_commit_interval=1.0,
        consumer_group_instance_id=group_instance_id(worker, socket.gethostname()),
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=min(3.0, worker.session_timeout_s / 3),
        stream_buffer_maxsize=stream_buffer_size(worker),
        broker_max_poll_records=max_poll_records(stream_buffer_size(worker), max(
            settings.topics.transactions.partitions, settings.topics.labels.partitions)),
    )
    transactions = app.topic(settings.topics.transactions.name, value_serializer="raw", key_serializer="raw")
    app.topic(settings.topics.predictions.name, value_serializer="raw", key_serializer="raw")
    app.topic(settings.topics.transactions_dlq.name, value_serializer="raw", key_serializer="raw")
    labels = app.topic(settings.topics.labels.name, value_serializer="raw", key_serializer="raw")
    holder: dict[str, Runners] = {}
    building = threading.Lock()

    def runners() -> Runners:
        with building:
            if "runners" not in holder:
                holder["runners"] = _built(runner_factory, app)
        return holder["runners"]

    async def runners_off_loop() -> Runners:
        """``runners()``, built on a thread the first time (opening Feast, loading the model and
        connecting take seconds that would stall the event loop)."""
        built = holder.get("runners")
        return built if built is not None else await asyncio.to_thread(runners)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type, untyped-decorator]
    async def _revoked(app: faust.App, revoked: Any, **_: Any) -> None:
        if "runners" in holder:
            holder["runners"].transactions.state.invalidate()  # another worker may own these keys now

    @app.task  # type: ignore[untyped-decorator]
    async def stop_runners_on_shutdown() -> None:
        """Faust waits for every consumed record to be acked before it cancels the agents, so a batch
        waiting out an outage is told to give up as soon as the app begins to stop."""
        await app.wait_until_stopped()
        if "runners" in holder:
            holder["runners"].stop()

    if web_enabled and metrics is not None:
        scrape = metrics

        @app.page("/metrics")  # type: ignore[untyped-decorator]
        async def serve_metrics(view: Any, request: Any) -> Any:
            body, content_type = scrape()
            return view.bytes(body, headers={"Content-Type": content_type})

    if worker.loop_lag_file is not None:
        lag_file = worker.loop_lag_file

        @app.task  # type: ignore[untyped-decorator]
        async def probe_loop() -> None:
            await probe_loop_lag(lag_file)

    if worker.align_partitions:
        aligner = PartitionAligner(app, settings.topics.transactions.name,
                                   Alignment(worker.align_max_ahead_s, worker.align_max_idle_s), on_paused=on_paused)
        app.sensors.add(aligner)  # it hears when the agent takes a record
        app.conf.ConsumerScheduler = scheduling(aligner)  # type: ignore[assignment]  # and when one is handed over

        @app.on_partitions_assigned.connect  # type: ignore[arg-type, untyped-decorator]
        async def _assigned(app: faust.App, assigned: Any, **_: Any) -> None:
            aligner.assigned(assigned)

        @app.task  # type: ignore[untyped-decorator]
        async def align_partitions() -> None:
            await aligner.run()

    @app.agent(transactions, concurrency=1)  # type: ignore[untyped-decorator]
    async def score(stream: Any) -> None:
        async for events in stream.take_events(worker.batch_size, within=worker.batch_within_s):
            runner = (await runners_off_loop()).transactions
            await finish_even_if_cancelled(runner.handle(_records(events)), runner.stop, events)

    @app.agent(labels, concurrency=1)  # type: ignore[untyped-decorator]
    async def learn(stream: Any) -> None:
        async for events in stream.take_events(worker.batch_size, within=worker.batch_within_s):
            label_runner = (await runners_off_loop()).labels
            if label_runner is not None:
                await finish_even_if_cancelled(label_runner.handle(_records(events)), label_runner.stop, events)

    return WorkerApp(app, runners)
