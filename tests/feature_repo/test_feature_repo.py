"""The Feast repository on the real Redis: `feast apply` and `feast plan` through the CLI, batch views
materialised with `feast materialize-incremental`, and the production FeatureService read online."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from models.features import model_feature_names
from stream_app import backfill
from stream_app.adapters.feast_store import run_feast_cli
from stream_app.core import profiles
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history
from stream_app.settings import Settings
from tests.fixtures.workspace import open_workspace

pytestmark = pytest.mark.integration


def test_apply_plan_materialize_and_read_the_feature_service_online(settings: Settings, unique: str,
                                                                    tmp_path: Path) -> None:
    # materialize-incremental starts its first run at wall-clock now - TTL: history must end recently
    start = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=3)
    history = generate_history(HistoryConfig(days=3, users=300, merchants=40, seed=5, start=start.to_pydatetime()))
    workspace = open_workspace(settings, tmp_path, f"repo_{unique}")
    result = backfill.run(history.transactions, history.labels)
    days = profiles.snapshot_days(history.transactions)
    user_profiles = profiles.user_profiles(history.transactions, history.users, days)
    merchant_profiles = profiles.merchant_profiles(history.transactions, days)
    backfill.write_outputs(workspace.path, result, user_profiles, merchant_profiles)

    applied = run_feast_cli(workspace.settings, ["apply"], repo=workspace.path)
    assert "Deploying infrastructure for user_windows" in applied
    planned = run_feast_cli(workspace.settings, ["plan"], repo=workspace.path)
    assert "No changes to infrastructure" in planned

    end = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    run_feast_cli(workspace.settings, ["materialize-incremental", end, "--views", "user_profile",
                                       "--views", "merchant_profile"], repo=workspace.path)

    last = days[-1]
    users = user_profiles[(user_profiles["event_timestamp"] == last)].set_index("user_id")
    merchants = merchant_profiles[(merchant_profiles["event_timestamp"] == last)].set_index("merchant_id")
    user_id, merchant_id = int(users.index[0]), int(merchants.index[0])
    service = workspace.store.get_feature_service("fraud_model_v1")
    online = workspace.store.get_online_features(
        features=service,
        entity_rows=[{"user_id": user_id, "merchant_id": merchant_id, "amount": 42.0, "country": "FR",
                      "channel": "web", "event_hour": 13}],
    ).to_dict()
    assert set(model_feature_names()) <= set(online)
    assert online["user_avg_amount_30d"][0] == pytest.approx(users.at[user_id, "user_avg_amount_30d"], nan_ok=True)
    assert online["user_txn_count_30d"][0] == users.at[user_id, "user_txn_count_30d"]
    assert online["merchant_txn_count_30d"][0] == merchants.at[merchant_id, "merchant_txn_count_30d"]
    assert online["txn_amount"][0] == 42.0
    assert online["hour_of_day"][0] == 13
    assert online["channel_code"][0] == 1
    assert online["is_foreign_country"][0] == int(bool(users.at[user_id, "home_country"] != "FR"))
    # no window row was pushed for this store: the ratio's input is missing, so the ratio is too
    assert online["user_txn_count_1h"][0] is None
    ratio = online["amount_to_user_mean_24h"][0]
    assert ratio is None or math.isnan(ratio)
