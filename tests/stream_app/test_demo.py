"""The demo's pure parts: reading records back, the summary maths (percentiles, label join, online
ROC-AUC), progress formatting, the pipeline's command lines and the service ownership rules. The full
run (services, worker, a minute of events) is `make demo` itself."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_app.cli import build_parser
from stream_app.core.metrics import pr_auc, roc_auc
from stream_app.demo import services, tap
from stream_app.demo.chart import write_chart
from stream_app.demo.config import DemoConfig, config_from
from stream_app.demo.progress import backlog, choose_samples, format_prediction, format_tick
from stream_app.demo.records import SeenPrediction, dead_letter_code, parse_label, parse_prediction
from stream_app.demo.run import WORKSPACE_MARKER, Demo, DemoError
from stream_app.demo.steps import last_line, pipeline_steps
from stream_app.demo.summary import (
    Observed,
    Sample,
    build_summary,
    format_summary,
    join_labels,
    latency_stats,
    notes,
    online_quality,
    percentile,
    rates,
)
from stream_app.settings import get_settings


def _pred(event_id: str, score: float, *, decision: str = "approve", e2e: float | None = 10.0) -> SeenPrediction:
    return SeenPrediction(event_id=event_id, user_id=1, merchant_id=2, score=score, decision=decision,
                          model_version="v0001", e2e_ms=e2e, worker_ms=5.0, amount=12.5, user_txn_count_1h=1.0)


# --- records -----------------------------------------------------------------------------------------

def test_prediction_latency_is_the_publish_timestamp_minus_the_transaction_send_time() -> None:
    # event time three hours before the send (a realistic stream's clock): it plays no part
    sent = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)  # the transaction record's Kafka timestamp
    body = {"event_id": "e1", "user_id": 7, "merchant_id": 9, "score": 0.25, "decision": "approve",
            "model_version": "v0003", "features": {"txn_amount": 42.0, "user_txn_count_1h": None},
            "event_time": "2026-11-23T07:00:00Z", "scored_at": "2026-11-23T10:00:00.100000Z", "latency_ms": 100.0}
    seen = parse_prediction(json.dumps(body).encode(), int(sent.timestamp() * 1000) + 150)
    assert seen is not None
    assert (seen.event_id, seen.score, seen.model_version, seen.amount) == ("e1", 0.25, "v0003", 42.0)
    assert seen.e2e_ms == pytest.approx(150.0)
    assert seen.worker_ms == 100.0
    assert seen.user_txn_count_1h is None


@pytest.mark.parametrize("value", [b"", b"not json", b"[]", b'{"event_id": "e"}', None])
def test_unreadable_predictions_are_none_not_errors(value: bytes | None) -> None:
    assert parse_prediction(value, 1) is None


def test_prediction_without_a_broker_timestamp_has_no_latency() -> None:
    body = {"event_id": "e", "user_id": 1, "merchant_id": 1, "score": 0.5, "decision": "decline",
            "model_version": "v1", "event_time": "2026-11-23T10:00:00Z"}
    seen = parse_prediction(json.dumps(body).encode(), -1)
    assert seen is not None and seen.e2e_ms is None


def test_labels_need_a_real_boolean_and_dead_letters_a_code() -> None:
    assert parse_label(b'{"event_id": "e1", "user_id": 1, "is_fraud": true}') == ("e1", True)
    assert parse_label(b'{"event_id": "e1", "is_fraud": 1}') is None
    assert parse_label(b"{") is None
    assert dead_letter_code(b'{"error": {"code": "schema", "message": "x"}}') == "schema"
    assert dead_letter_code(b"garbage") == "unreadable"
    assert dead_letter_code(None) == "unreadable"


# --- summary maths -----------------------------------------------------------------------------------

def test_percentiles_interpolate_like_numpy_and_ignore_missing() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(np.percentile(values, 50))
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([], 50) is None
    assert percentile([float("nan")], 50) is None
    with pytest.raises(ValueError, match="q must be"):
        percentile(values, 101)
    stats = latency_stats([None, 10.0, 20.0, None, 30.0])
    assert stats == {"n": 3, "p50_ms": 20.0, "p99_ms": pytest.approx(29.8), "max_ms": 30.0}
    assert latency_stats([]) == {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_labels_join_predictions_by_event_id_only() -> None:
    predictions = {"b": _pred("b", 0.9), "a": _pred("a", 0.1), "c": _pred("c", 0.5)}
    labels = {"a": False, "b": True, "z": True}  # z: a label whose prediction we never saw
    y, joined = join_labels(predictions, labels)
    assert y == [False, True]
    assert [p.event_id for p in joined] == ["a", "b"]


def test_online_quality_uses_the_shared_metrics() -> None:
    rng = np.random.default_rng(3)
    labels = {f"e{i}": bool(rng.random() < 0.2) for i in range(300)}
    predictions = {e: _pred(e, float(np.clip(rng.normal(0.7 if y else 0.3, 0.2), 0, 1)),
                            decision="decline" if i % 7 == 0 else "approve")
                   for i, (e, y) in enumerate(labels.items())}
    predictions["unlabelled"] = _pred("unlabelled", 0.99)
    quality = online_quality(predictions, labels)
    y, joined = join_labels(predictions, labels)
    assert quality.n == 300 and quality.positives == sum(y)
    assert quality.roc_auc == pytest.approx(roc_auc(y, [p.score for p in joined]))
    assert quality.pr_auc == pytest.approx(pr_auc(y, [p.score for p in joined]))
    declined = [label for label, p in zip(y, joined, strict=True) if p.decision == "decline"]
    assert quality.decline_precision == pytest.approx(sum(declined) / len(declined))
    assert quality.decline_recall == pytest.approx(sum(declined) / sum(y))
    assert quality.note is None


def test_online_quality_is_undefined_not_misleading_before_both_classes() -> None:
    none = online_quality({"a": _pred("a", 0.2)}, {})
    assert (none.n, none.roc_auc, none.note) == (0, None, "no labelled predictions yet")
    one_class = online_quality({"a": _pred("a", 0.2), "b": _pred("b", 0.4)}, {"a": False, "b": False})
    assert one_class.n == 2 and one_class.roc_auc is None and one_class.pr_auc is None
    assert one_class.note is not None and "both classes" in one_class.note
    assert one_class.decline_recall is None and one_class.decline_precision is None


def test_rates_are_per_interval_from_cumulative_samples() -> None:
    samples = [Sample(0.0, 0, 0, 0, 0), Sample(1.0, 500, 400, 10, 0), Sample(3.0, 1500, 1400, 20, 5)]
    assert rates(samples, "produced") == [(1.0, 500.0), (3.0, 500.0)]
    assert rates(samples, "scored") == [(1.0, 400.0), (3.0, 500.0)]
    assert rates(samples[:1], "scored") == []
    assert backlog(samples[1]) == 90


def _observed() -> Observed:
    predictions = {"a": _pred("a", 0.9, decision="decline", e2e=100.0), "b": _pred("b", 0.1, e2e=300.0),
                   "c": _pred("c", 0.2, e2e=None)}
    return Observed(transactions_in=6, invalid_in=2, labels_in=3, labels_pending=4, stream_s=2.0,
                    predictions=predictions, duplicate_predictions=1, dead_letters={"schema": 1, "decode": 1},
                    labels={"a": True, "b": False, "c": False},
                    samples=[Sample(0.0, 0, 0, 0, 0), Sample(1.0, 3, 2, 1, 0), Sample(2.0, 6, 3, 2, 3),
                             Sample(3.0, 6, 3, 2, 3)])


def test_summary_accounts_for_every_transaction_and_is_plain_json() -> None:
    summary = build_summary(_observed(), config={"rate": 3.0}, timings_s={"train": 1.5}, model_version="v0001")
    json.dumps(summary, allow_nan=False)  # no NaN, no numpy scalars
    assert summary["events_in"] == {"transactions": 6, "valid": 4, "invalid": 2, "labels": 3,
                                    "labels_not_yet_due": 4}
    assert summary["predictions_out"] == 3
    assert summary["dead_letters"] == {"total": 2, "by_reason": {"decode": 1, "schema": 1}}
    assert summary["unaccounted"] == 1  # 6 in - 3 predictions - 2 dead letters
    assert summary["decisions"] == {"approve": 2, "decline": 1}
    assert summary["throughput_per_s"]["in_mean"] == 3.0
    assert summary["throughput_per_s"]["out_mean_while_streaming"] == 1.5  # the drain second is excluded
    assert summary["backlog"] == {"max": 1, "final": 1}
    assert summary["latency"]["event_to_prediction"]["n"] == 2
    assert summary["latency"]["event_to_prediction"]["p50_ms"] == 200.0
    assert summary["online_quality"]["roc_auc"] == 1.0
    text = format_summary(summary)
    for fragment in ("6 transactions", "decode 1, schema 1", "p50 200 ms", "ROC-AUC 1.000", "unaccounted        1"):
        assert fragment in text


def test_summary_compares_online_with_offline_quality_and_flags_a_gap() -> None:
    online = build_summary(_observed(), config={}, timings_s={}, model_version="v0001")["online_quality"]
    assert (online["roc_auc"], online["pr_auc"]) == (1.0, 1.0)
    close = build_summary(_observed(), config={}, timings_s={}, model_version="v0001",
                          offline={"roc_auc": 0.97, "pr_auc": 0.96, "threshold": 0.5})
    assert close["online_vs_offline"] == {
        "roc_auc": {"online": 1.0, "offline": 0.97, "gap": pytest.approx(0.03), "within": True},
        "pr_auc": {"online": 1.0, "offline": 0.96, "gap": pytest.approx(0.04), "within": True}}
    text = format_summary(close)
    assert "offline holdout    ROC-AUC 0.970, PR-AUC 0.960" in text
    assert "online vs offline  ROC-AUC 1.000 vs 0.970 (gap +0.030, within 0.05); PR-AUC 1.000 vs 0.960" in text
    assert "OUTSIDE" not in text and not any("holdout" in note for note in close["notes"])

    far = build_summary(_observed(), config={}, timings_s={}, model_version="v0001",
                        offline={"roc_auc": 0.97, "pr_auc": 0.90, "threshold": 0.5})
    assert far["online_vs_offline"]["pr_auc"]["within"] is False and far["online_vs_offline"]["roc_auc"]["within"]
    text = format_summary(far)
    assert "PR-AUC 1.000 vs 0.900 (gap +0.100, OUTSIDE 0.05)" in text
    assert "online PR-AUC 1.000 is 0.100 above the offline holdout's 0.900" in text
    json.dumps(far, allow_nan=False)

    assert build_summary(_observed(), config={}, timings_s={}, model_version="v0001")["online_vs_offline"] == {}


def test_summary_without_labels_or_latencies_says_so() -> None:
    observed = _observed()
    observed.labels = {}
    observed.predictions = {"a": _pred("a", 0.5, e2e=None)}
    summary = build_summary(observed, config={}, timings_s={}, model_version=None)
    text = format_summary(summary)
    assert "ROC-AUC n/a (no labelled predictions yet)" in text
    assert "p50 n/a" in text


def test_chart_is_written(tmp_path: Path) -> None:
    observed = _observed()
    summary = build_summary(observed, config={}, timings_s={}, model_version="v0001")
    path = write_chart(tmp_path / "chart.png", observed.samples, observed.predictions, observed.labels, summary)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- progress ----------------------------------------------------------------------------------------

def test_progress_shows_the_riskiest_prediction_first() -> None:
    recent = [_pred("a", 0.1), _pred("b", 0.95, decision="decline"), _pred("c", 0.2), _pred("d", 0.3)]
    assert [p.event_id for p in choose_samples(recent)] == ["b", "d"]
    assert [p.event_id for p in choose_samples(recent, k=3)] == ["b", "d", "c"]
    assert choose_samples([]) == []
    assert "score 0.950 decline" in format_prediction(recent[1])
    line = format_tick(Sample(2.0, 1000, 900, 20, 5), Sample(1.0, 500, 450, 10, 0), joined=4, auc=None, phase="live")
    assert "in   500/s" in line and "backlog     80" in line and "ROC-AUC   n/a" in line


# --- pipeline and services ---------------------------------------------------------------------------

def test_pipeline_runs_the_makefile_clis_in_order(tmp_path: Path) -> None:
    config = DemoConfig(out=tmp_path, days=14)
    steps = pipeline_steps(config, now=datetime(2026, 11, 23, 10, 30, 5, tzinfo=UTC))
    assert [s.name for s in steps] == ["history", "backfill", "feast-apply", "train", "promote", "materialize"]
    history = steps[0].argv
    assert history[history.index("--start") + 1] == "2026-11-09"  # history ends yesterday
    assert history[history.index("--out") + 1] == str(tmp_path / "history")
    assert steps[4].argv[-2:] == ["promote", "latest"]
    assert steps[5].argv[-5:] == ["2026-11-23T10:30:05", "--views", "user_profile", "--views", "merchant_profile"]
    assert "--seed-state" in steps[1].argv  # the worker continues the history's windows
    before_live = pipeline_steps(config, now=datetime(2026, 11, 23, 10, 30, 5, tzinfo=UTC),
                                 ends_by=datetime(2026, 11, 22, 11, 0, tzinfo=UTC))[0].argv
    assert before_live[before_live.index("--start") + 1] == "2026-11-08"  # ends at the live stream's midnight


def test_arguments_and_last_line() -> None:
    config = config_from(build_parser().parse_args(["demo", "--rate", "300", "--duration", "30", "--days", "10"]))
    assert (config.rate, config.duration_s, config.days) == (300.0, 30.0, 10)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--days", "5"])
    assert last_line("a\nregistered v0001: x\n\nlast\n", containing="registered") == "registered v0001: x"
    assert last_line("a\nb\n") == "b"
    assert last_line("") == ""


def test_service_ownership(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with socket.socket() as free_sock:
            free_sock.bind(("127.0.0.1", 0))
            free = free_sock.getsockname()[1]
        service = services.Service("kafka", "STREAMSCORE_TEST_DEMO_ADDR", (free,), tmp_path / "kafka.pid")
        monkeypatch.delenv("STREAMSCORE_TEST_DEMO_ADDR", raising=False)
        assert services.plan(service) == "start"
        monkeypatch.setattr(services, "REPO_ROOT", tmp_path)  # the message names the pid file relative to it
        taken = services.Service("kafka", "STREAMSCORE_TEST_DEMO_ADDR", (free, busy), tmp_path / "kafka.pid")
        with pytest.raises(services.ServiceStartError, match=f"port {busy} .* did not start"):
            services.plan(taken)
        (tmp_path / "kafka.pid").write_text(f"{os.getpid()}\n")  # our own, alive: reuse it
        assert services.plan(taken) == "reuse"
        monkeypatch.setenv("STREAMSCORE_TEST_DEMO_ADDR", "10.0.0.1:9092")
        assert services.plan(taken) == "external"


def test_workspace_is_emptied_each_run_except_the_golden_cache(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    (out / "golden").mkdir(parents=True)
    (out / "golden" / "cache.parquet").write_text("kept")
    (out / "notes.txt").write_text("someone's file")
    with pytest.raises(DemoError, match="not a demo workspace"):
        Demo(DemoConfig(out=out)).prepare_workspace()
    assert (out / "notes.txt").exists()  # refused, nothing removed

    (out / WORKSPACE_MARKER).write_text("")
    (out / "registry" / "versions").mkdir(parents=True)
    (out / "summary.json").write_text("{}")
    Demo(DemoConfig(out=out)).prepare_workspace()
    assert sorted(p.name for p in out.iterdir()) == [WORKSPACE_MARKER, "feature_repo", "golden", "logs"]
    assert (out / "golden" / "cache.parquet").read_text() == "kept"
    assert "project: streamscore_demo" in (out / "feature_repo" / "feature_store.yaml").read_text()


def test_notes_warn_when_latency_is_queueing_or_events_are_missing() -> None:
    assert notes(300.0, 1_000, 0) == []  # ~3 s of input waiting: normal batching and jitter
    behind = notes(300.0, 8_005, 12)
    assert len(behind) == 2
    assert "fell behind: up to 8,005 events (27 s of input)" in behind[0]
    assert behind[1].startswith("12 transactions had neither")
    assert notes(float("nan"), 10, 0) == []


def test_a_group_offset_commit_is_retried_while_the_coordinator_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    failures = [KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS]
    commits: list[list[Any]] = []

    class FakeConsumer:
        def __init__(self, _config: dict[str, Any]) -> None:
            self.closed = False

        def commit(self, *, offsets: list[Any], asynchronous: bool) -> None:
            if failures:
                raise KafkaException(KafkaError(failures.pop(0)))
            commits.append(offsets)

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(tap, "Consumer", FakeConsumer)
    monkeypatch.setattr("stream_app.demo.tap.time.sleep", lambda _s: None)
    tap.commit_group_offsets(get_settings(), "g", {"t": {0: 5}})
    assert len(commits) == 1 and commits[0][0].offset == 5

    failures[:] = [KafkaError._INVALID_ARG]  # not the coordinator moving: raised at once
    with pytest.raises(KafkaException):
        tap.commit_group_offsets(get_settings(), "g", {"t": {0: 5}})
