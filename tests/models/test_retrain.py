"""Retraining from the recorded logs, with real log files and registry; Feast's historical retrieval is
faked at its boundary (the integration test ``test_retrain_stream`` runs it for real): the entity frame
holds exactly the recorded transactions in range with a label known by the cut-off, too few labels stop
the run before anything is fetched, and the registered version carries a deterministic lineage."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import features as model_features
from models.dataset import with_missing_profiles
from models.features import LABEL, feature_bounds, feature_definitions_hash, model_feature_names
from models.golden import GoldenSet
from models.retrain import main, parse_instant, parse_span, recorded_entities, retrain
from models.train import DEFAULT_PARAMS, TrainConfig
from models.validate import ValidationPolicy, content_hash
from stream_app.adapters.label_log import label_frame
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry
from stream_app.adapters.transaction_log import transaction_frame
from stream_app.core.offline_layout import LABEL_LOG, TRANSACTION_LOG, hour_dir
from stream_app.core.profiles import TIMESTAMP
from stream_app.core.records import LabelRow, TransactionRow
from stream_app.core.window_spec import ALL_WINDOWS
from stream_app.errors import DataValidationError
from stream_app.settings import REPO_ROOT, Settings, get_settings

T0 = datetime(2026, 10, 1, tzinfo=UTC)
EVENTS = 1200  # one every 5 minutes: about four days
UNTIL = T0 + timedelta(minutes=5 * 1100)  # the last 100 transactions are after the range


def event_time(i: int) -> datetime:
    return T0 + timedelta(minutes=5 * i)


def label_time(i: int) -> datetime:
    return event_time(i) + timedelta(hours=1 + i % 50)  # labels arrive 1 .. 50 hours later


def write_logs(data_dir: Path, events: int = EVENTS) -> None:
    """Transactions 0..events-1, and a label for every one but each tenth, in one part per log and hour."""
    transactions: dict[str, list[TransactionRow]] = defaultdict(list)
    labels: dict[str, list[LabelRow]] = defaultdict(list)
    for i in range(events):
        transactions[hour_dir(event_time(i))].append(TransactionRow(
            event_id=f"e{i}", user_id=i % 37, merchant_id=i % 11, amount=5.0 + i % 90, currency="EUR",
            country=("FR", "DE", "US")[i % 3], channel=("pos", "web", "app")[i % 3], event_time=event_time(i),
            partition=i % 2, offset=i))
        if i % 10:
            labels[hour_dir(label_time(i))].append(LabelRow(
                event_id=f"e{i}", user_id=i % 37, merchant_id=i % 11, is_fraud=i % 7 == 0, label_time=label_time(i),
                score=0.1, model_version="v0001"))
    for hour, rows in transactions.items():
        transaction_frame(rows).to_parquet(_part(data_dir / TRANSACTION_LOG / hour))
    for hour, label_rows in labels.items():
        label_frame(label_rows).to_parquet(_part(data_dir / LABEL_LOG / hour))


def _part(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / "part-test.parquet"


def expected_events(since: datetime, until: datetime) -> list[str]:
    return [f"e{i}" for i in range(EVENTS)
            if i % 10 and since <= event_time(i) <= until and label_time(i) <= until]


def test_the_entity_frame_holds_recorded_transactions_in_range_with_labels_known_by_the_cutoff(tmp_path: Path) -> None:
    write_logs(tmp_path)
    since = T0 + timedelta(days=1)
    recorded = recorded_entities(tmp_path, since, UNTIL, min_labels=10)
    entities = recorded.entities
    assert sorted(entities["event_id"]) == sorted(expected_events(since, UNTIL))
    assert recorded.transactions == sum(1 for i in range(EVENTS) if since <= event_time(i) <= UNTIL)
    assert recorded.labels == sum(1 for i in range(EVENTS) if i % 10 and since <= label_time(i) <= UNTIL)
    late = [f"e{i}" for i in range(EVENTS) if i % 10 and since <= event_time(i) <= UNTIL < label_time(i)]
    assert late and not set(late) & set(entities["event_id"])  # labelled, but after the cut-off
    row = entities.set_index("event_id").loc["e301"]  # 301 % 3 == 1
    assert (row["amount"], row["country"], row["channel"], row[LABEL]) == (5.0 + 301 % 90, "DE", "web", True)
    assert row[TIMESTAMP] == event_time(301) and row["event_hour"] == event_time(301).hour
    assert list(entities[TIMESTAMP]) == sorted(entities[TIMESTAMP])


def test_too_few_labels_stop_the_run_before_features_are_fetched(tmp_path: Path) -> None:
    write_logs(tmp_path, events=50)
    registry = ModelRegistry(tmp_path / "registry")
    settings = Settings(data_dir=tmp_path)

    def fetch(_: pd.DataFrame) -> pd.DataFrame:
        raise AssertionError("features fetched despite too few labels")

    with pytest.raises(DataValidationError, match="retraining needs at least 1000") as caught:
        retrain(settings, registry, T0, T0 + timedelta(days=30), historical=fetch)
    assert caught.value.report["labelled"] == 45 and caught.value.report["transactions"] == 50
    assert registry.list_versions() == []
    with pytest.raises(DataValidationError, match="empty range"):
        recorded_entities(tmp_path, T0, T0)


def fake_features(entities: pd.DataFrame) -> pd.DataFrame:
    """The FeatureService's features for the entity rows: seeded by event_id, within the features' bounds,
    the fraud label shifting two of them (something to learn)."""
    rng = np.random.default_rng(int(entities["event_id"].str[1:].astype(int).sum()))
    frame = entities.copy()
    fraud = entities[LABEL].to_numpy()
    for name, (low, high) in feature_bounds().items():
        values = rng.uniform(low, min(high, low + 50.0), len(frame))
        frame[name] = np.round(values) if high <= 23 else values
    frame["user_txn_count_1h"] = frame["user_txn_count_1h"] + 20 * fraud
    frame["txn_amount"] = frame["txn_amount"] + 30 * fraud
    return frame


def test_a_retrained_version_carries_its_lineage_and_equal_records_give_equal_hashes(tmp_path: Path) -> None:
    write_logs(tmp_path)
    settings = Settings(data_dir=tmp_path)
    config = TrainConfig(holdout_days=2, num_boost_round=30, params={**DEFAULT_PARAMS, "nthread": 1},
                         policy=ValidationPolicy(min_rows=100, max_psi=10.0))
    registry = ModelRegistry(tmp_path / "registry")
    since = T0 + timedelta(days=1)
    first = retrain(settings, registry, since, UNTIL, config=config, min_labels=100, historical=fake_features)
    registry.set_alias("production", first.trained.version, forced=True)
    golden_frame = fake_features(recorded_entities(tmp_path, since, UNTIL, min_labels=1).entities)
    golden = GoldenSet(X=golden_frame[model_feature_names()], y=golden_frame[LABEL].to_numpy(dtype=np.int8))
    second = retrain(settings, registry, since, UNTIL, config=config, min_labels=100, historical=fake_features,
                     golden=lambda: golden, promote_to="shadow")

    a, b = (registry.metadata(r.trained.version) for r in (first, second))
    assert a.lineage is not None and b.lineage is not None
    assert (a.lineage.since, a.lineage.until, a.lineage.source) == (since, UNTIL, "stream record")
    assert a.lineage.labelled == a.training_data.rows == len(expected_events(since, UNTIL))
    assert a.lineage.transactions == sum(1 for i in range(EVENTS) if since <= event_time(i) <= UNTIL)
    assert a.lineage.feature_definitions_hash == feature_definitions_hash()
    assert (a.lineage.parent_version, b.lineage.parent_version) == (None, first.trained.version)
    assert a.training_data == b.training_data  # same record, same range: same rows and content hash
    frame = fake_features(recorded_entities(tmp_path, since, UNTIL, min_labels=1).entities)
    assert a.training_data.content_hash == content_hash(frame[[TIMESTAMP, *model_feature_names(), LABEL]])
    assert a.features == model_feature_names() and a.git_commit is not None
    assert first.golden is None and first.promotion is None
    # the same data gives the same model: it passes the gate against production, and goes to shadow
    assert second.promotion is not None and second.promotion.passed and second.refused is None
    assert registry.get_alias("shadow") == second.trained.version
    assert second.golden is not None and second.golden["roc_auc"] > 0.9
    recorded = registry.metadata(second.trained.version).golden_metrics
    assert recorded is not None and recorded["candidate"]["roc_auc"] == second.golden["roc_auc"]


def test_feature_definitions_hash_is_the_same_in_another_process_and_follows_the_windows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    here = feature_definitions_hash()
    code = "from models.features import feature_definitions_hash as h; print(h())"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT,
                           timeout=120).stdout.strip()
    assert here == there and here.startswith("sha256:")
    monkeypatch.setattr(model_features, "ALL_WINDOWS", ALL_WINDOWS[:-1])
    assert feature_definitions_hash() != here


def test_metadata_written_before_lineage_existed_still_loads() -> None:
    old = {"feature_service": "fraud_model_v1", "features": ["a"], "threshold": 0.5,
           "training_data": {"start": "2026-09-01T00:00:00Z", "end": "2026-09-02T00:00:00Z", "rows": 10,
                             "content_hash": "sha256:x"}}
    assert ModelMetadata.model_validate(old).lineage is None


def test_spans_and_instants_parse() -> None:
    assert parse_span("30d") == pd.Timedelta(days=30) and parse_span("12h") == pd.Timedelta(hours=12)
    assert parse_instant("2026-10-01T12:00") == datetime(2026, 10, 1, 12, tzinfo=UTC)
    assert parse_instant("2026-10-01T14:00+02:00") == datetime(2026, 10, 1, 12, tzinfo=UTC)
    for bad in ("-3d", "0d", "soon"):
        with pytest.raises(Exception, match="duration"):
            parse_span(bad)


def test_a_missing_profile_reads_as_serving_serves_it() -> None:
    frame = pd.DataFrame({"merchant_txn_count_30d": [3.0, np.nan], "merchant_avg_amount_30d": [12.0, np.nan],
                          "user_txn_count_1h": [1.0, np.nan]})
    out = with_missing_profiles(frame)
    assert list(out["merchant_txn_count_30d"]) == [3.0, 0.0]  # MISSING_PROFILE: nothing known, count 0
    assert np.isnan(out["merchant_avg_amount_30d"][1]) and np.isnan(out["user_txn_count_1h"][1])  # stay missing


def test_the_command_exits_2_with_the_counts_when_too_few_labels_are_known(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    write_logs(tmp_path, events=50)
    monkeypatch.setenv("STREAMSCORE_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        code = main(["--since", "30d", "--until", (T0 + timedelta(days=10)).isoformat(), "--min-labels", "46"])
    finally:
        get_settings.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert "only 45 recorded transactions" in err and '"transactions": 50' in err
    assert not (tmp_path / "registry").exists() or not list((tmp_path / "registry").rglob("model.ubj"))
