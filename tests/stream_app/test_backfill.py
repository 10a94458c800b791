from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from stream_app import backfill
from stream_app.adapters.redis_client import connect
from stream_app.adapters.state_store import Kind, RedisWindowStore
from stream_app.core.engine import FeatureEngine, LabelEvent, TransactionEvent, WindowRows, WindowState
from stream_app.errors import ConfigError
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history, write_history
from stream_app.settings import RedisSettings, Settings, WorkerSettings, get_settings


def _digest(paths: list[Path]) -> dict[str, str]:
    return {p.name + str(p.parent.name): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_backfill_is_idempotent_and_serves_one_row_per_transaction(tmp_path: Path) -> None:
    history = generate_history(HistoryConfig(days=2, users=200, merchants=30, seed=9,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    write_history(history, tmp_path / "history")
    repo = tmp_path / "repo"
    first = backfill.backfill(tmp_path / "history", repo)
    files = sorted(repo.rglob("*.parquet"))
    before = _digest(files)
    second = backfill.backfill(tmp_path / "history", repo)
    assert _digest(sorted(repo.rglob("*.parquet"))) == before
    assert len(files) == 4
    assert len(first.user_rows) == len(second.user_rows) == len(history.transactions)
    assert first.events_per_s > 0


def test_arrival_order_puts_labels_before_transactions_at_the_same_instant() -> None:
    t = pd.to_datetime(["2026-10-01T00:00:01Z", "2026-10-01T00:00:02Z"], utc=True)
    txns = pd.DataFrame({"event_time": t})
    labels = pd.DataFrame({"label_time": pd.to_datetime(["2026-10-01T00:00:02Z", "2026-10-01T00:00:00Z"], utc=True)})
    assert list(backfill.arrival_order(txns, labels)) == [
        ("label", 1), ("transaction", 0), ("label", 0), ("transaction", 1)]


def test_frames_in_any_row_order_serve_the_same_rows() -> None:
    """Positions follow the processing order, not the frames' rows: shuffled inputs lose nothing as a replay."""
    history = generate_history(HistoryConfig(days=1, users=100, merchants=10, seed=4,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    ordered = backfill.run(history.transactions, history.labels)
    shuffled = backfill.run(history.transactions.sample(frac=1.0, random_state=1),
                            history.labels.sample(frac=1.0, random_state=2))
    assert (ordered.labels, ordered.late) == (shuffled.labels, shuffled.late)
    assert ordered.labels + ordered.labels_after_end == len(history.labels) and ordered.late == 0
    key = ["user_id", "event_timestamp"]
    pd.testing.assert_frame_equal(ordered.user_rows.sort_values(key).reset_index(drop=True),
                                  shuffled.user_rows.sort_values(key).reset_index(drop=True))
    key = ["merchant_id", "event_timestamp"]
    pd.testing.assert_frame_equal(ordered.merchant_rows.sort_values(key).reset_index(drop=True),
                                  shuffled.merchant_rows.sort_values(key).reset_index(drop=True))


def test_the_default_lateness_is_the_workers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``lateness_s`` the backfill's engine gets the worker's ``allowed_lateness_s``, also when
    STREAMSCORE_WORKER__ALLOWED_LATENESS_S changes it: training and serving call the same events late."""
    built: list[float] = []

    class Recording(FeatureEngine):
        def __init__(self, allowed_lateness_s: float, state: WindowState | None = None, **kwargs: float) -> None:
            built.append(allowed_lateness_s)
            super().__init__(allowed_lateness_s, state, **kwargs)

    monkeypatch.setattr(backfill, "FeatureEngine", Recording)
    history = generate_history(HistoryConfig(days=1, users=20, merchants=5, seed=4,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    monkeypatch.delenv("STREAMSCORE_WORKER__ALLOWED_LATENESS_S", raising=False)
    get_settings.cache_clear()
    try:
        backfill.run(history.transactions, history.labels)
        monkeypatch.setenv("STREAMSCORE_WORKER__ALLOWED_LATENESS_S", "120")
        get_settings.cache_clear()
        backfill.run(history.transactions, history.labels)
        assert built == [WorkerSettings().allowed_lateness_s, 120.0]
    finally:
        get_settings.cache_clear()


def test_backfill_applies_the_future_rule_to_the_record_time_column() -> None:
    """With ``record_time`` (when each record entered Kafka) the backfill refuses what the worker refuses,
    and orders arrivals by it; without it, event_time is the arrival time and nothing is future."""
    history = generate_history(HistoryConfig(days=1, users=50, merchants=10, seed=5,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    txns = history.transactions.sort_values("event_time").reset_index(drop=True)
    user = int(txns["user_id"].iloc[0])
    far = txns.iloc[[0]].assign(event_id="far", event_time=pd.Timestamp("2200-01-01", tz="UTC"))
    far = far.assign(record_time=txns["event_time"].iloc[0])
    with_far = pd.concat([far, txns.assign(record_time=txns["event_time"])], ignore_index=True)
    result = backfill.run(with_far, history.labels)
    assert (result.future, result.late) == (1, 0)
    assert len(result.user_rows) == len(txns)
    assert int((result.user_rows["user_id"] == user).sum()) == int((txns["user_id"] == user).sum())
    without = backfill.run(with_far.drop(columns="record_time"), history.labels)
    assert without.future == 0 and len(without.user_rows) == len(with_far)


def test_training_sees_each_event_id_once() -> None:
    history = generate_history(HistoryConfig(days=1, users=50, merchants=10, seed=6,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    txns = history.transactions
    resent = txns.iloc[::10]
    result = backfill.run(pd.concat([txns, resent, resent.assign(amount=resent["amount"] + 1.0)]), history.labels)
    clean = backfill.run(txns, history.labels)
    assert result.duplicates == 2 * len(resent)
    key = ["user_id", "event_timestamp"]
    pd.testing.assert_frame_equal(result.user_rows.sort_values(key).reset_index(drop=True),
                                  clean.user_rows.sort_values(key).reset_index(drop=True))


@pytest.mark.integration
def test_a_worker_on_the_seeded_state_serves_what_the_whole_history_run_serves(redis_url: str, unique: str) -> None:
    """The backfill of the first part of a history, seeded into Redis, then the rest through the state store
    as the worker drives it (its own partitions and offsets from 0): every row served equals the one a
    backfill of the whole history serves. Seeding again keeps what the worker wrote."""
    history = generate_history(HistoryConfig(days=6, users=150, merchants=20, seed=8,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    txns, labels = history.transactions, history.labels
    order = list(backfill.arrival_order(txns, labels))
    cut = [n for n, (kind, _i) in enumerate(order) if kind == "transaction"][len(txns) * 2 // 3] + 1
    head_t = [i for kind, i in order[:cut] if kind == "transaction"]
    head_l = [i for kind, i in order[:cut] if kind == "label"]
    settings = Settings(redis=RedisSettings(url=redis_url))
    lateness = settings.worker.allowed_lateness_s
    whole = backfill.run(txns, labels, lateness)
    head = backfill.run(txns.iloc[head_t], labels.iloc[head_l], lateness)
    assert whole.late == whole.duplicates == 0

    project = f"seed_{unique}"
    client = connect(settings.redis)
    try:
        seeded = backfill.seed_state(head, settings, project)
        assert seeded.kept == 0
        assert seeded.written[Kind.USER] == len(head.state.users) > 0
        assert seeded.written[Kind.MERCHANT_LABEL] == len(head.state.merchant_labels) > 0
        store = RedisWindowStore.for_worker(client, settings, project)

        t_rows, l_rows = txns.to_dict("records"), labels.to_dict("records")
        merchant_of = {row["event_id"]: int(row["merchant_id"]) for row in t_rows}
        offsets = {"labels": 0, **{f"p{p}": 0 for p in range(4)}}
        user_rows: list[dict[str, float]] = []
        merchant_rows: list[dict[str, float]] = []
        rest = order[cut:]
        for start in range(0, len(rest), 64):
            batch = [(kind, t_rows[i] if kind == "transaction" else l_rows[i]) for kind, i in rest[start:start + 64]]
            engine = FeatureEngine(lateness, store.load([int(r["user_id"]) for k, r in batch if k == "transaction"],
                                                        [merchant_of[r["event_id"]] for _k, r in batch]))
            for kind, row in batch:
                if kind == "label":
                    engine.on_label(LabelEvent(row["event_id"], merchant_of[row["event_id"]], bool(row["is_fraud"]),
                                               row["label_time"].timestamp(), (0, offsets["labels"])))
                    offsets["labels"] += 1
                    continue
                user = int(row["user_id"])
                partition = user % 4
                served = engine.on_transaction(TransactionEvent(
                    row["event_id"], user, int(row["merchant_id"]), float(row["amount"]),
                    row["event_time"].timestamp(), (partition, offsets[f"p{partition}"])))
                offsets[f"p{partition}"] += 1
                assert isinstance(served, WindowRows), (row["event_id"], served)
                user_rows.append(served.user)
                merchant_rows.append(served.merchant)
            store.commit(engine.state)

        for got, want in ((user_rows, whole.user_rows), (merchant_rows, whole.merchant_rows)):
            frame = pd.DataFrame(got)
            expected = want[list(frame.columns)].tail(len(frame)).reset_index(drop=True)
            pd.testing.assert_frame_equal(frame, expected, check_dtype=False)

        after = store.load([user], []).users[user].to_bytes()
        again = backfill.seed_state(head, settings, project)
        assert sum(again.written.values()) == 0 and again.kept == sum(seeded.written.values())
        assert store.load([user], []).users[user].to_bytes() == after
    finally:
        keys = list(client.scan_iter(match=f"{project}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def test_seeding_refuses_a_backfill_run_with_another_lateness() -> None:
    history = generate_history(HistoryConfig(days=1, users=20, merchants=5, seed=4,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    settings = Settings(redis=RedisSettings(url="redis://127.0.0.1:1/0"))
    result = backfill.run(history.transactions, history.labels, settings.worker.allowed_lateness_s + 60.0)
    with pytest.raises(ConfigError, match="allowed lateness"):
        backfill.seed_state(result, settings, "any")


def test_the_state_a_run_ends_with_knows_only_the_labels_that_arrived_by_the_last_transaction() -> None:
    history = generate_history(HistoryConfig(days=2, users=60, merchants=8, seed=12,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    result = backfill.run(history.transactions, history.labels)
    end = history.transactions["event_time"].max().timestamp()
    later = int((history.labels["label_time"] > history.transactions["event_time"].max()).sum())
    assert result.labels_after_end == later > 0  # a generated history holds its last days' future labels
    assert result.labels + later == len(history.labels)
    latest = [w.latest_time for w in result.state.merchant_labels.values() if w.latest_time is not None]
    assert latest and max(latest) <= end
