from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from stream_app.contract import ErrorCode, Prediction
from stream_app.core.online_quality import OnlineQuality
from stream_app.worker.labels import LabelProcessor
from stream_app.worker.ports import Indexed, RawRecord
from tests.stream_app.worker.test_processor import FakeState

T0 = datetime(2026, 11, 1, tzinfo=UTC)


class FakeIndex:
    def __init__(self, known: dict[str, Indexed]) -> None:
        self.known = known

    def remember(self, predictions: Sequence[Prediction]) -> None:
        raise AssertionError("not used")

    def lookup(self, event_ids: Sequence[str]) -> list[Indexed | None]:
        return [self.known.get(e) for e in event_ids]


def label(offset: int, event_id: str, fraud: bool, hours: float = 0) -> RawRecord:
    body = {"event_id": event_id, "user_id": 1, "is_fraud": fraud,
            "label_time": (T0 + timedelta(hours=hours)).isoformat()}
    return RawRecord("labels", 0, offset, b"1", json.dumps(body).encode())


def test_labels_join_feed_merchant_windows_and_online_quality() -> None:
    index = FakeIndex({"a": Indexed(7, 0.9, "v1"), "b": Indexed(7, 0.2, "v1"), "c": Indexed(8, 0.1, "v1")})
    state, quality = FakeState(), OnlineQuality()
    processor = LabelProcessor(allowed_lateness_s=300, state=state, index=index, quality=quality)
    result = processor.process([label(0, "a", True), label(1, "b", False, 1), label(2, "c", False, 2),
                                label(3, "zzz", True, 3), RawRecord("labels", 0, 4, b"1", b"nope")])
    assert (result.applied, result.unjoined) == (3, 1)
    assert [d.error.code for d in result.dead_letters] == [ErrorCode.DECODE]
    windows = result.state.merchant_labels[7]
    assert windows.query((T0 + timedelta(hours=2)).timestamp())["merchant_fraud_rate_7d"] == 0.5
    assert quality.count("v1") == 3 and quality.roc_auc("v1") == 1.0
    state.commit(result.state)
    again = processor.process([label(0, "a", True)])
    assert again.replayed == 1 and again.applied == 0 and quality.count("v1") == 3


def test_online_auc_is_undefined_until_both_classes_are_seen() -> None:
    quality = OnlineQuality(window=3)
    quality.add("v1", 0.9, True)
    assert math.isnan(quality.roc_auc("v1"))
    for score in (0.1, 0.2, 0.95):
        quality.add("v1", score, False)
    assert quality.count("v1") == 3  # bounded: the oldest pair fell out
    assert math.isnan(quality.roc_auc("v1"))  # only negatives remain in the window
