"""``retrain --if-needed`` judging drift from a live worker's /metrics. The worker starts where the history
ends, on the window state the history left (``backfill --seed-state``), as a deployment does. A stream at
history's per-user rates (``generate live --realistic``) fires no drift trigger and leaves the seasonal
hour of day unjudged; after a stream with every amount doubled (``--drift amount``) the drift trigger fires
for the amount."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from models import retrain
from models.pipeline import prepare_world
from models.triggers import DRIFT, Trigger
from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.metrics_reader import by_label
from stream_app.contract import Topics, TopicSpec
from stream_app.core.drift import SEASONAL_FEATURES
from stream_app.generator.config import DRIFTS, HistoryConfig
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.process import free_port
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MODEL, SEED, USERS
from tests.monitoring.test_alerts import alerts
from tests.monitoring.test_drift_alert import scraped_after

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS, STEADY_AFTER_DAYS = 38, 31  # history, and the day from which the model learns (the 30-day windows full)
ENDED_DAYS_AGO = 24  # the streams after it take about 23 days of event time, all before now
# Enough merchants that no one of them holds a large share of the judged rows: a merchant's profile is one
# daily snapshot served all stream long, and one popular merchant's value next to a bin edge of the reference
# (which saw its daily values) would move a tenth of the sample across it (PSI ~0.8 with 60 merchants).
DRIFT_MERCHANTS = 300
SAMPLE_ROWS = 2000  # the worker's drift sample: the latest rows of the stream being judged


def steady_world(settings: Settings, tmp_path: Path, project: str) -> tuple[Settings, datetime]:
    """A world whose model learned from steady-state rows only (38 days of history, trained on the days
    after its 30-day profiles and 7-day label windows filled: a long-running stream serves nothing else),
    with the worker's window state seeded from it. Returns its settings and when its history ends."""
    end = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=ENDED_DAYS_AGO)
    start = end - pd.Timedelta(days=DAYS)
    config = HistoryConfig(days=DAYS, users=USERS, merchants=DRIFT_MERCHANTS, seed=SEED, start=start.to_pydatetime())
    model = replace(MODEL, since=(start + pd.Timedelta(days=STEADY_AFTER_DAYS)).to_pydatetime())
    world = prepare_world(settings, tmp_path / "feature_repo", project, config, model=model, seed_state=True)
    worker = world.settings.worker.model_copy(update={"drift_sample_rows": SAMPLE_ROWS})
    return world.settings.model_copy(update={"worker": worker}), end.to_pydatetime()


def if_needed(settings: Settings, web_port: int) -> list[Trigger]:
    """The triggers ``retrain --if-needed --metrics-url <the worker>`` fires now (the check it runs before
    training)."""
    parser = argparse.ArgumentParser()
    retrain.add_arguments(parser)
    args = parser.parse_args(["--since", "30d", "--if-needed", "--metrics-url",
                              f"http://127.0.0.1:{web_port}/metrics"])
    return retrain.check_triggers(args, settings, datetime.now(UTC))


@pytest.mark.timeout(600)  # the 38-day world takes longer to build than the 3-day one of the other tests
def test_an_unshifted_stream_fires_no_drift_trigger_and_a_shifted_amount_fires_it(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    # One partition per topic: event time runs so fast here that a few milliseconds between partitions would
    # be hours of it, and merchant windows (fed from every partition) would count out of order.
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings, history_end = steady_world(settings.model_copy(update={"topics": single}), tmp_path, f"trigger_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    web_port = free_port()
    # Realistic event time runs days per wall second for these 400 users, with labels at their own delays
    # (days of event time). The unshifted stream continues the history for about 15 days; its last
    # SAMPLE_ROWS rows are judged, once the labels of the history's last transactions (which arrive after
    # it, as the seeded state saw but this stream does not send) are out of the 7-day label windows. It
    # runs at 250/s, 0.6 days of event time per second: the labels topic, processed a second or two behind
    # the transactions, then leaves out a small part of those windows (at 1000/s they read a third short:
    # PSI 2.6). The shifted one covers about 8 more days, after the first, before now.
    with worker_process(settings, tmp_path / "worker.log", web_port=web_port) as worker:
        plain = stream_live(settings, rate=250, duration_s=24.0, seed=SEED, users=USERS, merchants=DRIFT_MERCHANTS,
                            report=None, realistic=True, start=history_end)
        before = by_label(scraped_after(web_port, plain.valid), m.FEATURE_DRIFT_PSI, "feature")
        quiet = if_needed(settings, web_port)
        assert plain.event_clock_end is not None
        shifted = stream_live(settings, rate=1000, duration_s=3.0, seed=SEED, users=USERS, merchants=DRIFT_MERCHANTS,
                              report=None, realistic=True, drift=DRIFTS["amount"],
                              start=plain.event_clock_end + timedelta(hours=1))
        assert shifted.event_clock_end is not None and shifted.event_clock_end < datetime.now(UTC)
        after = by_label(scraped_after(web_port, plain.valid + shifted.valid), m.FEATURE_DRIFT_PSI, "feature")
        loud = if_needed(settings, web_port)
        assert worker.alive(), worker.tail(40)

    threshold = float(alerts()["StreamscoreFeatureDrift"]["expr"].rsplit(">", 1)[1])
    assert before and not SEASONAL_FEATURES & set(before), before  # every feature judged, but the seasonal ones
    assert max(before.values()) <= threshold < after["txn_amount"], (before, after)
    assert DRIFT not in {t.name for t in quiet}, (quiet, before)
    assert "txn_amount" in drift_reason(loud), loud


def drift_reason(fired: list[Trigger]) -> str:
    """The reason the drift trigger fired with, "" when it did not."""
    return "".join(t.reason for t in fired if t.name == DRIFT)
