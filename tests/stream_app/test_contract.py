from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from stream_app.contract import (
    DeadLetter,
    ErrorCode,
    Topics,
    decode_label,
    decode_transaction,
    encode,
    transaction_time_hint,
    user_key,
)
from stream_app.errors import InvalidRecordError

GOOD: dict[str, Any] = {
    "event_id": "e-1", "user_id": 42, "merchant_id": 7, "amount": 12.5, "currency": "EUR",
    "country": "FR", "channel": "web", "event_time": "2026-11-01T10:00:00Z",
}


def _raw(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_valid_transaction_round_trips_and_unknown_fields_are_ignored() -> None:
    txn = decode_transaction(_raw(loyalty_tier="gold"), key=b"42")
    assert txn.event_time == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert decode_transaction(encode(txn)) == txn


def test_offsets_are_normalised_to_utc() -> None:
    txn = decode_transaction(_raw(event_time="2026-11-01T12:00:00+02:00"))
    assert txn.event_time == datetime(2026, 11, 1, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_id": "42"}, "user_id"),
        ({"user_id": -1}, "user_id"),
        ({"user_id": 2**64}, "user_id"),
        ({"amount": 0}, "amount"),
        ({"amount": 1e8}, "amount"),
        ({"amount": "12"}, "amount"),
        ({"currency": "EURO"}, "currency"),
        ({"currency": "XXY"}, "currency"),
        ({"country": "ZZ"}, "country"),
        ({"channel": "atm"}, "channel"),
        ({"event_time": "2026-11-01T10:00:00"}, "event_time"),
        ({"event_time": 1700000000}, "event_time"),
        ({"event_time": "yesterday"}, "event_time"),
        ({"event_id": ""}, "event_id"),
    ],
)
def test_each_bad_field_is_a_schema_error_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        decode_transaction(_raw(**change))
    assert caught.value.code == ErrorCode.SCHEMA
    assert field in caught.value.message


def test_non_finite_amounts_are_refused() -> None:
    raw = json.dumps(GOOD).replace("12.5", "NaN").encode()
    with pytest.raises(InvalidRecordError) as caught:
        decode_transaction(raw)
    assert caught.value.code in (ErrorCode.SCHEMA, ErrorCode.DECODE)


@pytest.mark.parametrize("amount", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_amounts_are_refused_as_not_finite_rather_than_out_of_range(amount: str) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        decode_transaction(json.dumps(GOOD).replace("12.5", amount).encode())
    assert caught.value.code == ErrorCode.SCHEMA
    assert "amount" in caught.value.message and "not finite" in caught.value.message
    assert "10000000" not in caught.value.message


def test_a_missing_field_is_a_schema_error() -> None:
    body = dict(GOOD)
    del body["merchant_id"]
    with pytest.raises(InvalidRecordError, match="merchant_id") as caught:
        decode_transaction(json.dumps(body).encode())
    assert caught.value.code == ErrorCode.SCHEMA


@pytest.mark.parametrize("raw", [b"not json", b"\xff\xfe\x00", b"", b"[1, 2]", b"null", None])
def test_undecodable_values_are_decode_or_schema_errors(raw: bytes | None) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        decode_transaction(raw)
    assert caught.value.code in (ErrorCode.DECODE, ErrorCode.SCHEMA)


def test_a_key_that_is_not_the_user_id_is_refused() -> None:
    with pytest.raises(InvalidRecordError) as caught:
        decode_transaction(_raw(), key=user_key(43))
    assert caught.value.code == ErrorCode.KEY_MISMATCH


def test_labels_are_strict_about_booleans() -> None:
    label = {"event_id": "e-1", "user_id": 1, "is_fraud": True, "label_time": "2026-11-02T00:00:00Z"}
    assert decode_label(json.dumps(label).encode()).is_fraud is True
    with pytest.raises(InvalidRecordError):
        decode_label(json.dumps({**label, "is_fraud": "yes"}).encode())


def test_dead_letters_keep_original_bytes() -> None:
    error = InvalidRecordError(ErrorCode.DECODE, "not JSON")
    letter = DeadLetter.of(topic="transactions", partition=2, offset=99, key=b"\xff", value=b"\x00bad",
                           error=error, failed_at=datetime(2026, 1, 1, tzinfo=UTC))
    wire = json.loads(encode(letter))
    assert base64.b64decode(wire["value"]) == b"\x00bad"
    assert base64.b64decode(wire["key"]) == b"\xff"
    assert wire["error"] == {"code": "decode", "message": "not JSON"}


def test_every_topic_role_has_a_distinct_name() -> None:
    names = [spec.name for spec in Topics().all()]
    assert names == ["transactions", "labels", "predictions", "predictions.shadow", "transactions.dlq", "labels.joined"]


def test_the_time_hint_reads_event_time_as_the_decoder_does_without_validating() -> None:
    record = _raw()
    assert transaction_time_hint(record) == decode_transaction(record).event_time.timestamp()
    assert transaction_time_hint(_raw(event_time="2026-11-01T11:00:00+01:00")) == transaction_time_hint(record)
    assert transaction_time_hint(b'{"event_time" : "2026-11-01T10:00:00.250Z"}') == \
        datetime(2026, 11, 1, 10, 0, 0, 250_000, tzinfo=UTC).timestamp()
    assert transaction_time_hint(_raw(amount=-1)) is not None  # invalid otherwise: still a time


@pytest.mark.parametrize("value", [
    None, b"", b"not json", _raw(event_time="2026-11-01T10:00:00"), _raw(event_time="yesterday"),
    _raw(event_time=1_700_000_000), json.dumps({k: v for k, v in GOOD.items() if k != "event_time"}).encode(),
    b'{"event_time": "2026-13-45T99:00:00Z"}',
])
def test_the_time_hint_is_none_for_a_record_without_a_readable_event_time(value: bytes | None) -> None:
    assert transaction_time_hint(value) is None
