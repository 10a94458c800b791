"""Reading an exposition back: the samples a registry serves, picked by name and labels, and histogram
quantiles interpolated inside the buckets the way Prometheus's histogram_quantile does."""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stream_app.adapters.metrics_reader import (
    bucket_quantile,
    buckets,
    by_label,
    delta,
    histogram_figures,
    max_by_label,
    parse,
    scrape,
    scrape_url,
    total,
)

TEXT = """\
# HELP streamscore_consumer_lag end offset - committed offset
# TYPE streamscore_consumer_lag gauge
streamscore_consumer_lag{group="g",topic="transactions",partition="0"} 3.0
streamscore_consumer_lag{group="g",topic="transactions",partition="1"} 0.0
streamscore_consumer_lag{group="g",topic="labels",partition="0"} 5.0
# HELP streamscore_latency_seconds latency
# TYPE streamscore_latency_seconds histogram
streamscore_latency_seconds_bucket{le="0.1"} 10.0
streamscore_latency_seconds_bucket{le="0.5"} 30.0
streamscore_latency_seconds_bucket{le="1.0"} 40.0
streamscore_latency_seconds_bucket{le="+Inf"} 40.0
streamscore_latency_seconds_count 40.0
streamscore_latency_seconds_sum 12.0
"""


def test_samples_are_picked_by_name_and_labels() -> None:
    samples = parse(TEXT)
    assert total(samples, "streamscore_consumer_lag") == 8.0
    assert total(samples, "streamscore_consumer_lag", topic="transactions") == 3.0
    assert total(samples, "streamscore_absent") == 0.0
    assert by_label(samples, "streamscore_consumer_lag", "partition", topic="transactions") == {"0": 3.0, "1": 0.0}
    assert by_label(samples, "streamscore_consumer_lag", "topic") == {"transactions": 3.0, "labels": 5.0}
    assert buckets(samples, "streamscore_latency_seconds") == [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0),
                                                              (math.inf, 40.0)]
    assert total(samples, "streamscore_latency_seconds_count") == 40.0


def test_max_by_label_is_the_largest_reported_value_without_nan() -> None:
    samples = parse("""\
# TYPE psi gauge
psi{feature="a",instance="w1"} 0.1
psi{feature="a",instance="w2"} 0.3
psi{feature="b",instance="w1"} NaN
psi{feature="c",instance="w1"} 0.2
psi{feature="c",instance="w2"} NaN
""")
    assert max_by_label(samples, "psi", "feature") == {"a": 0.3, "c": 0.2}
    assert max_by_label(samples, "psi", "feature", instance="w1") == {"a": 0.1, "c": 0.2}


def test_not_an_exposition_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse("this is { not prometheus\n")


def test_delta_is_what_counters_gained() -> None:
    before = {("c_total", ()): 5.0, ("h_bucket", (("le", "1.0"),)): 2.0}
    after = {("c_total", ()): 9.0, ("h_bucket", (("le", "1.0"),)): 2.0, ("new_total", ()): 1.0}
    assert delta(before, after) == {("c_total", ()): 4.0, ("h_bucket", (("le", "1.0"),)): 0.0, ("new_total", ()): 1.0}


# --- bucket_quantile ---------------------------------------------------------------------------------

def test_quantiles_interpolate_linearly_inside_the_bucket_holding_the_rank() -> None:
    hist = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    assert bucket_quantile(hist, 0.25) == pytest.approx(0.1)  # rank 10: the top of the first bucket
    assert bucket_quantile(hist, 0.125) == pytest.approx(0.05)  # rank 5: halfway through [0, 0.1]
    assert bucket_quantile(hist, 0.5) == pytest.approx(0.3)  # rank 20: halfway through (0.1, 0.5]
    assert bucket_quantile(hist, 0.95) == pytest.approx(0.9)  # rank 38: 8/10 of (0.5, 1.0]
    assert bucket_quantile(hist, 1.0) == pytest.approx(1.0)


def test_a_rank_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    hist = [(0.1, 1.0), (1.0, 2.0), (math.inf, 10.0)]
    assert bucket_quantile(hist, 0.99) == 1.0


def test_empty_buckets_are_skipped_and_an_empty_histogram_has_no_quantile() -> None:
    hist = [(0.1, 0.0), (0.2, 0.0), (0.4, 4.0), (math.inf, 4.0)]
    assert bucket_quantile(hist, 0.0) == pytest.approx(0.2)  # the first value is somewhere in (0.2, 0.4]
    assert bucket_quantile(hist, 0.5) == pytest.approx(0.3)
    assert bucket_quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    assert bucket_quantile([], 0.5) is None
    with pytest.raises(ValueError, match="q must be"):
        bucket_quantile(hist, 1.5)


def test_histogram_figures_are_count_mean_and_quantiles_scaled() -> None:
    figures = histogram_figures(parse(TEXT), "streamscore_latency_seconds", 1e3)
    assert figures == {"count": 40, "mean": pytest.approx(300.0), "p50": pytest.approx(300.0),
                       "p95": pytest.approx(900.0), "p99": pytest.approx(980.0)}
    assert histogram_figures(parse(TEXT), "streamscore_latency_seconds", quantiles=(0.999,))["p99.9"] == (
        pytest.approx(0.998))
    assert histogram_figures({}, "absent") == {"count": 0, "mean": None, "p50": None, "p95": None, "p99": None}


def test_quantiles_of_a_fine_histogram_approach_the_exact_percentiles() -> None:
    registry = CollectorRegistry()
    bounds = tuple(round(0.01 * i, 2) for i in range(1, 101))
    hist = Histogram("x_seconds", "doc", buckets=bounds, registry=registry)
    values = np.random.default_rng(4).uniform(0.0, 1.0, 20_000)
    for v in values.tolist():
        hist.observe(v)
    cumulative = buckets(parse(generate_latest(registry).decode()), "x_seconds")
    for q in (0.5, 0.95, 0.99):
        assert bucket_quantile(cumulative, q) == pytest.approx(float(np.quantile(values, q)), abs=0.01)


# --- scrape ------------------------------------------------------------------------------------------

@pytest.fixture
def served() -> Iterator[tuple[int, CollectorRegistry]]:
    registry = CollectorRegistry()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], registry
    finally:
        server.shutdown()
        server.server_close()


def test_scrape_reads_a_served_registry(served: tuple[int, CollectorRegistry]) -> None:
    port, registry = served
    Counter("c", "doc", ("reason",), registry=registry).labels("schema").inc(3)
    Gauge("g", "doc", registry=registry).set(1.5)
    samples = scrape(port)
    assert total(samples, "c_total", reason="schema") == 3.0
    assert total(samples, "g") == 1.5
    assert scrape_url(f"http://127.0.0.1:{port}/metrics") == samples


def test_scrape_of_a_closed_port_is_an_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OSError):
        scrape(port, timeout_s=1.0)
