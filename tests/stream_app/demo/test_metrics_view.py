"""The demo's view of /metrics: the summary's ``metrics`` section, the chart's series and the printed lines,
from canned expositions of the worker and the sink; and the scraper going on when a scrape fails."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.metrics_reader import Samples, parse
from stream_app.demo.chart import write_chart
from stream_app.demo.metrics_view import (
    SINK,
    WORKER,
    Scrape,
    Scrapes,
    format_metrics,
    gauge_series,
    lag_series,
    latency_series,
    metrics_notes,
    metrics_section,
)
from stream_app.demo.scraper import MetricsScraper
from stream_app.demo.summary import Observed, Sample, build_summary, format_summary

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0)


def worker_text(*, lag: tuple[int, int, int], latency: tuple[int, ...], predictions: int, schema: int,
                auc: float | None, labels: int, psi: float = 0.02) -> str:
    """A worker exposition: lag of transactions/0, transactions/1 and labels/0, event latency as counts
    per bucket of BOUNDS (the last count: above every bound), counters, the data and model gauges."""
    cumulative, lines = 0, []
    for le, count in zip([*map(str, BOUNDS), "+Inf"], latency, strict=True):
        cumulative += count
        lines.append(f'{m.EVENT_LATENCY}_bucket{{le="{le}"}} {cumulative}')
    quality = "" if auc is None else f"""\
# TYPE {m.ONLINE_ROC_AUC} gauge
{m.ONLINE_ROC_AUC}{{model_version="v0001"}} {auc}
# TYPE {m.ONLINE_PRECISION} gauge
{m.ONLINE_PRECISION}{{model_version="v0001"}} 0.5
# TYPE {m.ONLINE_RECALL} gauge
{m.ONLINE_RECALL}{{model_version="v0001"}} 0.25
# TYPE {m.ONLINE_LABELS} gauge
{m.ONLINE_LABELS}{{model_version="v0001"}} {labels}
"""
    return f"""\
# TYPE {m.CONSUMER_LAG} gauge
{m.CONSUMER_LAG}{{group="g",topic="transactions",partition="0"}} {lag[0]}
{m.CONSUMER_LAG}{{group="g",topic="transactions",partition="1"}} {lag[1]}
{m.CONSUMER_LAG}{{group="g",topic="labels",partition="0"}} {lag[2]}
# TYPE {m.EVENT_LATENCY} histogram
{chr(10).join(lines)}
{m.EVENT_LATENCY}_count {cumulative}
{m.EVENT_LATENCY}_sum {0.1 * cumulative}
# TYPE {m.PREDICTIONS_PUBLISHED.removesuffix('_total')} counter
{m.PREDICTIONS_PUBLISHED} {predictions}
# TYPE {m.DEAD_LETTERS.removesuffix('_total')} counter
{m.DEAD_LETTERS}{{reason="schema"}} {schema}
{m.DEAD_LETTERS}{{reason="decode"}} 0
# TYPE {m.DECISIONS.removesuffix('_total')} counter
{m.DECISIONS}{{decision="approve"}} {predictions - 1}
{m.DECISIONS}{{decision="decline"}} 1
# TYPE {m.FEATURE_DRIFT_PSI} gauge
{m.FEATURE_DRIFT_PSI}{{feature="txn_amount"}} {psi}
{m.FEATURE_DRIFT_PSI}{{feature="user_txn_count_1h"}} 0.4
{m.FEATURE_DRIFT_PSI}{{feature="merchant_fraud_rate"}} NaN
# TYPE {m.FEATURE_MISSING} gauge
{m.FEATURE_MISSING}{{feature="txn_amount"}} 0.0
{m.FEATURE_MISSING}{{feature="user_avg_amount_30d"}} 0.125
# TYPE {m.FEATURE_FRESHNESS} gauge
{m.FEATURE_FRESHNESS}{{view="user_windows"}} 0.5
# TYPE {m.MODEL_INFO} gauge
{m.MODEL_INFO}{{version="v0001",alias="production"}} 1.0
{quality}"""


def sink_text(*, lag: int, predictions: int, open_rows: int) -> str:
    return f"""\
# TYPE {m.CONSUMER_LAG} gauge
{m.CONSUMER_LAG}{{group="g-sink",topic="predictions",partition="0"}} {lag}
# TYPE {m.SINK_RECORDS.removesuffix('_total')} counter
{m.SINK_RECORDS}{{topic="predictions"}} {predictions}
# TYPE {m.SINK_ROWS_WRITTEN.removesuffix('_total')} counter
{m.SINK_ROWS_WRITTEN}{{log="user_windows"}} {predictions - open_rows}
# TYPE {m.SINK_OPEN_ROWS} gauge
{m.SINK_OPEN_ROWS} {open_rows}
"""


def scrapes() -> Scrapes:
    """A baseline after a warm-up of 10 events, 20 more events by t=2, none from t=2 to t=4, 20 more by
    t=6 after the drain; lag 0 -> up to 7 on transactions/0 -> 0."""
    worker = [
        Scrape(0.0, parse(worker_text(lag=(0, 0, 0), latency=(10, 0, 0, 0, 0, 0), predictions=10, schema=0,
                                      auc=None, labels=0))),
        Scrape(2.0, parse(worker_text(lag=(7, 3, 1), latency=(20, 0, 10, 0, 0, 0), predictions=30, schema=1,
                                      auc=None, labels=0))),
        Scrape(4.0, parse(worker_text(lag=(2, 0, 4), latency=(20, 0, 10, 0, 0, 0), predictions=30, schema=1,
                                      auc=0.8, labels=12))),
        Scrape(6.0, parse(worker_text(lag=(0, 0, 0), latency=(20, 0, 10, 10, 10, 0), predictions=50, schema=3,
                                      auc=0.9, labels=40, psi=0.6))),
    ]
    sink = [Scrape(0.0, parse(sink_text(lag=0, predictions=10, open_rows=0))),
            Scrape(6.0, parse(sink_text(lag=4, predictions=54, open_rows=30)))]
    return Scrapes(interval_s=2.0, worker=worker, sink=sink, failed={SINK: 2},
                   first_error={SINK: "ConnectionRefusedError: [Errno 111]"})


def test_counters_and_histograms_are_their_increase_over_the_run_and_gauges_the_last_scrape() -> None:
    section = metrics_section(scrapes())
    assert section["scrapes"] == {"interval_s": 2.0, "worker": {"ok": 4, "failed": 0}, "sink": {"ok": 2, "failed": 2},
                                  "first_error": {SINK: "ConnectionRefusedError: [Errno 111]"}}
    assert section["predictions_published"] == 40  # 50 - the warm-up's 10
    assert section["decisions"] == {"approve": 40, "decline": 0}
    assert section["dead_letters"] == {"total": 3, "by_reason": {"schema": 3}}  # reasons without any left out
    lag = section["consumer_lag"][WORKER]
    assert (lag["max"], lag["final"]) == (11.0, 0.0)  # summed over the partitions: 7 + 3 + 1 at t=2
    assert lag["max_by_partition"] == {"labels/0": 4.0, "transactions/0": 7.0, "transactions/1": 3.0}
    assert lag["final_by_partition"] == {"labels/0": 0.0, "transactions/0": 0.0, "transactions/1": 0.0}
    assert (section["consumer_lag"][SINK]["max"], section["consumer_lag"][SINK]["final"]) == (4.0, 4.0)


def test_event_latency_percentiles_interpolate_in_the_buckets_of_the_run_only() -> None:
    # the run's 40 events (the warm-up's 10 excluded): 10 in [0, 0.05], 10 in (0.1, 0.25], 10 in
    # (0.25, 0.5], 10 in (0.5, 1.0]
    latency = metrics_section(scrapes())["event_latency_ms"]
    assert latency["count"] == 40
    assert latency["mean"] == pytest.approx(100.0)  # _sum is 0.1 s per event
    assert latency["p50"] == pytest.approx(250.0)  # rank 20: the top of (0.1, 0.25]
    assert latency["p95"] == pytest.approx(900.0)  # rank 38: 8/10 of (0.5, 1.0]
    assert latency["p99"] == pytest.approx(980.0)  # rank 39.6


def test_data_and_model_gauges_come_from_the_last_scrape() -> None:
    section = metrics_section(scrapes())
    assert section["online_quality"] == {"v0001": {"roc_auc": 0.9, "precision": 0.5, "recall": 0.25, "labels": 40.0}}
    assert section["drift_psi_top"] == [{"feature": "txn_amount", "value": 0.6},
                                        {"feature": "user_txn_count_1h", "value": 0.4}]  # NaN left out
    assert section["missing_share"] == {"features": 2, "with_missing": 1,
                                        "top": [{"feature": "user_avg_amount_30d", "value": 0.125}]}
    assert section["feature_freshness_s"] == {"user_windows": 0.5}
    assert section["model_info"] == [{"alias": "production", "version": "v0001"}]
    assert section["sink"] == {"records": {"predictions": 44}, "rows_written": {"user_windows": 14}, "open_rows": 30}


def test_series_for_the_chart() -> None:
    worker = scrapes().worker
    assert lag_series(worker)["transactions/0"] == [(0.0, 0.0), (2.0, 7.0), (4.0, 2.0), (6.0, 0.0)]
    latency = latency_series(worker)
    # 0-2 s: 10 in [0, 0.05] and 10 in (0.1, 0.25]; 2-4 s: nothing, no point; 4-6 s: 10 each above 0.25
    assert [t for t, _ in latency["p50"]] == [2.0, 6.0]
    assert latency["p50"][0][1] == pytest.approx(50.0)
    assert latency["p50"][1][1] == pytest.approx(500.0)
    assert gauge_series(worker, m.ONLINE_ROC_AUC, "model_version") == {"v0001": [(4.0, 0.8), (6.0, 0.9)]}


def test_nothing_scraped_gives_an_empty_section_not_an_error() -> None:
    section = metrics_section(Scrapes(interval_s=2.0, failed={WORKER: 30, SINK: 30}))
    assert section["predictions_published"] is None and section["event_latency_ms"] is None
    assert section["consumer_lag"][WORKER] == {"max": None, "final": None, "max_by_partition": {},
                                               "final_by_partition": {}}
    text = "\n".join(format_metrics(section))
    assert "worker 0 ok, 30 failed" in text and "online quality   n/a" in text


def test_notes_say_where_metrics_disagree_with_the_demo_or_could_not_be_read() -> None:
    section = metrics_section(scrapes())
    assert metrics_notes(section, predictions_seen=40, dead_letters_seen=3) == [
        "failed /metrics scrapes: sink 2; the metrics section is from the others"]
    disagree = metrics_notes(section, predictions_seen=41, dead_letters_seen=2)
    assert disagree[:2] == ["the worker's /metrics counted 40 predictions published, the demo read 41 from the topic",
                            "the worker's /metrics counted 3 dead letters, the demo read 2"]
    behind = scrapes()
    behind.worker = behind.worker[:2]  # the last scrape at t=2: lag 7 + 3 + 1
    behind.failed = {}
    assert metrics_notes(metrics_section(behind), predictions_seen=20, dead_letters_seen=1) == [
        "the worker's consumer lag still read 11 at the end"]


def _observed(with_scrapes: Scrapes | None) -> Observed:
    return Observed(transactions_in=3, invalid_in=0, labels_in=0, labels_pending=0, stream_s=1.0, predictions={},
                    duplicate_predictions=0, dead_letters={}, labels={},
                    samples=[Sample(0.0, 0, 0, 0, 0), Sample(1.0, 3, 0, 0, 0)], scrapes=with_scrapes)


def test_the_summary_has_the_metrics_section_and_its_text_ends_with_it() -> None:
    summary = build_summary(_observed(scrapes()), config={}, timings_s={"total": 12.0}, model_version="v0001")
    json.dumps(summary, allow_nan=False)
    assert summary["metrics"]["predictions_published"] == 40
    assert "the worker's /metrics counted 40 predictions published, the demo read 0 from the topic" in summary["notes"]
    assert "metrics" in summary["sources"] and "events_in" in summary["sources"]
    lines = format_summary(summary).splitlines()
    assert lines[-len(format_metrics(summary["metrics"])):] == format_metrics(summary["metrics"])
    text = "\n".join(lines)
    for fragment in ("worker 4 ok, 0 failed; sink 2 ok, 2 failed (every 2 s)",
                     "(all partitions) worker max 11, at the end 0; sink max 4, at the end 4 (open rows 30)",
                     "p50 250 ms, p95 900 ms, p99 980 ms over 40 events",
                     "40 predictions; dead letters 3 (schema 3)",
                     "v0001: ROC-AUC 0.900, precision 0.500, recall 0.250 on 40 labels",
                     "txn_amount 0.600, user_txn_count_1h 0.400", "1 of 2 features", "user_avg_amount_30d 12.5%",
                     "user_windows 0.5 s; model v0001 (production)", "wall time          12 s"):
        assert fragment in text
    without = build_summary(_observed(None), config={}, timings_s={}, model_version=None)
    assert without["metrics"] is None and "/metrics" not in format_summary(without)


def test_the_chart_has_the_metrics_panels(tmp_path: Path) -> None:
    observed = _observed(scrapes())
    summary = build_summary(observed, config={}, timings_s={}, model_version="v0001")
    path = write_chart(tmp_path / "chart.png", observed.samples, {}, {}, summary, scrapes=observed.scrapes)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the scraper -------------------------------------------------------------------------------------

def test_a_failing_scrape_is_counted_and_logged_once_and_the_rest_goes_on() -> None:
    said: list[str] = []
    lags = iter([5, 5, 0])

    def fetch(port: int) -> Samples:
        if port == 2:
            raise ConnectionRefusedError(111, "Connection refused")
        return parse(f'{m.CONSUMER_LAG}{{group="g",topic="t",partition="0"}} {next(lags, 0)}\n')

    scraper = MetricsScraper({WORKER: 1, SINK: 2}, log=said.append, interval_s=60.0, fetch=fetch)
    scraper.start(origin=0.0)  # the baseline scrape; the next would come after 60 s
    result = scraper.close(settle_s=5.0)  # the worker's lag reads 5, then 0: scraped again until it is 0
    assert [s.samples[(m.CONSUMER_LAG, (("group", "g"), ("partition", "0"), ("topic", "t")))]
            for s in result.worker] == [5.0, 5.0, 0.0]
    assert result.sink == [] and result.failed == {SINK: 2}
    assert result.first_error[SINK].startswith("ConnectionRefusedError")
    assert len(said) == 1 and "sink's /metrics on port 2 failed" in said[0]
    assert metrics_section(result)["consumer_lag"][WORKER]["final"] == 0.0
    assert math.isfinite(result.worker[-1].t)
