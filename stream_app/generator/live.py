"""Stream the same world to Kafka in real time: transactions on ``transactions`` paced by a token
bucket, their labels on ``labels`` once the (scaled) label delay has passed.

The content (who buys what, which frauds, which invalid records) is drawn from the same population and
patterns as ``history`` with the same seed, so batch profiles built from history match live users.
By default event times are the wall clock (shifted to ``start`` when one is given) and the rate is set
by the caller, not by the population: a load generator, whose users buy far more often per hour than in
history. ``realistic`` runs give every user history's arrival process (``arrivals``) and let event time
run as fast as the rate requires, so per-user window features look like the ones the model was trained
on. Either way pattern timing (bursts seconds apart, takeovers minutes apart) is kept by scheduling
follow-up events. ``drift`` departs from history on purpose, to exercise monitoring.
"""

from __future__ import annotations

import heapq
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TextIO

import numpy as np
from confluent_kafka import KafkaException, Producer

from stream_app.contract import Label, Transaction, encode, user_key
from stream_app.errors import ConfigError
from stream_app.generator import patterns
from stream_app.generator.arrivals import PopulationArrivals, expected_per_slot, hourly_rates, start_for
from stream_app.generator.config import DAY_US, HOUR_US, SECOND_US, DriftConfig, FraudConfig, stream, to_us
from stream_app.generator.events import CHANNELS, PATTERN_LABELS, EventBatch, Pattern, cents
from stream_app.generator.invalid import random_invalid
from stream_app.generator.labels import label_delay_us
from stream_app.generator.population import (
    COUNTRY_CODES,
    HOME_COUNTRIES,
    IntArray,
    Population,
    build_population,
)
from stream_app.settings import Settings

PRODUCER_TUNING: dict[str, Any] = {
    "acks": "all",  # acknowledged = on every in-sync replica (KafkaSettings: what survives a broker's loss)
    "linger.ms": 10,  # batch up to 10 ms of records per partition
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "enable.idempotence": True,  # retries never duplicate or reorder within a partition
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHUNK = 1024  # legit templates drawn per vectorised step


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer used here (tests pass a fake)."""

    def produce(self, topic: str, *, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


@dataclass
class LiveCounts:
    """What a run produced. ``labels_pending`` were not yet due when the run ended (not sent)."""

    valid: int = 0
    invalid: int = 0
    labels: int = 0
    fraud: int = 0
    labels_pending: int = 0
    delivery_errors: int = 0
    undelivered: int = 0  # still queued after the final flush
    by_pattern: dict[str, int] = field(default_factory=dict)
    event_clock_end: datetime | None = None  # where the run's event time stood when its transactions stopped


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked. ``acquire`` blocks until at least one token
    is available and hands out as many as allowed (up to ``max_n``), so callers send in small batches."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate / 50)  # 20 ms worth by default
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self, max_n: int) -> int:
        self._refill()
        while self._tokens < 1.0:
            # a floor on the nap: float rounding must not leave us forever a hair short of a token
            self._sleep(max((1.0 - self._tokens) / self.rate, 0.0005))
            self._refill()
        granted = min(max_n, int(self._tokens))
        self._tokens -= granted
        return granted


@dataclass(frozen=True, slots=True)
class _Row:
    user: int
    merchant: int
    amount: float
    channel: int
    pattern: int


class LiveSource:
    """The deterministic content of a live run: hands out transactions and remembers their labels until
    due. Knows nothing about Kafka.

    Who transacts when, two ways. By default (a load generator) each record goes to a user drawn by their
    history rate at the current hour and is stamped with the caller's clock (``transactions(n,
    elapsed_s)``); at a high rate every user then buys far more often per hour of event time than in
    history. With ``realistic`` the source simulates history's per-user arrival process in event time
    (``arrivals.PopulationArrivals``) and every record carries its own instant (``next_transactions(n)``;
    ``clock_s`` is how far event time has got): emitted at a fixed rate, event time simply runs faster
    than the wall clock. ``drift`` departs from history on purpose (``config.DRIFTS``)."""

    def __init__(
        self,
        pop: Population,
        *,
        seed: int,
        start_us: int,
        fraud: FraudConfig | None = None,
        invalid_fraction: float = 0.0,
        label_delay_scale: float = 1.0,
        warm_rate: float | None = None,
        realistic: bool = False,
        drift: DriftConfig | None = None,
        horizon_s: float = DAY_US / SECOND_US,
    ) -> None:
        """``warm_rate`` (legit sales per second of event time) pre-schedules the tails of incidents that
        began in the half hour before the run, so the fraud mix is at steady state from the first second
        instead of ramping up while bursts and takeovers unfold; a realistic source always warms up, at
        the population's own rate. ``horizon_s`` is the event time the run is expected to cover (trips
        abroad are planned over it)."""
        if not 0.0 <= invalid_fraction <= 1.0:
            raise ValueError("invalid_fraction must be within [0, 1]")
        if label_delay_scale < 0:
            raise ValueError("label_delay_scale must be non-negative")
        self.pop = pop
        self.cfg = fraud or FraudConfig()
        self.drift = drift or DriftConfig()
        self.start_us = start_us
        self.invalid_fraction = invalid_fraction
        self.label_delay_scale = label_delay_scale
        self.clock_s = 0.0
        self._rng = stream(seed, "live")
        self._seed = seed
        self._id_prefix = f"l{seed}-{start_us // SECOND_US}-"
        self._seq = 0  # orders equal due times in the heaps
        self._emitted = 0  # numbers event ids in emission order
        self._last_us = start_us - 1
        # A realistic source draws arrivals and incidents from their own stream: independent of batching.
        self._arrivals: PopulationArrivals | None = None
        self._stock_rng = self._rng
        if realistic:
            self._stock_rng = stream(seed, "live.arrivals")
            self._arrivals = PopulationArrivals(pop, self._stock_rng, start_us)
            warm_rate = float(hourly_rates(pop, (start_us % DAY_US) / HOUR_US).sum()) * SECOND_US / HOUR_US
        mean_rate = float(pop.users.events_per_day.mean())
        # per legit transaction, so fraud shares match history's per-user-day rates
        self._p_testing = self.cfg.card_testing_per_user_day / mean_rate
        self._p_takeover = self.cfg.takeover_per_user_day / mean_rate
        self._p_spree = self.cfg.spree_per_user_day / mean_rate
        self._p_cashout = self.drift.cashout_per_user_day / mean_rate
        mean_breach_days = sum(self.cfg.compromised_days) / 2
        breached = patterns.choose_compromised(pop, stream(seed, "live.compromised"), self.cfg, mean_breach_days)
        fractions = stream(seed, "live.compromised").uniform(*self.cfg.compromised_fraud_fraction, size=len(breached))
        self._breach_odds = np.zeros(len(pop.merchants))
        self._breach_odds[breached] = fractions / (1.0 - fractions)  # frauds per legit sale there
        self.compromised_merchant_ids = pop.merchants.id[breached]
        horizon_us = start_us + int(horizon_s * SECOND_US)
        self._trips = patterns.plan_trips(pop, stream(seed, "live.trips"), self.cfg, start_us, horizon_us)
        self._templates: list[_Row] = []
        self._template_s: list[float] = []  # each template's own event time (elapsed s); realistic mode
        self._followups: list[list[tuple[float, _Row]]] = []
        self._scheduled: list[tuple[float, int, _Row]] = []  # (due elapsed s, seq, row)
        self._labels: list[tuple[float, int, bytes, bytes]] = []  # (due elapsed s, event number, key, value)
        if warm_rate:
            self._warm_up(warm_rate)

    @property
    def realistic(self) -> bool:
        return self._arrivals is not None

    def anchor(self, start_us: int) -> None:
        """Move elapsed 0 to ``start_us`` (event ids keep their prefix). Used to align event times
        with the wall clock once a slow setup is over; call before handing out records. Default mode only
        (a realistic source's arrivals are already drawn from its start)."""
        if self.realistic:
            raise ValueError("a realistic source cannot be re-anchored; give its start when creating it")
        self.start_us = start_us

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def next_label_due(self) -> float | None:
        return self._labels[0][0] if self._labels else None

    def transactions(self, n: int, elapsed_s: float) -> list[tuple[bytes, bytes, str | None]]:
        """The next ``n`` records for ``transactions`` at ``elapsed_s`` into the run: (key, value,
        pattern label, or None for an invalid record). Due follow-ups (burst members) go first."""
        if self.realistic:
            raise ValueError("a realistic source stamps its own event times: call next_transactions")
        rows: list[_Row] = []
        while len(rows) < n and self._scheduled and self._scheduled[0][0] <= elapsed_s:
            rows.append(heapq.heappop(self._scheduled)[2])
        while len(rows) < n:
            rows.append(self._next_template(elapsed_s))
        now_us = self.start_us + int(elapsed_s * SECOND_US)
        self.clock_s = elapsed_s
        # one microsecond apart: no two events share an instant, so (entity, event_time) names one row
        return self._emit(rows, [now_us + k for k in range(len(rows))], [elapsed_s] * len(rows))

    def next_transactions(self, n: int) -> list[tuple[bytes, bytes, str | None]]:
        """Realistic mode: the next ``n`` records in event-time order, each at its own instant (strictly
        increasing, so no two share one), as for ``transactions``; advances ``clock_s``."""
        if self._arrivals is None:
            raise ValueError("only a realistic source times its own records: call transactions(n, elapsed_s)")
        rows: list[_Row] = []
        stamps: list[int] = []
        for _ in range(n):
            if not self._templates:
                self._stock(*self._arrivals.next_slot())
            due = self._template_s[-1]
            if self._scheduled and self._scheduled[0][0] <= due:
                due, _, row = heapq.heappop(self._scheduled)
            else:
                row = self._next_template(due)
            self._last_us = max(self.start_us + int(due * SECOND_US), self._last_us + 1)
            rows.append(row)
            stamps.append(self._last_us)
        self.clock_s = (self._last_us - self.start_us) / SECOND_US
        return self._emit(rows, stamps, [(us - self.start_us) / SECOND_US for us in stamps])

    def _emit(self, rows: list[_Row], stamps_us: list[int], at_s: list[float]) -> list[tuple[bytes, bytes, str | None]]:
        """Encode ``rows`` stamped ``stamps_us``, mixing in invalid records, and queue each valid one's label
        to fall due its (scaled) delay after ``at_s`` (elapsed s)."""
        invalid = self._rng.random(len(rows)) < self.invalid_fraction
        is_fraud = np.array([r.pattern != Pattern.NONE for r in rows], dtype=bool)
        delays = label_delay_us(self._rng, is_fraud) * self.label_delay_scale / SECOND_US
        out: list[tuple[bytes, bytes, str | None]] = []
        for row, stamp, at, bad, fraud, delay in zip(
                rows, stamps_us, at_s, invalid.tolist(), is_fraud.tolist(), delays.tolist(), strict=True):
            txn = self._transaction(row, _rfc3339(stamp))
            if bad:
                _, record = random_invalid(self._rng, txn)
                out.append((record.key, record.value, None))
                continue
            key = user_key(txn.user_id)
            out.append((key, encode(txn), PATTERN_LABELS[row.pattern]))
            label = Label.model_validate(
                {
                    "event_id": txn.event_id,
                    "user_id": txn.user_id,
                    "is_fraud": fraud,
                    "label_time": _rfc3339(stamp + int(delay * SECOND_US)),
                }
            )
            heapq.heappush(self._labels, (at + delay, self._emitted, key, encode(label)))
        return out

    def labels_due(self, elapsed_s: float) -> list[tuple[bytes, bytes]]:
        due: list[tuple[bytes, bytes]] = []
        while self._labels and self._labels[0][0] <= elapsed_s:
            _, _, key, value = heapq.heappop(self._labels)
            due.append((key, value))
        return due

    def _transaction(self, row: _Row, event_time: str) -> Transaction:
        users, merchants = self.pop.users, self.pop.merchants
        self._emitted += 1
        return Transaction.model_validate(
            {
                "event_id": f"{self._id_prefix}{self._emitted:09d}",
                "user_id": int(users.id[row.user]),
                "merchant_id": int(merchants.id[row.merchant]),
                "amount": row.amount,
                "currency": HOME_COUNTRIES[int(users.home[row.user])].currency,
                "country": COUNTRY_CODES[int(merchants.country[row.merchant])],
                "channel": CHANNELS[row.channel],
                "event_time": event_time,
            }
        )

    def _warm_up(self, rate: float, horizon_s: float = 1800.0) -> None:
        pop, rng, cfg = self.pop, stream(self._seed, "live.warm_up"), self.cfg
        sales = rate * horizon_s  # legit sales in the horizon, each could have set off an incident
        hour = (self.start_us % DAY_US) / HOUR_US
        off_hours = np.flatnonzero(patterns.is_unusual_hour(pop, hour)).astype(np.int64)
        if not len(off_hours):
            off_hours = np.arange(len(pop.users), dtype=np.int64)

        def began(k: int) -> IntArray:
            return self.start_us - (rng.random(k) * horizon_s * SECOND_US).astype(np.int64)

        k = int(rng.poisson(self._p_testing * sales))
        testing = patterns.card_testing(pop, rng, cfg, rng.integers(0, len(pop.users), size=k), began(k))
        k = int(rng.poisson(self._p_takeover * sales))
        takeover = patterns.account_takeover(
            pop, rng, cfg, off_hours[rng.integers(0, len(off_hours), size=k)], began(k)
        )
        for batch in (testing, takeover):
            offsets = ((batch.time_us - self.start_us) / SECOND_US).tolist()
            for offset, row in zip(offsets, self._rows(batch), strict=True):
                if offset >= 0:
                    self._seq += 1
                    heapq.heappush(self._scheduled, (offset, self._seq, row))

    def _next_template(self, elapsed_s: float) -> _Row:
        if not self._templates:
            self._refill(elapsed_s)
        row = self._templates.pop()
        self._template_s.pop()
        for offset_s, follow in self._followups.pop():
            self._seq += 1
            heapq.heappush(self._scheduled, (elapsed_s + offset_s, self._seq, follow))
        return row

    def _refill(self, elapsed_s: float) -> None:
        """Default mode: a chunk of legit purchases at the current instant, to users by their rate now."""
        now_us = self.start_us + int(elapsed_s * SECOND_US)
        hour = (now_us % DAY_US) / HOUR_US
        weight = self.pop.users.events_per_day * patterns.rhythm_density(self.pop, hour)
        cdf = np.cumsum(weight) / weight.sum()
        user = np.searchsorted(cdf, self._rng.random(_CHUNK), side="right").clip(0, len(cdf) - 1).astype(np.int64)
        self._stock(user, np.full(_CHUNK, now_us, dtype=np.int64), hour)

    def _stock(self, user: IntArray, when: IntArray, hour: float) -> None:
        """Turn legit purchases (``user`` at ``when``, around UTC ``hour``) into templates, and draw the
        incidents they set off, each scheduled relative to the template that set it off."""
        pop, rng, cfg = self.pop, self._stock_rng, self.cfg
        n = len(user)
        legit = patterns.friendly_fraud(rng, cfg, patterns.legit(pop, rng, cfg, user, when, trips=self._trips))
        followups: list[list[tuple[float, _Row]]] = [[] for _ in range(n)]

        def attach(owner: int, batch: EventBatch) -> None:
            offsets = ((batch.time_us - when[owner]) / SECOND_US).tolist()
            followups[owner].extend((max(0.0, o), row) for o, row in zip(offsets, self._rows(batch), strict=True))

        # Incidents are rare (well under one per chunk), so they are drawn one at a time.
        draws = rng.random((n, 4))
        for i in np.flatnonzero(draws[:, 0] < self._p_testing).tolist():
            victim = rng.integers(0, len(pop.users), size=1).astype(np.int64)
            attach(i, patterns.card_testing(pop, rng, cfg, victim, when[i : i + 1]))
        takeovers = np.flatnonzero(draws[:, 1] < self._p_takeover).tolist()
        if takeovers:
            off_hours = np.flatnonzero(patterns.is_unusual_hour(pop, hour)).astype(np.int64)
            pool = off_hours if len(off_hours) else np.arange(len(pop.users), dtype=np.int64)
            for i in takeovers:
                victim = pool[rng.integers(0, len(pool), size=1)]
                attach(i, patterns.account_takeover(pop, rng, cfg, victim, when[i : i + 1]))
        for i in np.flatnonzero(draws[:, 2] < self._p_spree).tolist():
            attach(i, patterns.spree(pop, rng, user[i : i + 1], when[i : i + 1]))
        breach = np.flatnonzero(draws[:, 3] < self._breach_odds[legit.merchant]).astype(np.int64)
        if len(breach):  # one fraud per triggering sale, a few seconds later, same merchant
            delay_us = (rng.uniform(0.0, 5.0, size=len(breach)) * SECOND_US).astype(np.int64)
            batch = patterns.compromised_merchant_fraud(pop, rng, legit.merchant[breach], when[breach] + delay_us)
            for i, one in zip(breach.tolist(), range(len(batch)), strict=True):
                attach(i, batch.take(np.array([one], dtype=np.int64)))
        if self._p_cashout:  # drawn only under pattern drift, so other streams stay as they were
            for i in np.flatnonzero(rng.random(n) < self._p_cashout).tolist():
                attach(i, patterns.gift_card_cashout(pop, rng, user[i : i + 1], when[i : i + 1]))
        # pop() takes from the end: reverse so templates are used in draw order
        self._templates = list(reversed(self._rows(legit)))
        self._template_s = list(reversed(((when - self.start_us) / SECOND_US).tolist()))
        self._followups = list(reversed(followups))

    def _rows(self, batch: EventBatch) -> list[_Row]:
        """The batch as rows, amounts scaled by the drift's factor."""
        amount = batch.amount if self.drift.amount_factor == 1.0 else cents(batch.amount * self.drift.amount_factor)
        return [
            _Row(u, m, a, c, p)
            for u, m, a, c, p in zip(
                batch.user.tolist(),
                batch.merchant.tolist(),
                amount.tolist(),
                batch.channel.tolist(),
                batch.pattern.tolist(),
                strict=True,
            )
        ]


def _producer(settings: Settings) -> ProducerLike:
    try:
        producer: ProducerLike = Producer({**settings.kafka.confluent(), **PRODUCER_TUNING})
    except KafkaException as exc:  # librdkafka refuses the configuration itself
        raise ConfigError(f"cannot configure the Kafka producer: {exc}") from exc
    return producer


def _rfc3339(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _realistic_start_us(pop: Population, rate: float, duration_s: float, end_us: int) -> int:
    """Where a realistic run of ``rate`` × ``duration_s`` records starts so that it ends by ``end_us``: 3
    sigma more purchases than expected are planned for, so a lucky run still ends before it."""
    planned = rate * duration_s
    return start_for(pop, end_us, planned + 3.0 * math.sqrt(planned))


def realistic_start(rate: float, duration_s: float, *, seed: int, users: int, merchants: int,
                    end: datetime) -> datetime:
    """The event time a realistic ``stream_live`` run with these arguments (and no ``start``) would start
    at if it began when the clock reads ``end``: for a caller that must place something before the run
    (the history it continues, its warm-up)."""
    pop = build_population(stream(seed, "population"), users, merchants)
    return datetime.fromtimestamp(_realistic_start_us(pop, rate, duration_s, to_us(end)) / SECOND_US, UTC)


def stream_live(
    settings: Settings,
    rate: float,
    duration_s: float,
    *,
    seed: int = 7,
    users: int = 20_000,
    merchants: int = 2_000,
    invalid_fraction: float = 0.0,
    label_delay_scale: float = 1.0,
    start: datetime | None = None,
    drain_labels: bool = False,
    stop: threading.Event | None = None,
    producer: ProducerLike | None = None,
    report: TextIO | None = sys.stderr,
    fraud: FraudConfig | None = None,
    time_scale: float = 1.0,
    realistic: bool = False,
    drift: DriftConfig | None = None,
) -> LiveCounts:
    """Produce for ``duration_s`` seconds at ``rate`` transaction records per second (valid and invalid
    together), labels as they fall due, then flush. ``start`` shifts event times (default: now).
    ``time_scale`` runs event time that many times faster than the wall clock (a minute of windows in
    seconds, for tests); labels fall due on the same scaled clock.
    ``realistic`` gives every user history's arrival process instead (``LiveSource``): event time runs
    as fast as ``rate`` requires (printed), and by default starts where the run is expected to end by
    now, a little before (follow-ups take part of the rate and only purchases are planned for);
    ``time_scale`` does not apply. After the duration its event clock keeps the run's average speed.
    ``drift`` departs from history on purpose (``config.DRIFTS``).
    ``drain_labels`` keeps going after the duration until every label has been sent. ``stop`` ends
    the run early (still flushing). Returns the counts; delivery errors are counted, not raised."""
    if duration_s < 0:
        raise ValueError("duration_s must be non-negative")
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    if realistic and time_scale != 1.0:
        raise ValueError("a realistic run sets its own event clock; time_scale applies to the default mode")
    stop = stop or threading.Event()
    pop = build_population(stream(seed, "population"), users, merchants)
    horizon_s = DAY_US / SECOND_US
    if realistic:
        per_s = float(expected_per_slot(pop).sum()) * SECOND_US / DAY_US  # population's purchases per event s
        horizon_s = max(horizon_s, 1.5 * rate * duration_s / per_s)
        start_us = to_us(start) if start is not None else _realistic_start_us(pop, rate, duration_s,
                                                                              to_us(datetime.now(UTC)))
    else:
        start_us = to_us(start) if start is not None else to_us(datetime.now(UTC))
    source = LiveSource(
        pop,
        seed=seed,
        start_us=start_us,
        fraud=fraud,
        invalid_fraction=invalid_fraction,
        label_delay_scale=label_delay_scale,
        warm_rate=rate,
        realistic=realistic,
        drift=drift,
        horizon_s=horizon_s,
    )
    kafka: ProducerLike = producer or _producer(settings)
    tx_topic, label_topic = settings.topics.transactions.name, settings.topics.labels.name
    counts = LiveCounts()
    errors_shown = 0

    def delivered(err: Any, msg: Any) -> None:
        nonlocal errors_shown
        if err is None:
            return
        counts.delivery_errors += 1
        if report is not None and errors_shown < 10:
            errors_shown += 1
            print(f"live: delivery failed ({msg.topic() if msg is not None else '?'}): {err}", file=report)

    def send(topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                kafka.produce(topic, value=value, key=key, on_delivery=delivered)
                return
            except BufferError:  # local queue full: let librdkafka drain, then retry
                kafka.poll(0.05)
            except KafkaException as exc:
                counts.delivery_errors += 1
                if report is not None:
                    print(f"live: produce to {topic} refused: {exc}", file=report)
                return

    origin = time.monotonic()  # after setup, so the whole duration is paced (setup takes ~0.1 s)
    if start is None and not realistic:
        source.anchor(to_us(datetime.now(UTC)))  # event_time = wall clock, not wall clock - setup time
    bucket = TokenBucket(rate, burst=max(1.0, rate / 50))
    meter = _Meter(report, origin)
    if report is not None:
        breached = ", ".join(str(m) for m in source.compromised_merchant_ids.tolist())
        print(
            f"live: {rate:g}/s for {duration_s:g}s to {tx_topic!r} / {label_topic!r}; "
            f"seed {seed}, {users} users, {merchants} merchants; compromised merchants: {breached}",
            file=report,
        )
        if realistic:
            print(f"live: history's per-user arrivals: event time from {_rfc3339(start_us)} runs about "
                  f"x{rate / per_s:,.0f} the wall clock", file=report)
    while not stop.is_set():
        elapsed = time.monotonic() - origin
        if elapsed >= duration_s:
            break
        n = bucket.acquire(max_n=max(1, int(rate / 100)))
        elapsed = time.monotonic() - origin
        records = source.next_transactions(n) if realistic else source.transactions(n, elapsed * time_scale)
        for key, value, pattern in records:
            send(tx_topic, key, value)
            if pattern is None:
                counts.invalid += 1
            else:
                counts.valid += 1
                if pattern != Pattern.NONE.label:
                    counts.fraud += 1
                counts.by_pattern[pattern] = counts.by_pattern.get(pattern, 0) + 1
        for key, value in source.labels_due(source.clock_s):
            send(label_topic, key, value)
            counts.labels += 1
        kafka.poll(0)
        meter.tick(counts, source.pending_labels)

    # After the stream, event time keeps the speed it had: the scale, or the realistic run's average.
    wall_end = time.monotonic() - origin
    speed = time_scale
    if realistic and wall_end > 0 and source.clock_s > 0:
        speed = source.clock_s / wall_end
    event_end = source.clock_s if realistic else wall_end * time_scale
    counts.event_clock_end = datetime.fromtimestamp((source.start_us + event_end * SECOND_US) / SECOND_US, UTC)
    while drain_labels and source.pending_labels and not stop.is_set():
        due = wall_end + ((source.next_label_due() or 0.0) - event_end) / speed
        stop.wait(min(0.5, max(0.0, due - (time.monotonic() - origin))))
        for key, value in source.labels_due(event_end + (time.monotonic() - origin - wall_end) * speed):
            send(label_topic, key, value)
            counts.labels += 1
        kafka.poll(0)
        meter.tick(counts, source.pending_labels)

    counts.undelivered = kafka.flush(30.0)
    counts.labels_pending = source.pending_labels
    if report is not None:
        print(f"live: done {counts}", file=report)
    return counts


class _Meter:
    """Prints produced counts per second to ``report``."""

    def __init__(self, report: TextIO | None, origin: float) -> None:
        self._report = report
        self._origin = origin
        self._next = 1.0
        self._last = LiveCounts()

    def tick(self, counts: LiveCounts, pending: int) -> None:
        elapsed = time.monotonic() - self._origin
        if self._report is None or elapsed < self._next:
            return
        last = self._last
        print(
            f"live {int(elapsed):>5d}s  tx {counts.valid - last.valid:>6d}/s  fraud {counts.fraud - last.fraud:>4d}/s  "
            f"invalid {counts.invalid - last.invalid:>4d}/s  labels {counts.labels - last.labels:>6d}/s  "
            f"pending labels {pending:>8d}  delivery errors {counts.delivery_errors}",
            file=self._report,
        )
        self._last = LiveCounts(valid=counts.valid, invalid=counts.invalid, labels=counts.labels, fraud=counts.fraud)
        self._next = int(elapsed) + 1.0
