"""Shared pieces of the end-to-end benchmarks (not a test, not a library for the package).

``prepare_world`` (a private Feast workspace with a history, profiles and a production model),
``Backlog`` (realistic transaction records, cheap to repeat), ``start_child`` / ``rss_mb`` (a worker or
passthrough process with its log), ``OutputMeter`` and ``Drain`` (output counts from the topics' high
watermarks), ``scrape_metrics`` / ``worker_metrics`` / ``sink_metrics`` (a process's own figures from its
/metrics). Services come from the environment (``STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS``,
``STREAMSCORE_REDIS__URL``), as bench/run.sh sets them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from models import pipeline
from stream_app.adapters import prometheus_metrics as metric
from stream_app.adapters.metrics_reader import Samples, histogram_figures, scrape, total
from stream_app.contract import Topics, TopicSpec
from stream_app.generator.config import HistoryConfig, stream, to_us
from stream_app.generator.live import PRODUCER_TUNING, LiveSource
from stream_app.generator.population import build_population
from stream_app.settings import (
    FEATURE_REPO,
    FeastSettings,
    KafkaSettings,
    RedisSettings,
    Settings,
    WorkerSettings,
)
from stream_app.worker.process import WORKER_ARGS, WorkerProcess, free_port

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results"
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def result_header(script: str, run_dir: Path) -> dict[str, Any]:
    """The head of a benchmark's result JSON: the command that produced it (``bench/<script>`` and this
    process's arguments), when, on what machine and load, and where its run directory is."""
    return {
        "command": ("BENCH_QUICK=1 " if QUICK else "") + " ".join([f".venv/bin/python bench/{script}", *sys.argv[1:]]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} CPython {platform.python_version()}, {os.cpu_count()} cpus, "
                   f"load average at start {os.getloadavg()[0]:.2f}",
        "load_note": os.environ.get("BENCH_LOAD_NOTE", "machine shared with other work; expect noise"),
        "run_dir": str(run_dir),
    }


def base_settings() -> Settings:
    """Kafka and Redis addresses from the environment; everything else default."""
    return Settings(kafka=KafkaSettings(bootstrap_servers=os.environ.get("STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS",
                                                                        "127.0.0.1:9092")),
                    redis=RedisSettings(url=os.environ.get("STREAMSCORE_REDIS__URL", "redis://127.0.0.1:6379/0")))


def topics_named(prefix: str, partitions: int = 4) -> Topics:
    """The contract's topics under a bench-unique prefix (transactions/predictions with ``partitions``)."""
    defaults = Topics()
    return Topics(**{role: TopicSpec(name=f"{prefix}.{spec.name}",
                                     partitions=partitions if spec.partitions > 1 else spec.partitions)
                     for role, spec in defaults})


def with_run(settings: Settings, *, app_id: str, topics: Topics, worker: dict[str, Any] | None = None) -> Settings:
    """Settings for one worker run: its consumer group / state namespace, its topics, worker knobs."""
    knobs = {"app_id": app_id, "web_port": free_port(), **(worker or {})}
    return settings.model_copy(update={"topics": topics, "worker": WorkerSettings(**knobs)})



# ------------------------------------------------------------------------------------------------ the world


@dataclass(frozen=True)
class World:
    """A prepared private workspace: its settings, its population and how long each step took."""

    settings: Settings  # feast repo, models dir and data dir of the private workspace
    users: int
    merchants: int
    seed: int
    history_transactions: int
    seconds: dict[str, float]


def prepare_world(root: Path, project: str, *, users: int, merchants: int, days: int, seed: int,
                  train_rows: int = 40_000, rounds: int = 100) -> World:
    """History -> backfill -> apply -> materialise profiles -> train -> register as production
    (``models.pipeline.prepare_world``), with the workspace, registry and data dir under ``root``: what
    ``make pipeline`` leaves behind, at a smaller size.

    The model has the production model's shape (DEFAULT_PARAMS: depth 6, hist; ``rounds`` trees),
    trained on ``train_rows`` labelled rows of the Feast training frame, so scoring costs what it costs
    in production."""
    started = time.perf_counter()
    start = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=days)
    config = HistoryConfig(days=days, users=users, merchants=merchants, seed=seed, start=start.to_pydatetime())
    settings = base_settings().model_copy(update={"feast": FeastSettings(repo_path=FEATURE_REPO),
                                                  "models_dir": root / "models", "data_dir": root / "data"})
    world = pipeline.prepare_world(settings, root / "feature_repo", project, config,
                                   model=pipeline.QuickModel(rounds=rounds, train_rows=train_rows))
    seconds = {**world.seconds, "total": round(time.perf_counter() - started, 1)}
    return World(world.settings, users, merchants, seed, len(world.history.transactions), seconds)


# ---------------------------------------------------------------------------------------------- records


def _rfc3339(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Backlog:
    """An endless, realistic transaction stream at a nominal event-time rate.

    The base is ``base_size`` records from ``LiveSource`` (the population of the history, its fraud
    patterns and per-user pacing), drawn at ``nominal_rate`` events per second of event time starting at
    ``start``. Record k of cycle c is base record k with event id ``<id>.c<c>`` and event time shifted by
    c x the base's span: per user, event times keep increasing, ids stay unique. Repeating the base
    keeps millions of records cheap: ``LiveSource`` (pydantic) builds only the base."""

    users: int
    merchants: int
    seed: int
    nominal_rate: float
    start: datetime
    base_size: int
    _base: list[tuple[bytes, dict[str, Any], int]] = field(default_factory=list)
    _next: int = 0

    def __post_init__(self) -> None:
        pop = build_population(stream(self.seed, "population"), self.users, self.merchants)
        start_us = to_us(self.start)
        source = LiveSource(pop, seed=self.seed, start_us=start_us, warm_rate=self.nominal_rate)
        chunk = max(1, int(self.nominal_rate / 200))  # 5 ms of event time per call
        while len(self._base) < self.base_size:
            elapsed = len(self._base) / self.nominal_rate
            for key, value, _pattern in source.transactions(min(chunk, self.base_size - len(self._base)), elapsed):
                body = json.loads(value)
                stamp = datetime.fromisoformat(body["event_time"].replace("Z", "+00:00"))
                self._base.append((key, body, round((stamp - _EPOCH) / timedelta(microseconds=1))))
        self.span_us = round(self.base_size / self.nominal_rate * 1e6)

    def take(self, n: int) -> list[tuple[bytes, bytes]]:
        """The next ``n`` records as (key, value)."""
        out: list[tuple[bytes, bytes]] = []
        dumps = json.dumps
        for i in range(self._next, self._next + n):
            cycle, k = divmod(i, self.base_size)
            key, body, stamp = self._base[k]
            if cycle:
                body = {**body, "event_id": f"{body['event_id']}.c{cycle}",
                        "event_time": _rfc3339(stamp + cycle * self.span_us)}
            out.append((key, dumps(body, separators=(",", ":")).encode()))
        self._next += n
        return out

    @property
    def taken(self) -> int:
        return self._next

    def event_time_of(self, index: int) -> datetime:
        cycle, k = divmod(index, self.base_size)
        return _EPOCH + timedelta(microseconds=self._base[k][2] + cycle * self.span_us)


# the live generator's tuning, with a deeper queue
PRODUCER_CONF: dict[str, Any] = {**PRODUCER_TUNING, "queue.buffering.max.messages": 1_000_000}


class FastProducer:
    """confluent-kafka with the live generator's tuning; ``send`` as fast as the producer takes records,
    ``flush`` raises on any delivery failure."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._producer = Producer({**kafka.confluent(), **PRODUCER_CONF})
        self.errors: list[str] = []
        self.sent = 0

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
        producer, delivered = self._producer, self._delivered
        for key, value in records:
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        self.sent += len(records)

    def flush(self) -> None:
        left = self._producer.flush(120)
        if left or self.errors:
            raise RuntimeError(f"producing: {left} undelivered, errors {self.errors[:3]}")


# --------------------------------------------------------------------------------------------- processes


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB, from /proc; (nan, nan) when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan"), float("nan")
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", float("nan")), values.get("VmHWM", float("nan"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def record_pid(pid: int) -> None:
    """Note a child in $BENCH_PID_FILE, so bench/run.sh can stop it (by pid) if this process is killed."""
    path = os.environ.get("BENCH_PID_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{pid}\n")


def start_child(env: dict[str, str], log_path: Path, cwd: Path, args: Sequence[str] = WORKER_ARGS) -> WorkerProcess:
    """``python <args>`` (the worker, a passthrough, ...) as a WorkerProcess, noted in $BENCH_PID_FILE."""
    child = WorkerProcess(env, log_path, args=args, cwd=cwd)
    record_pid(child.pid)
    return child


# ----------------------------------------------------------------------------------------------- meters


class OutputMeter:
    """Records on topics, from their partitions' high watermarks (one metadata request per partition;
    nothing is consumed, so measuring costs the worker under test next to nothing)."""

    def __init__(self, kafka: KafkaSettings, topics: Sequence[TopicSpec]) -> None:
        self._consumer = Consumer({**kafka.confluent(), "group.id": f"bench-meter-{os.getpid()}",
                                   "enable.auto.commit": False})
        self._partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]

    def count(self) -> int:
        records = 0
        for tp in self._partitions:
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            records += high
        return records

    def close(self) -> None:
        self._consumer.close()


@dataclass
class Drain:
    """How a process drained a backlog: (seconds since start, output count) samples and the child's RSS."""

    expected: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)
    cpu_s: float = float("nan")
    finished: bool = False

    def _time_at(self, count: float) -> float:
        """Seconds at which the output first reached ``count`` (linear between samples)."""
        previous = self.samples[0]
        for sample in self.samples:
            if sample[1] >= count:
                t0, c0 = previous
                t1, c1 = sample
                return t1 if c1 == c0 else t0 + (t1 - t0) * (count - c0) / (c1 - c0)
            previous = sample
        return float("nan")

    def summary(self) -> dict[str, Any]:
        done = self.samples[-1][1]
        first = next((t for t, c in self.samples if c > 0), float("nan"))
        # the sample before the first output bounds the start; take the midpoint
        before = max((t for t, c in self.samples if c == 0), default=first)
        start = (first + before) / 2
        end = self._time_at(self.expected) if self.finished else self.samples[-1][0]
        lo, hi = self._time_at(0.1 * self.expected), self._time_at(0.9 * self.expected)
        per_10s = []
        t = start
        while t + 10 <= end:
            per_10s.append(round((self._count_at(t + 10) - self._count_at(t)) / 10))
            t += 10
        rss = [r for _, r in self.rss if not math.isnan(r)]
        return {
            "records": self.expected,
            "output_records": done,
            "finished": self.finished,
            "drain_seconds": round(end - start, 2),
            "events_per_s": round(done / (end - start)) if end > start else None,
            "events_per_s_10_to_90pct": round(0.8 * self.expected / (hi - lo)) if hi > lo else None,
            "events_per_s_each_10s": per_10s,
            "rss_mb_max": round(max(rss), 1) if rss else None,
            "rss_mb_last": round(rss[-1], 1) if rss else None,
            "cpu_seconds": round(self.cpu_s, 1),
            "cpu_cores_used": round(self.cpu_s / (end - start), 2) if end > start else None,
            # the process is single-threaded Python: on a quiet box it gets ~1 core, so this estimates the
            # rate there when neighbours left it only part of a core (broker and Redis CPU not included)
            "events_per_cpu_second": round(done / self.cpu_s) if self.cpu_s > 0 else None,
        }

    def _count_at(self, t: float) -> float:
        previous = self.samples[0]
        for sample in self.samples:
            if sample[0] >= t:
                t0, c0 = previous
                t1, c1 = sample
                return c1 if t1 == t0 else c0 + (c1 - c0) * (t - t0) / (t1 - t0)
            previous = sample
        return self.samples[-1][1]


def measure_drain(meter: OutputMeter, child: WorkerProcess, expected: int, *, timeout_s: float,
                  interval_s: float = 0.2, first_output_within_s: float | None = None,
                  base: int | None = None) -> Drain:
    """Poll the output count until ``expected`` more records than ``base`` (default: the count now) are
    out (or timeout / the child dies; or, with ``first_output_within_s``, no output by then:
    RuntimeError)."""
    base = meter.count() if base is None else base
    drain = Drain(expected)
    started = time.monotonic()
    cpu0 = cpu_seconds(child.pid)
    first_cpu: float | None = None
    while True:
        now = time.monotonic() - started
        count = meter.count() - base
        if count > 0 and first_cpu is None:
            first_cpu = cpu_seconds(child.pid)  # CPU from the first output on (start-up excluded)
        drain.samples.append((now, count))
        drain.rss.append((now, rss_mb(child.pid)[0]))
        if count >= expected:
            drain.finished = True
            break
        if not child.alive():
            raise RuntimeError(f"{child.log.name} exited early:\n{child.tail()}")
        if first_output_within_s is not None and count == 0 and now > first_output_within_s:
            raise RuntimeError(f"{child.log.name}: no output within {first_output_within_s:.0f} s:\n{child.tail()}")
        if now > timeout_s:
            log(f"drain timed out after {timeout_s:.0f} s at {count:,}/{expected:,}")
            break
        time.sleep(interval_s)
    drain.cpu_s = cpu_seconds(child.pid) - (first_cpu if first_cpu is not None else cpu0)
    return drain


def redis_memory(url: str) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    info = client.info("memory")
    return {"used_memory_mb": round(info["used_memory"] / 2**20, 1), "used_memory_rss_mb":
            round(info["used_memory_rss"] / 2**20, 1), "keys": int(client.dbsize())}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


# ----------------------------------------------------------------------------------------------- /metrics

def scrape_metrics(port: int, timeout_s: float = 5.0) -> Samples:
    """Every sample a process serves at http://127.0.0.1:<port>/metrics (the worker's web port, the sink's
    metrics port); empty if it does not answer."""
    try:
        return scrape(port, timeout_s=timeout_s)
    except (OSError, ValueError):
        return {}


def histogram_summary(samples: Samples, name: str, scale: float = 1.0, **labels: str) -> dict[str, Any]:
    """Count, mean, p50 and p99 of a histogram (values times ``scale``), rounded for a result file."""
    figures = histogram_figures(samples, name, scale, (0.5, 0.99), **labels)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def worker_metrics(samples: Samples, transactions: str) -> dict[str, Any]:
    """The worker's own figures (its /metrics, or the delta of two scrapes) for a bench result: batch size
    and wall time, Redis round trips, event latency (record timestamp -> acknowledged) in ms; p50/p99 are
    interpolated inside the histogram buckets."""
    if not samples:
        return {"error": "the worker's /metrics did not answer"}
    return {
        "records": int(total(samples, metric.RECORDS_CONSUMED, topic=transactions)),
        "predictions": int(total(samples, metric.PREDICTIONS_PUBLISHED)),
        "dead_letters": int(total(samples, metric.DEAD_LETTERS)),
        "retries": int(total(samples, metric.RETRIES)),
        "outage_s": total(samples, metric.OUTAGE_SECONDS),
        "batch_size": histogram_summary(samples, metric.BATCH_SIZE, topic=transactions),
        "batch_ms": histogram_summary(samples, metric.BATCH_SECONDS, 1e3, topic=transactions),
        "redis_load_ms": histogram_summary(samples, metric.REDIS_SECONDS, 1e3, op="load"),
        "redis_commit_ms": histogram_summary(samples, metric.REDIS_SECONDS, 1e3, op="commit"),
        "redis_errors": int(total(samples, metric.REDIS_ERRORS)),
        "event_latency_ms": histogram_summary(samples, metric.EVENT_LATENCY, 1e3),
    }


def sink_metrics(samples: Samples) -> dict[str, Any]:
    """The sink's own figures (its /metrics) for a bench result."""
    if not samples:
        return {"error": "the sink's /metrics did not answer"}
    return {
        "records": int(total(samples, metric.SINK_RECORDS)),
        "rows_written": int(total(samples, metric.SINK_ROWS_WRITTEN)),
        "parts_written": int(total(samples, metric.SINK_PARTS_WRITTEN)),
        "part_write_ms": histogram_summary(samples, metric.SINK_PART_WRITE_SECONDS, 1e3),
    }
