"""Request-time features: computed from the transaction itself plus features already at hand, at the
moment of scoring. Feast declares them as an on-demand feature view that calls ``compute`` below, so the
training frame and the stream worker get them from the same function."""

from __future__ import annotations

import math
from typing import Final

# name -> kind ("float" | "int"); feature_repo maps kinds to Feast types.
REQUEST_FEATURES: Final[dict[str, str]] = {
    "txn_amount": "float",
    "amount_to_user_mean_24h": "float",
    "is_foreign_country": "int",
    "hour_of_day": "int",
    "channel_code": "int",
}

# Inputs the request itself carries (the Feast RequestSource schema).
REQUEST_INPUTS: Final[dict[str, str]] = {"amount": "float", "country": "str", "channel": "str", "event_hour": "int"}

CHANNEL_CODES: Final[dict[str, int]] = {"pos": 0, "web": 1, "app": 2}


def compute(
    *, amount: float, country: str, channel: str, event_hour: int, user_mean_24h: float | None,
    home_country: str | None,
) -> dict[str, float | int]:
    """One transaction's request features. ``user_mean_24h`` includes this transaction (window
    semantics), so it is only missing when the window state is absent; then the ratio is NaN.
    An unknown home country is not evidence of being abroad: is_foreign_country is 0."""
    mean = user_mean_24h if user_mean_24h is not None and not math.isnan(user_mean_24h) else math.nan
    return {
        "txn_amount": float(amount),
        "amount_to_user_mean_24h": amount / mean if mean > 0 else math.nan,
        "is_foreign_country": int(bool(home_country) and country != home_country),
        "hour_of_day": int(event_hour),
        "channel_code": CHANNEL_CODES.get(channel, -1),
    }
