"""Shadow scoring end to end on the real broker, Redis and Feast: with the ``shadow`` alias set, every
prediction has exactly one twin on ``predictions.shadow`` with the same features and the shadow's version;
decisions are the champion's; delayed labels give the shadow's online quality under its own version; the
sink's offline feature log holds the champion's rows only."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.adapters.metrics_reader import by_label, scrape, total
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.adapters.prometheus_metrics import ONLINE_LABELS, SHADOW_DECISION_AGREEMENT, SHADOW_PREDICTIONS
from stream_app.contract import Prediction
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from stream_app.worker.process import free_port
from tests.fixtures.kafka import consume
from tests.fixtures.workers import StartSink, StartWorker, wait_for_sink
from tests.fixtures.world import MERCHANTS, SEED, USERS, prepare, set_shadow

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_prediction_has_one_shadow_twin_and_the_champion_alone_decides(
        settings: Settings, unique: str, tmp_path: Path, worker_process: StartWorker,
        sink_process: StartSink) -> None:
    settings = prepare(settings, tmp_path, f"shadow_{unique}")
    shadow_version = set_shadow(settings, threshold=0.0)  # the shadow would decline everything
    registry = ModelRegistry(settings.models_dir)
    champion = registry.load_alias("production").scorer()
    ensure_topics(settings.kafka, settings.topics.all())
    counts = stream_live(settings, rate=300, duration_s=2.0, seed=SEED, users=USERS, merchants=MERCHANTS,
                         invalid_fraction=0.0, label_delay_scale=1e-6, report=None)
    web_port = free_port()
    sink = sink_process(settings, tmp_path / "sink.log")
    with worker_process(settings, tmp_path / "worker.log", web_port=web_port) as worker:
        predictions = [Prediction.model_validate_json(value or b"") for _, value, _, _ in
                       consume(settings, settings.topics.predictions.name, counts.valid, timeout_s=120.0)]
        twins = [Prediction.model_validate_json(value or b"") for _, value, _, _ in
                 consume(settings, settings.topics.predictions_shadow.name, counts.valid, timeout_s=60.0)]
        deadline = time.monotonic() + 60
        while True:  # the labels (due at once) joined: the shadow's online quality under its version
            samples = scrape(web_port)
            labelled = by_label(samples, ONLINE_LABELS, "model_version")
            compared = by_label(samples, SHADOW_DECISION_AGREEMENT, "shadow_version")
            if labelled.get(shadow_version, 0) >= counts.labels > 0 and shadow_version in compared:
                break
            assert time.monotonic() < deadline, f"{labelled} of {counts.labels} labels\n{worker.tail(30)}"
            time.sleep(1.0)

    assert len(predictions) == counts.valid and len({p.event_id for p in predictions}) == counts.valid
    by_event = {t.event_id: t for t in twins}
    assert len(twins) == len(by_event) == counts.valid  # exactly one twin each
    declined = 0
    for p in predictions:
        twin = by_event[p.event_id]
        assert twin.features == p.features and twin.event_time == p.event_time
        assert p.model_version == champion.version and twin.model_version == shadow_version
        assert p.decision == ("decline" if p.score >= champion.threshold else "approve")
        assert twin.decision == "decline"
        declined += p.decision == "decline"
    assert any(p.score != by_event[p.event_id].score for p in predictions)  # another model, other scores
    assert declined < counts.valid  # the shadow's decisions decided nothing
    assert total(samples, SHADOW_PREDICTIONS) == counts.valid
    assert compared[shadow_version] == pytest.approx(declined / counts.valid)  # they agree on the declines
    assert labelled[shadow_version] == labelled[champion.version]  # both on the same labels
    wait_for_sink(settings, sink)
    log_dir = settings.feast.repo_path / "data" / "offline" / "user_windows"
    logged = pd.concat([pd.read_parquet(p) for p in log_dir.glob("**/part-*.parquet") if "backfill" not in p.name])
    assert len(logged) == counts.valid  # the twins are not feature rows
