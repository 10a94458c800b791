"""The knobs of the generator and the seeded random streams they drive.

Every stage draws from its own stream, derived from (seed, stage name), so adding draws to one stage
does not reshuffle the others and a run is a pure function of its config.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

GENERATOR_VERSION = "1"  # bump when the same config would produce different data

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US


@dataclass(frozen=True)
class FraudConfig:
    """How often each behaviour happens. Rates are per user-day (or merchant-day) so they scale with
    the population; the defaults give roughly 1.1 % fraud overall (card testing ~0.45 %, takeover
    ~0.27 %, compromised merchant ~0.3 %, friendly fraud ~0.07 %)."""

    card_testing_per_user_day: float = 0.00025
    card_testing_burst: tuple[int, int] = (5, 30)  # transactions per burst, inclusive
    card_testing_amount: tuple[float, float] = (0.5, 5.0)
    card_testing_gap_s: tuple[float, float] = (3.0, 40.0)  # mean gap between probes, per burst
    takeover_per_user_day: float = 0.0013
    takeover_multiple: tuple[float, float] = (5.0, 30.0)  # x the victim's typical spend
    takeover_gap_min: tuple[float, float] = (2.0, 45.0)
    compromised_per_merchant_day: float = 0.0005  # breaches starting per merchant-day; at least one
    compromised_days: tuple[float, float] = (3.0, 10.0)  # breach length
    compromised_fraud_fraction: tuple[float, float] = (0.2, 0.45)  # of the merchant's traffic then
    # Chargebacks on ordinary purchases (first-party / "friendly" fraud), as a share of legit purchases;
    # weighted to larger online tickets. Caps the achievable ROC-AUC below 1 (about 6 % of all fraud).
    friendly_fraud_share: float = 0.0007
    # Legitimate look-alikes, so no single feature separates the classes.
    trip_per_user_day: float = 0.005
    trip_days: tuple[float, float] = (2.0, 12.0)
    big_purchase_share: float = 0.006  # of legit transactions, 4-20x the typical ticket (home or abroad)
    foreign_online_share: float = 0.03  # of legit transactions, at a web shop abroad
    spree_per_user_day: float = 0.005  # a legit burst: a mall afternoon or an app-store binge


@dataclass(frozen=True)
class DriftConfig:
    """A live stream that departs from history on purpose, to exercise drift and quality monitoring.
    ``amount_factor`` multiplies every ticket (prices, a currency, a new clientele: the amount features
    shift); ``cashout_per_user_day`` starts gift-card cash-outs, a fraud pattern history never has, built
    to look like ordinary purchases to a model trained on history (online recall should fall, while
    the feature distributions barely move)."""

    amount_factor: float = 1.0
    cashout_per_user_day: float = 0.0

    def __post_init__(self) -> None:
        if not self.amount_factor > 0 or self.cashout_per_user_day < 0:
            raise ValueError("amount_factor must be positive and cashout_per_user_day non-negative")


# ``--drift`` choices. A factor of 2 moves the amount distribution by a PSI of about 0.37 ("major"); 0.003
# cash-outs per user-day (3.5 purchases each) add about 1.1 % of transactions, doubling the fraud rate.
DRIFTS: dict[str, DriftConfig] = {
    "none": DriftConfig(),
    "amount": DriftConfig(amount_factor=2.0),
    "pattern": DriftConfig(cashout_per_user_day=0.003),
}


@dataclass(frozen=True)
class HistoryConfig:
    """One historical dataset: ``days`` from ``start`` (UTC midnight recommended)."""

    days: int = 30
    users: int = 20_000
    merchants: int = 2_000
    seed: int = 7
    start: datetime = datetime(2026, 10, 1, tzinfo=UTC)
    fraud: FraudConfig = field(default_factory=FraudConfig)

    def __post_init__(self) -> None:
        if self.days < 1 or self.users < 1 or self.merchants < 1:
            raise ValueError("days, users and merchants must be positive")
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")

    def as_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"] = self.start.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return data


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible generator for one stage of one run."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch, exactly (no float rounding)."""
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * SECOND_US + delta.microseconds
