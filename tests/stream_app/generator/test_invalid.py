from __future__ import annotations

import numpy as np
import pytest

from stream_app.contract import ErrorCode, decode_transaction, encode, user_key
from stream_app.errors import InvalidRecordError
from stream_app.generator.invalid import (
    BAD_COUNTRIES,
    BAD_CURRENCIES,
    INVALID_KINDS,
    InvalidRecord,
    invalid_examples,
    random_invalid,
    sample_transaction,
)
from stream_app.iso_codes import COUNTRIES, CURRENCIES

EXAMPLES = invalid_examples(seed=3, per_kind=10)  # several variants of every kind


def test_the_base_record_is_valid() -> None:
    base = sample_transaction()
    assert decode_transaction(encode(base), user_key(base.user_id)) == base


@pytest.mark.parametrize(("kind", "record"), EXAMPLES, ids=[f"{k}-{i % 10}" for i, (k, _) in enumerate(EXAMPLES)])
def test_each_invalid_record_is_rejected_with_its_code(kind: str, record: InvalidRecord) -> None:
    with pytest.raises(InvalidRecordError) as caught:
        decode_transaction(record.value, record.key)
    assert caught.value.code == record.expected_code, f"{kind}: {caught.value}"


def test_catalogue_covers_every_rejection_code_and_names_are_unique() -> None:
    assert len({k.name for k in INVALID_KINDS}) == len(INVALID_KINDS)
    assert {k.expected_code for k in INVALID_KINDS} == {ErrorCode.DECODE, ErrorCode.SCHEMA, ErrorCode.KEY_MISMATCH}
    assert {
        "not_json",
        "bad_utf8",
        "missing_field",
        "wrong_type",
        "non_finite_amount",
        "huge_amount",
        "bad_currency",
        "bad_country",
        "naive_or_bad_timestamp",
        "key_mismatch",
        "empty_value",
    } <= {k.name for k in INVALID_KINDS}


def test_bad_codes_are_really_not_iso() -> None:
    assert not set(BAD_CURRENCIES) & CURRENCIES
    assert not set(BAD_COUNTRIES) & COUNTRIES


def test_generation_is_deterministic() -> None:
    assert invalid_examples(seed=5, per_kind=3) == invalid_examples(seed=5, per_kind=3)
    base = sample_transaction()
    first = [random_invalid(np.random.default_rng(9), base) for _ in range(5)]
    assert first == [random_invalid(np.random.default_rng(9), base) for _ in range(5)]
