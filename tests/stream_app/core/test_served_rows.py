from __future__ import annotations

import math
from datetime import UTC, datetime

from stream_app.core.served_rows import view_row
from stream_app.core.window_spec import MERCHANT_WINDOWS, USER_WINDOWS

T0 = datetime(2026, 11, 1, 12, tzinfo=UTC)


def test_a_views_row_takes_exactly_its_features_from_the_vector_and_missing_values_are_nan() -> None:
    vector: dict[str, float | None] = {s.name: float(i) for i, s in enumerate(USER_WINDOWS + MERCHANT_WINDOWS)}
    vector["user_seconds_since_prev"] = None
    vector["txn_amount"] = 12.5  # not a window feature: not in any view's row
    row = view_row(42, T0, vector, USER_WINDOWS)
    assert row is not None
    entity, when, values = row
    assert (entity, when) == (42, T0)
    assert list(values) == [s.name for s in USER_WINDOWS]
    assert math.isnan(values["user_seconds_since_prev"])
    assert values["user_txn_count_10m"] == vector["user_txn_count_10m"]
    merchant = view_row(7, T0, vector, MERCHANT_WINDOWS)
    assert merchant is not None and list(merchant[2]) == [s.name for s in MERCHANT_WINDOWS]


def test_a_vector_lacking_one_of_the_views_features_gives_no_row() -> None:
    vector: dict[str, float | None] = {s.name: 1.0 for s in USER_WINDOWS[1:]}
    assert view_row(42, T0, vector, USER_WINDOWS) is None
