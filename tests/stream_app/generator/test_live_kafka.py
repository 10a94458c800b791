"""The live generator against the real broker: records arrive keyed by user, valid ones decode, hostile
ones fail with their expected codes, and labels follow their transactions."""

from __future__ import annotations

import pytest

from stream_app.adapters.kafka_admin import ensure_topics
from stream_app.contract import decode_label, decode_transaction, user_key
from stream_app.errors import InvalidRecordError
from stream_app.generator.live import stream_live
from stream_app.settings import Settings
from tests.fixtures.kafka import consume

pytestmark = pytest.mark.integration


def test_live_stream_reaches_kafka_with_labels_and_hostile_records(settings: Settings) -> None:
    ensure_topics(settings.kafka, settings.topics.all())
    counts = stream_live(settings, rate=400, duration_s=2.0, seed=21, users=500, merchants=50,
                         invalid_fraction=0.1, label_delay_scale=1e-6, drain_labels=True, report=None)
    assert counts.delivery_errors == 0 and counts.undelivered == 0
    assert 600 <= counts.valid + counts.invalid <= 900
    assert counts.invalid > 0

    records = consume(settings, settings.topics.transactions.name, counts.valid + counts.invalid)
    assert len(records) == counts.valid + counts.invalid
    valid_ids = set()
    rejected = 0
    for key, value, _, _ in records:
        try:
            txn = decode_transaction(value, key)
        except InvalidRecordError:
            rejected += 1
            continue
        assert key == user_key(txn.user_id)
        valid_ids.add(txn.event_id)
    assert len(valid_ids) == counts.valid
    assert rejected == counts.invalid

    labels = consume(settings, settings.topics.labels.name, counts.labels)
    assert len(labels) == counts.labels == counts.valid
    assert {decode_label(value).event_id for _, value, _, _ in labels} == valid_ids
