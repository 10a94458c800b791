"""Which partitions a catching-up worker pauses so that it consumes them in event-time order."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.alignment import Alignment, PartitionProgress, frontier, partitions_to_pause
from stream_app.core.window_spec import MERCHANT_LAG_S

AHEAD = 30.0

progresses = st.builds(
    PartitionProgress,
    time=st.one_of(st.none(), st.floats(min_value=0, max_value=1e4, allow_nan=False)),
    behind=st.booleans(),
    idle_s=st.floats(min_value=0, max_value=20, allow_nan=False),
)


def test_a_partition_more_than_the_bound_ahead_of_the_slowest_with_records_left_is_paused() -> None:
    progress = {0: PartitionProgress(100.0, True), 1: PartitionProgress(130.0, True),
                2: PartitionProgress(130.5, True), 3: PartitionProgress(500.0, True)}
    assert partitions_to_pause(progress, AHEAD) == {2, 3}


def test_a_caught_up_partition_holds_nobody_back_but_is_paused_when_ahead() -> None:
    behind_in_time = {0: PartitionProgress(10.0, False), 1: PartitionProgress(100.0, True),
                      2: PartitionProgress(200.0, True)}
    assert partitions_to_pause(behind_in_time, AHEAD) == {2}  # frontier 100, not 10
    ahead_in_time = {0: PartitionProgress(500.0, False), 1: PartitionProgress(100.0, True)}
    assert partitions_to_pause(ahead_in_time, AHEAD) == {0}  # its next records would be ahead too


def test_nothing_is_paused_when_no_partition_has_records_left() -> None:
    assert partitions_to_pause({0: PartitionProgress(0.0, False), 1: PartitionProgress(1e4, False)}, AHEAD) == set()
    assert partitions_to_pause({}, AHEAD) == set()


def test_a_partition_with_records_left_and_no_time_yet_holds_every_other_one_back() -> None:
    progress = {0: PartitionProgress(None, True), 1: PartitionProgress(-1e9, True), 2: PartitionProgress(5.0, False)}
    assert frontier(progress) == -math.inf
    assert partitions_to_pause(progress, AHEAD) == {1, 2}
    assert partitions_to_pause({0: PartitionProgress(None, True)}, AHEAD) == set()


def test_an_idle_partition_stops_holding_the_others_back_after_the_idle_bound() -> None:
    progress = {0: PartitionProgress(100.0, True, idle_s=5.0), 1: PartitionProgress(200.0, True)}
    assert partitions_to_pause(progress, AHEAD, max_idle_s=5.0) == {1}
    idle = {0: PartitionProgress(100.0, True, idle_s=5.1), 1: PartitionProgress(200.0, True)}
    assert partitions_to_pause(idle, AHEAD, max_idle_s=5.0) == set()
    unknown_idle = {0: PartitionProgress(None, True, idle_s=6.0), 1: PartitionProgress(200.0, True)}
    assert partitions_to_pause(unknown_idle, AHEAD, max_idle_s=5.0) == set()


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_ahead_s"):
        partitions_to_pause({}, -1.0)
    with pytest.raises(ValueError, match="max_idle_s"):
        Alignment(AHEAD, -1.0)


@given(st.dictionaries(st.integers(0, 7), progresses, max_size=8), st.floats(0, 100), st.floats(0, 10))
def test_exactly_the_partitions_past_the_frontier_plus_the_bound_are_paused(
        progress: dict[int, PartitionProgress], ahead: float, idle: float) -> None:
    paused = partitions_to_pause(progress, ahead, idle)
    start = frontier(progress, idle)
    holders = [k for k, p in progress.items() if p.behind and p.idle_s <= idle]
    if not holders:
        assert start is None and paused == set()
        return
    assert start is not None
    for k, p in progress.items():
        assert (k in paused) == (p.time is not None and p.time > start + ahead)
    # some partition with records left can always be fetched: the worker never stalls itself
    assert any(k not in paused for k in holders)
    # a caught-up partition's time never moves the frontier
    moved = {k: p if p.behind else PartitionProgress(None if p.time is None else p.time + 1e6, False, p.idle_s)
             for k, p in progress.items()}
    assert frontier(moved, idle) == start


@st.composite
def backlogs(draw: st.DrawFn) -> tuple[list[list[float]], float]:
    """Partitions' event times (nondecreasing, consecutive records at most ``gap`` apart), with densities
    that differ a lot: a plain round-robin consumes the sparse ones far ahead."""
    gap = draw(st.floats(0.5, 10))
    partitions = []
    for _ in range(draw(st.integers(2, 5))):
        start = draw(st.floats(0, 50))
        steps = draw(st.lists(st.floats(0, gap), min_size=1, max_size=60))
        partitions.append(list(_accumulate(start, steps)))
    return partitions, gap


def _accumulate(start: float, steps: list[float]) -> list[float]:
    out, t = [], start
    for step in steps:
        t += step
        out.append(t)
    return out


@settings(max_examples=300, deadline=None)
@given(backlogs(), st.data())
def test_a_catch_up_in_any_fetch_order_hands_over_a_record_only_after_every_record_far_enough_behind_it(
        backlog: tuple[list[list[float]], float], data: st.DataObject) -> None:
    """The fetcher hands over one record at a time from any partition not paused (the order is the
    adversary's). Whenever a record at time t is handed over, every record of every partition at or before
    t - (bound + gap) has been: with bound + gap <= the merchant lag, merchant windows come out as live.

    A partition's time is known only from a record it handed over, so the first record of each is handed
    over before the catch-up starts (the records the worker consumed live before its outage)."""
    partitions, gap = backlog
    alignment: Alignment[int] = Alignment(AHEAD, max_idle_s=math.inf)
    alignment.assigned(set(range(len(partitions))), 0.0)
    for p, times in enumerate(partitions):
        alignment.positioned(p, 0)
        alignment.delivered(p, 0, times[0], 0.0)
    highwaters: dict[int, int | None] = {p: len(times) for p, times in enumerate(partitions)}
    taken = [1] * len(partitions)
    paused = alignment.decide(highwaters, 0.0)
    while sum(taken) < sum(map(len, partitions)):
        fetchable = [p for p, times in enumerate(partitions) if taken[p] < len(times) and p not in paused]
        assert fetchable, "every partition with records left is paused"
        p = data.draw(st.sampled_from(fetchable))
        t = partitions[p][taken[p]]
        missing = [(q, times[taken[q]]) for q, times in enumerate(partitions)
                   if taken[q] < len(times) and times[taken[q]] <= t - (AHEAD + gap)]
        assert missing == [], f"partition {p} hands over {t} before {missing}"
        alignment.delivered(p, taken[p], t, 0.0)
        taken[p] += 1
        paused = alignment.decide(highwaters, 0.0)
    assert AHEAD <= MERCHANT_LAG_S / 2  # the default leaves half the lag for the gap and one fetch


def test_alignment_tracks_offsets_times_and_idle_clocks() -> None:
    alignment: Alignment[str] = Alignment(AHEAD, max_idle_s=5.0)
    alignment.assigned({"a", "b"}, now=0.0)
    assert set(alignment.unpositioned()) == {"a", "b"}
    alignment.positioned("a", 10)
    alignment.positioned("b", 20)
    assert alignment.unpositioned() == []
    alignment.delivered("a", 10, 100.0, now=1.0)
    alignment.delivered("b", 20, 200.0, now=1.0)
    # both behind: b is paused, and a record of b beyond the limit is what the adapter checks per record
    assert alignment.decide({"a": 50, "b": 50}, now=1.0) == {"b"}
    assert alignment.limit == 100.0 + AHEAD
    # a reaches its high-water mark: nothing holds b any more
    assert alignment.decide({"a": 11, "b": 50}, now=1.0) == set()
    assert alignment.limit == 200.0 + AHEAD  # b itself still has records left
    # a has records again but hands nothing over for longer than the idle bound
    assert alignment.decide({"a": 12, "b": 50}, now=6.0) == {"b"}
    assert alignment.decide({"a": 12, "b": 50}, now=6.5) == set()
    alignment.resumed({"a"}, now=6.5)
    assert alignment.decide({"a": 12, "b": 50}, now=7.0) == {"b"}
    # while the worker has records to process, nobody is idle
    alignment.busy(now=20.0)
    assert alignment.decide({"a": 12, "b": 50}, now=24.0) == {"b"}
    # an unreadable record moves the offset, not the time
    alignment.delivered("a", 11, None, now=7.0)
    assert alignment.progress({"a": 12, "b": 50}, now=7.0)["a"] == PartitionProgress(100.0, False, 0.0)
    # a new assignment forgets everything
    alignment.assigned({"b"}, now=8.0)
    assert alignment.partitions() == ["b"]
    assert alignment.progress({"b": 50}, now=8.0) == {"b": PartitionProgress(None, True, 0.0)}


def test_no_partition_is_idle_before_the_first_record_after_an_assignment() -> None:
    alignment: Alignment[str] = Alignment(AHEAD, max_idle_s=5.0)
    alignment.assigned({"a", "b"}, now=0.0)
    assert {p.idle_s for p in alignment.progress({"a": 5, "b": 5}, now=60.0).values()} == {0.0}  # still starting
    assert alignment.limit == -math.inf
    alignment.delivered("a", 0, 100.0, now=60.0)
    alignment.delivered("b", 0, 500.0, now=60.0)
    assert alignment.decide({"a": 5, "b": 5}, now=61.0) == {"b"}
    assert alignment.decide({"a": 5, "b": 5}, now=65.5) == set()  # a idle for 5 s since its record
