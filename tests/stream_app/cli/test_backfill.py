"""``streamscore backfill --seed-state``: the worker's namespace in the settings' Redis gets every user's and
merchant's window state, once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import redis

from stream_app.adapters.feast_store import prepare_workspace
from stream_app.cli import main
from stream_app.generator.config import HistoryConfig
from stream_app.generator.history import generate_history, write_history
from stream_app.settings import FEATURE_REPO, RedisSettings, get_settings

pytestmark = pytest.mark.integration


def test_seed_state_fills_the_workers_namespace_once(tmp_path: Path, redis_url: str, unique: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    history = generate_history(HistoryConfig(days=2, users=80, merchants=12, seed=3,
                                             start=pd.Timestamp("2026-10-01", tz="UTC").to_pydatetime()))
    write_history(history, tmp_path / "history")
    project = f"cli_seed_{unique}"
    repo = prepare_workspace(FEATURE_REPO, tmp_path / "repo", project)
    monkeypatch.setenv("STREAMSCORE_REDIS__URL", redis_url)
    monkeypatch.setenv("STREAMSCORE_WORKER__APP_ID", f"worker-{unique}")
    argv = ["backfill", "--history", str(tmp_path / "history"), "--repo", str(repo), "--seed-state", "--no-progress"]
    client = redis.Redis(**RedisSettings(url=redis_url).client_kwargs())
    get_settings.cache_clear()
    try:
        assert main(argv) == 0
        first = capsys.readouterr().err
        users = list(client.scan_iter(match=f"{project}:worker-{unique}:win:user:*", count=1000))
        assert main(argv) == 0
        second = capsys.readouterr().err
    finally:
        get_settings.cache_clear()
        keys = list(client.scan_iter(match=f"{project}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    assert len(users) == history.transactions["user_id"].nunique()
    assert f"{len(users)} user keys" in first and "0 already there kept" in first
    assert "0 user keys" in second and "already there kept" in second and "0 already there kept" not in second
