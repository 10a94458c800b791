"""``retrain --if-needed`` judging drift from a live worker's /metrics: on a stream at history's per-user
rates (``generate live --realistic``) the amount is not drifted and the seasonal hour of day is not judged;
after a stream with every amount doubled (``--drift amount``) the drift trigger fires for the amount.

Not asserted: that the unshifted stream fires no drift trigger at all. In this small world event time runs
weeks per wall second; the merchant label windows (labels arrive from their own topic, hours of event time
behind), the merchants' 30-day counts and, in some runs, the time since a user's previous transaction
still read as drifted (README, "The model lifecycle")."""

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
from tests.fixtures.world import MERCHANTS, MODEL, SEED, USERS
from tests.monitoring.test_alerts import alerts
from tests.monitoring.test_drift_alert import scraped_after

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAYS, STEADY_AFTER_DAYS = 38, 31  # history, and the day from which the model learns (the 30-day windows full)
SAMPLE_ROWS = 2000  # the worker's drift sample: the latest rows of the stream being judged


def steady_world(settings: Settings, tmp_path: Path, project: str) -> Settings:
    """A world whose model learned from steady-state rows only: 38 days of history, trained on the days after
    its 30-day profiles and 7-day label windows filled (a long-running stream serves nothing else)."""
    start = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=DAYS)
    config = HistoryConfig(days=DAYS, users=USERS, merchants=MERCHANTS, seed=SEED, start=start.to_pydatetime())
    model = replace(MODEL, since=(start + pd.Timedelta(days=STEADY_AFTER_DAYS)).to_pydatetime())
    world = prepare_world(settings, tmp_path / "feature_repo", project, config, model=model)
    return world.settings.model_copy(update={"worker": world.settings.worker.model_copy(
        update={"drift_sample_rows": SAMPLE_ROWS})})


def if_needed(settings: Settings, web_port: int) -> list[Trigger]:
    """The triggers ``retrain --if-needed --metrics-url <the worker>`` fires now (the check it runs before
    training)."""
    parser = argparse.ArgumentParser()
    retrain.add_arguments(parser)
    args = parser.parse_args(["--since", "30d", "--if-needed", "--metrics-url",
                              f"http://127.0.0.1:{web_port}/metrics"])
    return retrain.check_triggers(args, settings, datetime.now(UTC))


@pytest.mark.timeout(600)  # the 38-day world takes longer to build than the 3-day one of the other tests
def test_an_unshifted_stream_leaves_the_amount_undrifted_and_a_shifted_amount_fires_the_drift_trigger(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    # One partition per topic: event time runs so fast here that a few milliseconds between partitions would
    # be hours of it, and merchant windows (fed from every partition) would count out of order.
    single = Topics(**{role: TopicSpec(name=spec.name, partitions=1) for role, spec in settings.topics})
    settings = steady_world(settings.model_copy(update={"topics": single}), tmp_path, f"trigger_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    web_port = free_port()
    # Realistic event time runs weeks per wall second for these 400 users, with labels at their own delays
    # (days of event time). The unshifted stream covers about 15 days from 40 days ago: its first week
    # fills the worker's 7-day label windows, its last SAMPLE_ROWS rows are judged. The shifted one covers
    # about 8 days from 22 days ago: after the first (earlier events would be late), before now.
    now = datetime.now(UTC)
    with worker_process(settings, tmp_path / "worker.log", web_port=web_port) as worker:
        plain = stream_live(settings, rate=1000, duration_s=6.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                            report=None, realistic=True, start=now - timedelta(days=40))
        before = by_label(scraped_after(web_port, plain.valid), m.FEATURE_DRIFT_PSI, "feature")
        quiet = if_needed(settings, web_port)
        shifted = stream_live(settings, rate=1000, duration_s=3.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                              report=None, realistic=True, drift=DRIFTS["amount"], start=now - timedelta(days=22))
        after = by_label(scraped_after(web_port, plain.valid + shifted.valid), m.FEATURE_DRIFT_PSI, "feature")
        loud = if_needed(settings, web_port)
        assert worker.alive(), worker.tail(40)

    threshold = float(alerts()["StreamscoreFeatureDrift"]["expr"].rsplit(">", 1)[1])
    assert before and not SEASONAL_FEATURES & set(before), before  # every feature judged, but the seasonal ones
    assert before["txn_amount"] <= threshold < after["txn_amount"], (before, after)
    assert "txn_amount" not in drift_reason(quiet), quiet
    assert "txn_amount" in drift_reason(loud), loud


def drift_reason(fired: list[Trigger]) -> str:
    """The reason the drift trigger fired with, "" when it did not."""
    return "".join(t.reason for t in fired if t.name == DRIFT)
