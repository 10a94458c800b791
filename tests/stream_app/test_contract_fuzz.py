"""Hypothesis against the wire contract: whatever bytes arrive on ``transactions``, decoding either returns
a Transaction that keeps every documented invariant or raises InvalidRecordError with a stable code and a
message, and the dead letter built from it keeps the original bytes. Nothing else may escape: in the
worker, any other exception fails the whole micro-batch (its valid events included).

The strategies are in tests/fixtures/strategies.py (also the worker's hostile input, test_hostile_input.py)."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.contract import DeadLetter, ErrorCode, Transaction, decode_transaction, encode, user_key
from stream_app.errors import InvalidRecordError
from stream_app.iso_codes import COUNTRIES, CURRENCIES
from tests.fixtures.strategies import any_timestamp, arbitrary_bytes, arbitrary_json, near_valid, valid_fields


def outcome(key: bytes | None, value: bytes | None) -> Transaction | InvalidRecordError:
    """Decode one record; fails the test on anything but a Transaction or an InvalidRecordError."""
    try:
        return decode_transaction(value, key)
    except InvalidRecordError as error:
        return error


def check_record(key: bytes | None, value: bytes | None) -> None:
    result = outcome(key, value)
    if isinstance(result, InvalidRecordError):
        assert result.code in set(ErrorCode) - {ErrorCode.INTERNAL, ErrorCode.LATE}
        assert result.message
        letter = DeadLetter.of(topic="transactions", partition=0, offset=1, key=key, value=value, error=result,
                               failed_at=datetime.now(UTC))
        back = DeadLetter.model_validate_json(encode(letter))
        assert (None if back.value is None else base64.b64decode(back.value)) == value
        assert (None if back.key is None else base64.b64decode(back.key)) == key
        assert back.error.code == result.code
        return
    txn = result
    assert 0 < txn.amount <= 1e7 and math.isfinite(txn.amount)
    assert 0 <= txn.user_id < 2**63 and 0 <= txn.merchant_id < 2**63
    assert 1 <= len(txn.event_id) <= 128
    assert txn.currency in CURRENCIES and txn.country in COUNTRIES and txn.channel in ("pos", "web", "app")
    assert txn.event_time.utcoffset() == timedelta(0)
    assert key is None or key == user_key(txn.user_id)
    # what the worker and the offline log do with an accepted time must work
    txn.event_time.timestamp()

    pd.Timestamp(txn.event_time).as_unit("ns")
    # an accepted record re-encodes to one that is accepted and equal
    assert decode_transaction(encode(txn), user_key(txn.user_id)) == txn


fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(record=arbitrary_bytes())
def test_arbitrary_bytes_are_decoded_or_refused_with_a_reason(record: tuple[bytes | None, bytes | None]) -> None:
    check_record(*record)


@fuzz
@given(record=arbitrary_json())
def test_arbitrary_json_is_decoded_or_refused_with_a_reason(record: tuple[bytes | None, bytes | None]) -> None:
    check_record(*record)


@fuzz
@given(record=near_valid())
def test_near_valid_transactions_are_decoded_or_refused_with_a_reason(record: tuple[bytes | None, bytes | None],
                                                                      ) -> None:
    check_record(*record)


@settings(max_examples=300, deadline=None)
@given(fields=valid_fields(0))
def test_valid_transactions_are_accepted(fields: dict[str, Any]) -> None:
    """The generator of near-valid records starts from records that really are valid."""
    raw = json.dumps(fields).encode()
    assert isinstance(outcome(user_key(fields["user_id"]), raw), Transaction)


@settings(max_examples=500, deadline=None)
@given(when=any_timestamp)
def test_any_offset_timestamp_is_accepted_in_range_or_refused_as_schema(when: str) -> None:
    """Regression: a time whose conversion to UTC leaves datetime's range (0001-01-01T00:00+01:00) raised
    OverflowError, and a time outside datetime64[ns] passed and then failed the worker's batch."""
    raw = json.dumps({"event_id": "e", "user_id": 1, "merchant_id": 2, "amount": 3.5, "currency": "EUR",
                      "country": "DE", "channel": "web", "event_time": when}).encode()
    result = outcome(b"1", raw)
    utc = datetime.fromisoformat(when)
    try:
        in_range = datetime(1678, 1, 1, tzinfo=UTC) <= utc.astimezone(UTC) < datetime(2262, 1, 1, tzinfo=UTC)
    except OverflowError:
        in_range = False
    if in_range:
        assert isinstance(result, Transaction), result
        assert result.event_time == utc
    else:
        assert isinstance(result, InvalidRecordError) and result.code == ErrorCode.SCHEMA, result
        assert "event_time" in result.message


@settings(max_examples=300, deadline=None)
@given(number=st.integers(min_value=-(10**12), max_value=10**12).map(str)
       | st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12).map(repr))
def test_numbers_in_text_are_not_timestamps(number: str) -> None:
    """Regression: pydantic reads "1700000000" as Unix seconds; the contract takes RFC 3339 text only."""
    raw = json.dumps({"event_id": "e", "user_id": 1, "merchant_id": 2, "amount": 3.5, "currency": "EUR",
                      "country": "DE", "channel": "web", "event_time": number}).encode()
    result = outcome(b"1", raw)
    assert isinstance(result, InvalidRecordError) and result.code == ErrorCode.SCHEMA, result
