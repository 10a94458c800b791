"""Hostile and invalid ``transactions`` records, each with the DLQ code the contract must give it.

Every kind starts from a valid Transaction and breaks exactly one thing, so a test that sees the wrong
code knows which rule regressed. ``INVALID_KINDS`` is the catalogue (each kind is a generator of
``InvalidRecord(key, value, expected_code)``); ``invalid_examples()`` gives one concrete record per
kind for parametrised tests; the live producer mixes them in with ``random_invalid``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from stream_app.contract import ErrorCode, Transaction, encode, user_key

# Plausible mistakes (lower case, symbols, alpha-3, the non-ISO "UK", user-assigned "XK"), none of them
# in stream_app.iso_codes.
BAD_CURRENCIES: list[str] = ["usd", "US$", "EURO", "ABC", "XXX", "", "€"]
BAD_COUNTRIES: list[str] = ["UK", "us", "USA", "ZZ", "XK", "", "E1"]


class InvalidRecord(NamedTuple):
    """A ``transactions`` record as raw key and value bytes, with the DLQ code the worker must give it."""

    key: bytes
    value: bytes
    expected_code: ErrorCode


Builder = Callable[[Transaction, np.random.Generator], tuple[bytes, bytes]]


@dataclass(frozen=True)
class InvalidKind:
    """One way a record can be wrong. Calling it builds a record from a valid ``base`` transaction."""

    name: str
    expected_code: ErrorCode
    build: Builder

    def __call__(self, base: Transaction, rng: np.random.Generator) -> InvalidRecord:
        key, value = self.build(base, rng)
        return InvalidRecord(key=key, value=value, expected_code=self.expected_code)


def _fields(base: Transaction) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(encode(base))
    return loaded


def _with(base: Transaction, **changes: Any) -> tuple[bytes, bytes]:
    """The base record's JSON with some fields replaced (keys kept in wire order)."""
    return user_key(base.user_id), json.dumps({**_fields(base), **changes}).encode()


def _pick(rng: np.random.Generator, options: list[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _not_json(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    junk: bytes = _pick(rng, [b"not json", b"<xml/>", b"{'single': 'quotes'}", b"user_id=5&amount=3", b"\x00\x01\x02"])
    return user_key(base.user_id), junk


def _truncated(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    value = encode(base)
    return user_key(base.user_id), value[: int(rng.integers(1, len(value) - 1))]


def _bad_utf8(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    value = encode(base)
    at = value.index(base.event_id.encode()) + 1  # inside a string, so it is not a JSON syntax error
    bad: bytes = _pick(rng, [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80"])
    return user_key(base.user_id), value[:at] + bad + value[at:]


def _empty(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    return user_key(base.user_id), b""


def _not_an_object(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    shape: bytes = _pick(rng, [b"null", b"[]", b"42", b'"transaction"', json.dumps([_fields(base)]).encode()])
    return user_key(base.user_id), shape


def _missing_field(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    fields = _fields(base)
    del fields[_pick(rng, sorted(fields))]
    return user_key(base.user_id), json.dumps(fields).encode()


def _wrong_type(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    # Only types the contract refuses: ids and event_id are strict, amount refuses non-numeric text.
    field, value = _pick(
        rng,
        [
            ("user_id", str(base.user_id)),
            ("user_id", base.user_id + 0.5),
            ("merchant_id", [base.merchant_id]),
            ("event_id", 12345),
            ("amount", "twelve"),
            ("amount", {"value": base.amount}),
            ("channel", 1),
            ("currency", 840),
        ],
    )
    return _with(base, **{field: value})


def _non_positive_amount(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    return _with(base, amount=_pick(rng, [-base.amount, 0, -0.01, -1e7]))


def _non_finite_amount(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    # Python's json writes the non-standard tokens NaN / Infinity, which some producers do emit.
    return _with(base, amount=_pick(rng, [float("nan"), float("inf"), float("-inf")]))


def _huge_amount(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    return _with(base, amount=_pick(rng, [1e7 + 0.01, 1e12, 9.9e307, 1.7976931348623157e308]))


def _bad_currency(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    return _with(base, currency=_pick(rng, BAD_CURRENCIES))


def _bad_country(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    return _with(base, country=_pick(rng, BAD_COUNTRIES))


def _bad_timestamp(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    naive = base.event_time.replace(tzinfo=None).isoformat()
    when = _pick(rng, [naive, naive.replace("T", " "), int(base.event_time.timestamp()), "yesterday", None])
    return _with(base, event_time=when)


def _bad_channel(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    return _with(base, channel=_pick(rng, ["atm", "POS", "", "phone"]))


def _out_of_range_id(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    field, value = _pick(
        rng, [("user_id", -1), ("user_id", 2**63), ("merchant_id", -7), ("event_id", ""), ("event_id", "x" * 129)]
    )
    key, value_bytes = _with(base, **{field: value})
    if field == "user_id":
        key = user_key(value)  # keep the key consistent so only the id itself is wrong
    return key, value_bytes


def _key_mismatch(base: Transaction, rng: np.random.Generator) -> tuple[bytes, bytes]:
    key: bytes = _pick(
        rng,
        [
            user_key(base.user_id + 1),
            b"0" + user_key(base.user_id),  # same number, different text: keys are compared as bytes
            user_key(base.user_id) + b" ",
            b"",
            base.event_id.encode(),
        ],
    )
    return key, encode(base)


INVALID_KINDS: tuple[InvalidKind, ...] = (
    InvalidKind("not_json", ErrorCode.DECODE, _not_json),
    InvalidKind("truncated_json", ErrorCode.DECODE, _truncated),
    InvalidKind("bad_utf8", ErrorCode.DECODE, _bad_utf8),
    InvalidKind("empty_value", ErrorCode.DECODE, _empty),
    InvalidKind("not_an_object", ErrorCode.SCHEMA, _not_an_object),
    InvalidKind("missing_field", ErrorCode.SCHEMA, _missing_field),
    InvalidKind("wrong_type", ErrorCode.SCHEMA, _wrong_type),
    InvalidKind("non_positive_amount", ErrorCode.SCHEMA, _non_positive_amount),
    InvalidKind("non_finite_amount", ErrorCode.SCHEMA, _non_finite_amount),
    InvalidKind("huge_amount", ErrorCode.SCHEMA, _huge_amount),
    InvalidKind("bad_currency", ErrorCode.SCHEMA, _bad_currency),
    InvalidKind("bad_country", ErrorCode.SCHEMA, _bad_country),
    InvalidKind("naive_or_bad_timestamp", ErrorCode.SCHEMA, _bad_timestamp),
    InvalidKind("bad_channel", ErrorCode.SCHEMA, _bad_channel),
    InvalidKind("out_of_range_id", ErrorCode.SCHEMA, _out_of_range_id),
    InvalidKind("key_mismatch", ErrorCode.KEY_MISMATCH, _key_mismatch),
)


def sample_transaction() -> Transaction:
    """A fixed valid transaction to break, for tests that need no generated data."""
    return Transaction.model_validate(
        {
            "event_id": "invalid-base-0001",
            "user_id": 1_000_042,
            "merchant_id": 10_000_007,
            "amount": 42.5,
            "currency": "EUR",
            "country": "DE",
            "channel": "web",
            "event_time": "2026-10-01T12:34:56.789012Z",
        }
    )


def random_invalid(rng: np.random.Generator, base: Transaction) -> tuple[str, InvalidRecord]:
    """A uniformly chosen kind applied to ``base``: (kind name, record)."""
    kind = INVALID_KINDS[int(rng.integers(len(INVALID_KINDS)))]
    return kind.name, kind(base, rng)


def invalid_examples(seed: int = 0, per_kind: int = 1) -> list[tuple[str, InvalidRecord]]:
    """``per_kind`` deterministic records of every kind, built from ``sample_transaction()``."""
    rng = np.random.default_rng(seed)
    base = sample_transaction()
    return [(kind.name, kind(base, rng)) for kind in INVALID_KINDS for _ in range(per_kind)]
