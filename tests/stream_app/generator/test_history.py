from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from stream_app.contract import Label, Transaction, decode_label, decode_transaction
from stream_app.generator import (
    EVALUATION_ONLY_COLUMNS,
    History,
    HistoryConfig,
    generate_history,
    golden_config,
    golden_history,
    labels_from_frame,
    read_history,
    transactions_from_frame,
    write_history,
)
from stream_app.generator.history import GOLDEN_SEED, config_from_json
from stream_app.generator.labels import FRAUD_DELAY_US, LEGIT_DELAY_US
from stream_app.generator.wire import keyed
from stream_app.iso_codes import COUNTRIES, CURRENCIES
from tests.fixtures.history import SMALL

FRAUD_PATTERNS = ("card_testing", "account_takeover", "compromised_merchant")


def _frames(h: History) -> dict[str, pd.DataFrame]:
    return {"t": h.transactions, "l": h.labels, "u": h.users, "m": h.merchants, "c": h.compromises}


def test_same_config_gives_identical_frames(small: History) -> None:
    again = generate_history(SMALL)
    for name, frame in _frames(small).items():
        pd.testing.assert_frame_equal(frame, _frames(again)[name], obj=name)


def test_another_seed_gives_another_world(small: History) -> None:
    other = generate_history(replace(SMALL, seed=SMALL.seed + 1))
    assert not small.transactions["amount"].equals(other.transactions["amount"])
    assert not small.users["home_country"].equals(other.users["home_country"])


def test_population_does_not_depend_on_the_window(small: History) -> None:
    """history and live with the same seed must describe the same users and merchants."""
    shifted = generate_history(replace(SMALL, days=3, start=SMALL.start + pd.Timedelta(days=40)))
    cols = ["user_id", "home_country", "typical_amount", "events_per_day"]
    pd.testing.assert_frame_equal(small.users[cols], shifted.users[cols])
    pd.testing.assert_frame_equal(
        small.merchants.drop(columns="first_seen"), shifted.merchants.drop(columns="first_seen")
    )


def test_files_are_byte_identical_and_read_back(small: History, tmp_path: Path) -> None:
    first = write_history(small, tmp_path / "a")
    second = write_history(generate_history(SMALL), tmp_path / "b")
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name
    back = read_history(tmp_path / "a")
    assert back.config == small.config
    for name, frame in _frames(small).items():
        pd.testing.assert_frame_equal(_frames(back)[name], frame, obj=name)


def test_parquet_schema_is_the_wire_schema_plus_documented_evaluation_columns(small: History, tmp_path: Path) -> None:
    paths = write_history(small, tmp_path)
    schema = pq.read_schema(paths["transactions"])
    assert schema.names == [*Transaction.model_fields, *EVALUATION_ONLY_COLUMNS]
    assert str(schema.field("event_time").type) == "timestamp[us, tz=UTC]"
    for column in EVALUATION_ONLY_COLUMNS:
        assert schema.field(column).metadata[b"wire"] == b"false"
    labels = pq.read_schema(paths["labels"])
    assert labels.names == list(Label.model_fields)
    assert str(labels.field("label_time").type) == "timestamp[us, tz=UTC]"
    assert {"home_country", "signup_time"} <= set(pq.read_schema(paths["users"]).names)
    assert {"country", "category", "first_seen"} <= set(pq.read_schema(paths["merchants"]).names)


def test_every_transaction_and_label_is_a_valid_wire_record(small: History) -> None:
    txns = small.transactions
    for key, value in keyed(transactions_from_frame(txns)):
        decode_transaction(value, key)
    for _, value in keyed(labels_from_frame(small.labels)):
        decode_label(value)
    assert txns["event_id"].is_unique
    amounts = txns["amount"].to_numpy()
    assert (amounts > 0).all() and (amounts <= 1e7).all()
    np.testing.assert_array_equal(np.round(amounts, 2), amounts)
    assert set(txns["currency"]) <= CURRENCIES and set(txns["country"]) <= COUNTRIES


def test_transactions_are_sorted_and_inside_the_window(small: History) -> None:
    times = small.transactions["event_time"]
    assert times.is_monotonic_increasing
    start = pd.Timestamp(SMALL.start)
    assert times.min() >= start and times.max() < start + pd.Timedelta(days=SMALL.days)


def test_one_label_per_transaction_with_the_stated_delays(small: History) -> None:
    txns, labels = small.transactions.set_index("event_id"), small.labels
    assert len(labels) == len(txns) and labels["event_id"].is_unique
    assert set(labels["event_id"]) == set(txns.index)
    assert labels["label_time"].is_monotonic_increasing
    joined = labels.join(txns[["user_id", "is_fraud", "event_time"]], on="event_id", rsuffix="_txn")
    assert (joined["user_id"] == joined["user_id_txn"]).all()
    assert (joined["is_fraud"] == joined["is_fraud_txn"]).all()
    delay_us = (joined["label_time"] - joined["event_time"]).dt.total_seconds().to_numpy() * 1e6
    fraud = joined["is_fraud"].to_numpy()
    assert delay_us[fraud].min() >= FRAUD_DELAY_US[0] and delay_us[fraud].max() <= FRAUD_DELAY_US[1]
    assert delay_us[~fraud].min() >= LEGIT_DELAY_US[0] and delay_us[~fraud].max() <= LEGIT_DELAY_US[1]


def test_month_volume_speed_and_fraud_rates(month: History) -> None:
    began = time.perf_counter()
    generate_history(HistoryConfig(days=30, users=20_000, merchants=2_000, seed=8))
    assert time.perf_counter() - began < 15  # about 1 s on a laptop; "well under a minute"
    s = month.summary()
    assert s["events"] >= 500_000
    assert 0.005 <= s["fraud_rate"] <= 0.02
    for pattern in FRAUD_PATTERNS:
        assert 0.001 <= s["fraud_rate_by_pattern"][pattern] <= 0.01, pattern


def test_small_runs_keep_the_fraud_rate_and_every_pattern(small: History) -> None:
    txns = small.transactions
    assert 0.005 <= txns["is_fraud"].mean() <= 0.02
    assert set(FRAUD_PATTERNS) <= set(txns["fraud_pattern"])
    assert (txns["is_fraud"] == (txns["fraud_pattern"] != "none")).all()


def _bursts(frame: pd.DataFrame, gap: pd.Timedelta) -> pd.Series:
    """Burst number per row: same user, consecutive events less than ``gap`` apart."""
    frame = frame.sort_values(["user_id", "event_time"])
    new = (frame["user_id"].diff() != 0) | (frame["event_time"].diff() > gap)
    return new.cumsum().reindex(frame.index)


def test_card_testing_is_small_amounts_in_bursts_across_merchants_mostly_web(month: History) -> None:
    ct = month.transactions[month.transactions["fraud_pattern"] == "card_testing"]
    assert ct["amount"].between(0.5, 5.0).all()
    bursts = ct.groupby(_bursts(ct, pd.Timedelta(minutes=10)))
    size = bursts.size()
    span = bursts["event_time"].agg(lambda t: t.max() - t.min())
    distinct = bursts["merchant_id"].nunique() / size
    # a burst may be cut by the window's end; nearly all are whole
    assert (size.between(5, 30)).mean() > 0.97 and size.max() <= 30
    assert (span < pd.Timedelta(minutes=30)).mean() > 0.97
    assert distinct.median() >= 0.9
    assert (ct["channel"] == "web").mean() > 0.75


def test_account_takeover_is_large_foreign_and_at_off_hours(month: History) -> None:
    users = month.users.set_index("user_id").drop(columns="currency")
    ato = month.transactions[month.transactions["fraud_pattern"] == "account_takeover"].join(users, on="user_id")
    assert (ato["country"] != ato["home_country"]).all()
    multiple = ato["amount"] / ato["typical_amount"]
    assert multiple.between(4.95, 30.5).all()
    assert set(ato["channel"]) <= {"web", "app"}
    local = (ato["event_time"].dt.hour + ato["event_time"].dt.minute / 60 + ato["utc_offset_h"]) % 24
    distance = np.abs((local - ato["active_hour_local"] + 12) % 24 - 12)
    assert distance.median() >= 8  # about half a day from the user's usual hours
    assert ato.groupby(_bursts(ato, pd.Timedelta(hours=3))).size().max() <= 4


def test_compromised_merchants_repeat_within_their_breach(month: History) -> None:
    txns, breaches = month.transactions, month.compromises.set_index("merchant_id")
    cm = txns[txns["fraud_pattern"] == "compromised_merchant"].join(breaches, on="merchant_id")
    assert cm["start"].notna().all()  # only breached merchants
    assert ((cm["event_time"] >= cm["start"]) & (cm["event_time"] < cm["end"])).all()
    assert (cm.groupby("merchant_id").size() >= 3).all()  # merchants repeat: a 7-day rate can see them
    busy = breaches[breaches["fraud_transactions"] >= 100]
    assert len(busy) >= 3
    for merchant_id, breach in busy.iterrows():
        at = txns[(txns["merchant_id"] == merchant_id) & txns["event_time"].between(breach["start"], breach["end"])]
        share = (at["fraud_pattern"] == "compromised_merchant").mean()
        assert share == pytest.approx(breach["fraud_fraction"], abs=0.12)


def test_legit_noise_overlaps_every_pattern(month: History) -> None:
    users = month.users.set_index("user_id").drop(columns="currency")
    legit = month.transactions[~month.transactions["is_fraud"]].join(users, on="user_id")
    assert (legit["country"] != legit["home_country"]).mean() > 0.03  # travel, foreign web shops
    assert (legit["amount"] > 5 * legit["typical_amount"]).sum() > 1_000  # big purchases
    assert (legit["amount"] <= 5).mean() > 0.01  # small tickets like card tests
    counts_10m = legit.groupby(_bursts(legit, pd.Timedelta(minutes=10))).size()
    assert (counts_10m >= 5).sum() > 100  # legit bursts


def test_population_codes_are_valid(small: History) -> None:
    assert set(small.users["home_country"]) <= COUNTRIES
    assert set(small.users["currency"]) <= CURRENCIES
    assert (small.users["signup_time"] < pd.Timestamp(SMALL.start)).all()
    assert small.users["user_id"].is_unique and small.merchants["merchant_id"].is_unique
    assert not set(small.users["user_id"]) & set(small.merchants["merchant_id"])


def test_golden_set_is_fixed_and_sizeable() -> None:
    config = golden_config()
    assert (config.days, config.users, config.seed) == (7, 5_000, GOLDEN_SEED)
    golden = golden_history()
    pd.testing.assert_frame_equal(golden.transactions, golden_history().transactions)
    assert len(golden.transactions) > 25_000 and golden.transactions["is_fraud"].sum() > 250


def test_config_survives_json() -> None:
    assert config_from_json(SMALL.as_json_dict()) == SMALL


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        HistoryConfig(days=0)
    with pytest.raises(ValueError, match="timezone"):
        HistoryConfig(start=pd.Timestamp("2026-10-01").to_pydatetime())
