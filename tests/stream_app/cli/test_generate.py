from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.cli import main
from stream_app.generator import read_history


def test_history_command_writes_files_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "generate",
            "history",
            "--days",
            "2",
            "--users",
            "400",
            "--merchants",
            "60",
            "--seed",
            "3",
            "--start",
            "2026-10-01",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "fraud rate" in out and "card_testing" in out and "generated in" in out
    history = read_history(tmp_path)
    assert history.config.days == 2 and history.config.seed == 3 and len(history.transactions) > 0


def test_history_refuses_a_moving_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "history", "--start", "now", "--out", str(tmp_path)])


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(SystemExit):
        main(["generate", "live", "--invalid-fraction", "2"])
    with pytest.raises(SystemExit):
        main(["generate", "history", "--users", "0"])
    with pytest.raises(SystemExit):
        main(["generate", "live", "--rate", "0"])
    with pytest.raises(SystemExit):
        main(["generate", "live", "--label-delay-scale", "-1"])
