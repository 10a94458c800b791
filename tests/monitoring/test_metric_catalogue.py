"""The catalogue of tests/fixtures/metric_catalogue.py is what the worker and the sink expose: the families of
a ``PrometheusSensor`` (every scrape-time value watched) and of a ``SinkMetrics``, built on registries of
their own, are exactly its metrics with its types, so a metric added to either fails here until the
catalogue (and with it the alert rules' and the dashboard's checks) knows it."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from stream_app.adapters.prometheus_metrics import PrometheusSensor, SinkMetrics
from stream_app.core.online_quality import OnlineQuality
from tests.fixtures.metric_catalogue import CATALOGUE, SINK_METRICS, WORKER_METRICS, Metric


def exposed(registry: CollectorRegistry) -> dict[str, str]:
    """Name (as exposed: a counter's with ``_total``) -> type of every family the registry collects."""
    return {f"{family.name}_total" if family.type == "counter" else family.name: family.type
            for family in registry.collect()}


def catalogued(metrics: tuple[Metric, ...]) -> dict[str, str]:
    return {metric.name: metric.kind for metric in metrics}


def test_the_worker_exposes_exactly_the_catalogues_worker_metrics() -> None:
    sensor = PrometheusSensor(CollectorRegistry(), group="streamscore-worker")
    sensor.watch(publisher_queue=lambda: 0, profile_cache_age=lambda: 0.0, quality=OnlineQuality())
    assert exposed(sensor.registry) == catalogued(WORKER_METRICS)


def test_the_sink_exposes_exactly_the_catalogues_sink_metrics() -> None:
    metrics = SinkMetrics(CollectorRegistry(), group="streamscore-sink")
    assert exposed(metrics.registry) == catalogued(SINK_METRICS)


def test_a_metric_both_expose_has_one_type_and_one_set_of_labels() -> None:
    worker, sink = ({m.name: (m.kind, m.labels) for m in metrics} for metrics in (WORKER_METRICS, SINK_METRICS))
    shared = set(worker) & set(sink)
    assert shared
    for name in shared:
        assert worker[name] == sink[name] == (CATALOGUE[name].kind, CATALOGUE[name].labels), name
