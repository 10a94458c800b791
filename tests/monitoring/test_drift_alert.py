"""Drift, from the generator to the alert: a live worker serving an unshifted stream reports a low PSI for
the amount feature, and a stream with every amount doubled (``generate live --drift amount``) raises it
over the alert's threshold; ``promtool test rules`` over the two measured values fires
StreamscoreFeatureDrift for the drifted one only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from stream_app.adapters import prometheus_metrics as m
from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.metrics_reader import Samples, by_label, scrape, total
from stream_app.generator.config import DRIFTS
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.process import free_port
from tests.fixtures.prometheus import ALERT_RULES
from tests.fixtures.workers import StartWorker
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare
from tests.monitoring.test_alerts import alerts, promtool

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEATURE = "txn_amount"
ALERT = "StreamscoreFeatureDrift"
THRESHOLD = 0.25  # monitoring/alerts.yml's drift threshold (test_alerts.py ties it to the retrain trigger's)


def scraped_after(port: int, predictions: float, timeout_s: float = 120.0) -> Samples:
    """The worker's metrics once it has published ``predictions`` predictions and recomputed its drift."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if total(scrape(port), m.PREDICTIONS_PUBLISHED) >= predictions:
                time.sleep(m.RECOMPUTE_S + 1)  # PSI is recomputed at most this often
                return scrape(port)
        except OSError:  # not serving yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"the worker did not publish {predictions} predictions in {timeout_s} s")


def promtool_fires(tmp_path: Path, psi: float) -> bool:
    """Whether StreamscoreFeatureDrift fires after 20 minutes of this PSI (promtool test rules against
    monitoring/alerts.yml): the test expects it to fire; promtool's verdict says whether it did."""
    rule = alerts()[ALERT]
    annotations = {k: v.replace("{{ $labels.feature }}", FEATURE) for k, v in rule["annotations"].items()}
    (tmp_path / ALERT_RULES.name).write_text(ALERT_RULES.read_text())
    cases = {"rule_files": [ALERT_RULES.name], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": f'{m.FEATURE_DRIFT_PSI}{{job="streamscore-worker", instance="w:1", '
                                    f'feature="{FEATURE}"}}', "values": f"{psi}x30"}],
        "alert_rule_test": [{"eval_time": "20m", "alertname": ALERT, "exp_alerts": [{
            "exp_labels": {**rule["labels"], "job": "streamscore-worker", "feature": FEATURE},
            "exp_annotations": annotations}]}]}]}
    (tmp_path / "drift_test.yml").write_text(yaml.safe_dump(cases))
    return promtool("test", "rules", tmp_path / "drift_test.yml").returncode == 0


def test_a_shifted_amount_raises_its_psi_over_the_threshold_and_fires_the_drift_alert(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker) -> None:
    settings = prepare(settings, tmp_path, f"drift_{unique}")
    ensure_topics(settings.kafka, settings.topics.all())
    web_port = free_port()
    with worker_process(settings, tmp_path / "worker.log", web_port=web_port):
        plain = stream_live(settings, rate=500, duration_s=2.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                            label_delay_scale=100, report=None)  # no labels
        before = scraped_after(web_port, plain.valid)
        unshifted = by_label(before, m.FEATURE_DRIFT_PSI, "feature")[FEATURE]
        # ten times as many shifted events: they dominate the worker's rolling sample
        shifted = stream_live(settings, rate=5000, duration_s=2.0, seed=SEED + 1, users=USERS, merchants=MERCHANTS,
                              label_delay_scale=100, report=None, drift=DRIFTS["amount"])
        after = scraped_after(web_port, plain.valid + shifted.valid)
        drifted = by_label(after, m.FEATURE_DRIFT_PSI, "feature")[FEATURE]

    assert unshifted < THRESHOLD < drifted, (unshifted, drifted)
    assert alerts()[ALERT]["expr"].endswith(f"> {THRESHOLD}")
    assert promtool_fires(tmp_path, drifted)
    assert not promtool_fires(tmp_path, unshifted)
