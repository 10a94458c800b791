"""The aligner's Faust side against fakes of the consumer: what it reads from handed-over records, and what it
pauses and resumes in aiokafka (tests/stream_app/worker/test_catch_up.py runs it on the real broker)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition
from faust.types import TP

from stream_app.core.alignment import Alignment
from stream_app.worker.alignment import PartitionAligner, scheduling

TOPIC = "transactions"


@dataclass
class FakeAiokafka:
    """The calls the aligner makes on aiokafka's consumer."""

    assigned: set[TopicPartition]
    paused_now: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_now)

    def pause(self, *partitions: TopicPartition) -> None:
        assert all(type(p) is TopicPartition for p in partitions)  # aiokafka refuses anything else
        self.paused_now.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused_now.difference_update(partitions)


@dataclass
class FakeThread:
    """Faust's consumer thread: runs a call on the thread that owns aiokafka's consumer."""

    consumer: FakeAiokafka

    def _ensure_consumer(self) -> FakeAiokafka:
        return self.consumer

    async def call_thread(self, fun: Callable[..., Any], *args: Any) -> Any:
        return fun(*args)


@dataclass
class FakeConsumer:
    highwaters: dict[TP, int]
    _thread: FakeThread | None = None

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


@dataclass
class FakeApp:
    consumer: FakeConsumer


def _record(second: int) -> bytes:
    return json.dumps({"event_time": f"2026-11-01T10:{second // 60:02d}:{second % 60:02d}Z"}).encode()


def _aligner(highwaters: dict[TP, int]) -> PartitionAligner:
    app: Any = FakeApp(FakeConsumer(highwaters))
    return PartitionAligner(app, TOPIC, Alignment(max_ahead_s=30.0), clock=lambda: 0.0)


def test_a_record_past_the_bound_asks_for_its_partition_to_be_paused() -> None:
    a, b = TP(TOPIC, 0), TP(TOPIC, 1)
    aligner = _aligner({a: 100, b: 100})
    aligner.assigned({a, b, TP("labels", 0)})
    aligner.fetched(a, 0, _record(0))
    aligner.fetched(b, 0, _record(20))
    aligner.fetched(TP("labels", 0), 0, _record(59 * 60))  # another topic: not looked at
    assert aligner._wanted == frozenset()
    aligner.fetched(b, 1, _record(40))
    assert aligner._wanted == {b}
    aligner.fetched(a, 1, _record(5))  # below the limit: resuming waits for the recheck
    assert aligner._wanted == {b}
    aligner._recheck()
    assert aligner._wanted == {b}  # 40 > 5 + 30
    aligner.fetched(a, 2, _record(12))
    aligner._recheck()
    assert aligner._wanted == frozenset()


def test_exactly_the_wanted_assigned_partitions_of_the_topic_are_paused_in_aiokafka() -> None:
    aligner = _aligner({})
    consumer = FakeAiokafka({TopicPartition(TOPIC, p) for p in range(3)} | {TopicPartition("labels", 0)},
                            {TopicPartition(TOPIC, 0), TopicPartition("labels", 0)})
    resumed = aligner._set_paused(consumer, frozenset({TP(TOPIC, 1), TP(TOPIC, 7)}))  # 7: not assigned any more
    assert consumer.paused_now == {TopicPartition(TOPIC, 1), TopicPartition("labels", 0)}  # not its topic: left alone
    assert resumed == {TP(TOPIC, 0)}
    assert aligner._set_paused(consumer, frozenset({TP(TOPIC, 1)})) == frozenset()
    assert consumer.paused_now == {TopicPartition(TOPIC, 1), TopicPartition("labels", 0)}


def test_applying_pauses_in_aiokafka_restarts_the_idle_clock_of_the_resumed_and_reports_the_count() -> None:
    a, b = TP(TOPIC, 0), TP(TOPIC, 1)
    aiokafka = FakeAiokafka({TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)})
    reported: list[int] = []
    clock = [0.0]
    app: Any = FakeApp(FakeConsumer({a: 10, b: 10}, FakeThread(aiokafka)))
    aligner = PartitionAligner(app, TOPIC, Alignment(max_ahead_s=30.0, max_idle_s=5.0), on_paused=reported.append,
                               clock=lambda: clock[0])
    aligner.assigned({a, b})
    aligner.fetched(a, 0, _record(0))  # idle clocks run from the first record on
    asyncio.run(aligner._apply(frozenset({b})))
    assert aiokafka.paused_now == {TopicPartition(TOPIC, 1)} and aligner.paused == frozenset({b})
    clock[0] = 100.0
    asyncio.run(aligner._apply(frozenset()))
    assert aiokafka.paused_now == set() and aligner.paused == frozenset()
    assert reported == [1, 0]
    assert aligner.alignment.progress({a: 10, b: 10}, 100.0)[b].idle_s == 0.0  # resumed now
    assert aligner.alignment.progress({a: 10, b: 10}, 100.0)[a].idle_s == 100.0


def test_no_partition_counts_as_idle_while_the_agent_has_records_to_take() -> None:
    a, b = TP(TOPIC, 0), TP(TOPIC, 1)
    clock = [0.0]
    app: Any = FakeApp(FakeConsumer({a: 100, b: 100}))
    aligner = PartitionAligner(app, TOPIC, Alignment(max_ahead_s=30.0, max_idle_s=5.0), clock=lambda: clock[0])
    aligner.assigned({a, b})
    aligner.fetched(a, 0, _record(0))
    aligner.fetched(b, 0, _record(100))
    aligner._recheck()
    assert aligner._wanted == {b}
    clock[0] = 60.0  # a hands nothing over for a minute: the agent's buffer is full of records not taken
    aligner._recheck()
    assert aligner._wanted == {b}
    aligner.on_stream_event_in(a, 0, None, None)
    aligner.on_stream_event_in(b, 0, None, None)
    aligner.on_stream_event_in(TP("labels", 0), 0, None, None)
    clock[0] = 66.0  # the agent took everything, and a still hands nothing over: it stops holding b back
    aligner._recheck()
    assert aligner._wanted == frozenset()


def test_the_scheduler_hands_records_over_in_fausts_order_and_tells_the_aligner() -> None:
    a, b = TP(TOPIC, 0), TP(TOPIC, 1)
    aligner = _aligner({a: 100, b: 100})
    aligner.assigned({a, b})

    @dataclass
    class Record:
        offset: int
        value: bytes

    records = {a: [Record(0, _record(0)), Record(1, _record(1))], b: [Record(0, _record(100))]}
    handed = list(scheduling(aligner)().iterate(records))
    assert sorted((tp.partition, r.offset) for tp, r in handed) == [(0, 0), (0, 1), (1, 0)]
    assert aligner._wanted == {b}  # b is 99 s ahead of a
