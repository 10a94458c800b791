"""`feast apply` of a minimal repository on the real Redis online store, then a write and a read through
Feast's own API: proves the Feast SDK, its Redis store and our connection settings fit together."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from stream_app.settings import Settings

pytestmark = pytest.mark.integration

DEFINITIONS = '''
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource
from feast.types import Float64, Int64

card = Entity(name="card", join_keys=["card_id"])
source = FileSource(path="data/cards.parquet", timestamp_field="event_timestamp")
card_stats = FeatureView(
    name="card_stats", entities=[card], ttl=timedelta(days=1), online=True, source=source,
    schema=[Field(name="card_id", dtype=Int64), Field(name="spend", dtype=Float64), Field(name="txns", dtype=Int64)],
)
'''


def _minimal_repo(root: Path, project: str, settings: Settings) -> Path:
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "feature_store.yaml").write_text(textwrap.dedent(f"""
        project: {project}
        provider: local
        registry: data/registry.db
        online_store:
          type: redis
          connection_string: "${{SMOKE_REDIS}}"
        offline_store:
          type: file
        entity_key_serialization_version: 3
    """))
    (repo / "definitions.py").write_text(DEFINITIONS)
    pd.DataFrame({"card_id": [1], "spend": [0.0], "txns": [0],
                  "event_timestamp": [datetime(2026, 1, 1, tzinfo=UTC)]}).to_parquet(repo / "data/cards.parquet")
    return repo


def test_feast_apply_write_and_read_on_redis(settings: Settings, unique: str, tmp_path: Path) -> None:
    project = f"smoke_{unique}"
    repo = _minimal_repo(tmp_path, project, settings)
    env = {**os.environ, "SMOKE_REDIS": settings.redis.feast_connection_string()}
    applied = subprocess.run([sys.executable, "-m", "feast.cli.cli", "-c", str(repo), "apply"], env=env,
                             capture_output=True, text=True, timeout=180, check=False)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "card_stats" in applied.stdout

    os.environ["SMOKE_REDIS"] = env["SMOKE_REDIS"]
    from feast import FeatureStore  # noqa: PLC0415  (imports feast, ~5 s: kept off test collection)

    store = FeatureStore(repo_path=str(repo))
    now = datetime.now(UTC)
    rows = pd.DataFrame({"card_id": [7, 8], "spend": [12.5, 99.0], "txns": [3, 1],
                         "event_timestamp": [now, now]})
    store.write_to_online_store("card_stats", rows)
    got = store.get_online_features(features=["card_stats:spend", "card_stats:txns"],
                                    entity_rows=[{"card_id": 7}, {"card_id": 8}, {"card_id": 9}]).to_dict()
    assert got["card_id"] == [7, 8, 9]
    assert got["spend"] == [12.5, 99.0, None]
    assert got["txns"] == [3, 1, None]
    store.teardown()
