"""Behaviour: what legitimate cardholders do, and what the three fraud patterns look like.

Each function turns "who and when" (population indices, start instants) into an EventBatch, vectorised.
Timing *plans* (which days, how many) live with the callers (history: a calendar; live: the wall clock),
so both modes share exactly the same shapes. Each fraud pattern's docstring says which served features
make it learnable and which legit behaviour blurs it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from stream_app.generator.config import DAY_US, HOUR_US, MINUTE_US, SECOND_US, FraudConfig
from stream_app.generator.events import APP, POS, WEB, EventBatch, Pattern, cents, full
from stream_app.generator.population import (
    CATEGORIES,
    GROUP_HIGH_TICKET,
    GROUP_ONLINE,
    GROUP_TESTABLE,
    FloatArray,
    IntArray,
    Population,
)

_AMOUNT_FACTOR = np.array([c.amount_factor for c in CATEGORIES])
_PRICE_POINTS = np.array([0.99, 1.99, 2.99, 4.99, 9.99, 14.99])


@dataclass(frozen=True)
class Trips:
    """At most one trip abroad per user; start == end means none."""

    start_us: IntArray
    end_us: IntArray
    country: IntArray

    @staticmethod
    def none(n_users: int) -> Trips:
        zero = np.zeros(n_users, dtype=np.int64)
        return Trips(start_us=zero, end_us=zero, country=zero)


def plan_trips(
    pop: Population, rng: np.random.Generator, cfg: FraudConfig, window_start_us: int, window_end_us: int
) -> Trips:
    """Legit travel: trips overlapping the window, to countries where there are shops."""
    users = pop.users
    lo_days, hi_days = cfg.trip_days
    span_days = (window_end_us - window_start_us) / DAY_US + hi_days
    travels = rng.random(len(users)) < -np.expm1(-cfg.trip_per_user_day * span_days)
    start = window_start_us - int(hi_days * DAY_US) + (rng.random(len(users)) * span_days * DAY_US).astype(np.int64)
    length = (rng.uniform(lo_days, hi_days, size=len(users)) * DAY_US).astype(np.int64)
    country = pop.sampler.foreign_country(rng, users.home)
    start = np.where(travels, start, 0).astype(np.int64)
    return Trips(start_us=start, end_us=np.where(travels, start + length, 0).astype(np.int64), country=country)


def time_of_day_us(pop: Population, rng: np.random.Generator, user: IntArray) -> IntArray:
    """Offset into the UTC day following each user's local rhythm (15 % of the time: any hour)."""
    users = pop.users
    local = rng.normal(users.active_hour[user], users.active_spread[user])
    local = np.where(rng.random(len(user)) < 0.15, rng.uniform(0.0, 24.0, size=len(user)), local)
    return _utc_offset_in_day(pop, user, local)


def rhythm_density(pop: Population, hour_utc: float) -> FloatArray:
    """How likely each user is to be shopping at this UTC hour: the same mix ``time_of_day_us`` draws
    from (85 % the user's local rhythm, 15 % any hour), as a density over the day."""
    users = pop.users
    local = (hour_utc + users.utc_offset_h) % 24.0
    distance = np.abs((local - users.active_hour + 12.0) % 24.0 - 12.0)
    bell = np.exp(-0.5 * (distance / users.active_spread) ** 2) / (users.active_spread * np.sqrt(2 * np.pi))
    density: FloatArray = 0.85 * bell + 0.15 / 24.0
    return density


def unusual_time_of_day_us(pop: Population, rng: np.random.Generator, user: IntArray) -> IntArray:
    """Offset into the UTC day about half a day away from each user's usual hours."""
    local = pop.users.active_hour[user] + 12.0 + rng.normal(0.0, 2.5, size=len(user))
    return _utc_offset_in_day(pop, user, local)


def is_unusual_hour(pop: Population, hour_utc: float) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
    """Users for whom ``hour_utc`` is at least 2.5 spreads from their usual local hour."""
    users = pop.users
    local = (hour_utc + users.utc_offset_h) % 24.0
    distance = np.abs((local - users.active_hour + 12.0) % 24.0 - 12.0)
    unusual: np.ndarray[tuple[int], np.dtype[np.bool_]] = distance >= 2.5 * users.active_spread
    return unusual


def _utc_offset_in_day(pop: Population, user: IntArray, local_hour: FloatArray) -> IntArray:
    utc_hour = (local_hour - pop.users.utc_offset_h[user]) % 24.0
    offset: IntArray = np.minimum((utc_hour * HOUR_US).astype(np.int64), DAY_US - 1)
    return offset


def channel_of(pop: Population, rng: np.random.Generator, merchant: IntArray) -> IntArray:
    """Draw each transaction's channel from its merchant's mix."""
    cdf = pop.merchants.channel_cdf[merchant]
    u = rng.random(len(merchant))[:, None]
    channel: IntArray = np.minimum((u >= cdf).sum(axis=1), 2).astype(np.int64)
    return channel


def _everyday_amount(pop: Population, rng: np.random.Generator, user: IntArray, merchant: IntArray) -> FloatArray:
    users = pop.users
    median = users.typical_amount[user] * _AMOUNT_FACTOR[pop.merchants.category[merchant]]
    amount: FloatArray = median * rng.lognormal(0.0, users.amount_sigma[user])
    return amount


def legit(
    pop: Population, rng: np.random.Generator, cfg: FraudConfig, user: IntArray, time_us: IntArray, *, trips: Trips
) -> EventBatch:
    """Everyday purchases: mostly at the user's favourite shops, sometimes elsewhere at home, a few at
    web shops abroad; on a trip, at shops in the destination; now and then a big-ticket purchase. Trips,
    foreign web shops and big purchases blur the account-takeover signal."""
    users, sampler = pop.users, pop.sampler
    n = len(user)
    home = users.home[user]
    pick = (rng.random(n) * users.n_favourites[user]).astype(np.int64)
    merchant = users.favourites[user, pick]
    route = rng.random(n)
    abroad_online = route >= 1.0 - cfg.foreign_online_share
    explore = (route >= 0.75) & ~abroad_online
    merchant[explore] = sampler.in_country(rng, home[explore])
    if abroad_online.any():
        where = sampler.foreign_country(rng, home[abroad_online], GROUP_ONLINE)
        merchant[abroad_online] = sampler.in_country(rng, where, GROUP_ONLINE)
    on_trip = (trips.start_us[user] <= time_us) & (time_us < trips.end_us[user]) & (rng.random(n) < 0.85)
    merchant[on_trip] = sampler.in_country(rng, trips.country[user[on_trip]])
    amount = _everyday_amount(pop, rng, user, merchant) * np.where(on_trip, 1.2, 1.0)
    big = rng.random(n) < cfg.big_purchase_share  # in whatever country the purchase was happening
    merchant[big] = sampler.in_country(rng, pop.merchants.country[merchant[big]], GROUP_HIGH_TICKET)
    amount[big] = users.typical_amount[user[big]] * rng.uniform(4.0, 20.0, size=int(big.sum()))
    return EventBatch(
        user=user.astype(np.int64),
        merchant=merchant,
        time_us=time_us.astype(np.int64),
        amount=cents(amount),
        channel=channel_of(pop, rng, merchant),
        pattern=full(n, Pattern.NONE),
    )


def spree(pop: Population, rng: np.random.Generator, user: IntArray, start_us: IntArray) -> EventBatch:
    """Legit bursts: 70 % an afternoon at the mall (3-8 shops, minutes apart, normal tickets), 30 % an
    app-store binge (3-8 small price points within minutes at one to three merchants). They blur the
    card-testing signal."""
    users, sampler = pop.users, pop.sampler
    k = len(user)
    size = rng.integers(3, 9, size=k)
    binge = rng.random(k) < 0.3
    mean_gap = np.where(binge, 90.0, 480.0) * SECOND_US
    idx, offset = _burst_offsets(rng, size, mean_gap)
    u = user[idx]
    home = users.home[u]
    merchant = sampler.in_country(rng, home)
    stores = np.stack([sampler.in_country(rng, users.home[user], GROUP_TESTABLE) for _ in range(3)], axis=1)
    in_binge = binge[idx]
    store_pick = stores[idx, rng.choice(3, size=len(idx), p=[0.6, 0.25, 0.15])]
    merchant = np.where(in_binge, store_pick, merchant).astype(np.int64)
    amount = np.where(in_binge, rng.choice(_PRICE_POINTS, size=len(idx)), _everyday_amount(pop, rng, u, merchant))
    channel = np.where(in_binge, np.where(rng.random(len(idx)) < 0.7, APP, WEB), channel_of(pop, rng, merchant))
    return EventBatch(
        user=u,
        merchant=merchant,
        time_us=(start_us[idx] + offset).astype(np.int64),
        amount=cents(amount),
        channel=channel.astype(np.int64),
        pattern=full(len(idx), Pattern.NONE),
    )


def card_testing(
    pop: Population, rng: np.random.Generator, cfg: FraudConfig, victim: IntArray, start_us: IntArray
) -> EventBatch:
    """A bot probes a stolen card: 5-30 tiny amounts seconds apart, each at a different cheap online
    merchant (half at home, half anywhere, uniformly: bots do not care which shop is popular), mostly
    over the web. Learnable from the user counts over 10 min / 1 h, distinct merchants in 1 h, seconds
    since the previous transaction and a small amount / 24 h mean."""
    sampler = pop.sampler
    lo, hi = cfg.card_testing_burst
    size = rng.integers(lo, hi + 1, size=len(victim))
    mean_gap = rng.uniform(*cfg.card_testing_gap_s, size=len(victim)) * SECOND_US
    idx, offset = _burst_offsets(rng, size, mean_gap)
    n = len(idx)
    merchant = np.empty(n, dtype=np.int64)
    worldwide = sampler.members(GROUP_TESTABLE)
    first = 0
    for k, home in zip(size.tolist(), pop.users.home[victim].tolist(), strict=True):
        # a list of weak merchants, each tried once: about half at home, the rest anywhere
        local = sampler.members(GROUP_TESTABLE, home)
        n_local = min(int(rng.binomial(k, 0.5)), len(local))
        picks = np.concatenate(
            [
                rng.choice(local, size=n_local, replace=False),
                rng.choice(worldwide, size=k - n_local, replace=len(worldwide) < k - n_local),
            ]
        )
        merchant[first : first + k] = rng.permutation(picks)
        first += k
    a_lo, a_hi = cfg.card_testing_amount
    amount = rng.uniform(a_lo, a_hi, size=n)
    whole = rng.random(n) < 0.25  # testers like round numbers
    amount = np.where(whole, np.clip(np.round(amount), np.ceil(a_lo), np.floor(a_hi)), amount)
    return EventBatch(
        user=victim[idx].astype(np.int64),
        merchant=merchant,
        time_us=(start_us[idx] + offset).astype(np.int64),
        amount=cents(amount),
        channel=np.where(rng.random(n) < 0.85, WEB, APP).astype(np.int64),
        pattern=full(n, Pattern.CARD_TESTING),
    )


def account_takeover(
    pop: Population, rng: np.random.Generator, cfg: FraudConfig, victim: IntArray, start_us: IntArray
) -> EventBatch:
    """A fraudster in another country cashes out: 1-4 purchases of 5-30x the victim's typical spend at
    high-ticket merchants there, minutes apart, online (callers place it at the victim's off hours).
    Learnable from amount / 24 h mean, the 24 h max, country != home and the hour of day."""
    users, sampler = pop.users, pop.sampler
    size = rng.choice(np.arange(1, 5), size=len(victim), p=[0.35, 0.3, 0.2, 0.15])
    country = sampler.foreign_country(rng, users.home[victim], GROUP_HIGH_TICKET)
    gap_lo, gap_hi = cfg.takeover_gap_min
    idx, offset = _burst_offsets(rng, size, None, uniform_gap_us=(gap_lo * MINUTE_US, gap_hi * MINUTE_US))
    n = len(idx)
    merchant = sampler.in_country(rng, country[idx], GROUP_HIGH_TICKET)
    amount = users.typical_amount[victim[idx]] * rng.uniform(*cfg.takeover_multiple, size=n)
    return EventBatch(
        user=victim[idx].astype(np.int64),
        merchant=merchant,
        time_us=(start_us[idx] + offset).astype(np.int64),
        amount=cents(amount),
        channel=np.where(rng.random(n) < 0.65, WEB, APP).astype(np.int64),
        pattern=full(n, Pattern.ACCOUNT_TAKEOVER),
    )


def choose_compromised(pop: Population, rng: np.random.Generator, cfg: FraudConfig, days: float) -> IntArray:
    """Which merchants get breached during ``days``: busy and risky ones more likely (they are the
    attractive targets, and a breach nobody shops at would leave no trace). At least one."""
    merchants = pop.merchants
    k = min(len(merchants), max(1, round(cfg.compromised_per_merchant_day * len(merchants) * days)))
    weight = merchants.popularity * (1.0 + 20.0 * merchants.base_risk)
    chosen = rng.choice(len(merchants), size=k, replace=False, p=weight / weight.sum())
    return np.sort(chosen).astype(np.int64)


def victims_by_activity(pop: Population, rng: np.random.Generator, n: int) -> IntArray:
    """Cards in use are the ones that get skimmed: draw users in proportion to their activity."""
    cdf = np.cumsum(pop.users.events_per_day)
    return np.searchsorted(cdf / cdf[-1], rng.random(n), side="right").clip(0, len(cdf) - 1).astype(np.int64)


def compromised_merchant_fraud(
    pop: Population, rng: np.random.Generator, merchant: IntArray, time_us: IntArray
) -> EventBatch:
    """Fraud run through a breached merchant: cards from anywhere, tickets about 2.5x usual. Learnable
    from the merchant's 1 h count, its 7-day label fraud rate (lagging: labels arrive hours to days
    later) and country != home; blurred by the merchant's legit traffic and by that lag."""
    n = len(merchant)
    victim = victims_by_activity(pop, rng, n)
    amount = _everyday_amount(pop, rng, victim, merchant) * rng.lognormal(np.log(2.5), 0.4, size=n)
    return EventBatch(
        user=victim,
        merchant=merchant.astype(np.int64),
        time_us=time_us.astype(np.int64),
        amount=cents(amount),
        channel=channel_of(pop, rng, merchant),
        pattern=full(n, Pattern.COMPROMISED_MERCHANT),
    )


def gift_card_cashout(pop: Population, rng: np.random.Generator, victim: IntArray, start_us: IntArray) -> EventBatch:
    """A pattern history never has (live ``--drift pattern`` only): someone holding the card's details buys
    gift cards to resell: 2-5 round sums (multiples of 25, 2-6x the victim's typical ticket), 20 min to
    3 h apart, online at digital-goods and services shops in the victim's own country, starting at the
    victim's usual hours (callers start it at one of their purchases). Home country, normal hours, no
    probing burst and moderate tickets: nothing a model trained on history learnt flags it."""
    users, sampler = pop.users, pop.sampler
    size = rng.integers(2, 6, size=len(victim))
    idx, offset = _burst_offsets(rng, size, None, uniform_gap_us=(20.0 * MINUTE_US, 180.0 * MINUTE_US))
    n = len(idx)
    amount = np.maximum(25.0, np.round(users.typical_amount[victim[idx]] * rng.uniform(2.0, 6.0, size=n) / 25.0) * 25.0)
    return EventBatch(
        user=victim[idx].astype(np.int64),
        merchant=sampler.in_country(rng, users.home[victim[idx]], GROUP_TESTABLE),
        time_us=(start_us[idx] + offset).astype(np.int64),
        amount=cents(amount),
        channel=np.where(rng.random(n) < 0.6, APP, WEB).astype(np.int64),
        pattern=full(n, Pattern.GIFT_CARD_CASHOUT),
    )


def friendly_fraud(rng: np.random.Generator, cfg: FraudConfig, batch: EventBatch) -> EventBatch:
    """Mark some legit purchases as disputed by their own cardholder. Nothing about the transaction
    changes (that is the point: it is label noise a model cannot learn, so no model can be perfect),
    except that bigger online tickets are disputed more often ("item not received")."""
    legit = batch.pattern == Pattern.NONE
    weight = np.sqrt(batch.amount) * np.where(batch.channel == POS, 1.0, 3.0) * legit
    total = weight.sum()
    if total <= 0:
        return batch
    p = np.minimum(1.0, weight * (cfg.friendly_fraud_share * np.count_nonzero(legit) / total))
    pattern = np.where(rng.random(len(batch)) < p, Pattern.FRIENDLY_FRAUD, batch.pattern).astype(np.int64)
    return replace(batch, pattern=pattern)


def _burst_offsets(
    rng: np.random.Generator,
    size: IntArray,
    mean_gap_us: FloatArray | None,
    uniform_gap_us: tuple[float, float] | None = None,
) -> tuple[IntArray, IntArray]:
    """For bursts of the given sizes: (burst index per event, offset of each event from its burst's
    start). Gaps are exponential with the burst's mean, or uniform in a range; the first gap is 0."""
    size = size.astype(np.int64)
    idx = np.repeat(np.arange(len(size), dtype=np.int64), size)
    if mean_gap_us is not None:
        gaps = rng.exponential(1.0, size=len(idx)) * mean_gap_us[idx]
    else:
        lo, hi = uniform_gap_us or (0.0, 0.0)
        gaps = rng.uniform(lo, hi, size=len(idx))
    first = (np.cumsum(size) - size).astype(np.int64)  # position of each burst's first event
    gaps[first[size > 0]] = 0.0
    running = np.cumsum(gaps)
    offset = running - running[first[idx]]
    return idx, np.round(offset).astype(np.int64)
