"""The Grafana dashboard (monitoring/grafana/dashboards/streamscore.json): three rows of panels whose PromQL
reads only catalogue metrics, covers all of them, and, run by a real Prometheus scraping a live worker and
sink fed a stream, returns data for every panel; the scraped series carry the catalogue's labels and the
alert rules evaluate without error on the same data."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.process import WorkerProcess, free_port
from tests.fixtures.metric_catalogue import CATALOGUE, PROMETHEUS_OWN, SINK_JOB, WORKER_JOB, stored_names
from tests.fixtures.prometheus import ALERT_RULES, MONITORING, PrometheusServer, StartPrometheus, metric_names
from tests.fixtures.workers import StartSink, StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare, set_shadow

DASHBOARD = MONITORING / "grafana" / "dashboards" / "streamscore.json"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
ROWS = ("Service", "Data", "Model")
# What Grafana substitutes before sending a query; a 1 s scrape interval puts many samples in a minute.
GRAFANA_VARIABLES = {"$__rate_interval": "1m"}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def rows() -> dict[str, list[dict[str, Any]]]:
    """Row title -> the panels under it, in dashboard order."""
    found: dict[str, list[dict[str, Any]]] = {}
    current: list[dict[str, Any]] | None = None
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            current = found.setdefault(panel["title"], [])
        else:
            assert current is not None, f"panel {panel['title']!r} is above the first row"
            current.append(panel)
    return found


def panel_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expression) of every query on the dashboard."""
    return [(f"{panel['title']} / {target['refId']}", target["expr"])
            for panels in rows().values() for panel in panels for target in panel["targets"]]


def as_sent(expr: str) -> str:
    """The expression as Grafana sends it to Prometheus."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the tests do not substitute: {expr}"
    return expr


def test_metric_names_finds_the_selected_metrics_only() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, topic) (rate(streamscore_batch_seconds_bucket{topic!~"a.b"}'
            '[$__rate_interval]))) / on (job) group_left up offset 5m > bool 1e3 and other:recorded')
    assert metric_names(expr) == {"streamscore_batch_seconds_bucket", "up", "other:recorded"}


def test_the_dashboard_has_a_service_a_data_and_a_model_row() -> None:
    assert tuple(rows()) == ROWS
    assert all(rows()[title] for title in ROWS)


@pytest.mark.parametrize(("row", "topics"), [
    ("Service", ("throughput", "lag", "latency", "errors")),
    ("Data", ("freshness", "drift", "missing")),
    ("Model", ("serving model", "score", "online quality", "decisions")),
])
def test_each_row_shows_what_the_issue_asks_for(row: str, topics: Sequence[str]) -> None:
    titles = " | ".join(panel["title"].lower() for panel in rows()[row])
    for topic in topics:
        assert topic in titles, f"{row} row has no {topic} panel: {titles}"
    queries = " ".join(t["expr"] for panel in rows()[row] for t in panel["targets"])
    if row == "Service":
        assert "histogram_quantile(0.99" in queries and "histogram_quantile(0.5" in queries
    if row == "Model":
        assert "streamscore_online_roc_auc" in queries and "streamscore_model_info" in queries


def test_every_panel_queries_catalogue_metrics_only() -> None:
    known = set(stored_names()) | PROMETHEUS_OWN
    for panels in rows().values():
        for panel in panels:
            assert panel["targets"], f"{panel['title']} has no query"
    for where, expr in panel_queries():
        used = metric_names(expr)
        assert used, where
        assert used <= known, f"{where} reads {sorted(used - known)}, which the catalogue does not define"


def test_every_catalogue_metric_is_on_the_dashboard() -> None:
    shown = {stored_names()[name].name for _, expr in panel_queries() for name in metric_names(expr)
             if name in stored_names()}
    assert shown == set(CATALOGUE), f"not on the dashboard: {sorted(set(CATALOGUE) - shown)}"


def test_panels_use_the_provisioned_datasource_and_have_unique_ids() -> None:
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert len(provisioned) == 1
    source = provisioned[0]
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panels in rows().values():
        for panel in panels:
            for owner in (panel, *panel["targets"]):
                assert owner["datasource"] == {"type": source["type"], "uid": source["uid"]}, panel["title"]


# ---------------------------------------------------------------- against a real Prometheus

def answers(port: int, process: WorkerProcess) -> bool:
    """Whether ``process`` serves /metrics on ``port`` yet (asserting it still runs)."""
    assert process.alive(), process.tail(40)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture
def scrape_targets(settings: Settings, tmp_path: Path, unique: str, worker_process: StartWorker,
                   sink_process: StartSink) -> Iterator[dict[str, list[str]]]:
    """job -> the addresses Prometheus scrapes: a live worker (serving a model with reference
    distributions, and a shadow model) and sink, fed a stream with invalid records and labels due within a
    second until the test ends."""
    settings = prepare(settings, tmp_path, f"dash_{unique}")
    set_shadow(settings)
    ensure_topics(settings.kafka, settings.topics.all())
    web_port, metrics_port = free_port(), free_port()
    worker = worker_process(settings, tmp_path / "worker.log", web_port=web_port)
    sink = sink_process(settings, tmp_path / "sink.log", metrics_port=metrics_port)
    deadline = time.monotonic() + 120
    while not (answers(web_port, worker) and answers(metrics_port, sink)):
        assert time.monotonic() < deadline, f"no /metrics:\n{worker.tail(30)}\n{sink.tail(30)}"
        time.sleep(0.5)
    stop = threading.Event()
    traffic = threading.Thread(target=stream_live, args=(settings, 100, 300), name="dashboard-traffic", kwargs={
        "seed": SEED, "users": USERS, "merchants": MERCHANTS, "invalid_fraction": 0.05,
        "label_delay_scale": 1e-6, "report": None, "stop": stop})
    traffic.start()
    try:
        yield {WORKER_JOB: [f"127.0.0.1:{web_port}"], SINK_JOB: [f"127.0.0.1:{metrics_port}"]}
    finally:
        stop.set()
        traffic.join(timeout=30)


def panels_without_data(prometheus: PrometheusServer, timeout_s: float) -> dict[str, Any]:
    """Panel queries whose answer has no finite sample, with what Prometheus answered, once every panel has
    data or after ``timeout_s`` (some values appear only once events, labels and recomputations happened)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {}
        for where, expr in panel_queries():
            samples = prometheus.query(as_sent(expr))
            if not any(math.isfinite(float(sample["value"][1])) for sample in samples):
                found[where] = (expr, samples)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def scraped_labels(prometheus: PrometheusServer) -> dict[str, set[frozenset[str]]]:
    """Catalogue metric -> the label name sets of its stored series (without Prometheus's own labels)."""
    found: dict[str, set[frozenset[str]]] = {}
    for series in prometheus.api("series", **{"match[]": '{__name__=~"streamscore_.+"}'}):
        metric = stored_names().get(series["__name__"])
        if metric is not None:
            found.setdefault(metric.name, set()).add(frozenset(series) - {"__name__", "job", "instance", "le"})
    return found


def evaluated_rules(prometheus: PrometheusServer, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every loaded rule, once each has been evaluated at least once."""
    deadline = time.monotonic() + timeout_s
    while True:
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        if rules and not any(rule["lastEvaluation"].startswith("0001-") for rule in rules):
            return rules
        assert time.monotonic() < deadline, f"rules not evaluated in {timeout_s} s: {rules}"
        time.sleep(0.2)


@pytest.mark.integration
@pytest.mark.slow
def test_every_panel_returns_data_and_every_rule_evaluates(prometheus_server: StartPrometheus,
                                                          scrape_targets: dict[str, list[str]]) -> None:
    prometheus = prometheus_server(scrape_targets)
    targets = prometheus.wait_until_scraped()
    assert {t["labels"]["job"] for t in targets} == set(scrape_targets)
    without_data = panels_without_data(prometheus, timeout_s=90)
    assert not without_data, json.dumps(without_data, indent=1)
    assert scraped_labels(prometheus) == {name: {frozenset(metric.labels)} for name, metric in CATALOGUE.items()}
    rules = evaluated_rules(prometheus)
    alert_rules = yaml.safe_load(ALERT_RULES.read_text())
    assert len(rules) == sum(len(group["rules"]) for group in alert_rules["groups"])
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken
