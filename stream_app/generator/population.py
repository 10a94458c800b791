"""Who transacts where: cardholders (home country, typical spend, daily rhythm) and merchants (category,
country, channel mix, base risk, popularity).

The population depends only on (seed, users, merchants), never on the time window, so ``history`` and
``live`` runs with the same arguments talk about the same people and shops (their batch profiles match).
Amounts are in the card's billing currency; home countries are restricted to currencies of similar unit
value (USD, EUR, GBP, ...) because the feature pipeline compares raw amounts across users without FX.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from stream_app.generator.config import DAY_US, to_us

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

USER_ID_BASE = 1_000_000
MERCHANT_ID_BASE = 10_000_000


@dataclass(frozen=True, slots=True)
class HomeCountry:
    """A country cardholders live in: its currency, share of cardholders and UTC offset."""

    code: str
    currency: str
    share: float  # share of cardholders
    utc_offset_h: int  # used to place the user's local daily rhythm on the UTC clock


HOME_COUNTRIES: tuple[HomeCountry, ...] = (
    HomeCountry("US", "USD", 0.30, -5),
    HomeCountry("CA", "CAD", 0.05, -5),
    HomeCountry("GB", "GBP", 0.10, 0),
    HomeCountry("IE", "EUR", 0.02, 0),
    HomeCountry("DE", "EUR", 0.10, 1),
    HomeCountry("FR", "EUR", 0.08, 1),
    HomeCountry("ES", "EUR", 0.06, 1),
    HomeCountry("IT", "EUR", 0.06, 1),
    HomeCountry("NL", "EUR", 0.04, 1),
    HomeCountry("BE", "EUR", 0.02, 1),
    HomeCountry("AT", "EUR", 0.02, 1),
    HomeCountry("PT", "EUR", 0.02, 0),
    HomeCountry("FI", "EUR", 0.01, 2),
    HomeCountry("CH", "CHF", 0.02, 1),
    HomeCountry("AU", "AUD", 0.05, 10),
    HomeCountry("NZ", "NZD", 0.01, 12),
    HomeCountry("SG", "SGD", 0.04, 8),
)

# Countries with merchants but no cardholders: travel destinations, foreign web shops, takeover origins.
ABROAD_COUNTRIES: tuple[str, ...] = (
    "MX", "TH", "JP", "TR", "AE", "GR", "HR", "MA", "ID", "IN",
    "BR", "ZA", "NG", "CN", "RO", "UA", "PL", "CZ", "HU", "VN",
)  # fmt: skip

COUNTRY_CODES: tuple[str, ...] = tuple(c.code for c in HOME_COUNTRIES) + ABROAD_COUNTRIES
N_HOME = len(HOME_COUNTRIES)


@dataclass(frozen=True, slots=True)
class Category:
    """A merchant category: its share of merchants, typical ticket, channel mix and base risk."""

    name: str
    share: float  # share of merchants
    amount_factor: float  # typical ticket relative to the user's everyday spend
    channel_mix: tuple[float, float, float]  # P(pos), P(web), P(app)
    risk: float  # mean base risk
    high_ticket: bool  # where big purchases (legit or takeover) happen
    testable: bool  # where card testers probe stolen cards (cheap online goods, donations)


CATEGORIES: tuple[Category, ...] = (
    Category("grocery", 0.20, 1.0, (0.93, 0.02, 0.05), 0.01, False, False),
    Category("restaurant", 0.20, 0.8, (0.88, 0.02, 0.10), 0.01, False, False),
    Category("fuel", 0.08, 1.3, (0.97, 0.00, 0.03), 0.02, False, False),
    Category("retail", 0.18, 1.6, (0.65, 0.25, 0.10), 0.02, False, False),
    Category("electronics", 0.06, 4.0, (0.35, 0.50, 0.15), 0.05, True, False),
    Category("travel", 0.05, 5.0, (0.10, 0.60, 0.30), 0.04, True, False),
    Category("jewelry", 0.03, 5.0, (0.70, 0.30, 0.00), 0.06, True, False),
    Category("digital_goods", 0.10, 0.25, (0.00, 0.55, 0.45), 0.05, False, True),
    Category("services", 0.10, 1.0, (0.30, 0.50, 0.20), 0.03, False, True),
)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)

GROUP_ANY = "any"
GROUP_HIGH_TICKET = "high_ticket"
GROUP_TESTABLE = "testable"
GROUP_ONLINE = "online"
GROUPS: tuple[str, ...] = (GROUP_ANY, GROUP_HIGH_TICKET, GROUP_TESTABLE, GROUP_ONLINE)

MAX_FAVOURITES = 16


@dataclass(frozen=True)
class Users:
    """Cardholders as parallel arrays; position i is user ``id[i]``."""

    id: IntArray
    home: IntArray  # index into COUNTRY_CODES (always < N_HOME)
    typical_amount: FloatArray  # median everyday ticket (lognormal across users)
    amount_sigma: FloatArray  # spread of the user's own amounts (log scale)
    events_per_day: FloatArray
    active_hour: FloatArray  # centre of activity, local hour
    active_spread: FloatArray  # hours
    account_age_days: FloatArray  # at the reference start
    favourites: IntArray  # (n, MAX_FAVOURITES) merchant indices, the first n_favourites used
    n_favourites: IntArray

    def __len__(self) -> int:
        return len(self.id)

    @property
    def utc_offset_h(self) -> IntArray:
        offsets = np.array([c.utc_offset_h for c in HOME_COUNTRIES], dtype=np.int64)
        return offsets[self.home]


@dataclass(frozen=True)
class Merchants:
    """Merchants as parallel arrays; position j is merchant ``id[j]``."""

    id: IntArray
    category: IntArray  # index into CATEGORIES
    country: IntArray  # index into COUNTRY_CODES
    base_risk: FloatArray
    popularity: FloatArray  # relative traffic weight
    channel_cdf: FloatArray  # (n, 3) cumulative P(pos), P(pos|web), 1
    age_days: FloatArray  # since first seen, at the reference start

    def __len__(self) -> int:
        return len(self.id)


class MerchantSampler:
    """Draws merchants by popularity within a country and a category group, vectorised.

    A country with no merchant of the group falls back to the group worldwide, then to any merchant, so
    small test populations never fail to find one.
    """

    def __init__(self, merchants: Merchants) -> None:
        self._merchants = merchants
        high = np.array([c.high_ticket for c in CATEGORIES])[merchants.category]
        testable = np.array([c.testable for c in CATEGORIES])[merchants.category]
        online = merchants.channel_cdf[:, 0] <= 0.5  # at most half of the traffic at a terminal
        masks = {
            GROUP_ANY: np.ones(len(merchants), dtype=bool),
            GROUP_HIGH_TICKET: high,
            GROUP_TESTABLE: testable,
            GROUP_ONLINE: online,
        }
        self._pools: dict[tuple[str, int], tuple[IntArray, FloatArray]] = {}
        self._global: dict[str, tuple[IntArray, FloatArray]] = {}
        self._country_weight: dict[str, FloatArray] = {}
        everything = _pool(np.arange(len(merchants), dtype=np.int64), merchants.popularity)
        for group, mask in masks.items():
            members = np.flatnonzero(mask).astype(np.int64)
            self._global[group] = _pool(members, merchants.popularity[members]) if len(members) else everything
            weight = np.zeros(len(COUNTRY_CODES))
            np.add.at(weight, merchants.country[members], merchants.popularity[members])
            self._country_weight[group] = weight
            for country in range(len(COUNTRY_CODES)):
                here = members[merchants.country[members] == country]
                if len(here):
                    self._pools[(group, country)] = _pool(here, merchants.popularity[here])

    def members(self, group: str, country: int | None = None) -> IntArray:
        """Every merchant of ``group`` (in ``country``, falling back to worldwide), for uniform draws."""
        if country is None:
            return self._global[group][0]
        return self._pools.get((group, country), self._global[group])[0]

    def in_country(self, rng: np.random.Generator, country: IntArray, group: str = GROUP_ANY) -> IntArray:
        """One merchant per entry of ``country``, by popularity among that country's ``group``."""
        out = np.empty(len(country), dtype=np.int64)
        for c in np.unique(country):
            rows = np.flatnonzero(country == c)
            members, cdf = self._pools.get((group, int(c)), self._global[group])
            out[rows] = members[np.searchsorted(cdf, rng.random(len(rows)), side="right")]
        return out

    def anywhere(self, rng: np.random.Generator, n: int, group: str = GROUP_ANY) -> IntArray:
        members, cdf = self._global[group]
        return members[np.searchsorted(cdf, rng.random(n), side="right")]

    def foreign_country(self, rng: np.random.Generator, home: IntArray, group: str = GROUP_ANY) -> IntArray:
        """A country other than each entry of ``home`` that has ``group`` merchants, weighted by their
        traffic (so destinations are where the shops are)."""
        weight = self._country_weight[group]
        if np.count_nonzero(weight) < 2:
            weight = self._country_weight[GROUP_ANY]
        cdf = np.cumsum(weight) / weight.sum()
        out = np.searchsorted(cdf, rng.random(len(home)), side="right").astype(np.int64)
        for _ in range(64):  # rejection: redraw where the destination is home
            clash = np.flatnonzero(out == home)
            if not len(clash):
                break
            out[clash] = np.searchsorted(cdf, rng.random(len(clash)), side="right")
        out[out == home] = (home[out == home] + 1) % len(COUNTRY_CODES)  # only if one country has shops
        return out


def _pool(members: IntArray, weights: FloatArray) -> tuple[IntArray, FloatArray]:
    cdf = np.cumsum(weights)
    cdf = cdf / cdf[-1]
    cdf[-1] = 1.0 + 1e-12  # searchsorted(side="right") of a draw in [0, 1) stays in range
    return members, cdf


@dataclass(frozen=True)
class Population:
    """The cardholders, the merchants and the sampler that picks merchants for them."""

    users: Users
    merchants: Merchants
    sampler: MerchantSampler


def build_population(rng: np.random.Generator, n_users: int, n_merchants: int) -> Population:
    """Merchants first (users' favourites are drawn from them), then users. Order of draws is fixed."""
    if n_users < 1 or n_merchants < 1:
        raise ValueError("need at least one user and one merchant")
    merchants = _build_merchants(rng, n_merchants)
    sampler = MerchantSampler(merchants)
    users = _build_users(rng, n_users, sampler)
    return Population(users=users, merchants=merchants, sampler=sampler)


def _build_merchants(rng: np.random.Generator, n: int) -> Merchants:
    # 80 % of merchants where the cardholders live (in proportion), 20 % abroad.
    home_share = np.array([c.share for c in HOME_COUNTRIES])
    weights = np.concatenate([0.8 * home_share / home_share.sum(), np.full(len(ABROAD_COUNTRIES), 0.2)])
    weights[N_HOME:] /= len(ABROAD_COUNTRIES)
    country = rng.choice(len(COUNTRY_CODES), size=n, p=weights / weights.sum()).astype(np.int64)
    cat_share = np.array([c.share for c in CATEGORIES])
    category = rng.choice(len(CATEGORIES), size=n, p=cat_share / cat_share.sum()).astype(np.int64)
    mean_risk = np.array([c.risk for c in CATEGORIES])[category]
    base_risk = rng.beta(2.0, 2.0 / mean_risk - 2.0)  # mean = category risk
    popularity = rng.lognormal(0.0, 1.0, size=n)
    mix = np.array([c.channel_mix for c in CATEGORIES])[category]
    jitter = rng.dirichlet(np.ones(3), size=n)
    mix = 0.85 * mix + 0.15 * jitter * (mix > 0)  # shops differ a little, but a fuel station stays offline
    mix = mix / mix.sum(axis=1, keepdims=True)
    channel_cdf = np.cumsum(mix, axis=1)
    channel_cdf[:, 2] = 1.0
    age_days = 7.0 + rng.exponential(900.0, size=n)
    return Merchants(
        id=MERCHANT_ID_BASE + np.arange(n, dtype=np.int64),
        category=category,
        country=country,
        base_risk=base_risk,
        popularity=popularity,
        channel_cdf=channel_cdf,
        age_days=age_days,
    )


def _build_users(rng: np.random.Generator, n: int, sampler: MerchantSampler) -> Users:
    share = np.array([c.share for c in HOME_COUNTRIES])
    home = rng.choice(N_HOME, size=n, p=share / share.sum()).astype(np.int64)
    typical = rng.lognormal(np.log(30.0), 0.55, size=n)
    sigma = rng.uniform(0.35, 0.75, size=n)
    events_per_day = rng.lognormal(np.log(0.8), 0.6, size=n)
    night_owl = rng.random(n) < 0.08
    active_hour = np.where(night_owl, rng.uniform(22.0, 27.0, size=n), rng.normal(14.0, 2.5, size=n)) % 24.0
    active_spread = rng.uniform(2.0, 4.5, size=n)
    age = np.where(rng.random(n) < 0.1, rng.uniform(1.0, 60.0, size=n), rng.uniform(60.0, 2500.0, size=n))
    n_fav = rng.integers(3, MAX_FAVOURITES + 1, size=n).astype(np.int64)
    favourites = sampler.in_country(rng, np.repeat(home, MAX_FAVOURITES)).reshape(n, MAX_FAVOURITES)
    return Users(
        id=USER_ID_BASE + np.arange(n, dtype=np.int64),
        home=home,
        typical_amount=typical,
        amount_sigma=sigma,
        events_per_day=events_per_day,
        active_hour=active_hour,
        active_spread=active_spread,
        account_age_days=age,
        favourites=favourites,
        n_favourites=n_fav,
    )


def signup_us(users: Users, reference: datetime) -> IntArray:
    """Signup instants, placing the population's account ages before ``reference``."""
    return (to_us(reference) - (users.account_age_days * DAY_US)).astype(np.int64)


def first_seen_us(merchants: Merchants, reference: datetime) -> IntArray:
    return (to_us(reference) - (merchants.age_days * DAY_US)).astype(np.int64)
