"""Point-in-time correctness of the training frame: the features `get_historical_features` returns
through the production FeatureService equal a brute-force recomputation from the raw events up to each
event (window features), the daily snapshot before it (profiles), and the request itself."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.dataset import entity_frame, historical_features
from models.features import model_feature_names
from stream_app.core import request_features
from stream_app.core.window_spec import ALL_WINDOWS
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history
from stream_app.settings import Settings
from tests.fixtures.reference import Reference, same
from tests.fixtures.workspace import backfill_into, open_workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def history():  # type: ignore[no-untyped-def]
    return generate_history(HistoryConfig(days=4, users=400, merchants=60, seed=3,
                                          start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))


def test_training_frame_equals_brute_force_recomputation(history, settings: Settings, unique: str,  # type: ignore[no-untyped-def]
                                                        tmp_path: Path) -> None:
    workspace = open_workspace(settings, tmp_path, f"pit_{unique}")
    backfill_into(workspace, history.transactions, history.labels, history.users)
    entities = entity_frame(history.transactions, history.labels)
    frame = historical_features(workspace.store, entities)
    assert len(frame) == len(entities)
    assert list(frame["event_id"]) == list(entities["event_id"])

    reference = Reference(history.transactions, history.labels)
    row_of = {eid: i for i, eid in enumerate(history.transactions["event_id"])}
    rng = np.random.default_rng(0)
    sample = rng.choice(len(frame), size=min(400, len(frame)), replace=False)
    fraud_rows = np.flatnonzero(frame["is_fraud"].to_numpy())[:100]
    mismatches: list[str] = []
    users = history.users.set_index("user_id")
    for k in np.unique(np.concatenate([sample, fraud_rows])):
        got = frame.iloc[int(k)]
        expected = reference.features(row_of[got["event_id"]])
        for spec in ALL_WINDOWS:
            if not same(float(got[spec.name]), expected[spec.name]):
                mismatches.append(f"{got['event_id']} {spec.name}: feast={got[spec.name]} brute={expected[spec.name]}")
        # profiles: the snapshot at the event's UTC midnight, from history strictly before it
        t = got["event_timestamp"]
        day = t.floor("D")
        before = history.transactions[(history.transactions["user_id"] == got["user_id"])
                                      & (pd.to_datetime(history.transactions["event_time"], utc=True) < day)
                                      & (pd.to_datetime(history.transactions["event_time"], utc=True)
                                         >= day - pd.Timedelta(days=30))]
        if pd.Timestamp(users.at[got["user_id"], "signup_time"]) < day:
            assert got["user_txn_count_30d"] == len(before), got["event_id"]
            want_avg = before["amount"].mean() if len(before) else math.nan
            assert same(float(got["user_avg_amount_30d"]), float(want_avg)), got["event_id"]
        else:
            assert math.isnan(float(got["user_account_age_days"])), got["event_id"]
        request = request_features.compute(
            amount=float(got["amount"]), country=str(got["country"]), channel=str(got["channel"]),
            event_hour=int(t.hour), user_mean_24h=expected["user_amount_mean_24h"],
            home_country=None if pd.isna(got["home_country"]) else str(got["home_country"]))
        for name, value in request.items():
            if not same(float(got[name]), float(value)):
                mismatches.append(f"{got['event_id']} {name}: feast={got[name]} core={value}")
    assert mismatches == []
    assert set(model_feature_names()) <= set(frame.columns)
