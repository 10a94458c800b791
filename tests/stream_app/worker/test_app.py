"""The worker's Faust app takes its web server's address from the settings."""

from __future__ import annotations

import faust

from stream_app.settings import Settings, WorkerSettings
from stream_app.worker.app import Runners, create_app


def unbuilt(app: faust.App) -> Runners:
    raise AssertionError("the runners are built on first use only")


def test_the_web_server_listens_where_the_settings_say() -> None:
    default = create_app(Settings(), unbuilt, web_enabled=True)
    assert (default.app.conf.web_bind, default.app.conf.web_port) == ("127.0.0.1", 6066)
    settings = Settings(worker=WorkerSettings(web_bind="0.0.0.0", web_port=7077))
    anywhere = create_app(settings, unbuilt, web_enabled=True)
    assert (anywhere.app.conf.web_bind, anywhere.app.conf.web_port) == ("0.0.0.0", 7077)
