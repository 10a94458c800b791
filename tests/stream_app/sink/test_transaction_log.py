"""The sink's transaction log with a fake consumer and real files: every valid transaction is logged in
the hour of its event time, invalid ones are not (and still committed past), ``read_transactions``
keeps the first of duplicates, and compaction keeps the rows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd

from stream_app.adapters.transaction_log import COLUMNS, conform, read_transactions
from stream_app.contract import Transaction, encode, user_key
from stream_app.core.offline_layout import TRANSACTION_LOG
from stream_app.sink.compaction import compact_closed_hours
from stream_app.sink.runner import TRANSACTIONS_LOG, compaction_targets
from tests.stream_app.sink.test_sink import T0, Clock, Message, make_sink, settings_for

TXNS = "transactions"


def txn(i: int, minutes: float = 0, *, amount: float = 12.5, event_id: str | None = None) -> Transaction:
    return Transaction.model_validate({
        "event_id": event_id or f"t{i}", "user_id": 100 + i % 3, "merchant_id": 7, "amount": amount,
        "currency": "EUR", "country": "FR" if i % 2 else "DE", "channel": ("pos", "web", "app")[i % 3],
        "event_time": (T0 + timedelta(minutes=minutes)).isoformat()})


def message(offset: int, t: Transaction, partition: int = 0, key: bytes | None = None) -> Message:
    return Message(TXNS, partition, offset, encode(t), key or user_key(t.user_id))


def test_valid_transactions_are_logged_by_hour_of_event_time_and_invalid_ones_skipped(tmp_path: Path) -> None:
    clock = Clock()
    good = [txn(i, minutes=i) for i in range(4)]  # 12:58 .. 13:01
    messages = [message(i, t) for i, t in enumerate(good)]
    messages.append(Message(TXNS, 0, 4, b'{"event_id": "bad"}', b"1"))  # schema: dead-lettered by the worker
    messages.append(message(5, txn(9), key=b"999"))  # key is not its user_id: dead-lettered too
    sink, consumer = make_sink(tmp_path, messages, clock, part_max_age_s=1.0)
    sink.step()
    clock.now = 2.0
    sink.step()
    assert (sink.stats.transactions, sink.stats.rejected, sink.stats.invalid) == (4, 2, 0)
    assert consumer.committed() == {(TXNS, 0): 6}
    directory = settings_for(tmp_path).data_dir / TRANSACTION_LOG
    assert sorted(p.name for p in directory.iterdir()) == ["2026-11-01T12", "2026-11-01T13"]
    logged = read_transactions(directory).sort_values("event_id", ignore_index=True)
    assert list(logged.columns) == list(COLUMNS)
    assert list(logged["event_id"]) == [t.event_id for t in good]
    assert list(logged["amount"]) == [t.amount for t in good]
    assert list(logged["country"]) == [t.country for t in good]
    assert list(logged["channel"]) == [t.channel for t in good]
    assert list(logged["event_time"]) == [pd.Timestamp(t.event_time) for t in good]
    assert list(logged["offset"]) == [0, 1, 2, 3]


def test_read_transactions_keeps_the_first_read_of_duplicates_and_compaction_keeps_the_rows(tmp_path: Path) -> None:
    clock = Clock()
    first, retry = txn(0, amount=10.0, event_id="dup"), txn(0, minutes=65, amount=99.0, event_id="dup")
    messages = [message(3, txn(1)), message(8, first), message(9, retry)]  # the retry in the next hour
    sink, _ = make_sink(tmp_path, messages, clock, part_max_age_s=1.0, part_max_rows=1)
    sink.step()
    clock.now = 2.0
    sink.step()
    settings = settings_for(tmp_path)
    directory = settings.data_dir / TRANSACTION_LOG
    before = read_transactions(directory)
    assert len(before) == 2 and before.set_index("event_id").loc["dup", "amount"] == 10.0

    targets = compaction_targets(settings)
    report = compact_closed_hours({TRANSACTIONS_LOG: targets[TRANSACTIONS_LOG]}, T0 + timedelta(days=1))
    assert not report.failed and len(report.merged) == 1  # 12:00 held two parts, 14:00 one
    assert all(len(list(d.glob("*.parquet"))) == 1 for d in directory.iterdir())
    after = read_transactions(directory)
    pd.testing.assert_frame_equal(conform(after.sort_values("event_id", ignore_index=True)),
                                  conform(before.sort_values("event_id", ignore_index=True)))


def test_a_time_range_reads_only_its_hours_and_rows(tmp_path: Path) -> None:
    clock = Clock()
    messages = [message(i, txn(i, minutes=30 * i)) for i in range(6)]  # 12:58, 13:28, .. 15:28
    sink, _ = make_sink(tmp_path, messages, clock, part_max_age_s=1.0)
    sink.step()
    clock.now = 2.0
    sink.step()
    directory = settings_for(tmp_path).data_dir / TRANSACTION_LOG
    (directory / "2026-11-01T15" / "part-unreadable.parquet").write_bytes(b"not parquet")  # outside the range
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(minutes=61)
    assert list(read_transactions(directory, since=since, until=until)["event_id"]) == ["t1", "t2"]
