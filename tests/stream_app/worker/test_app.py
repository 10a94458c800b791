"""The Faust app as ``create_app`` builds it: its web server's address, and where Faust keeps its data."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.app import Runners, create_app


def never_built(app: object) -> Runners:
    raise AssertionError("the runners are built on first use, not by create_app")


def test_the_web_server_listens_where_the_settings_say() -> None:
    default = create_app(Settings(), never_built, web_enabled=True)
    assert (default.app.conf.web_bind, default.app.conf.web_port) == ("127.0.0.1", 6066)
    settings = Settings(worker=WorkerSettings(web_bind="0.0.0.0", web_port=7077))
    anywhere = create_app(settings, never_built, web_enabled=True)
    assert (anywhere.app.conf.web_bind, anywhere.app.conf.web_port) == ("0.0.0.0", 7077)


def test_faust_keeps_its_data_under_the_data_dir_not_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = Settings(data_dir=tmp_path / "data", worker=WorkerSettings(app_id="an-app"))
    app = create_app(settings, never_built).app
    conf = app.conf
    assert conf.datadir == tmp_path / "data" / "faust" / "an-app"
    assert conf.appdir.is_relative_to(conf.datadir) and conf.tabledir.is_relative_to(conf.datadir)
    app._create_directories()  # what a starting worker does (Faust creates only the last level of each)
    assert conf.tabledir.is_dir()
    assert list(cwd.iterdir()) == []
