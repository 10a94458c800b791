"""The Feast repository a process uses is a copy of the definitions' configuration, made on first use."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.adapters.feast_store import REPO_FILES, ensure_repository, prepare_workspace
from stream_app.settings import FEATURE_REPO, FeastSettings, Settings


def test_a_missing_repository_is_made_from_the_definitions(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    repo = ensure_repository(settings)
    assert repo == tmp_path / "feature_repo"
    for name in REPO_FILES:
        assert (repo / name).read_bytes() == (FEATURE_REPO / name).read_bytes()  # same project, same config


def test_an_existing_repository_is_left_alone(tmp_path: Path) -> None:
    repo = prepare_workspace(FEATURE_REPO, tmp_path / "repo", "private_project")
    settings = Settings(data_dir=tmp_path, feast=FeastSettings(repo_path=repo))
    assert ensure_repository(settings) == repo
    assert "project: private_project" in (repo / "feature_store.yaml").read_text()


def test_project_names_must_be_feast_identifiers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lowercase identifiers"):
        prepare_workspace(FEATURE_REPO, tmp_path / "repo", "Not-A-Name")
