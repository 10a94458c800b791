"""The live producer without a broker: a fake producer records what would be sent."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stream_app.contract import decode_label, decode_transaction
from stream_app.errors import InvalidRecordError
from stream_app.generator.arrivals import expected_per_slot
from stream_app.generator.config import DRIFTS, SECOND_US, stream, to_us
from stream_app.generator.labels import FRAUD_DELAY_US, LEGIT_DELAY_US
from stream_app.generator.live import LiveSource, TokenBucket, stream_live
from stream_app.generator.population import build_population
from stream_app.settings import Settings

START = datetime(2026, 11, 1, 12, tzinfo=UTC)


class FakeProducer:
    def __init__(self, fail_every: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self._pending: list[Callable[[Any, Any], None]] = []
        self._fail_every = fail_every

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        self.sent.append((topic, key, value))
        self._pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        done, self._pending = self._pending, []
        for i, callback in enumerate(done):
            callback("broker said no" if self._fail_every and i % self._fail_every == 0 else None, None)
        return len(done)

    def flush(self, timeout: float) -> int:
        self.poll(timeout)
        return 0


@pytest.fixture(scope="module")
def pop() -> Any:
    return build_population(stream(7, "population"), 2_000, 200)


def _source(pop: Any, **kwargs: Any) -> LiveSource:
    return LiveSource(pop, seed=7, start_us=to_us(START), **kwargs)


def _drain(source: LiveSource, steps: int = 200, per_step: int = 25) -> list[tuple[bytes, bytes, str | None]]:
    out = []
    for step in range(steps):
        out += source.transactions(per_step, step * 0.05)
    return out


def test_token_bucket_paces_to_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(100.0, burst=5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    granted = 0
    while now[0] < 2.0:
        granted += bucket.acquire(max_n=3)
    assert 195 <= granted <= 206
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)


def test_same_seed_same_records(pop: Any) -> None:
    assert _drain(_source(pop, warm_rate=500)) == _drain(_source(pop, warm_rate=500))


def test_records_are_valid_keyed_by_user_and_labelled_in_scaled_time(pop: Any) -> None:
    scale = 1e-3
    source = _source(pop, label_delay_scale=scale, warm_rate=500)
    records = _drain(source)
    event_times: dict[str, tuple[datetime, bool]] = {}
    for key, value, pattern in records:
        assert pattern is not None
        txn = decode_transaction(value, key)
        event_times[txn.event_id] = (txn.event_time, pattern != "none")
    assert len(event_times) == len(records)  # unique ids
    assert any(fraud for _, fraud in event_times.values())
    labels = [decode_label(v) for _, v in source.labels_due(1e9)]
    assert len(labels) == len(records) and source.pending_labels == 0
    for label in labels:
        event_time, fraud = event_times[label.event_id]
        assert label.is_fraud == fraud
        delay_us = (label.label_time - event_time).total_seconds() * SECOND_US / scale
        lo, hi = FRAUD_DELAY_US if fraud else LEGIT_DELAY_US
        assert lo * 0.999 <= delay_us <= hi * 1.001


def test_invalid_fraction_mixes_in_rejected_records(pop: Any) -> None:
    records = _drain(_source(pop, invalid_fraction=0.2))
    invalid = [(k, v) for k, v, pattern in records if pattern is None]
    assert 0.15 < len(invalid) / len(records) < 0.25
    for key, value in invalid:
        with pytest.raises(InvalidRecordError):
            decode_transaction(value, key)


def test_stream_live_produces_and_counts(pop: Any) -> None:
    fake, report = FakeProducer(), io.StringIO()
    counts = stream_live(
        Settings(),
        rate=400,
        duration_s=0.5,
        users=2_000,
        merchants=200,
        invalid_fraction=0.1,
        label_delay_scale=1e-6,
        start=START,
        producer=fake,
        report=report,
    )
    tx = [s for s in fake.sent if s[0] == "transactions"]
    labels = [s for s in fake.sent if s[0] == "labels"]
    assert counts.valid + counts.invalid == len(tx) and 120 <= len(tx) <= 260
    assert counts.labels == len(labels) and counts.labels + counts.labels_pending == counts.valid
    assert counts.delivery_errors == 0 and counts.undelivered == 0
    first = json.loads(next(v for _, _, v in tx if v.startswith(b'{"event_id"')))
    assert first["event_time"].startswith("2026-11-01T12:00:0")
    assert "live: done" in report.getvalue()


def test_stream_live_stops_early_and_reports_delivery_errors() -> None:
    stop = threading.Event()
    stop.set()
    counts = stream_live(
        Settings(), rate=100, duration_s=60, users=200, merchants=50, producer=FakeProducer(), stop=stop, report=None
    )
    assert counts.valid == 0
    failing = FakeProducer(fail_every=2)
    counts = stream_live(Settings(), rate=200, duration_s=0.2, users=200, merchants=50, producer=failing, report=None)
    assert counts.delivery_errors > 0


def test_time_scale_runs_event_time_faster_than_the_wall_clock() -> None:
    fake = FakeProducer()
    stream_live(Settings(), rate=200, duration_s=1.0, users=500, merchants=50, start=START, producer=fake,
                report=None, time_scale=60.0)
    times = sorted(json.loads(v)["event_time"] for topic, _, v in fake.sent
                   if topic == "transactions" and v.startswith(b'{"event_id"'))
    span = (datetime.fromisoformat(times[-1]) - datetime.fromisoformat(times[0])).total_seconds()
    assert 45 <= span <= 61  # about a minute of event time in a second


def test_stream_live_realistic_ends_by_now(pop: Any) -> None:
    fake, report = FakeProducer(), io.StringIO()
    before = datetime.now(UTC)
    counts = stream_live(Settings(), rate=400, duration_s=0.5, users=2_000, merchants=200, realistic=True,
                         drift=DRIFTS["pattern"], label_delay_scale=1e-3, producer=fake, report=report)
    times = sorted(json.loads(v)["event_time"] for topic, _, v in fake.sent if topic == "transactions")
    first, last = (datetime.fromisoformat(t) for t in (times[0], times[-1]))
    assert 120 <= counts.valid <= 260 and last <= datetime.now(UTC)
    per_hour = float(expected_per_slot(pop).sum()) / 24
    hours = counts.valid / per_hour  # the event time that many purchases take on average
    assert timedelta(hours=0.3 * hours) < before - first < timedelta(hours=3 * hours)
    assert "history's per-user arrivals" in report.getvalue()
    with pytest.raises(ValueError, match="time_scale"):
        stream_live(Settings(), rate=10, duration_s=0, realistic=True, time_scale=60.0, producer=fake, report=None)


def test_stream_live_realistic_drains_labels_on_its_event_clock() -> None:
    """After the stream the event clock keeps the run's average speed (here about x10^4), so labels a
    few event days out fall due within a second of wall time."""
    stop = threading.Event()
    timeout = threading.Timer(10.0, stop.set)  # a wrong clock would wait event days: stop it, then fail
    timeout.start()
    try:
        counts = stream_live(Settings(), rate=400, duration_s=0.5, users=2_000, merchants=200, realistic=True,
                             label_delay_scale=0.01, drain_labels=True, stop=stop, producer=FakeProducer(),
                             report=None)
    finally:
        timeout.cancel()
    assert not stop.is_set()
    assert counts.valid > 100 and counts.labels == counts.valid and counts.labels_pending == 0
