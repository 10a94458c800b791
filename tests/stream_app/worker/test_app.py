"""The Faust app as ``create_app`` builds it: its web server's address, and where Faust keeps its data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stream_app.contract import Topics, TopicSpec
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


@pytest.mark.parametrize(("batch_size", "partitions"), [(1, 1), (500, 4), (1000, 4), (1000, 12), (5000, 4)])
def test_one_fetch_of_every_partition_fits_in_the_room_left_above_a_buffers_pressure_mark(
        batch_size: int, partitions: int) -> None:
    """Faust stops fetching a partition when a put of it finds the buffer past maxsize / 1.25, and still
    hands over the rest of the fetch in hand; every partition of a topic does so once, and all those
    rests must fit, or the fetch loop waits on one full buffer and feeds no agent."""
    topics = Topics(**{role: TopicSpec(name=spec.name, partitions=partitions) for role, spec in Settings().topics})
    app = create_app(Settings(worker=WorkerSettings(batch_size=batch_size), topics=topics), never_built).app
    buffer, per_fetch = app.conf.stream_buffer_maxsize, app.conf.broker_max_poll_records
    assert per_fetch is not None and 0 < per_fetch * partitions <= buffer - math.floor(buffer / 1.25)
    assert buffer >= 4 * batch_size
