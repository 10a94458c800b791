from __future__ import annotations

import math

from stream_app.core.request_features import REQUEST_FEATURES, compute


def test_ratio_foreign_flag_hour_and_channel() -> None:
    row = compute(amount=300.0, country="IT", channel="web", event_hour=3, user_mean_24h=60.0, home_country="FR")
    assert row == {"txn_amount": 300.0, "amount_to_user_mean_24h": 5.0, "is_foreign_country": 1, "hour_of_day": 3,
                   "channel_code": 1}
    assert set(row) == set(REQUEST_FEATURES)


def test_home_country_and_unknown_home_are_not_foreign() -> None:
    assert compute(amount=1.0, country="FR", channel="pos", event_hour=0, user_mean_24h=1.0,
                   home_country="FR")["is_foreign_country"] == 0
    assert compute(amount=1.0, country="FR", channel="pos", event_hour=0, user_mean_24h=1.0,
                   home_country=None)["is_foreign_country"] == 0


def test_missing_mean_gives_a_missing_ratio_not_a_crash() -> None:
    assert math.isnan(compute(amount=5.0, country="FR", channel="app", event_hour=1, user_mean_24h=None,
                              home_country="FR")["amount_to_user_mean_24h"])
    assert math.isnan(compute(amount=5.0, country="FR", channel="app", event_hour=1, user_mean_24h=math.nan,
                              home_country="FR")["amount_to_user_mean_24h"])
