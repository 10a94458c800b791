"""The demo's orchestration: services → topics → offline pipeline → sink and worker → warm-up → a minute of live
events and labels with progress → summary (JSON + PNG) → stop everything it started.

Every resource is registered on an ExitStack the moment it exists (before a service's start script runs,
so a start interrupted halfway is still stopped), and the stack unwinds on success, failure, Ctrl-C and
SIGTERM alike."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from stream_app.adapters import feast_store
from stream_app.adapters.kafka_admin import wait_for_broker
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.adapters.preflight import check_redis
from stream_app.core.metrics import roc_auc
from stream_app.demo.chart import write_chart
from stream_app.demo.config import DemoConfig
from stream_app.demo.metrics_view import SINK, WORKER
from stream_app.demo.progress import backlog, choose_samples, format_prediction, format_tick
from stream_app.demo.scraper import MetricsScraper
from stream_app.demo.services import KAFKA, REDIS, Service, ServiceStartError, plan, run_script
from stream_app.demo.steps import StepError, last_line, pipeline_steps, run_step
from stream_app.demo.summary import Observed, Sample, build_summary, format_summary
from stream_app.demo.tap import CountingProducer, TopicTap, commit_group_offsets, end_offsets
from stream_app.errors import StreamscoreError
from stream_app.generator.live import LiveCounts, realistic_start, stream_live
from stream_app.settings import FEATURE_REPO, REPO_ROOT, FeastSettings, Settings, WorkerSettings
from stream_app.worker.process import SINK_ARGS, WorkerProcess, free_port

FEAST_PROJECT = "streamscore_demo"
SAMPLE_EVERY_S = 10
WORKSPACE_MARKER = ".streamscore-demo"
KEEP = "golden"  # the golden-set cache: content-keyed, so safe (and slow) to keep between runs


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why (and where the logs are)."""


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@dataclass(frozen=True)
class _Live:
    """What the progress loop watches while the live stream runs."""

    tap: TopicTap
    producer: CountingProducer
    worker: WorkerProcess
    thread: threading.Thread
    failures: list[Exception]
    tx_topic: str
    labels_topic: str


class Demo:
    """One demo run: set-up, live phase and summary, each a method; ``run`` calls them in order."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.t0 = time.monotonic()
        self.timings: dict[str, float] = {}
        self.metrics_ports: dict[str, int] = {}  # WORKER / SINK -> the port of its /metrics
        self.run_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        self.app_id = f"streamscore-demo-{self.run_id}"
        # The live stream's event time ends about now; the history ends at the midnight before it starts,
        # and the worker continues the history's window state (seeded by the backfill step).
        self.live_start = realistic_start(config.rate, config.duration_s, seed=config.seed, users=config.users,
                                          merchants=config.merchants, end=datetime.now(UTC))
        self.history_end = self.live_start.replace(hour=0, minute=0, second=0, microsecond=0)
        self.env = {
            **os.environ,
            "STREAMSCORE_WORKER__APP_ID": self.app_id,  # the backfill seeds this worker's state
            "STREAMSCORE_DATA_DIR": str(config.out),
            "STREAMSCORE_MODELS_DIR": str(config.registry_dir),
            "STREAMSCORE_FEAST__REPO_PATH": str(config.repo_dir),
            "PYTHONUNBUFFERED": "1",
        }

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.t0:5.0f}s] {message}", flush=True)

    # --- setup ---------------------------------------------------------------------------------------

    def prepare_workspace(self) -> None:
        """A fresh private workspace each run: a new registry (promotion judged on its own), a clean Feast
        repo, offline and label logs. Only the golden-set cache is kept (content-keyed, slow to build).
        A marker file guards the wipe: a non-empty directory without it is refused, never emptied."""
        cfg = self.config
        marker = cfg.out / WORKSPACE_MARKER
        if cfg.out.is_dir() and any(cfg.out.iterdir()) and not marker.is_file():
            raise DemoError(f"{cfg.out} is not empty and is not a demo workspace (no {WORKSPACE_MARKER}); "
                            "choose another --out")
        for entry in cfg.out.iterdir() if cfg.out.is_dir() else ():
            if entry.name in (KEEP, WORKSPACE_MARKER):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        cfg.logs_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("streamscore demo workspace: emptied (except golden/) at the start of every demo run\n")
        feast_store.prepare_workspace(FEATURE_REPO, cfg.repo_dir, FEAST_PROJECT)

    def settings(self) -> Settings:
        """The demo's settings in this process: the environment's addresses and topics, the workspace's paths."""
        cfg = self.config
        try:
            return Settings(data_dir=cfg.out, models_dir=cfg.registry_dir, feast=FeastSettings(repo_path=cfg.repo_dir),
                            worker=WorkerSettings(app_id=self.app_id))
        except ValueError as exc:
            raise DemoError(f"invalid STREAMSCORE_* settings: {exc}") from exc

    def service(self, service: Service, how: str, stack: contextlib.ExitStack) -> str:
        if how == "external":
            self.say(f"{service.name}: using {os.environ[service.env_var]} ({service.env_var}); "
                     "not starting or stopping it")
            return how
        if how == "reuse":
            self.say(f"{service.name}: already running from {service.pid_file.parent.relative_to(REPO_ROOT)} "
                     f"(make infra-up?); using it and leaving it running")
            return how
        log = self.config.logs_dir / f"{service.name}.log"
        stack.callback(self.stop_service, service, log)  # before start: a half-started service is stopped too
        t = time.monotonic()
        run_script(service, "start", log)
        self.timings[f"{service.name}_start"] = time.monotonic() - t
        self.say(f"{service.name}: started on 127.0.0.1:{service.ports[0]} in {time.monotonic() - t:.1f} s")
        return how

    def stop_service(self, service: Service, log: Path) -> None:
        try:
            run_script(service, "stop", log, timeout_s=120)
            self.say(f"{service.name}: stopped")
        except (ServiceStartError, OSError) as exc:
            self.say(f"{service.name}: stop failed: {exc}")

    def check_services(self, settings: Settings) -> None:
        wait_for_broker(settings.kafka, timeout_s=15)
        check_redis(settings.redis)

    def step(self, name: str, argv: Sequence[str], *, report: str | None = None) -> None:
        log = self.config.logs_dir / f"{name}.log"
        seconds = run_step(argv, self.env, log)
        self.timings[name] = seconds
        text = log.read_text(errors="replace")
        detail = last_line(text, containing=report) if report is not None else ""
        self.say(f"{name:<13} {seconds:6.1f} s  {detail[:140]}")

    def pipeline(self) -> None:
        reports = {"history": "transactions", "backfill": "backfill:", "feast-apply": None,
                   "train": "registered", "promote": '"version"', "materialize": None}
        for step in pipeline_steps(self.config, ends_by=self.history_end):
            self.step(step.name, step.argv, report=reports.get(step.name))

    def model(self) -> tuple[str | None, dict[str, Any]]:
        registry = ModelRegistry(self.config.registry_dir)
        version = registry.get_alias("production")
        if version is None:
            raise DemoError("no production model after promotion; see logs/promote.log")
        return version, registry.metadata(version).metrics

    # --- live ----------------------------------------------------------------------------------------

    def start_worker(self, settings: Settings, stack: contextlib.ExitStack) -> WorkerProcess:
        topics = settings.topics
        # a new consumer group per run, positioned at the end: never replays what earlier runs left behind
        commit_group_offsets(settings, self.app_id, end_offsets(settings, [topics.transactions.name,
                                                                           topics.labels.name]))
        self.metrics_ports[WORKER] = free_port()
        env = {**self.env, "STREAMSCORE_WORKER__APP_ID": self.app_id,
               "STREAMSCORE_WORKER__WEB_PORT": str(self.metrics_ports[WORKER])}
        worker = WorkerProcess(env, self.config.logs_dir / "worker.log")

        def stop() -> None:
            rc = worker.stop()
            self.say(f"worker: stopped (exit {rc})")

        stack.callback(stop)
        self.say(f"worker: started (pid {worker.pid}, group {self.app_id}); log {worker.log}")
        return worker

    def start_sink(self, settings: Settings, stack: contextlib.ExitStack) -> WorkerProcess:
        """The sink that writes the offline feature log, the label log and the transaction log, in a consumer
        group of this run positioned at the end of its topics (earlier runs' records belong to earlier
        workspaces).
        Started before the worker, so it is stopped after it: its last parts are written on SIGTERM."""
        topics = settings.topics
        group = f"{self.app_id}-sink"
        commit_group_offsets(settings, group, end_offsets(settings, [topics.predictions.name,
                                                                     topics.labels_joined.name,
                                                                     topics.transactions.name]))
        self.metrics_ports[SINK] = free_port()
        sink = WorkerProcess({**self.env, "STREAMSCORE_SINK__GROUP_ID": group,
                              "STREAMSCORE_SINK__METRICS_PORT": str(self.metrics_ports[SINK])},
                             self.config.logs_dir / "sink.log", args=SINK_ARGS)

        def stop() -> None:
            rc = sink.stop()
            self.say(f"sink: stopped (exit {rc})")

        stack.callback(stop)
        self.say(f"sink: started (pid {sink.pid}, group {group}); log {sink.log}")
        return sink

    def warm_up(self, settings: Settings, worker: WorkerProcess) -> None:
        """A few events before measuring, and wait for their predictions: proves the worker is assigned
        and serving, and keeps its one-off start-up (Feast import, model load) out of the latency numbers."""
        cfg = self.config
        t = time.monotonic()
        tap = TopicTap(settings, end_offsets(settings, [settings.topics.predictions.name]))
        try:
            # Stamped where the history ends: after its events (the worker holds their windows), before
            # every event of the live stream (a later warm-up event would make a user's live events late).
            counts = stream_live(settings, rate=cfg.warm_up_events, duration_s=1.0, seed=cfg.seed + 1, users=cfg.users,
                                 merchants=cfg.merchants, report=None, start=self.history_end)
            deadline = time.monotonic() + cfg.worker_ready_timeout_s
            while len(tap.predictions) < counts.valid:
                if not worker.alive():
                    raise DemoError(f"the worker exited during start-up; last lines of {worker.log}:\n{worker.tail()}")
                if time.monotonic() > deadline:
                    raise DemoError(f"no predictions for the warm-up events after {cfg.worker_ready_timeout_s:.0f} s; "
                                    f"last lines of {worker.log}:\n{worker.tail()}")
                time.sleep(0.2)
        finally:
            tap.close()
        self.timings["worker_ready"] = time.monotonic() - t
        self.say(f"worker: ready ({counts.valid} warm-up events scored, {time.monotonic() - t:.1f} s after start)")

    def stream(self, settings: Settings, worker: WorkerProcess) -> Observed:
        cfg = self.config
        topics = settings.topics
        tap = TopicTap(settings, end_offsets(settings, [topics.predictions.name, topics.transactions_dlq.name,
                                                        topics.labels.name]))
        producer = CountingProducer(settings)
        stop = threading.Event()
        outcome: list[LiveCounts] = []
        failures: list[Exception] = []

        def produce() -> None:
            try:
                outcome.append(stream_live(
                    settings, cfg.rate, cfg.duration_s, seed=cfg.seed, users=cfg.users, merchants=cfg.merchants,
                    invalid_fraction=cfg.invalid_fraction, label_delay_scale=cfg.label_delay_scale,
                    drain_labels=True, stop=stop, producer=producer, report=None, realistic=True,
                    start=self.live_start))
            except Exception as exc:  # noqa: BLE001 - handed to the main thread, which reports it
                failures.append(exc)

        self.say(f"live: {cfg.rate:g} transactions/s for {cfg.duration_s:g} s ({cfg.invalid_fraction:.0%} invalid) at "
                 f"history's per-user rates, labels delayed x{cfg.label_delay_scale:g}; then up to {cfg.drain_s:g} s "
                 "of labels and catch-up")
        thread = threading.Thread(target=produce, name="demo-live", daemon=True)
        scraper = MetricsScraper(self.metrics_ports, log=self.say)
        origin = time.monotonic()
        scraper.start(origin)
        thread.start()
        samples = [Sample(0.0, 0, 0, 0, 0)]
        try:
            self._watch(_Live(tap, producer, worker, thread, failures, topics.transactions.name, topics.labels.name),
                        origin, samples)
        finally:
            stop.set()
            thread.join(timeout=60)
            producer.close()
            tap.wait_quiet()
            tap.close()
            scrapes = scraper.close()
        if failures:
            raise DemoError(f"the live generator failed: {failures[0]!r}") from failures[0]
        counts = outcome[0] if outcome else LiveCounts()
        self.timings["stream"] = samples[-1].t
        if tap.errors:
            self.say(f"live: consumer errors: {tap.errors[:3]}")
        if counts.delivery_errors or counts.undelivered:
            self.say(f"live: {counts.delivery_errors} delivery errors, {counts.undelivered} undelivered")
        return Observed(
            transactions_in=producer.delivered[topics.transactions.name], invalid_in=counts.invalid,
            labels_in=producer.delivered[topics.labels.name], labels_pending=counts.labels_pending,
            stream_s=cfg.duration_s, predictions=tap.predictions, duplicate_predictions=tap.duplicates,
            dead_letters=dict(tap.dead_letters), labels=tap.labels, samples=samples, unreadable=tap.unreadable,
            scrapes=scrapes)

    def _watch(self, live: _Live, origin: float, samples: list[Sample]) -> None:
        """Print progress once a second until the stream is over, the drain time has passed and the worker
        has answered every transaction (or the catch-up timeout is reached)."""
        cfg = self.config
        tick = 1
        while True:
            time.sleep(max(0.0, origin + tick - time.monotonic()))
            tap, delivered = live.tap, live.producer.delivered
            now = Sample(time.monotonic() - origin, delivered[live.tx_topic], len(tap.predictions),
                         tap.dead_letter_count, delivered[live.labels_topic])
            pairs = tap.joined[:]
            auc: float | None = None
            with contextlib.suppress(ValueError):  # one class only so far: undefined
                auc = roc_auc([y for y, _ in pairs], [s for _, s in pairs]) if pairs else None
            streaming = now.t < cfg.duration_s
            print(format_tick(now, samples[-1], joined=len(pairs), auc=auc, phase="live" if streaming else "drain"),
                  flush=True)
            samples.append(now)
            if tick % SAMPLE_EVERY_S == 0:
                for p in choose_samples(tap.recent.copy()):
                    print(format_prediction(p), flush=True)
            tick += 1
            if live.failures:
                return
            if not live.worker.alive():
                raise DemoError(f"the worker exited mid-stream; last lines of {live.worker.log}:\n{live.worker.tail()}")
            if streaming:
                continue
            caught_up = backlog(now) <= 0
            if caught_up and (now.t >= cfg.duration_s + cfg.drain_s or not live.thread.is_alive()):
                return
            if now.t >= cfg.duration_s + cfg.catch_up_timeout_s:
                self.say(f"live: the worker still has {backlog(now):,} events to answer after "
                         f"{cfg.catch_up_timeout_s:g} s; summarising what arrived")
                return

    # --- the whole run -------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        cfg = self.config
        plans = {s: plan(s) for s in (REDIS, KAFKA)}  # a busy port fails here, before anything changes
        with contextlib.ExitStack() as stack:
            self.prepare_workspace()
            settings = self.settings()
            self.say(f"workspace {cfg.out} (Feast project {FEAST_PROJECT}, registry {cfg.registry_dir})")
            services = {s.name: self.service(s, how, stack) for s, how in plans.items()}
            self.check_services(settings)
            self.step("create-topics", [sys.executable, "-m", "stream_app", "create-topics"])
            self.pipeline()
            version, metrics = self.model()
            self.start_sink(settings, stack)
            worker = self.start_worker(settings, stack)
            self.warm_up(settings, worker)
            observed = self.stream(settings, worker)
            summary = build_summary(observed, config=self._config_dict(), timings_s=self.timings, model_version=version,
                                    offline={k: metrics.get(k) for k in ("roc_auc", "pr_auc", "threshold")})
            summary["services"] = services
            summary["files"] = {"summary": str(cfg.summary_json), "chart": str(cfg.summary_png),
                                "logs": str(cfg.logs_dir)}
            write_chart(cfg.summary_png, observed.samples, observed.predictions, observed.labels, summary,
                        scrapes=observed.scrapes)
            summary["timings_s"]["until_summary"] = time.monotonic() - self.t0
            cfg.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
            self.say("stopping what the demo started")
        summary["timings_s"]["total"] = time.monotonic() - self.t0
        cfg.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def _config_dict(self) -> dict[str, Any]:
        raw = asdict(self.config)
        return {k: str(v) if isinstance(v, Path) else v for k, v in raw.items()}


def run_demo(config: DemoConfig) -> int:
    """Run the demo; returns the exit code (0 done, 1 failed, 130 interrupted)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)  # SIGTERM unwinds like Ctrl-C: everything gets stopped
    demo = Demo(config)
    try:
        summary = demo.run()
    except KeyboardInterrupt:
        print("\ndemo: interrupted; what it started has been stopped", file=sys.stderr)
        return 130
    except ServiceStartError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    except (DemoError, StepError, StreamscoreError) as exc:
        print(f"\ndemo failed: {exc}\n(logs in {config.logs_dir})", file=sys.stderr)
        return 1
    print("\n=== streamscore demo summary ===")
    print(format_summary(summary))
    print(f"\nwrote {config.summary_json}\n      {config.summary_png}\nlogs  {config.logs_dir}")
    return 0
