"""Stream the same world to Kafka in real time: transactions on ``transactions`` paced by a token
bucket, their labels on ``labels`` once the (scaled) label delay has passed.

The content (who buys what, which frauds, which invalid records) is drawn from the same population and
patterns as ``history`` with the same seed, so batch profiles built from history match live users.
Event times are the wall clock (shifted to ``start`` when one is given); pattern timing (bursts seconds
apart, takeovers minutes apart) is kept by scheduling follow-up events. The live rate is set by the
caller, not by the population: keep ``rate * duration / users`` small if per-user window features
should look like history's (about one transaction per user per day).
"""

from __future__ import annotations

import heapq
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
from stream_app.generator.config import DAY_US, HOUR_US, SECOND_US, FraudConfig, stream, to_us
from stream_app.generator.events import CHANNELS, PATTERN_LABELS, EventBatch, Pattern
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
    """The deterministic content of a live run: hands out transactions as time passes and remembers
    their labels until due. Knows nothing about Kafka."""

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
    ) -> None:
        """``warm_rate`` (records per second) pre-schedules the tails of incidents that began in the
        half hour before the run, so the fraud mix is at steady state from the first second instead
        of ramping up while bursts and takeovers unfold."""
        if not 0.0 <= invalid_fraction <= 1.0:
            raise ValueError("invalid_fraction must be within [0, 1]")
        if label_delay_scale < 0:
            raise ValueError("label_delay_scale must be non-negative")
        self.pop = pop
        self.cfg = fraud or FraudConfig()
        self.start_us = start_us
        self.invalid_fraction = invalid_fraction
        self.label_delay_scale = label_delay_scale
        self._rng = stream(seed, "live")
        self._seed = seed
        self._id_prefix = f"l{seed}-{start_us // SECOND_US}-"
        self._seq = 0
        mean_rate = float(pop.users.events_per_day.mean())
        # per legit transaction, so fraud shares match history's per-user-day rates
        self._p_testing = self.cfg.card_testing_per_user_day / mean_rate
        self._p_takeover = self.cfg.takeover_per_user_day / mean_rate
        self._p_spree = self.cfg.spree_per_user_day / mean_rate
        mean_breach_days = sum(self.cfg.compromised_days) / 2
        breached = patterns.choose_compromised(pop, stream(seed, "live.compromised"), self.cfg, mean_breach_days)
        fractions = stream(seed, "live.compromised").uniform(*self.cfg.compromised_fraud_fraction, size=len(breached))
        self._breach_odds = np.zeros(len(pop.merchants))
        self._breach_odds[breached] = fractions / (1.0 - fractions)  # frauds per legit sale there
        self.compromised_merchant_ids = pop.merchants.id[breached]
        self._trips = patterns.plan_trips(pop, stream(seed, "live.trips"), self.cfg, start_us, start_us + DAY_US)
        self._templates: list[_Row] = []
        self._followups: list[list[tuple[float, _Row]]] = []
        self._scheduled: list[tuple[float, int, _Row]] = []  # (due elapsed s, seq, row)
        self._labels: list[tuple[float, int, bytes, bytes]] = []  # (due elapsed s, seq, key, value)
        if warm_rate:
            self._warm_up(warm_rate)

    def anchor(self, start_us: int) -> None:
        """Move elapsed 0 to ``start_us`` (event ids keep their prefix). Used to align event times
        with the wall clock once a slow setup is over; call before handing out records."""
        self.start_us = start_us

    @property
    def pending_labels(self) -> int:
        return len(self._labels)

    def next_label_due(self) -> float | None:
        return self._labels[0][0] if self._labels else None

    def transactions(self, n: int, elapsed_s: float) -> list[tuple[bytes, bytes, str | None]]:
        """The next ``n`` records for ``transactions`` at ``elapsed_s`` into the run: (key, value,
        pattern label, or None for an invalid record). Due follow-ups (burst members) go first."""
        rows: list[_Row] = []
        while len(rows) < n and self._scheduled and self._scheduled[0][0] <= elapsed_s:
            rows.append(heapq.heappop(self._scheduled)[2])
        while len(rows) < n:
            rows.append(self._next_template(elapsed_s))
        now_us = self.start_us + int(elapsed_s * SECOND_US)
        invalid = self._rng.random(len(rows)) < self.invalid_fraction
        is_fraud = np.array([r.pattern != Pattern.NONE for r in rows], dtype=bool)
        delays = label_delay_us(self._rng, is_fraud) * self.label_delay_scale / SECOND_US
        out: list[tuple[bytes, bytes, str | None]] = []
        for k, (row, bad, fraud, delay) in enumerate(
                zip(rows, invalid.tolist(), is_fraud.tolist(), delays.tolist(), strict=True)):
            # one microsecond apart: no two events share an instant, so (entity, event_time) names one row
            txn = self._transaction(row, _rfc3339(now_us + k))
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
                    "label_time": _rfc3339(now_us + k + int(delay * SECOND_US)),
                }
            )
            heapq.heappush(self._labels, (elapsed_s + delay, self._seq, key, encode(label)))
        return out

    def labels_due(self, elapsed_s: float) -> list[tuple[bytes, bytes]]:
        due: list[tuple[bytes, bytes]] = []
        while self._labels and self._labels[0][0] <= elapsed_s:
            _, _, key, value = heapq.heappop(self._labels)
            due.append((key, value))
        return due

    def _transaction(self, row: _Row, event_time: str) -> Transaction:
        users, merchants = self.pop.users, self.pop.merchants
        self._seq += 1
        return Transaction.model_validate(
            {
                "event_id": f"{self._id_prefix}{self._seq:09d}",
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
            for offset, row in zip(offsets, _rows(batch), strict=True):
                if offset >= 0:
                    self._seq += 1
                    heapq.heappush(self._scheduled, (offset, self._seq, row))

    def _next_template(self, elapsed_s: float) -> _Row:
        if not self._templates:
            self._refill(elapsed_s)
        row = self._templates.pop()
        for offset_s, follow in self._followups.pop():
            self._seq += 1
            heapq.heappush(self._scheduled, (elapsed_s + offset_s, self._seq, follow))
        return row

    def _refill(self, elapsed_s: float) -> None:
        """Draw a chunk of legit purchases for the current hour, and the incidents they set off."""
        pop, rng, cfg = self.pop, self._rng, self.cfg
        now_us = self.start_us + int(elapsed_s * SECOND_US)
        hour = (now_us % DAY_US) / HOUR_US
        weight = pop.users.events_per_day * patterns.rhythm_density(pop, hour)
        cdf = np.cumsum(weight) / weight.sum()
        user = np.searchsorted(cdf, rng.random(_CHUNK), side="right").clip(0, len(cdf) - 1).astype(np.int64)
        when = np.full(_CHUNK, now_us, dtype=np.int64)
        legit = patterns.friendly_fraud(rng, cfg, patterns.legit(pop, rng, cfg, user, when, trips=self._trips))
        followups: list[list[tuple[float, _Row]]] = [[] for _ in range(_CHUNK)]

        def attach(owner: int, batch: EventBatch) -> None:
            """Schedule an incident's events relative to the template that set it off."""
            offsets = ((batch.time_us - now_us) / SECOND_US).tolist()
            followups[owner].extend((max(0.0, o), row) for o, row in zip(offsets, _rows(batch), strict=True))

        # Incidents are rare (well under one per chunk), so they are drawn one at a time.
        draws = rng.random((_CHUNK, 4))
        at_now = when[:1]
        for i in np.flatnonzero(draws[:, 0] < self._p_testing).tolist():
            victim = rng.integers(0, len(pop.users), size=1).astype(np.int64)
            attach(i, patterns.card_testing(pop, rng, cfg, victim, at_now))
        takeovers = np.flatnonzero(draws[:, 1] < self._p_takeover).tolist()
        if takeovers:
            off_hours = np.flatnonzero(patterns.is_unusual_hour(pop, hour)).astype(np.int64)
            pool = off_hours if len(off_hours) else np.arange(len(pop.users), dtype=np.int64)
            for i in takeovers:
                victim = pool[rng.integers(0, len(pool), size=1)]
                attach(i, patterns.account_takeover(pop, rng, cfg, victim, at_now))
        for i in np.flatnonzero(draws[:, 2] < self._p_spree).tolist():
            attach(i, patterns.spree(pop, rng, user[i : i + 1], at_now))
        breach = np.flatnonzero(draws[:, 3] < self._breach_odds[legit.merchant]).astype(np.int64)
        if len(breach):  # one fraud per triggering sale, a few seconds later, same merchant
            delay_us = (rng.uniform(0.0, 5.0, size=len(breach)) * SECOND_US).astype(np.int64)
            batch = patterns.compromised_merchant_fraud(pop, rng, legit.merchant[breach], when[breach] + delay_us)
            for i, one in zip(breach.tolist(), range(len(batch)), strict=True):
                attach(i, batch.take(np.array([one], dtype=np.int64)))
        # pop() takes from the end: reverse so templates are used in draw order
        self._templates = list(reversed(_rows(legit)))
        self._followups = list(reversed(followups))


def _rows(batch: EventBatch) -> list[_Row]:
    return [
        _Row(u, m, a, c, p)
        for u, m, a, c, p in zip(
            batch.user.tolist(),
            batch.merchant.tolist(),
            batch.amount.tolist(),
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
) -> LiveCounts:
    """Produce for ``duration_s`` seconds at ``rate`` transaction records per second (valid and invalid
    together), labels as they fall due, then flush. ``start`` shifts event times (default: now).
    ``time_scale`` runs event time that many times faster than the wall clock (a minute of windows in
    seconds, for tests); labels fall due on the same scaled clock.
    ``drain_labels`` keeps going after the duration until every label has been sent. ``stop`` ends
    the run early (still flushing). Returns the counts; delivery errors are counted, not raised."""
    if duration_s < 0:
        raise ValueError("duration_s must be non-negative")
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    stop = stop or threading.Event()
    pop = build_population(stream(seed, "population"), users, merchants)
    start_us = to_us(start) if start is not None else to_us(datetime.now(UTC))
    source = LiveSource(
        pop,
        seed=seed,
        start_us=start_us,
        fraud=fraud,
        invalid_fraction=invalid_fraction,
        label_delay_scale=label_delay_scale,
        warm_rate=rate,
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
    if start is None:
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
    while not stop.is_set():
        elapsed = time.monotonic() - origin
        if elapsed >= duration_s:
            break
        n = bucket.acquire(max_n=max(1, int(rate / 100)))
        elapsed = time.monotonic() - origin
        for key, value, pattern in source.transactions(n, elapsed * time_scale):
            send(tx_topic, key, value)
            if pattern is None:
                counts.invalid += 1
            else:
                counts.valid += 1
                if pattern != Pattern.NONE.label:
                    counts.fraud += 1
                counts.by_pattern[pattern] = counts.by_pattern.get(pattern, 0) + 1
        for key, value in source.labels_due(elapsed * time_scale):
            send(label_topic, key, value)
            counts.labels += 1
        kafka.poll(0)
        meter.tick(counts, source.pending_labels)

    while drain_labels and source.pending_labels and not stop.is_set():
        due = (source.next_label_due() or 0.0) / time_scale
        stop.wait(min(0.5, max(0.0, due - (time.monotonic() - origin))))
        for key, value in source.labels_due((time.monotonic() - origin) * time_scale):
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
