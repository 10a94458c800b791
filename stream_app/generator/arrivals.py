"""When each cardholder transacts in a realistic live stream: the same arrival process as history's legit
calendar, simulated in event time.

History gives user i ``events_per_day[i]`` purchases a day on average, scaled per day by a gamma swing
(mean 1: busy and quiet days) and spread over the day by the user's rhythm (``patterns.rhythm_density``).
``PopulationArrivals`` draws exactly that, one 15-minute slot of event time at a time: the slot's count
is Poisson with the population's expected total, each purchase goes to a user in proportion to their
rate at that hour, its instant uniform in the slot. So each user's purchases are an inhomogeneous
Poisson process with history's rate, and per-user window features (counts in 10 min, 1 h, 24 h, time
since the previous purchase) look like the ones the model was trained on.

A producer emitting these at a fixed number of records per second runs event time faster than the wall
clock; ``start_for`` says where to start so the run's event time ends at a given instant.
"""

from __future__ import annotations

import math

import numpy as np

from stream_app.generator import patterns
from stream_app.generator.config import DAY_US, HOUR_US, MINUTE_US
from stream_app.generator.population import FloatArray, IntArray, Population

SLOT_US = 15 * MINUTE_US
SWING_SHAPE, SWING_SCALE = 2.0, 0.5  # history's day-to-day swing: gamma, mean 1, variance 0.5


def day_swing(rng: np.random.Generator, n_users: int) -> FloatArray:
    """Each user's activity multiplier for one day, as history draws it."""
    swing: FloatArray = rng.gamma(SWING_SHAPE, SWING_SCALE, size=n_users)
    return swing


def hourly_rates(pop: Population, hour_utc: float) -> FloatArray:
    """Each user's expected purchases per hour at ``hour_utc`` (an average day, no swing)."""
    rates: FloatArray = pop.users.events_per_day * patterns.rhythm_density(pop, hour_utc)
    return rates


def _slot_hour(slot_start_us: int) -> float:
    return ((slot_start_us + SLOT_US // 2) % DAY_US) / HOUR_US


def expected_per_slot(pop: Population) -> FloatArray:
    """The population's expected purchases in each of the day's 96 slots (index = slot of the UTC day)."""
    return np.array([hourly_rates(pop, _slot_hour(k * SLOT_US)).sum() * SLOT_US / HOUR_US
                     for k in range(DAY_US // SLOT_US)])


def start_for(pop: Population, end_us: int, purchases: float) -> int:
    """The event time from which ``purchases`` legit purchases are expected to reach ``end_us``, walking
    back slot by slot through the population's daily profile (whole days at once)."""
    if purchases <= 0:
        return end_us
    per_slot = expected_per_slot(pop)
    per_day = float(per_slot.sum())
    whole_days = math.floor(purchases / per_day)
    remaining = purchases - whole_days * per_day
    at = end_us - whole_days * DAY_US
    while remaining > 0:
        slot_start = (at - 1) // SLOT_US * SLOT_US  # the slot holding the instant just before `at`
        expected = float(per_slot[(slot_start % DAY_US) // SLOT_US]) * (at - slot_start) / SLOT_US
        if expected >= remaining:
            return int(at - remaining / expected * (at - slot_start))
        remaining -= expected
        at = slot_start
    return int(at)


class PopulationArrivals:
    """Legit purchase arrivals from ``start_us`` on, one slot at a time, from its own random stream so
    who buys when does not depend on how a consumer batches its requests."""

    def __init__(self, pop: Population, rng: np.random.Generator, start_us: int) -> None:
        self.pop = pop
        self._rng = rng
        self._slot_start = start_us  # the first slot may be partial: it runs to the next slot boundary
        self._day = -1
        self._swing: FloatArray = np.ones(len(pop.users))

    def next_slot(self) -> tuple[IntArray, IntArray, float]:
        """(user indices, event instants sorted ascending, UTC hour of the slot) of the next slot with at
        least one purchase; empty slots are skipped."""
        while True:
            start = self._slot_start
            end = (start // SLOT_US + 1) * SLOT_US
            self._slot_start = end
            day = start // DAY_US
            if day != self._day:
                self._day, self._swing = day, day_swing(self._rng, len(self.pop.users))
            hour = _slot_hour(start)
            weight = hourly_rates(self.pop, hour) * self._swing
            total = float(weight.sum())
            count = int(self._rng.poisson(total * (end - start) / HOUR_US))
            if count == 0:
                continue
            cdf = np.cumsum(weight) / total
            user = np.searchsorted(cdf, self._rng.random(count), side="right").clip(0, len(cdf) - 1)
            when = np.sort(start + (self._rng.random(count) * (end - start)).astype(np.int64))
            return user.astype(np.int64), when.astype(np.int64), hour
