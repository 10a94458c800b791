"""The file-based registry: round trips, version allocation, aliases, corruption handling."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost

from stream_app.adapters.files import atomic_write_text
from stream_app.adapters.model_registry import LoadedModel, ModelMetadata, ModelRegistry, TrainingData
from stream_app.core.metrics import histogram_reference
from stream_app.errors import DataValidationError, RegistryError
from stream_app.settings import Settings

FEATURES = ["f_count", "f_rate", "f_amount"]


def training_frame(seed: int = 0, rows: int = 400) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"f_count": rng.poisson(3, rows).astype(float), "f_rate": rng.random(rows),
                          "f_amount": rng.gamma(2, 50, rows)})
    y = ((frame["f_rate"] + 0.1 * frame["f_count"] + rng.normal(0, 0.2, rows)) > 1.0).astype(int).to_numpy()
    return frame, y


def train(seed: int = 0, features: list[str] = FEATURES) -> xgboost.Booster:
    frame, y = training_frame(seed)
    frame.columns = pd.Index(features)
    return xgboost.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "seed": seed},
                         xgboost.DMatrix(frame, label=y), num_boost_round=5)


def metadata(features: list[str] = FEATURES, **changes: object) -> ModelMetadata:
    frame, _ = training_frame()
    fields: dict[str, object] = {
        "feature_service": "fraud_v1",
        "features": features,
        "threshold": 0.5,
        "training_data": TrainingData(start=datetime(2026, 1, 1, tzinfo=UTC), end=datetime(2026, 1, 8, tzinfo=UTC),
                                      rows=400, content_hash="sha256:abc"),
        "params": {"max_depth": 2},
        "metrics": {"roc_auc": 0.9},
        "git_commit": "deadbeef",
        "reference_distributions": {f: histogram_reference(frame[f].to_numpy()) for f in FEATURES},
    }
    fields.update(changes)
    return ModelMetadata.model_validate(fields)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "registry")


def test_round_trip_predicts_identically(registry: ModelRegistry) -> None:
    booster = train()
    version = registry.register(booster, metadata())
    loaded = registry.load(version)
    assert isinstance(loaded, LoadedModel) and loaded.version == version == "v0001"
    frame, _ = training_frame(seed=9)
    np.testing.assert_array_equal(loaded.booster.predict(xgboost.DMatrix(frame)),
                                  booster.predict(xgboost.DMatrix(frame)))
    # score_frame() reorders columns to the trained order.
    np.testing.assert_array_equal(loaded.scorer().score_frame(frame[FEATURES[::-1]]),
                                  booster.predict(xgboost.DMatrix(frame)))
    assert loaded.metadata.features == FEATURES and loaded.metadata.git_commit == "deadbeef"
    assert loaded.metadata.reference_distributions == metadata().reference_distributions
    assert loaded.metadata.model_sha256 is not None
    with pytest.raises(DataValidationError, match="f_rate"):
        loaded.scorer().score_frame(frame.drop(columns=["f_rate"]))


def test_model_file_is_ubj_not_pickle(registry: ModelRegistry) -> None:
    version = registry.register(train(), metadata())
    path = registry.versions_dir / version / "model.ubj"
    raw = path.read_bytes()
    assert raw[:1] == b"{" and raw[1:2] in b"iUIlL"  # UBJSON object with a typed key length
    assert raw[:1] != b"\x80"  # pickle protocol >= 2 header
    with pytest.raises(UnicodeDecodeError):
        json.loads(raw.decode("utf-8"))
    assert xgboost.Booster(model_file=str(path)).num_features() == len(FEATURES)
    assert sorted(p.name for p in (registry.versions_dir / version).iterdir()) == ["metadata.json", "model.ubj"]


def test_versions_increase_and_list(registry: ModelRegistry) -> None:
    assert registry.list_versions() == [] and registry.latest_version() is None
    versions = [registry.register(train(seed), metadata()) for seed in range(3)]
    assert versions == ["v0001", "v0002", "v0003"] == registry.list_versions()
    assert registry.latest_version() == "v0003"
    assert registry.metadata("v0002").version == "v0002"


def test_concurrent_registration_gets_distinct_versions(registry: ModelRegistry) -> None:
    booster, meta = train(), metadata()
    results: list[str] = []
    lock = threading.Lock()

    def register() -> None:
        version = registry.register(booster, meta)
        with lock:
            results.append(version)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [f"v{i:04d}" for i in range(1, 9)] == registry.list_versions()


def test_register_refuses_inconsistent_input(registry: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match=r"differ from metadata\.features"):
        registry.register(train(), metadata(features=FEATURES[::-1]))
    with pytest.raises(RegistryError, match="takes 3 features"):
        registry.register(train(), metadata(features=[*FEATURES, "f_extra"]))
    with pytest.raises(RegistryError, match="assigned by the registry"):
        registry.register(train(), metadata(version="v0042"))
    assert registry.list_versions() == []


def test_metadata_validation() -> None:
    with pytest.raises(ValueError, match="duplicated"):
        metadata(features=["a", "a"])
    with pytest.raises(ValueError, match="threshold"):
        metadata(threshold=1.5)


def test_alias_move_is_atomic_and_visible_via_stamp(registry: ModelRegistry) -> None:
    v1 = registry.register(train(1), metadata())
    v2 = registry.register(train(2), metadata())
    assert registry.get_alias("production") is None
    assert registry.alias_stamp("production") == (None, 0)
    with pytest.raises(RegistryError, match="not set"):
        registry.load_alias("production")

    registry.set_alias("production", v1)
    first = registry.alias_stamp("production")
    assert first[0] == v1 and first[1] > 0
    assert registry.load_alias("production").version == v1

    record = registry.set_alias("production", v2, details={"why": "better"})
    second = registry.alias_stamp("production")
    assert second[0] == v2 and second != first
    assert record.previous == v1 and registry.alias_record("production") == record
    # Re-pointing at the same version still changes the stamp, so pollers notice a re-promotion.
    os.utime(registry.aliases_dir / "production.json", ns=(second[1] - 10, second[1] - 10))
    registry.set_alias("production", v2)
    assert registry.alias_stamp("production")[0] == v2 and registry.alias_stamp("production") != second
    # Only complete files ever exist under the alias name; temp files are cleaned up.
    assert sorted(p.name for p in registry.aliases_dir.iterdir()) == ["history.jsonl", "production.json"]
    assert [(r.version, r.previous) for r in registry.alias_history()] == [(v1, None), (v2, v1), (v2, v2)]
    assert registry.get_alias("shadow") is None


def test_alias_readers_never_see_a_partial_file(registry: ModelRegistry) -> None:
    v1 = registry.register(train(1), metadata())
    v2 = registry.register(train(2), metadata())
    registry.set_alias("shadow", v1)
    stop = threading.Event()
    seen: set[str | None] = set()
    errors: list[Exception] = []

    def poll() -> None:
        while not stop.is_set():
            try:
                seen.add(registry.alias_stamp("shadow")[0])
            except RegistryError as exc:  # a torn read would surface as corrupt JSON
                errors.append(exc)
            time.sleep(0.0005)  # let the writer have the GIL

    reader = threading.Thread(target=poll)
    reader.start()
    for i in range(16):
        registry.set_alias("shadow", v2 if i % 2 else v1)
    stop.set()
    reader.join()
    assert not errors and seen <= {v1, v2}


def test_alias_compare_and_swap(registry: ModelRegistry) -> None:
    v1 = registry.register(train(1), metadata())
    v2 = registry.register(train(2), metadata())
    registry.set_alias("production", v1, expected_current=None)
    with pytest.raises(RegistryError, match="moved concurrently"):
        registry.set_alias("production", v2, expected_current=None)
    assert registry.get_alias("production") == v1


def test_rollback_walks_back_through_earlier_versions(registry: ModelRegistry) -> None:
    v1, v2, v3 = (registry.register(train(seed), metadata()) for seed in (1, 2, 3))
    for version in (v1, v2, v2, v3):  # re-pointing at the same version adds no rollback step
        registry.set_alias("production", version)
    assert registry.alias_record("production").earlier == [v1, v2]  # type: ignore[union-attr]
    before = registry.alias_stamp("production")

    record = registry.rollback_alias("production")
    assert (record.version, record.previous, record.earlier) == (v2, v3, [v1])
    assert record.details == {"rolled_back_from": v3}
    assert registry.alias_record("production") == record
    assert registry.alias_stamp("production")[0] == v2 != before[0]  # what a polling worker sees
    assert registry.rollback_alias("production").version == v1  # twice: further back, not a toggle
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback_alias("production")
    assert registry.get_alias("production") == v1

    registry.set_alias("production", v3)  # a promotion after rollbacks can itself be rolled back
    assert registry.rollback_alias("production").version == v1
    assert [(r.version, r.previous) for r in registry.alias_history()][-4:] == [
        (v2, v3), (v1, v2), (v3, v1), (v1, v3)]
    assert registry.get_alias("shadow") is None


def test_rollback_refuses_without_an_earlier_version(registry: ModelRegistry) -> None:
    v1 = registry.register(train(1), metadata())
    with pytest.raises(RegistryError, match="not set"):
        registry.rollback_alias("production")
    registry.set_alias("production", v1)
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback_alias("production")
    with pytest.raises(RegistryError, match="unknown alias"):
        registry.rollback_alias("staging")
    assert registry.get_alias("production") == v1 and len(registry.alias_history()) == 1


def test_rollback_refuses_a_target_that_cannot_be_loaded(registry: ModelRegistry) -> None:
    v1 = registry.register(train(1), metadata())
    v2 = registry.register(train(2), metadata())
    registry.set_alias("production", v1)
    registry.set_alias("production", v2)
    (registry.versions_dir / v1 / "model.ubj").write_bytes(b"not a model")
    with pytest.raises(RegistryError, match="corrupt"):
        registry.rollback_alias("production")
    assert registry.alias_record("production").earlier == [v1]  # type: ignore[union-attr]
    assert registry.get_alias("production") == v2


def test_rollback_is_one_atomic_write_of_pointer_and_stack(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1 = registry.register(train(1), metadata())
    v2 = registry.register(train(2), metadata())
    registry.set_alias("production", v1)
    registry.set_alias("production", v2)
    alias_file = registry.aliases_dir / "production.json"
    before = alias_file.read_text()
    writes: list[tuple[Path, str]] = []
    def failing(path: Path, text: str) -> None:
        writes.append((path, text))
        raise OSError("disk full")

    def recording(path: Path, text: str) -> None:
        writes.append((path, text))
        atomic_write_text(path, text)

    monkeypatch.setattr("stream_app.adapters.model_registry.atomic_write_text", failing)
    with pytest.raises(RegistryError, match="disk full"):
        registry.rollback_alias("production")
    assert alias_file.read_text() == before and len(registry.alias_history()) == 2  # nothing moved

    monkeypatch.setattr("stream_app.adapters.model_registry.atomic_write_text", recording)
    registry.rollback_alias("production")
    assert [path for path, _ in writes] == [alias_file, alias_file]  # one write per move, the alias file
    written = json.loads(writes[-1][1])
    assert (written["version"], written["earlier"]) == (v1, [])  # pointer and stack in that one write
    assert sorted(p.name for p in registry.aliases_dir.iterdir()) == ["history.jsonl", "production.json"]


def test_alias_record_without_earlier_rolls_back_to_previous(registry: ModelRegistry) -> None:
    v1 = registry.register(train(1), metadata())
    v2 = registry.register(train(2), metadata())
    registry.aliases_dir.mkdir(parents=True)
    (registry.aliases_dir / "production.json").write_text(json.dumps(
        {"alias": "production", "version": v2, "previous": v1, "updated_at": "2026-11-01T00:00:00Z"}))
    assert registry.rollback_alias("production").version == v1


def test_unknown_alias_and_version(registry: ModelRegistry) -> None:
    registry.register(train(), metadata())
    with pytest.raises(RegistryError, match="unknown alias"):
        registry.get_alias("staging")
    with pytest.raises(RegistryError, match=r"unknown version 'v0099'.*v0001"):
        registry.load("v0099")
    with pytest.raises(RegistryError, match="invalid version name"):
        registry.load("../../etc")
    with pytest.raises(RegistryError, match="unknown version"):
        registry.set_alias("production", "v0042")


def test_corrupt_metadata_is_a_registry_error(registry: ModelRegistry) -> None:
    version = registry.register(train(), metadata())
    path = registry.versions_dir / version / "metadata.json"
    path.write_text("{not json")
    with pytest.raises(RegistryError, match="corrupt metadata"):
        registry.load(version)
    path.write_text(json.dumps({"version": version, "features": ["a"]}))
    with pytest.raises(RegistryError, match="corrupt metadata"):
        registry.metadata(version)


def test_metadata_naming_another_version_is_corrupt(registry: ModelRegistry) -> None:
    v1 = registry.register(train(), metadata())
    v2 = registry.register(train(), metadata())
    original = (registry.versions_dir / v1 / "metadata.json").read_bytes()
    (registry.versions_dir / v2 / "metadata.json").write_bytes(original)
    with pytest.raises(RegistryError, match="names version 'v0001'"):
        registry.load(v2)


def test_missing_or_damaged_model_file(registry: ModelRegistry) -> None:
    version = registry.register(train(), metadata())
    model = registry.versions_dir / version / "model.ubj"
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(RegistryError, match="corrupt: sha256"):
        registry.load(version)
    model.unlink()
    with pytest.raises(RegistryError, match="missing its model file"):
        registry.load(version)


def test_incomplete_version_is_not_listed_and_number_not_reused(registry: ModelRegistry) -> None:
    registry.register(train(), metadata())
    (registry.versions_dir / "v0002").mkdir()  # a registration that crashed before publishing
    assert registry.list_versions() == ["v0001"]
    with pytest.raises(RegistryError, match="incomplete"):
        registry.load("v0002")
    assert registry.register(train(), metadata()) == "v0003"


def test_corrupt_alias_file(registry: ModelRegistry) -> None:
    registry.aliases_dir.mkdir(parents=True)
    (registry.aliases_dir / "production.json").write_text('{"alias": "production"}')
    with pytest.raises(RegistryError, match="corrupt alias file"):
        registry.get_alias("production")


def test_golden_metrics_recorded_without_touching_the_model(registry: ModelRegistry) -> None:
    version = registry.register(train(), metadata())
    before = (registry.versions_dir / version / "model.ubj").read_bytes()
    updated = registry.record_golden_metrics(version, {"roc_auc": 0.91})
    assert updated.golden_metrics == {"roc_auc": 0.91}
    assert registry.load(version).metadata.golden_metrics == {"roc_auc": 0.91}
    assert (registry.versions_dir / version / "model.ubj").read_bytes() == before


def test_from_settings_uses_models_dir(tmp_path: Path) -> None:
    assert ModelRegistry.from_settings(Settings(models_dir=tmp_path / "m")).root == tmp_path / "m"
