"""Hypothesis against the wire contract: whatever bytes arrive on ``transactions``, decoding either returns
a Transaction that keeps every documented invariant or raises InvalidRecordError with a stable code and a
message, and the dead letter built from it keeps the original bytes. Nothing else may escape: in the
worker, any other exception fails the whole micro-batch (its valid events included).

The strategies here are also the hostile input of the worker integration test (test_hostile_input.py)."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.contract import DeadLetter, ErrorCode, Transaction, decode_transaction, encode, user_key
from stream_app.errors import InvalidRecordError
from stream_app.iso_codes import COUNTRIES, CURRENCIES

FIELDS = ("event_id", "user_id", "merchant_id", "amount", "currency", "country", "channel", "event_time")

# --- strategies -----------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)

# Text a careless or hostile producer puts where a number, code or timestamp belongs.
nasty_text = st.sampled_from([
    "NaN", "nan", "-NaN", "Infinity", "-Infinity", "inf", "1e309", "-0", "0x10", "1_000", "１２３", "٣", "12.5",
    " 42", "42 ", "", " ", "\x00", "\u202e", "\ufeff", "null", "true", "[]", "{}", "\\u0000", "ＥＵＲ", "eur",
    "US", "usd", "pos ", "POS", "Web", "🙂", "x" * 200, "1700000000", "1700000000.5", "-1", "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-10-01T24:00:00Z", "2026-10-01T12:00:00+24:00", "2026-10-01T12:00:00z",
    "2026-10-01 12:00:00+00:00", "2026-10-01T12:00:00.123456789Z", "2026-10-01T12:00Z", "2026-10-01",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "1677-09-21T00:12:43Z", "2262-04-11T23:47:17Z", "+002026-10-01T12:00:00Z",
]) | st.text(max_size=30)

hostile_numbers = st.sampled_from([
    0, -0.0, -1, 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, 1e7, 1e7 + 1e-9, 5e-324, 1.7976931348623157e308,
    math.nan, math.inf, -math.inf, 0.1, 1e-7, True, False,
])

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
any_timestamp = (st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
                 .map(lambda d: d.isoformat()))

hostile_value = json_values | nasty_text | hostile_numbers | any_timestamp


def valid_fields(n: int) -> st.SearchStrategy[dict[str, Any]]:
    """A valid transaction's JSON fields; ``n`` makes event_id and user_id unique per record."""
    return st.fixed_dictionaries({
        "event_id": st.just(f"hostile-{n}"),
        "user_id": st.just(10**12 + n),
        "merchant_id": st.integers(min_value=0, max_value=2**63 - 1),
        "amount": st.floats(min_value=0.01, max_value=1e7),
        "currency": st.sampled_from(sorted(CURRENCIES)),
        "country": st.sampled_from(sorted(COUNTRIES)),
        "channel": st.sampled_from(["pos", "web", "app"]),
        "event_time": st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1),
                                   timezones=offsets).map(lambda d: d.isoformat()),
    })


@st.composite
def near_valid(draw: st.DrawFn, n: int = 0) -> tuple[bytes | None, bytes | None]:
    """A valid transaction with one to three hostile changes: a field replaced, dropped or duplicated,
    extra fields, a different key (or none), different bytes (BOM, trailing junk, truncation)."""
    fields = draw(valid_fields(n))
    key: bytes | None = user_key(fields["user_id"])
    duplicate: tuple[str, Any] | None = None
    for _ in range(draw(st.integers(1, 3))):
        change = draw(st.sampled_from(["replace", "replace", "replace", "time", "drop", "extra", "duplicate", "key"]))
        name = draw(st.sampled_from(FIELDS))
        if change == "time":  # times are where decoding went wrong before: any offset, any year
            fields["event_time"] = draw(any_timestamp | nasty_text)
        elif change == "replace":
            fields[name] = draw(hostile_value)
            if name == "user_id" and isinstance(fields[name], int) and draw(st.booleans()):
                key = str(fields[name]).encode()  # keep the key consistent: only the value is hostile
        elif change == "drop":
            fields.pop(name, None)
        elif change == "extra":
            fields[draw(st.text(max_size=20))] = draw(hostile_value)
        elif change == "duplicate":
            duplicate = (name, draw(hostile_value))
        else:
            key = draw(st.none() | st.binary(max_size=24) | st.just(b"") | st.just(b"0" + (key or b"1"))
                       | nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
    ensure_ascii = draw(st.booleans())
    value = json.dumps(fields, ensure_ascii=ensure_ascii, allow_nan=True)
    if duplicate is not None:  # a repeated JSON key: the last occurrence counts for most parsers
        value = value[:-1] + (", " if fields else "") + json.dumps(duplicate[0]) + ": " + json.dumps(duplicate[1]) + "}"
    raw = value.encode("utf-8", "surrogatepass")
    mangle = draw(st.sampled_from(["none"] * 6 + ["bom", "junk", "truncate", "whitespace", "nul"]))
    if mangle == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif mangle == "junk":
        raw = raw + draw(st.binary(min_size=1, max_size=8))
    elif mangle == "truncate":
        raw = raw[: draw(st.integers(0, max(0, len(raw) - 1)))]
    elif mangle == "whitespace":
        raw = b" \n\t" + raw + b"\r\n "
    elif mangle == "nul":
        raw = raw + b"\x00"
    return key, raw


def arbitrary_json() -> st.SearchStrategy[tuple[bytes | None, bytes | None]]:
    return st.tuples(st.none() | st.binary(max_size=16),
                     json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()))


def arbitrary_bytes() -> st.SearchStrategy[tuple[bytes | None, bytes | None]]:
    return st.tuples(st.none() | st.binary(max_size=16), st.none() | st.binary(max_size=300))


def hostile_record(n: int) -> st.SearchStrategy[tuple[bytes | None, bytes | None]]:
    return arbitrary_bytes() | arbitrary_json() | near_valid(n) | near_valid(n) | near_valid(n)


# --- the property ---------------------------------------------------------------------------------------

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
    import pandas as pd

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
