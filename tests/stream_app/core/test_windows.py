"""KeyWindows against a brute-force reference that keeps every applied observation and recomputes each
spec from scratch, with the exact rules of the windows module docstring."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stream_app.core import windows
from stream_app.core.window_spec import (
    DAY,
    HOUR,
    USER_WINDOWS,
    Entity,
    Function,
    Source,
    WindowSpec,
    windows_for,
)
from stream_app.core.windows import Applied, KeyWindows, Observation, Outcome

LABEL_WINDOWS = windows_for(Entity.MERCHANT, Source.LABEL)


def _spec(name: str, function: Function, field_name: str | None, window_s: int) -> WindowSpec:
    return WindowSpec(name, Entity.USER, Source.TRANSACTION, function, field_name, window_s)


SMALL = (
    _spec("count_3", Function.COUNT, None, 3),
    _spec("count_10", Function.COUNT, None, 10),
    _spec("sum_x_3", Function.SUM, "x", 3),
    _spec("sum_x_10", Function.SUM, "x", 10),
    _spec("mean_x_10", Function.MEAN, "x", 10),
    _spec("max_x_3", Function.MAX, "x", 3),
    _spec("max_x_10", Function.MAX, "x", 10),
    _spec("distinct_k_5", Function.DISTINCT, "k", 5),
    _spec("rate_b_5", Function.RATE, "b", 5),
    _spec("mean_b_5", Function.MEAN, "b", 5),
    _spec("since_prev", Function.SINCE_PREVIOUS, None, 4),
)
SINCE_ONLY = (_spec("since_prev", Function.SINCE_PREVIOUS, None, 2),)
# (materialise above, release below): lanes switch between slice reads and incremental aggregates at
# these window sizes; both must give the same exact values, so the tests force every regime.
LANE_MODES = [(32, 8), (2, 1), (3, 0), (10**9, 0)]


# ------------------------------------------------------------------------------------------- reference


@dataclass
class Reference:
    """The obvious, slow model: a list of applied observations and a dict of last offsets."""

    specs: Sequence[WindowSpec]
    lateness: float
    applied: list[Observation] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)

    @property
    def latest(self) -> float | None:
        return max((o.time for o in self.applied), default=None)

    @property
    def horizon(self) -> float:
        return float(max(s.window_s for s in self.specs))

    def classify(self, obs: Observation) -> Outcome:
        part, off = obs.position
        if part in self.positions and off <= self.positions[part]:
            return Outcome.REPLAY
        latest = self.latest
        if latest is not None and obs.time < latest - self.lateness:
            return Outcome.LATE
        return Outcome.APPLIED

    def apply(self, obs: Observation) -> Applied:
        outcome = self.classify(obs)
        if outcome is Outcome.REPLAY:
            return Applied(outcome, None)
        self.positions[obs.position[0]] = obs.position[1]
        if outcome is Outcome.LATE:
            return Applied(outcome, None)
        features = self._features(obs.time, [*self.applied, obs], self.applied)
        self.applied.append(obs)
        return Applied(outcome, features)

    def query(self, t: float) -> dict[str, float]:
        return self._features(t, self.applied, self.applied)

    def needed(self) -> int:
        """Observations a future apply or allowed query can still need."""
        latest = self.latest
        if latest is None:
            return 0
        threshold = latest - self.lateness - self.horizon
        return sum(1 for o in self.applied if o.time > threshold)

    def _features(self, t: float, pool: list[Observation], earlier: list[Observation]) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.specs:
            window = [o for o in pool if t - float(s.window_s) < o.time <= t]
            vals = [o.values[s.field] for o in window] if s.field is not None else []
            if s.function is Function.COUNT:
                out[s.name] = float(len(window))
            elif s.function is Function.SUM:
                out[s.name] = math.fsum(vals)
            elif s.function is Function.MEAN:
                out[s.name] = math.fsum(vals) / len(vals) if vals else math.nan
            elif s.function is Function.RATE:
                out[s.name] = math.fsum(vals) / len(vals) if vals else 0.0
            elif s.function is Function.MAX:
                out[s.name] = max(vals) if vals else math.nan
            elif s.function is Function.DISTINCT:
                out[s.name] = float(len(set(vals)))
            else:
                previous = [o.time for o in earlier if o.time <= t]
                out[s.name] = t - max(previous) if previous else math.nan
        return out


def assert_same(got: dict[str, float] | None, want: dict[str, float] | None) -> None:
    assert (got is None) == (want is None), (got, want)
    if got is None or want is None:
        return
    assert got.keys() == want.keys()
    for name, w in want.items():
        g = got[name]
        if math.isnan(w):
            assert math.isnan(g), (name, g, w)
        else:
            assert math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-9), (name, g, w)


def assert_identical(got: dict[str, float], want: dict[str, float]) -> None:
    """Bit-for-bit equality (NaN equals NaN): what a restored state must serve."""
    assert got.keys() == want.keys()
    for name, w in want.items():
        g = got[name]
        assert (math.isnan(g) and math.isnan(w)) or g == w, (name, g, w)


def obs(t: float, part: int = 0, off: int = 0, **values: float) -> Observation:
    return Observation(time=t, values=values, position=(part, off))


# ------------------------------------------------------------------------------------------ unit tests


def test_first_observation_and_window_boundaries() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=2)
    first = kw.apply(obs(100.0, off=0, x=5.0, k=1.0, b=1.0))
    assert first.outcome is Outcome.APPLIED and first.features is not None
    assert first.features["count_3"] == 1.0
    assert first.features["mean_x_10"] == 5.0
    assert math.isnan(first.features["since_prev"])
    # exactly W later: the first observation is at t - W, outside (t - W, t]
    second = kw.apply(obs(103.0, off=1, x=2.0, k=2.0, b=0.0))
    assert second.features is not None
    assert second.features["count_3"] == 1.0
    assert second.features["count_10"] == 2.0
    assert second.features["max_x_3"] == 2.0
    assert second.features["max_x_10"] == 5.0
    assert second.features["distinct_k_5"] == 2.0
    assert second.features["rate_b_5"] == 0.5
    assert second.features["since_prev"] == 3.0
    assert kw.latest_time == 103.0


def test_equal_timestamps_count_each_other() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=0)
    kw.apply(obs(10.0, off=0, x=1.0, k=1.0, b=0.0))
    got = kw.apply(obs(10.0, off=1, x=1.0, k=1.0, b=1.0)).features
    assert got is not None
    assert got["count_3"] == 2.0 and got["distinct_k_5"] == 1.0 and got["since_prev"] == 0.0


def test_replay_and_late_change_nothing_and_late_redelivery_is_replay() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=2)
    kw.apply(obs(100.0, part=0, off=5, x=1.0, k=1.0, b=0.0))
    kw.apply(obs(101.0, part=1, off=0, x=2.0, k=1.0, b=0.0))
    before = kw.query(101.0), kw.query(99.5)
    assert kw.apply(obs(101.0, part=0, off=5, x=9.0, k=9.0, b=1.0)) == Applied(Outcome.REPLAY, None)
    assert kw.apply(obs(101.0, part=0, off=3, x=9.0, k=9.0, b=1.0)).outcome is Outcome.REPLAY
    assert kw.classify(obs(98.9, part=0, off=6, x=9.0, k=9.0, b=1.0)) is Outcome.LATE
    assert kw.apply(obs(98.9, part=0, off=6, x=9.0, k=9.0, b=1.0)) == Applied(Outcome.LATE, None)
    assert kw.apply(obs(98.9, part=0, off=6, x=9.0, k=9.0, b=1.0)).outcome is Outcome.REPLAY
    assert_identical(kw.query(101.0), before[0])
    assert_identical(kw.query(99.5), before[1])
    assert kw.positions == {0: 6, 1: 0}
    # exactly at the lateness bound is still applied; a new partition starts from any offset
    assert kw.apply(obs(99.0, part=7, off=0, x=1.0, k=1.0, b=0.0)).outcome is Outcome.APPLIED


def test_forgotten_positions_let_another_log_start_anywhere_while_event_keys_still_recognise_a_resend() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=2)
    kw.apply(Observation(100.0, {"x": 1.0, "k": 1.0, "b": 0.0}, (0, 500), event_key=11))
    kw.apply(Observation(101.0, {"x": 2.0, "k": 2.0, "b": 1.0}, (0, 501), event_key=12))
    served = kw.query(101.5)
    kw.forget_positions()
    assert kw.positions == {}
    assert_identical(kw.query(101.5), served)  # the windows are kept
    # offset 0 of the new log is not a replay of the old log's offset 501 ...
    fresh = kw.apply(Observation(101.5, {"x": 4.0, "k": 3.0, "b": 0.0}, (0, 0), event_key=13))
    assert fresh.outcome is Outcome.APPLIED and fresh.features is not None
    assert fresh.features["count_3"] == 3.0 and fresh.features["sum_x_3"] == 7.0
    # ... and an event the old log carried, re-sent on the new one, is still counted once
    assert kw.apply(Observation(101.0, {"x": 2.0, "k": 2.0, "b": 1.0}, (0, 1), event_key=12)).outcome \
        is Outcome.DUPLICATE
    assert kw.positions == {0: 1}


def test_out_of_order_counts_only_earlier_applied() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=5)
    kw.apply(obs(100.0, off=0, x=1.0, k=1.0, b=0.0))
    kw.apply(obs(104.0, off=1, x=50.0, k=2.0, b=1.0))
    late = kw.apply(obs(102.0, off=2, x=3.0, k=3.0, b=1.0)).features
    assert late is not None
    # 104.0 was applied earlier but lies after 102.0, so it does not count; 100.0 does (10 s window)
    assert late["count_10"] == 2.0 and late["sum_x_10"] == 4.0 and late["max_x_10"] == 3.0
    assert late["since_prev"] == 2.0
    # the late one is in the windows from now on
    after = kw.apply(obs(104.5, off=3, x=0.0, k=1.0, b=0.0)).features
    assert after is not None and after["count_3"] == 3.0 and after["sum_x_3"] == 53.0


def test_query_does_not_change_state_and_past_beyond_lateness_raises() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=2)
    empty = kw.query(5.0)
    assert empty["count_10"] == 0.0 and empty["sum_x_10"] == 0.0 and empty["rate_b_5"] == 0.0
    assert math.isnan(empty["mean_x_10"]) and math.isnan(empty["max_x_3"]) and math.isnan(empty["since_prev"])
    kw.apply(obs(100.0, off=0, x=1.0, k=1.0, b=1.0))
    snapshot = kw.to_bytes()
    assert kw.query(100.0)["since_prev"] == 0.0
    later = kw.query(150.0)
    assert later["count_10"] == 0.0 and math.isnan(later["max_x_10"]) and later["since_prev"] == 50.0
    assert kw.query(99.0)["count_10"] == 0.0 and math.isnan(kw.query(99.0)["since_prev"])
    with pytest.raises(ValueError, match="older than latest"):
        kw.query(97.9)
    assert kw.to_bytes() == snapshot


def test_since_previous_survives_eviction_and_state_shrinks_after_a_gap() -> None:
    kw = KeyWindows(USER_WINDOWS, allowed_lateness_s=300)
    t0 = 1_700_000_000.0
    for i in range(500):
        kw.apply(obs(t0 + 60 * i, off=i, amount=10.0 + i, merchant_id=float(i % 7)))
    assert kw.retained_count <= 500
    gap = 3 * DAY
    got = kw.apply(obs(t0 + 60 * 499 + gap, off=500, amount=1.0, merchant_id=1.0)).features
    assert got is not None
    assert got["user_seconds_since_prev"] == gap
    assert got["user_txn_count_24h"] == 1.0 and got["user_amount_sum_24h"] == 1.0
    assert kw.retained_count == 1


def test_sums_are_exact_under_cancellation() -> None:
    specs = (_spec("sum_x_3", Function.SUM, "x", 3), _spec("mean_x_3", Function.MEAN, "x", 3))
    kw = KeyWindows(specs, allowed_lateness_s=0)
    values = [1e15, 0.1, -1e15, 0.2, 1e-3, 3e14, 0.7, 1.1e-9, 0.3]
    for i, x in enumerate(values):
        got = kw.apply(obs(float(i), off=i, x=x)).features
        assert got is not None
        window = values[max(0, i - 2) : i + 1]
        assert got["sum_x_3"] == math.fsum(window)
        assert got["mean_x_3"] == math.fsum(window) / len(window)


def test_merchant_label_windows_read_at_transaction_time() -> None:
    labels = KeyWindows(LABEL_WINDOWS, allowed_lateness_s=HOUR)
    t0 = 1_700_000_000.0
    for i, fraud in enumerate([1.0, 0.0, 0.0, 1.0]):
        labels.apply(obs(t0 + i * DAY, off=i, is_fraud=fraud))
    at = labels.query(t0 + 7 * DAY + 10)  # the first label has left the 7-day window
    assert at == {"merchant_label_count_7d": 3.0, "merchant_fraud_rate_7d": 1 / 3}


def test_only_since_previous() -> None:
    kw = KeyWindows(SINCE_ONLY, allowed_lateness_s=1)
    assert math.isnan(kw.apply(obs(1.0, off=0)).features["since_prev"])  # type: ignore[index]
    assert kw.apply(obs(4.0, off=1)).features == {"since_prev": 3.0}
    assert kw.apply(obs(3.5, off=2)).features == {"since_prev": 2.5}
    assert kw.retained_count <= 2


def test_invalid_observations_raise_and_change_nothing() -> None:
    kw = KeyWindows(SMALL, allowed_lateness_s=1)
    kw.apply(obs(1.0, off=0, x=1.0, k=1.0, b=1.0))
    snapshot = kw.to_bytes()
    with pytest.raises(ValueError, match="lacks field 'k'"):
        kw.apply(obs(2.0, off=1, x=1.0, b=1.0))
    with pytest.raises(ValueError, match="non-finite value"):
        kw.apply(obs(2.0, off=1, x=math.inf, k=1.0, b=1.0))
    with pytest.raises(ValueError, match="time must be finite"):
        kw.apply(obs(math.nan, off=1, x=1.0, k=1.0, b=1.0))
    with pytest.raises(ValueError, match="time must be finite"):
        kw.apply(obs(1e16, off=1, x=1.0, k=1.0, b=1.0))  # t - 1 == t at this magnitude
    with pytest.raises(ValueError, match="time must be finite"):
        kw.query(math.inf)
    with pytest.raises(ValueError, match="int64"):
        kw.apply(obs(2.0, part=2**63, off=1, x=1.0, k=1.0, b=1.0))
    assert kw.to_bytes() == snapshot


def test_bad_spec_sets_are_refused() -> None:
    with pytest.raises(ValueError, match="one entity and one source"):
        KeyWindows(USER_WINDOWS + LABEL_WINDOWS, allowed_lateness_s=0)
    with pytest.raises(ValueError, match="sum needs a field"):
        KeyWindows((_spec("bad", Function.SUM, None, 3),), allowed_lateness_s=0)
    with pytest.raises(ValueError, match="allowed_lateness_s"):
        KeyWindows(SMALL, allowed_lateness_s=-1)
    with pytest.raises(ValueError, match="at least one"):
        KeyWindows((), allowed_lateness_s=0)


def test_specs_given_as_a_list_are_not_cached_by_identity() -> None:
    specs = [SMALL[0]]
    assert KeyWindows(specs, 0).apply(obs(1.0)).features == {"count_3": 1.0}
    specs.append(SMALL[1])  # a later key built from the mutated list must see both specs
    assert KeyWindows(specs, 0).apply(obs(1.0)).features == {"count_3": 1.0, "count_10": 1.0}


def test_serialized_layout_and_rejections() -> None:
    kw = KeyWindows(USER_WINDOWS, allowed_lateness_s=60)
    for i in range(3):
        kw.apply(obs(1000.0 + i, part=i % 2, off=i, amount=1.5, merchant_id=2.0))
    data = kw.to_bytes()
    assert data[0] == 1  # format tag
    assert len(data) == 22 + 2 * 16 + 3 * 8 * 3  # header, 2 partitions, 3 obs x (time, amount, merchant_id)
    again = KeyWindows.from_bytes(USER_WINDOWS, 60, data)
    assert again.to_bytes() == data and again.positions == kw.positions
    assert_identical(again.query(1002.0), kw.query(1002.0))
    with pytest.raises(ValueError, match="truncated"):
        KeyWindows.from_bytes(USER_WINDOWS, 60, data[:5])
    with pytest.raises(ValueError, match="expected"):
        KeyWindows.from_bytes(USER_WINDOWS, 60, data[:-1])
    with pytest.raises(ValueError, match="unknown window state format"):
        KeyWindows.from_bytes(USER_WINDOWS, 60, b"\x07" + data[1:])
    with pytest.raises(ValueError, match="other fields"):
        KeyWindows.from_bytes(LABEL_WINDOWS, 60, data)
    assert KeyWindows.from_bytes(SMALL, 0, KeyWindows(SMALL, 0).to_bytes()).is_empty


def test_in_order_stream_keeps_state_bounded() -> None:
    specs = (_spec("count_50", Function.COUNT, None, 50), _spec("max_x_50", Function.MAX, "x", 50))
    kw = KeyWindows(specs, allowed_lateness_s=10)
    for i in range(5000):
        kw.apply(obs(float(i), off=i, x=float(-i)))  # decreasing values: the max deque grows fully
    assert kw.retained_count <= 61 * 1.25 + 1
    assert kw.query(4999.0) == {"count_50": 50.0, "max_x_50": -4950.0}


@pytest.mark.parametrize("modes", LANE_MODES)
def test_lane_modes_on_a_dense_stream(monkeypatch: pytest.MonkeyPatch, modes: tuple[int, int]) -> None:
    """A fixed dense stream (many observations per window, jitter, late ones) with queries ahead of
    latest after every step: exercises sliding, materialising, releasing and the discounting reads."""
    monkeypatch.setattr(windows, "_MATERIALIZE_ABOVE", modes[0])
    monkeypatch.setattr(windows, "_RELEASE_BELOW", modes[1])
    rng = random.Random(modes[0])
    kw = KeyWindows(SMALL, allowed_lateness_s=2.5)
    ref = Reference(SMALL, 2.5)
    latest = 0.0
    for i in range(300):
        step = rng.choice([0.0, 0.25, 0.5, 0.5, 1.0, -1.0, -2.5, -3.0, 4.0 if i % 50 else 30.0])
        ob = obs(latest + step, part=i % 3, off=i, x=rng.choice([1e15, -1e15, 0.1, 2.0, rng.uniform(-5, 5)]),
                 k=float(rng.randrange(4)), b=float(rng.randrange(2)))
        got, want = kw.apply(ob), ref.apply(ob)
        assert got.outcome is want.outcome
        assert_same(got.features, want.features)
        latest = max(latest, ob.time) if got.outcome is Outcome.APPLIED else latest
        for ahead in (0.0, 0.5, 1.0, 2.0, 3.0, 4.75, 9.0, 10.0, 11.0):
            assert_same(kw.query(latest + ahead), ref.query(latest + ahead))


# ------------------------------------------------------------------------------------ property tests

# (specs, allowed lateness, time unit): the unit scales steps so that windows are crossed often.
CASES = [
    (SMALL, 0.0, 1.0),
    (SMALL, 2.0, 1.0),
    (SMALL, 4.5, 1.0),
    (SINCE_ONLY, 1.0, 1.0),
    (USER_WINDOWS, 300.0, 300.0),
    (USER_WINDOWS, 3 * HOUR, 1800.0),
    (LABEL_WINDOWS, DAY, 12 * HOUR),
]

_X = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.3, 1.0, 12.5, 1e7, -1e7, 1e15, -1e15, 1e-9]),
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
)


def _values(data: st.DataObject, specs: Sequence[WindowSpec]) -> dict[str, float]:
    fields = {s.field for s in specs if s.field is not None}
    out: dict[str, float] = {}
    for name in fields:
        if name in ("b", "is_fraud"):
            out[name] = float(data.draw(st.integers(0, 1)))
        elif name in ("k", "merchant_id"):
            out[name] = float(data.draw(st.integers(0, 4)))
        else:
            out[name] = data.draw(_X if name == "x" else st.floats(0.01, 1e7))
    return out


def _delta(data: st.DataObject, lateness: float, unit: float, horizon: float) -> float:
    """Time of the next observation relative to latest: mostly forward, some jitter, some too late."""
    kind = data.draw(st.sampled_from(["step"] * 6 + ["equal", "jitter", "jitter", "late", "gap", "float"]))
    if kind == "step":
        return data.draw(st.integers(0, 6)) * unit / 2
    if kind == "equal":
        return 0.0
    if kind == "jitter":  # out of order but within the lateness, boundary included
        return -data.draw(st.sampled_from([lateness, lateness / 2, lateness / 3, min(unit, lateness)]))
    if kind == "late":
        return -(lateness + data.draw(st.sampled_from([unit / 4, unit, horizon])))
    if kind == "gap":  # longer than max window + lateness: everything before is evictable
        return horizon + lateness + data.draw(st.sampled_from([unit / 4, unit, 10 * horizon]))
    return data.draw(st.floats(-lateness, 3 * unit, allow_nan=False))


def _snapshot(kw: KeyWindows, latest: float | None, lateness: float) -> list[dict[str, float]]:
    if latest is None:
        return [kw.query(0.0)]
    return [kw.query(latest), kw.query(latest - lateness), kw.query(latest + lateness + 1)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), case=st.sampled_from(CASES), modes=st.sampled_from(LANE_MODES))
def test_matches_brute_force_reference(
    data: st.DataObject, case: tuple[Sequence[WindowSpec], float, float], modes: tuple[int, int]
) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(windows, "_MATERIALIZE_ABOVE", modes[0])
        mp.setattr(windows, "_RELEASE_BELOW", modes[1])
        _run_against_reference(data, *case)


def _run_against_reference(data: st.DataObject, specs: Sequence[WindowSpec], lateness: float, unit: float) -> None:
    ref = Reference(specs, lateness)
    horizon = ref.horizon
    instances = [KeyWindows(specs, lateness)]  # each restored copy must track the original exactly
    t0 = 1_700_000_000.0 if unit > 1 else 0.0
    next_offset: dict[int, int] = {}
    for _ in range(data.draw(st.integers(1, 60), label="steps")):
        action = data.draw(st.sampled_from(["obs"] * 8 + ["replay", "query", "roundtrip"]), label="action")
        latest = ref.latest
        if action == "roundtrip":
            restored = KeyWindows.from_bytes(specs, lateness, instances[-1].to_bytes())
            for before, after in zip(_snapshot(instances[-1], latest, lateness),
                                     _snapshot(restored, latest, lateness), strict=True):
                assert_identical(after, before)
            instances = [*instances[-2:], restored]
            continue
        if action == "query":
            t = t0 if latest is None else latest + _delta(data, lateness, unit, horizon)
            if latest is not None and t < latest - lateness:
                event("query beyond lateness")
                for kw in instances:
                    with pytest.raises(ValueError):
                        kw.query(t)
            else:
                wanted = ref.query(t)
                for kw in instances:
                    assert_same(kw.query(t), wanted)
            continue
        part = data.draw(st.integers(0, 2), label="partition")
        if action == "replay" and part in next_offset:
            offset = next_offset[part] - 1 - data.draw(st.integers(0, 3))
        else:
            offset = next_offset.get(part, 0) + data.draw(st.sampled_from([0, 0, 0, 1, 5]))
            next_offset[part] = offset + 1
        t = t0 if latest is None else latest + _delta(data, lateness, unit, horizon)
        ob = Observation(time=t, values=_values(data, specs), position=(part, offset))
        expected_outcome = ref.classify(ob)
        snapshots = [_snapshot(kw, latest, lateness) for kw in instances]
        bytes_before = [kw.to_bytes() for kw in instances]
        expected = ref.apply(ob)
        event(f"outcome {expected.outcome}" + (" out of order" if latest is not None and t < latest else ""))
        for kw, snap, raw in zip(instances, snapshots, bytes_before, strict=True):
            assert kw.classify(ob) is expected_outcome
            applied = kw.apply(ob)
            assert applied.outcome is expected.outcome
            assert_same(applied.features, expected.features)
            if applied.outcome is not Outcome.APPLIED:
                for b, a in zip(snap, _snapshot(kw, latest, lateness), strict=True):
                    assert_identical(a, b)
            if applied.outcome is Outcome.REPLAY:
                assert kw.to_bytes() == raw
            needed = ref.needed()
            assert kw.retained_count <= needed + needed // 4 + 1
            if latest is not None and applied.outcome is Outcome.APPLIED and t - latest > lateness + horizon:
                assert kw.retained_count == 1
                event("gap shrank the state")
        first = instances[0]
        for other in instances[1:]:
            assert other.positions == first.positions
            assert other.latest_time == first.latest_time
