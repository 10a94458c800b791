"""The sensor -> metrics mapping: fake observations in, the exposition's values out."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.metrics_reader import scrape_value
from stream_app.adapters.prometheus_metrics import BatchHistogram, PrometheusSensor, SinkMetrics
from stream_app.core.metrics import histogram_reference
from stream_app.core.observations import BatchSeen, ScoredSeen, ServedModel, ShadowSeen
from stream_app.core.online_quality import OnlineQuality

FEATURES = ("a", "b")
NOW = 1_800_000_000.0


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def value(text: str, name: str, **labels: str) -> float | None:
    return scrape_value(text, name, labels)


def model(version: str = "v0001", threshold: float = 0.5) -> ServedModel:
    rng = np.random.default_rng(1)
    reference = {f: histogram_reference(rng.normal(size=5000)) for f in FEATURES}
    return ServedModel(version, "production", threshold, FEATURES, reference)


def sensor(registry: CollectorRegistry, clock: list[float] | None = None) -> PrometheusSensor:
    now = clock or [NOW]
    return PrometheusSensor(registry, group="workers", clock=lambda: now[0], recompute_s=5.0)


def test_batch_histogram_matches_the_client_histogram_on_the_same_values() -> None:
    values = np.array([0.0, 0.05, 0.051, 0.3, 0.3, 0.99, 1.0, 1.5])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    BatchHistogram("h", "doc", m.SCORE_BUCKETS, ours).observe_many(values)
    reference = Histogram("h", "doc", buckets=m.SCORE_BUCKETS, registry=theirs)
    for v in values.tolist():
        reference.observe(v)
    assert scrape(ours) == "".join(line for line in scrape(theirs).splitlines(keepends=True) if "_created" not in line)


def test_batches_and_scoring_become_the_service_and_model_counters() -> None:
    registry = CollectorRegistry()
    s = sensor(registry)
    s.on_model_loaded(model())
    s.on_batch(BatchSeen("transactions", {0: 3, 2: 2}, 0.02, {"schema": 1}))
    s.on_scored(ScoredSeen(valid=3, replayed=1, scores=np.array([0.1, 0.7, 0.2]), declined=1,
                           latencies_s=np.array([0.04, 0.2, 0.3]), model_version="v0001", features=FEATURES,
                           matrix=np.array([[0.0, np.nan], [0.1, 1.0], [-0.1, np.nan]]),
                           newest={"user_windows": NOW - 2, "merchant_windows": NOW - 3}))
    s.on_batch(BatchSeen("labels", {0: 1}, 0.01))
    s.on_labels([3600.0, 30.0])
    s.on_retry("unavailable")
    s.on_outage(1.5)
    s.on_redis("load", 0.002, failed=False)
    s.on_redis("commit", 0.5, failed=True)
    text = scrape(registry)
    assert value(text, m.RECORDS_CONSUMED, topic="transactions", partition="0") == 3
    assert value(text, m.RECORDS_CONSUMED, topic="transactions", partition="2") == 2
    assert value(text, m.RECORDS_CONSUMED, topic="labels", partition="0") == 1
    assert value(text, m.EVENTS_VALID) == 3 and value(text, m.EVENTS_REPLAYED) == 1
    assert value(text, m.PREDICTIONS_PUBLISHED) == 3
    assert value(text, m.DEAD_LETTERS, reason="schema") == 1 and value(text, m.DEAD_LETTERS, reason="late") == 0
    assert value(text, m.BATCH_SIZE + "_sum", topic="transactions") == 5
    assert value(text, m.BATCH_SECONDS + "_count", topic="labels") == 1
    assert value(text, m.EVENT_LATENCY + "_bucket", le="0.05") == 1
    assert value(text, m.EVENT_LATENCY + "_count") == 3
    assert value(text, m.SCORE + "_bucket", le="0.5") == 2
    assert value(text, m.DECISIONS, decision="decline") == 1 and value(text, m.DECISIONS, decision="approve") == 2
    assert value(text, m.LABEL_DELAY + "_bucket", le="60.0") == 1 and value(text, m.LABEL_DELAY + "_count") == 2
    assert value(text, m.RETRIES, reason="unavailable") == 1 and value(text, m.RETRIES, reason="error") == 0
    assert value(text, m.OUTAGE_SECONDS) == 1.5
    assert value(text, m.REDIS_SECONDS + "_count", op="load") == 1
    assert value(text, m.REDIS_ERRORS, op="commit") == 1 and value(text, m.REDIS_ERRORS, op="load") == 0
    assert value(text, m.FEATURE_FRESHNESS, view="user_windows") == 2
    assert value(text, m.FEATURE_FRESHNESS, view="merchant_windows") == 3
    assert value(text, m.MODEL_INFO, version="v0001", alias="production") == 1
    assert value(text, m.FEATURE_MISSING, feature="a") == 0 and value(text, m.FEATURE_MISSING, feature="b") == 2 / 3
    assert value(text, m.FEATURE_DRIFT_PSI, feature="a") is not None


def test_a_reload_replaces_model_info_and_counts_successes_and_failures() -> None:
    registry = CollectorRegistry()
    s = sensor(registry)
    s.on_model_loaded(model("v0001"))
    text = scrape(registry)
    assert value(text, m.MODEL_RELOADS, result="success") == 0  # the first load is not a reload
    s.on_model_failed()
    s.on_model_loaded(model("v0002"))
    text = scrape(registry)
    assert value(text, m.MODEL_INFO, version="v0001") is None
    assert value(text, m.MODEL_INFO, version="v0002", alias="production") == 1
    assert value(text, m.MODEL_RELOADS, result="success") == 1 and value(text, m.MODEL_RELOADS, result="failure") == 1


def test_drift_follows_the_served_values_and_is_recomputed_at_most_every_few_seconds() -> None:
    registry, clock = CollectorRegistry(), [NOW]
    s = sensor(registry, clock)
    s.on_model_loaded(model())
    rng = np.random.default_rng(2)
    s.on_scored(ScoredSeen(model_version="v0001", features=FEATURES, matrix=rng.normal(size=(4000, 2))))
    stable = value(scrape(registry), m.FEATURE_DRIFT_PSI, feature="a")
    assert stable is not None and stable < 0.05
    s.on_scored(ScoredSeen(model_version="v0001", features=FEATURES, matrix=rng.normal(loc=3.0, size=(9000, 2))))
    assert value(scrape(registry), m.FEATURE_DRIFT_PSI, feature="a") == stable  # not recomputed yet
    clock[0] += 5
    shifted = value(scrape(registry), m.FEATURE_DRIFT_PSI, feature="a")
    assert shifted is not None and shifted > 0.25
    s.on_scored(ScoredSeen(model_version="v0000", features=("x",), matrix=np.zeros((5, 1))))  # another model's
    clock[0] += 5
    assert value(scrape(registry), m.FEATURE_DRIFT_PSI, feature="x") is None


def test_scrape_time_gauges_read_the_watched_sources_and_online_quality_uses_the_threshold() -> None:
    registry, clock = CollectorRegistry(), [NOW]
    s = sensor(registry, clock)
    s.on_model_loaded(model("v0001", threshold=0.5))
    quality = OnlineQuality()
    for score, fraud in ((0.9, True), (0.6, False), (0.2, True), (0.1, False)):
        quality.add("v0001", score, fraud)
    quality.add("v0000", 0.3, False)  # a version this worker never loaded: no threshold known
    s.watch(publisher_queue=lambda: 17, profile_cache_age=lambda: 42.0, quality=quality)
    s.lag.set({("transactions", 0): 5, ("labels", 1): 0})
    text = scrape(registry)
    assert value(text, m.PUBLISHER_QUEUE) == 17 and value(text, m.PROFILE_CACHE_AGE) == 42
    assert value(text, m.CONSUMER_LAG, group="workers", topic="transactions", partition="0") == 5
    assert value(text, m.CONSUMER_LAG, group="workers", topic="labels", partition="1") == 0
    assert value(text, m.ONLINE_LABELS, model_version="v0001") == 4
    assert value(text, m.ONLINE_ROC_AUC, model_version="v0001") == 0.75
    assert value(text, m.ONLINE_PRECISION, model_version="v0001") == 0.5
    assert value(text, m.ONLINE_RECALL, model_version="v0001") == 0.5
    assert value(text, m.ONLINE_LABELS, model_version="v0000") == 1
    assert value(text, m.ONLINE_ROC_AUC, model_version="v0000") is None  # one class only: undefined
    assert value(text, m.ONLINE_PRECISION, model_version="v0000") is None


def test_a_shadow_is_compared_with_the_champion_and_its_online_quality_uses_its_own_threshold() -> None:
    registry = CollectorRegistry()
    clock = [NOW]
    s = sensor(registry, clock)
    s.on_model_loaded(model("v0001", threshold=0.5))
    quality = OnlineQuality()
    s.watch(quality=quality)
    assert value(scrape(registry), m.SHADOW_DECISION_AGREEMENT, shadow_version="v0002") is None  # no shadow yet
    champion, shadow = np.array([0.1, 0.6, 0.7, 0.2]), np.array([0.2, 0.1, 0.8, 0.4])
    s.on_scored(ScoredSeen(valid=4, scores=champion, shadow=ShadowSeen("v0002", 0.3, 0.5, champion, shadow)))
    for score, shadow_score, fraud in ((0.9, 0.2, True), (0.1, 0.6, False)):
        quality.add("v0001", score, fraud)
        quality.add("v0002", shadow_score, fraud)
    clock[0] += 5.0  # past the recomputation interval
    text = scrape(registry)
    assert value(text, m.SHADOW_PREDICTIONS) == 4
    correlation = float(np.corrcoef(champion, shadow)[0, 1])
    assert value(text, m.SHADOW_SCORE_CORRELATION, shadow_version="v0002") == correlation
    # champion declines 0.6, 0.7 (>= 0.5); the shadow 0.8, 0.4 (>= 0.3): they agree on 0.1/0.2 and 0.7/0.8
    assert value(text, m.SHADOW_DECISION_AGREEMENT, shadow_version="v0002") == 0.5
    assert value(text, m.ONLINE_ROC_AUC, model_version="v0001") == 1.0
    assert value(text, m.ONLINE_ROC_AUC, model_version="v0002") == 0.0
    # at its own threshold 0.3 the shadow flags only the 0.6 (not fraud): precision 0
    assert value(text, m.ONLINE_PRECISION, model_version="v0002") == 0.0
    assert value(text, m.ONLINE_RECALL, model_version="v0001") == 1.0


def test_sink_metrics() -> None:
    registry = CollectorRegistry()
    sink = SinkMetrics(registry, group="sinks")
    sink.on_records("predictions", 10)
    sink.on_part_written("user_windows", 7, 0.03)
    sink.on_part_written("user_windows", 3, 0.02)
    sink.on_open_rows(4)
    sink.lag.set({("predictions", 0): 0})
    text = scrape(registry)
    assert value(text, m.SINK_RECORDS, topic="predictions") == 10
    assert value(text, m.SINK_ROWS_WRITTEN, log="user_windows") == 10
    assert value(text, m.SINK_PARTS_WRITTEN, log="user_windows") == 2
    assert value(text, m.SINK_PART_WRITE_SECONDS + "_count") == 2
    assert value(text, m.SINK_OPEN_ROWS) == 4
    assert value(text, m.CONSUMER_LAG, group="sinks", topic="predictions", partition="0") == 0
