"""The Prometheus metrics of the worker and the sink: every metric name (here and nowhere else: the alert
rules and the dashboard use exactly these, see the catalogue in the README), the worker's sensor
(``PrometheusSensor``, a ``stream_app.worker.sensor.WorkerSensor``) and the sink's (``SinkMetrics``).

Each object registers its metrics in the ``CollectorRegistry`` it is given (a process's own, so tests can
build several). Per-event values (scores, latencies) are counted into histogram buckets a batch at a time
(``BatchHistogram``); values that depend on the time of the scrape (freshness, cache age, drift, online
quality, lag, the producer's queue) are computed when scraped, the costly ones at most every
``recompute_s``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from stream_app.contract import ErrorCode
from stream_app.core.drift import DEFAULT_SAMPLE_ROWS, RollingSample, drift_psi, missing_ratios
from stream_app.core.observations import BatchSeen, ScoredSeen, ServedModel
from stream_app.core.online_quality import OnlineQuality
from stream_app.core.shadow import ShadowComparison

# worker: service
RECORDS_CONSUMED: Final = "streamscore_records_consumed_total"
EVENTS_VALID: Final = "streamscore_events_valid_total"
EVENTS_REPLAYED: Final = "streamscore_events_replayed_total"
DEAD_LETTERS: Final = "streamscore_dead_letters_total"
PREDICTIONS_PUBLISHED: Final = "streamscore_predictions_published_total"
BATCH_SIZE: Final = "streamscore_batch_size"
BATCH_SECONDS: Final = "streamscore_batch_seconds"
EVENT_LATENCY: Final = "streamscore_event_latency_seconds"
CONSUMER_LAG: Final = "streamscore_consumer_lag"
REDIS_SECONDS: Final = "streamscore_redis_seconds"
REDIS_ERRORS: Final = "streamscore_redis_errors_total"
RETRIES: Final = "streamscore_retries_total"
OUTAGE_SECONDS: Final = "streamscore_outage_seconds_total"
PUBLISHER_QUEUE: Final = "streamscore_publisher_queue"
PARTITIONS_PAUSED: Final = "streamscore_partitions_paused"
# worker: data
FEATURE_FRESHNESS: Final = "streamscore_feature_freshness_seconds"
FEATURE_DRIFT_PSI: Final = "streamscore_feature_drift_psi"
FEATURE_MISSING: Final = "streamscore_feature_missing_ratio"
PROFILE_CACHE_AGE: Final = "streamscore_profile_cache_age_seconds"
# worker: model
MODEL_INFO: Final = "streamscore_model_info"
SCORE: Final = "streamscore_score"
DECISIONS: Final = "streamscore_decisions_total"
ONLINE_ROC_AUC: Final = "streamscore_online_roc_auc"
ONLINE_PRECISION: Final = "streamscore_online_precision"
ONLINE_RECALL: Final = "streamscore_online_recall"
ONLINE_LABELS: Final = "streamscore_online_labels"
LABEL_DELAY: Final = "streamscore_label_delay_seconds"
MODEL_RELOADS: Final = "streamscore_model_reloads_total"
SHADOW_PREDICTIONS: Final = "streamscore_shadow_predictions_total"
SHADOW_SCORE_CORRELATION: Final = "streamscore_shadow_score_correlation"
SHADOW_DECISION_AGREEMENT: Final = "streamscore_shadow_decision_agreement"
# sink
SINK_RECORDS: Final = "streamscore_sink_records_total"
SINK_ROWS_WRITTEN: Final = "streamscore_sink_rows_written_total"
SINK_PARTS_WRITTEN: Final = "streamscore_sink_parts_written_total"
SINK_PART_WRITE_SECONDS: Final = "streamscore_sink_part_write_seconds"
SINK_OPEN_ROWS: Final = "streamscore_sink_open_rows"

RETRY_REASONS: Final = ("unavailable", "conflict", "labels_ahead", "error")
REDIS_OPS: Final = ("load", "commit")
DECISION_NAMES: Final = ("approve", "decline")
RECOMPUTE_S: Final = 5.0

BATCH_SIZE_BUCKETS: Final = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)
SECONDS_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
REDIS_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
SCORE_BUCKETS: Final = tuple(round(0.05 * i, 2) for i in range(1, 21))
LABEL_DELAY_BUCKETS: Final = (60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86_400.0, 3 * 86_400.0, 7 * 86_400.0,
                              30 * 86_400.0)

FloatArray = npt.NDArray[np.float64]


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus's text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


class BatchHistogram(Collector):
    """A label-less histogram fed whole arrays: ``observe_many`` counts a batch's values into the buckets
    with one ``searchsorted`` (a bucket ``le`` holds the values <= le, as Prometheus's)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above every bound (+Inf)
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: FloatArray) -> None:
        if not len(values):
            return
        counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self._counts))
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            cumulative, total = np.cumsum(self._counts).tolist(), self._sum
        family = HistogramMetricFamily(self.name, self.documentation, labels=())
        buckets = [(_le(b), float(c)) for b, c in zip(self.bounds.tolist(), cumulative, strict=False)]
        family.add_metric((), [*buckets, ("+Inf", float(cumulative[-1]))], total)
        yield family

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=())]


def _le(bound: float) -> str:
    return repr(float(bound))


class ConsumerLagGauge(Collector):
    """``streamscore_consumer_lag`` of one consumer group, as last measured (``set``, from the poller)."""

    def __init__(self, group: str, registry: CollectorRegistry) -> None:
        self.group = group
        self._lag: Mapping[tuple[str, int], int] = {}
        registry.register(self)

    def set(self, lag: Mapping[tuple[str, int], int]) -> None:
        self._lag = dict(lag)  # replaced whole: a scrape reads one measurement

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(CONSUMER_LAG, "end offset - committed offset of the consumer group",
                                   labels=("group", "topic", "partition"))
        for (topic, partition), lag in sorted(self._lag.items()):
            family.add_metric((self.group, topic, str(partition)), float(lag))
        yield family

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(CONSUMER_LAG, "", labels=("group", "topic", "partition"))]


class PrometheusSensor(Collector):
    """The worker's metrics, fed by the runners, the model source and the timed state store (a
    ``WorkerSensor``); ``watch`` adds what is read when scraped (the producer's queue, the profile cache's
    age, the online quality). Itself the collector of the scrape-time gauges."""

    def __init__(self, registry: CollectorRegistry, *, group: str, sample_rows: int = DEFAULT_SAMPLE_ROWS,
                 recompute_s: float = RECOMPUTE_S, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock
        self.recompute_s = recompute_s
        self.sample_rows = sample_rows
        r = registry
        self.consumed = Counter(RECORDS_CONSUMED, "records handed to a runner", ("topic", "partition"), registry=r)
        self.valid = Counter(EVENTS_VALID, "transactions applied to windows and scored", registry=r)
        self.replayed = Counter(EVENTS_REPLAYED, "transactions recognised as already applied", registry=r)
        self.dead_letters = Counter(DEAD_LETTERS, "dead letters published", ("reason",), registry=r)
        self.predictions = Counter(PREDICTIONS_PUBLISHED, "predictions acknowledged by the broker", registry=r)
        self.batch_size = Histogram(BATCH_SIZE, "records per batch", ("topic",), buckets=BATCH_SIZE_BUCKETS,
                                    registry=r)
        self.batch_seconds = Histogram(BATCH_SECONDS, "wall time of a batch through its effects", ("topic",),
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.latency = BatchHistogram(EVENT_LATENCY, "record timestamp -> prediction acknowledged",
                                      LATENCY_BUCKETS, r)
        self.redis_seconds = Histogram(REDIS_SECONDS, "Redis round trip of a batch", ("op",),
                                       buckets=REDIS_BUCKETS, registry=r)
        self.redis_errors = Counter(REDIS_ERRORS, "Redis calls that failed", ("op",), registry=r)
        self.retries = Counter(RETRIES, "batch retries", ("reason",), registry=r)
        self.outage = Counter(OUTAGE_SECONDS, "seconds spent waiting for an unavailable dependency", registry=r)
        self.model_info = Gauge(MODEL_INFO, "the model serving now", ("version", "alias"), registry=r)
        self.score = BatchHistogram(SCORE, "scores published", SCORE_BUCKETS, r)
        self.decisions = Counter(DECISIONS, "decisions published", ("decision",), registry=r)
        self.label_delay = BatchHistogram(LABEL_DELAY, "label time - event time of joined labels",
                                          LABEL_DELAY_BUCKETS, r)
        self.reloads = Counter(MODEL_RELOADS, "model reload attempts", ("result",), registry=r)
        self.shadow_predictions = Counter(SHADOW_PREDICTIONS, "events the shadow model scored beside the champion",
                                          registry=r)
        self._shadow = ShadowComparison()
        self.lag = ConsumerLagGauge(group, r)
        self.paused = Gauge(PARTITIONS_PAUSED, "transactions partitions paused for running ahead in event time "
                            "(catch-up alignment)", registry=r)
        for code in ErrorCode:  # every series exists from the start, so rates and alerts see zeros
            self.dead_letters.labels(str(code))
        for reason in RETRY_REASONS:
            self.retries.labels(reason)
        for op in REDIS_OPS:
            self.redis_errors.labels(op)
        for decision in DECISION_NAMES:
            self.decisions.labels(decision)
        for result in ("success", "failure"):
            self.reloads.labels(result)
        self._model: ServedModel | None = None
        self._thresholds: dict[str, float] = {}
        self._sample: RollingSample | None = None
        self._newest: dict[str, float] = {}
        self._publisher_queue: Callable[[], int] | None = None
        self._cache_age: Callable[[], float] | None = None
        self._quality: OnlineQuality | None = None
        self._cached: dict[str, tuple[float, list[Metric]]] = {}  # costly families, by name: (when, families)
        r.register(self)

    def watch(self, *, publisher_queue: Callable[[], int] | None = None,
              profile_cache_age: Callable[[], float] | None = None, quality: OnlineQuality | None = None) -> None:
        """Values read when scraped: the output producer's queue length, the profile cache's age, and the
        online quality measurement the label runner feeds."""
        self._publisher_queue = publisher_queue
        self._cache_age = profile_cache_age
        self._quality = quality

    def on_partitions_paused(self, count: int) -> None:
        """``count`` transactions partitions are paused for alignment now (stream_app.worker.alignment)."""
        self.paused.set(count)

    # WorkerSensor
    def on_batch(self, batch: BatchSeen) -> None:
        for partition, count in batch.partitions.items():
            self.consumed.labels(batch.topic, str(partition)).inc(count)
        for reason, count in batch.dead_letters.items():
            self.dead_letters.labels(reason).inc(count)
        self.batch_size.labels(batch.topic).observe(batch.size)
        self.batch_seconds.labels(batch.topic).observe(batch.seconds)

    def on_scored(self, scored: ScoredSeen) -> None:
        self.valid.inc(scored.valid)
        self.replayed.inc(scored.replayed)
        published = len(scored.scores)
        self.predictions.inc(published)
        self.decisions.labels("decline").inc(scored.declined)
        self.decisions.labels("approve").inc(published - scored.declined)
        self.score.observe_many(scored.scores)
        self.latency.observe_many(scored.latencies_s)
        self._newest.update((view, max(t, self._newest.get(view, t))) for view, t in scored.newest.items())
        sample = self._sample
        if sample is not None and scored.features == sample.features and len(scored.matrix):
            sample.add(scored.matrix)
        shadow = scored.shadow
        if shadow is not None:
            self.shadow_predictions.inc(len(shadow.scores))
            self._thresholds[shadow.version] = shadow.threshold  # its online precision / recall
            self._shadow.add(shadow.version, shadow.champion_scores, shadow.scores, shadow.champion_threshold,
                             shadow.threshold)

    def on_labels(self, delays_s: Sequence[float]) -> None:
        self.label_delay.observe_many(np.asarray(delays_s, dtype=np.float64))

    def on_retry(self, reason: str) -> None:
        self.retries.labels(reason).inc()

    def on_outage(self, seconds: float) -> None:
        self.outage.inc(max(0.0, seconds))

    def on_redis(self, op: str, seconds: float, failed: bool) -> None:
        self.redis_seconds.labels(op).observe(seconds)
        if failed:
            self.redis_errors.labels(op).inc()

    def on_model_loaded(self, model: ServedModel) -> None:
        if self._model is not None:
            self.reloads.labels("success").inc()
        self._model = model
        self._thresholds[model.version] = model.threshold
        self.model_info.clear()
        self.model_info.labels(model.version, model.alias).set(1)
        self._sample = RollingSample(model.features, self.sample_rows)  # the new model's features, from now on
        self._cached.pop(FEATURE_DRIFT_PSI, None)

    def on_model_failed(self) -> None:
        self.reloads.labels("failure").inc()

    # Collector: the gauges read when scraped
    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        freshness = GaugeMetricFamily(FEATURE_FRESHNESS, "now - newest event time written to the online store",
                                      labels=("view",))
        for view, newest in sorted(self._newest.items()):
            freshness.add_metric((view,), max(0.0, now - newest))
        yield freshness
        if self._publisher_queue is not None:
            yield GaugeMetricFamily(PUBLISHER_QUEUE, "messages waiting in the output producer's queue",
                                    value=float(self._publisher_queue()))
        if self._cache_age is not None:
            yield GaugeMetricFamily(PROFILE_CACHE_AGE, "age of the oldest profile the worker serves from its cache",
                                    value=float(self._cache_age()))
        yield from self._recomputed(FEATURE_DRIFT_PSI, now, self._data_quality)
        yield from self._recomputed(ONLINE_ROC_AUC, now, self._online_quality)
        yield from self._recomputed(SHADOW_SCORE_CORRELATION, now, self._shadow_comparison)

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on what was seen: not checked for clashes at registration

    def _recomputed(self, key: str, now: float, compute: Callable[[], list[Metric]]) -> list[Metric]:
        cached = self._cached.get(key)
        if cached is None or now - cached[0] >= self.recompute_s:
            cached = self._cached[key] = (now, compute())
        return cached[1]

    def _data_quality(self) -> list[Metric]:
        drift = GaugeMetricFamily(FEATURE_DRIFT_PSI, "PSI of the served values vs the model's reference",
                                  labels=("feature",))
        missing = GaugeMetricFamily(FEATURE_MISSING, "share of missing values among the served values",
                                    labels=("feature",))
        sample, model = self._sample, self._model
        if sample is not None and model is not None:
            for feature, value in drift_psi(sample, model.reference).items():
                drift.add_metric((feature,), value)
            for feature, share in missing_ratios(sample).items():
                missing.add_metric((feature,), share)
        return [drift, missing]

    def _shadow_comparison(self) -> list[Metric]:
        correlation = GaugeMetricFamily(SHADOW_SCORE_CORRELATION, "Pearson correlation of the shadow's and the "
                                        "champion's scores of the same events, rolling", labels=("shadow_version",))
        agreement = GaugeMetricFamily(SHADOW_DECISION_AGREEMENT, "share of events the shadow decides as the "
                                      "champion does, rolling", labels=("shadow_version",))
        shadow = self._shadow
        if shadow.count():
            value = shadow.correlation()
            if not math.isnan(value):
                correlation.add_metric((shadow.shadow_version,), value)
            agreement.add_metric((shadow.shadow_version,), shadow.agreement())
        return [correlation, agreement]

    def _online_quality(self) -> list[Metric]:
        families = {name: GaugeMetricFamily(name, text, labels=("model_version",)) for name, text in (
            (ONLINE_ROC_AUC, "rolling ROC-AUC from delayed labels"),
            (ONLINE_PRECISION, "precision at the model's threshold, rolling"),
            (ONLINE_RECALL, "recall at the model's threshold, rolling"),
            (ONLINE_LABELS, "labels in the rolling window"))}
        quality = self._quality
        if quality is None:
            return list(families.values())
        for version in quality.versions():
            held = quality.count(version)
            families[ONLINE_LABELS].add_metric((version,), float(held))
            auc = quality.roc_auc(version)
            if not math.isnan(auc):
                families[ONLINE_ROC_AUC].add_metric((version,), auc)
            threshold = self._thresholds.get(version)
            if held and threshold is not None:
                at = quality.at_threshold(version, threshold)
                families[ONLINE_PRECISION].add_metric((version,), at.precision)
                families[ONLINE_RECALL].add_metric((version,), at.recall)
        return list(families.values())


class SinkMetrics:
    """The sink's metrics (a ``stream_app.sink.sensor.SinkSensor``)."""

    def __init__(self, registry: CollectorRegistry, *, group: str) -> None:
        r = registry
        self.registry = registry
        self.records = Counter(SINK_RECORDS, "records consumed", ("topic",), registry=r)
        self.rows = Counter(SINK_ROWS_WRITTEN, "rows written in durable parts", ("log",), registry=r)
        self.parts = Counter(SINK_PARTS_WRITTEN, "parts written", ("log",), registry=r)
        self.write_seconds = Histogram(SINK_PART_WRITE_SECONDS, "time to write one part durably",
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.open_rows = Gauge(SINK_OPEN_ROWS, "rows buffered in unwritten parts", registry=r)
        self.lag = ConsumerLagGauge(group, r)

    def on_records(self, topic: str, count: int) -> None:
        self.records.labels(topic).inc(count)

    def on_part_written(self, log: str, rows: int, seconds: float) -> None:
        self.rows.labels(log).inc(rows)
        self.parts.labels(log).inc()
        self.write_seconds.observe(seconds)

    def on_open_rows(self, rows: int) -> None:
        self.open_rows.set(rows)

