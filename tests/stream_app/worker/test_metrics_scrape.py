"""A short stream through a real worker and sink, then both /metrics scraped over HTTP: the counts equal
what the stream produced, the lag returns to 0 once drained, the features are fresh, and the model's
data-quality and online-quality gauges are there."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.contract import decode_joined_label, decode_transaction
from stream_app.core.drift import SEASONAL_FEATURES
from stream_app.core.metrics import precision_recall_at, roc_auc
from stream_app.errors import InvalidRecordError
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.process import WorkerProcess, free_port
from tests.fixtures.kafka import consume
from tests.fixtures.workers import StartSink, StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int, process: WorkerProcess) -> Samples:
    assert process.alive(), process.tail(60)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return [(s.name, dict(s.labels), float(s.value)) for f in text_string_to_metric_families(text) for s in f.samples]


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


def series(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {ls[label]: v for n, ls, v in samples if n == name}


def until(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:  # the endpoint is not up yet
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_scrape_after_a_short_stream_matches_what_was_produced(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker, sink_process: StartSink) -> None:
    settings = prepare(settings, tmp_path, f"metrics_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    web_port, sink_port = free_port(), free_port()
    worker = worker_process(settings, tmp_path / "worker.log", web_port=web_port)
    sink = sink_process(settings, tmp_path / "sink.log", metrics_port=sink_port)
    until(lambda: scrape(web_port, worker) and scrape(sink_port, sink), 90, "the /metrics endpoints did not answer")

    stream_started = time.time()
    counts = stream_live(settings, rate=300, duration_s=3.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         invalid_fraction=0.05, label_delay_scale=1e-6, report=None)
    stream_ended = time.time()
    produced = counts.valid + counts.invalid
    valid: set[str] = set()
    invalid: Counter[str] = Counter()
    for key, value, _, _ in consume(settings, settings.topics.transactions.name, produced):
        try:
            valid.add(decode_transaction(value, key).event_id)
        except InvalidRecordError as error:
            invalid[str(error.code)] += 1
    assert invalid and len(valid) == counts.valid

    txns, labels = settings.topics.transactions.name, settings.topics.labels.name
    group, sink_group = settings.worker.app_id, settings.sink.group_id

    def drained() -> bool:
        w, s = scrape(web_port, worker), scrape(sink_port, sink)
        worker_lag = series([x for x in w if x[1].get("group") == group], m.CONSUMER_LAG, "partition")
        sink_lag = [v for n, ls, v in s if n == m.CONSUMER_LAG and ls["group"] == sink_group]
        return (total(w, m.PREDICTIONS_PUBLISHED) >= len(valid) and total(w, m.RECORDS_CONSUMED, topic=labels) >=
                counts.labels and bool(worker_lag) and not any(worker_lag.values()) and bool(sink_lag)
                and not any(sink_lag) and total(s, m.SINK_ROWS_WRITTEN, log="user_windows") >= len(valid))

    until(drained, 180, f"not drained:\n{worker.tail(30)}\n{sink.tail(30)}")
    time.sleep(m.RECOMPUTE_S)  # drift and online quality are recomputed at most this often
    w, s = scrape(web_port, worker), scrape(sink_port, sink)
    scraped_at = time.time()

    # service
    assert total(w, m.RECORDS_CONSUMED, topic=txns) == produced
    assert total(w, m.RECORDS_CONSUMED, topic=labels) == counts.labels
    assert total(w, m.EVENTS_VALID) == len(valid) and total(w, m.EVENTS_REPLAYED) == 0
    assert total(w, m.PREDICTIONS_PUBLISHED) == len(valid)
    assert {reason: v for reason, v in series(w, m.DEAD_LETTERS, "reason").items() if v} == invalid
    assert total(w, m.BATCH_SIZE + "_sum", topic=txns) == produced
    assert total(w, m.BATCH_SECONDS + "_count", topic=txns) == total(w, m.BATCH_SIZE + "_count", topic=txns) > 0
    assert total(w, m.EVENT_LATENCY + "_count") == len(valid)
    assert {(ls["topic"], v) for n, ls, v in w if n == m.CONSUMER_LAG} == {(txns, 0.0), (labels, 0.0)}
    assert total(w, m.REDIS_SECONDS + "_count", op="load") > 0 and total(w, m.REDIS_SECONDS + "_count", op="commit") > 0
    assert total(w, m.REDIS_ERRORS) == 0 and total(w, m.OUTAGE_SECONDS) == 0
    assert total(w, m.PUBLISHER_QUEUE) == 0
    # data: the newest rows written are the stream's last events
    freshness = series(w, m.FEATURE_FRESHNESS, "view")
    assert set(freshness) == {"user_windows", "merchant_windows"}
    assert freshness["user_windows"] - (scraped_at - stream_ended) < 3.0
    metadata = ModelRegistry(settings.models_dir).load_alias("production").metadata
    assert set(series(w, m.FEATURE_MISSING, "feature")) == set(metadata.features)
    drift = series(w, m.FEATURE_DRIFT_PSI, "feature")
    assert set(metadata.reference_distributions) == set(metadata.features)
    assert set(drift) == set(metadata.features) - SEASONAL_FEATURES  # no PSI for seasonal features (0025)
    [cache_age] = [v for n, _, v in w if n == m.PROFILE_CACHE_AGE]
    assert 0 < cache_age <= scraped_at - stream_started  # profiles were first read once the stream began
    # model
    assert total(w, m.MODEL_INFO, version=str(metadata.version), alias="production") == 1
    assert total(w, m.SCORE + "_count") == len(valid) == total(w, m.DECISIONS)
    joined = total(w, m.LABEL_DELAY + "_count")
    assert 0 < joined <= counts.labels
    assert total(w, m.ONLINE_LABELS, model_version=str(metadata.version)) == joined
    # online quality equals the same maths over the joined labels the worker published (score, label)
    published = [decode_joined_label(value) for _, value, _, _ in
                 consume(settings, settings.topics.labels_joined.name, int(joined))]
    y = np.array([row.is_fraud for row in published])
    scores = np.array([row.score for row in published])
    assert len(published) == joined and 0 < y.sum() < len(y), "the stream's labels need both classes"
    version = str(metadata.version)
    assert total(w, m.ONLINE_ROC_AUC, model_version=version) == pytest.approx(roc_auc(y, scores), abs=1e-9)
    at = precision_recall_at(y, scores, metadata.threshold)
    assert total(w, m.ONLINE_PRECISION, model_version=version) == pytest.approx(at.precision, abs=1e-9)
    assert total(w, m.ONLINE_RECALL, model_version=version) == pytest.approx(at.recall, abs=1e-9)
    assert total(w, m.MODEL_RELOADS) == 0
    # sink
    assert total(s, m.SINK_RECORDS, topic=settings.topics.predictions.name) == len(valid)
    assert total(s, m.SINK_ROWS_WRITTEN, log="user_windows") == len(valid)
    assert total(s, m.SINK_RECORDS, topic=settings.topics.labels_joined.name) == joined
    assert total(s, m.SINK_ROWS_WRITTEN, log="labels") == joined
    assert total(s, m.SINK_ROWS_WRITTEN, log="merchant_windows") == len(valid)
    assert total(s, m.SINK_PARTS_WRITTEN) == total(s, m.SINK_PART_WRITE_SECONDS + "_count") > 0
    assert total(s, m.SINK_OPEN_ROWS) == 0
