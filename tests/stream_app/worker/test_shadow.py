"""Shadow scoring in the worker: twins from the processor, their delivery by the runner's outbox, the
shadow's score through the label join, and the shadow source following its alias."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np
import xgboost

from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry, TrainingData
from stream_app.adapters.redis_writes import Write
from stream_app.contract import DeadLetter, Prediction
from stream_app.core.online_quality import OnlineQuality
from stream_app.core.records import Indexed, LabelRow
from stream_app.core.scoring import Scorer
from stream_app.errors import PermanentDeliveryError, ServiceUnavailableError
from stream_app.settings import WorkerSettings
from stream_app.worker.labels import LabelProcessor
from stream_app.worker.processor import BatchProcessor
from stream_app.worker.runner import BatchRunner
from stream_app.worker.sensor import scored_seen
from stream_app.worker.shadow_source import ShadowModel
from tests.fixtures.fakes import FEATURES, T0, FakeModel, FakeOnline, FakeState, record, txn

FAST = WorkerSettings(retry_initial_s=0.001, retry_max_s=0.002, poison_attempts=2)


def booster(features: Sequence[str], label_column: int) -> xgboost.Booster:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, len(features)))
    return xgboost.train({"objective": "binary:logistic", "nthread": 1},
                         xgboost.DMatrix(x, label=(x[:, label_column] > 0).astype(int), feature_names=list(features)),
                         num_boost_round=5)


class FakeShadow:
    def __init__(self, scorer: Scorer | None) -> None:
        self.scorer = scorer

    def current(self) -> Scorer | None:
        return self.scorer


SAME = Scorer(booster(FEATURES, 0), FEATURES, threshold=0.3, version="v0043")
OTHER = ("txn_amount", "user_txn_count_10m")  # fewer features, in another order
FEWER = Scorer(booster(OTHER, 0), OTHER, threshold=0.3, version="v0044")


def processor(shadow: Scorer | None, state: FakeState | None = None) -> BatchProcessor:
    return BatchProcessor(allowed_lateness_s=300, state=state or FakeState(), online=FakeOnline(), model=FakeModel(),
                          clock=lambda: T0 + timedelta(milliseconds=5), shadow=FakeShadow(shadow))


BATCH = [record(i, txn(i, minutes=i, amount=5.0 + 40 * i, country="FR" if i % 2 else "IT")) for i in range(6)]


def test_each_prediction_has_a_shadow_twin_with_the_same_features_and_the_shadows_score_and_version() -> None:
    result = processor(SAME).process(BATCH)
    champion = FakeModel().scorer
    assert len(result.shadow) == len(result.predictions) == 6
    expected = SAME.score(result.matrix)
    assert not np.allclose(expected, result.scores)  # the two models do score differently
    for i, (p, twin) in enumerate(zip(result.predictions, result.shadow, strict=True)):
        assert twin.event_id == p.event_id and twin.features == p.features
        assert (twin.event_time, twin.scored_at, twin.latency_ms) == (p.event_time, p.scored_at, p.latency_ms)
        assert twin.model_version == "v0043" and p.model_version == "v0042"
        assert twin.score == float(expected[i])
        # the champion decides at its threshold; the twin says what the shadow would have decided
        assert p.decision == ("decline" if p.score >= champion.threshold else "approve")
        assert twin.decision == ("decline" if twin.score >= SAME.threshold else "approve")


def test_the_champions_predictions_do_not_change_when_a_shadow_is_set() -> None:
    alone, shadowed = processor(None).process(BATCH), processor(SAME).process(BATCH)
    assert alone.shadow == [] and len(alone.shadow_scores) == 0
    assert shadowed.predictions == alone.predictions


def test_a_shadow_with_other_features_scores_its_own_matrix_from_the_same_values() -> None:
    result = processor(FEWER).process(BATCH)
    for p, twin in zip(result.predictions, result.shadow, strict=True):
        assert list(twin.features) == list(OTHER)
        assert twin.features == {name: p.features[name] for name in OTHER}
        own = FEWER.score(np.array([[p.features[name] for name in OTHER]], dtype=np.float64))
        assert twin.score == float(own[0])


class Broken(Scorer):
    def score(self, matrix: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
        raise xgboost.core.XGBoostError("corrupt booster")


def test_a_shadow_that_fails_to_score_leaves_no_twins_and_the_champion_unharmed() -> None:
    broken = Broken(SAME.booster, FEATURES, threshold=0.3, version="v0045")
    result = processor(broken).process(BATCH)
    assert result.shadow == [] and result.predictions == processor(None).process(BATCH).predictions


def test_the_sensor_is_told_both_models_scores_of_the_same_events() -> None:
    result = processor(SAME).process(BATCH)
    seen = scored_seen(result)
    assert seen.shadow is not None and seen.shadow.version == "v0043" and seen.shadow.threshold == 0.3
    assert np.array_equal(seen.shadow.scores, [t.score for t in result.shadow])
    assert np.array_equal(seen.shadow.champion_scores, [p.score for p in result.predictions])
    assert scored_seen(processor(None).process(BATCH)).shadow is None


class Journal:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str]]] = []  # (prediction event ids, shadow event ids) per call
        self.predictions: list[Prediction] = []
        self.shadow: list[Prediction] = []


class Publisher:
    """Fails ``outages`` calls (nothing delivered), then refuses for good the shadow twins in ``refuse``."""

    def __init__(self, journal: Journal, outages: int = 0, refuse: frozenset[str] = frozenset()) -> None:
        self.journal = journal
        self.outages = outages
        self.refuse = refuse

    async def publish(self, predictions: Sequence[Prediction], dead_letters: Sequence[DeadLetter],
                      labels: Sequence[LabelRow] = (), shadow: Sequence[Prediction] = ()) -> None:
        self.journal.calls.append(([p.event_id for p in predictions], [p.event_id for p in shadow]))
        if self.outages:
            self.outages -= 1
            raise ServiceUnavailableError("broker away")
        start = len(predictions) + len(dead_letters) + len(labels)
        refused = {start + i: "MSG_SIZE_TOO_LARGE: too large" for i, p in enumerate(shadow)
                   if p.event_id in self.refuse}
        self.journal.predictions.extend(predictions)
        self.journal.shadow.extend(p for i, p in enumerate(shadow) if start + i not in refused)
        if refused:
            raise PermanentDeliveryError(refused)


class Index:
    def __init__(self) -> None:
        self.twins: dict[str, Prediction] = {}

    def writes(self, predictions: Sequence[Prediction], watermarks: object = None,
               shadow: dict[str, Prediction] | None = None) -> list[object]:
        self.twins.update(shadow or {})
        return []


class FailingCommit(FakeState):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def commit(self, state: object, also: Sequence[object] = ()) -> None:  # type: ignore[override]
        if self.failures:
            self.failures -= 1
            raise ServiceUnavailableError("redis away")
        super().commit(state, also)  # type: ignore[arg-type]


def runner(journal: Journal, state: FakeState, publisher: Publisher | None = None,
           index: Index | None = None) -> BatchRunner:
    return BatchRunner(processor=processor(SAME, state), publisher=publisher or Publisher(journal),
                       online=FakeOnline(), state=state, settings=FAST, index=index)  # type: ignore[arg-type]


def test_twins_go_out_in_the_champions_publish_call_and_are_indexed_beside_it() -> None:
    journal, index = Journal(), Index()
    result = asyncio.run(runner(journal, FakeState(), index=index).handle(BATCH))
    ids = [f"e{i}" for i in range(6)]
    assert journal.calls == [(ids, ids)]
    assert [p.model_version for p in journal.shadow] == ["v0043"] * 6
    assert index.twins == {t.event_id: t for t in result.shadow}


def test_a_retry_after_the_outputs_were_acknowledged_re_sends_no_twin() -> None:
    journal = Journal()
    state = FailingCommit(failures=2)
    asyncio.run(runner(journal, state).handle(BATCH))
    assert len(journal.calls) == 1 and len(journal.shadow) == 6  # the two retries published nothing


def test_a_failed_delivery_re_sends_champion_and_twin_identical() -> None:
    journal = Journal()
    asyncio.run(runner(journal, FakeState(), Publisher(journal, outages=1)).handle(BATCH))
    assert len(journal.calls) == 2 and journal.calls[0] == journal.calls[1]
    assert len(journal.shadow) == 6 and len(journal.predictions) == 6


def test_a_twin_refused_for_good_is_dropped_and_the_champions_prediction_stands() -> None:
    journal = Journal()
    the_runner = runner(journal, FakeState(), Publisher(journal, refuse=frozenset({"e2"})))
    result = asyncio.run(the_runner.handle(BATCH))
    assert len(journal.calls) == 1  # nothing to re-send: the champion's predictions were all delivered
    assert [p.event_id for p in result.predictions] == [f"e{i}" for i in range(6)] and result.dead_letters == []
    assert [p.event_id for p in journal.shadow] == ["e0", "e1", "e3", "e4", "e5"]
    assert the_runner.outbox.shadow_dropped == 1 and the_runner.outbox.dropped == 0


class HitIndex:
    def __init__(self, hit: Indexed) -> None:
        self.hit = hit

    def lookup(self, event_ids: Sequence[str]) -> list[Indexed | None]:
        return [self.hit for _ in event_ids]

    def watermarks(self, partitions: Sequence[int]) -> list[float | None]:
        return [None for _ in partitions]

    def label_writes(self, event_ids: Sequence[str], offsets: Mapping[int, int]) -> list[Write]:
        return []

    def committed_offsets(self, partitions: Sequence[int]) -> list[int | None]:
        return [None for _ in partitions]


def label(event_id: str, is_fraud: bool) -> dict[str, object]:
    return {"event_id": event_id, "user_id": 1, "is_fraud": is_fraud,
            "label_time": (T0 + timedelta(hours=1)).isoformat().replace("+00:00", "Z")}


def test_the_label_join_gives_the_shadows_score_for_its_online_quality() -> None:
    hit = Indexed(7, 0.8, "v0042", T0.timestamp(), shadow_score=0.1, shadow_version="v0043")
    labels = LabelProcessor(allowed_lateness_s=300, state=FakeState(), index=HitIndex(hit),  # type: ignore[arg-type]
                            transaction_partitions=1, label_partitions=1)
    result = labels.process([record(0, label("e0", True))])
    assert [(r.model_version, r.score) for r in result.joined] == [("v0042", 0.8)]
    assert result.shadow_joined == [("v0043", 0.1, True)]
    without = LabelProcessor(allowed_lateness_s=300, state=FakeState(),
                             index=HitIndex(Indexed(7, 0.8, "v0042")),  # type: ignore[arg-type]
                             transaction_partitions=1, label_partitions=1)
    assert without.process([record(0, label("e0", True))]).shadow_joined == []
    quality = OnlineQuality()
    for version, score, is_fraud in result.shadow_joined:
        quality.add(version, score, is_fraud)
    assert quality.versions() == ["v0043"]


def register(registry: ModelRegistry, threshold: float) -> str:
    return registry.register(booster(FEATURES, 0), ModelMetadata(
        feature_service="fs", features=list(FEATURES), threshold=threshold,
        training_data=TrainingData(start=T0, end=T0, rows=300, content_hash="x")))


def test_the_shadow_source_follows_its_alias(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    now = [0.0]
    source = ShadowModel(registry, poll_s=5.0, clock=lambda: now[0])
    assert source.current() is None  # unset: no shadow
    first = register(registry, 0.3)
    registry.set_alias("shadow", first, forced=True)
    assert source.current() is None  # not polled again yet
    now[0] = 5.0
    scorer = source.current()
    assert scorer is not None and scorer.version == first and scorer.threshold == 0.3
    second = register(registry, 0.4)
    registry.set_alias("shadow", second, forced=True)
    now[0] = 10.0
    moved = source.current()
    assert moved is not None and moved.version == second
    (registry.aliases_dir / "shadow.json").unlink()  # the alias removed (the registry has no command for it)
    now[0] = 15.0
    assert source.current() is None
