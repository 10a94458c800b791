"""The ``streamscore`` command: every operational entry point is a subcommand with its own help."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.cli import build_parser, main
from stream_app.settings import get_settings

COMMANDS = ("create-topics", "worker", "sink", "feast", "generate", "backfill", "train", "promote", "demo")


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert f"    {command}" in out, command


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert f"streamscore {command}" in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as done:
        main(["no-such-command"])
    assert done.value.code == 2


def test_a_streamscore_error_is_one_line_and_exit_code_1(capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSCORE_WORKER__BATCH_SIZE", "0")  # invalid: the settings refuse it
    get_settings.cache_clear()
    try:
        assert main(["create-topics"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("error: invalid STREAMSCORE_* settings") and "Traceback" not in err


@pytest.mark.parametrize("argv", [[str(Path(sys.executable).with_name("streamscore"))],
                                  [sys.executable, "-m", "stream_app"]], ids=["console-script", "module"])
def test_console_script_and_module_run_the_same_parser(argv: list[str]) -> None:
    done = subprocess.run([*argv, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in COMMANDS)


def readme_commands() -> list[list[str]]:
    """Every ``streamscore ...`` line of the README's code blocks, as argv (comments dropped)."""
    readme = Path(__file__).resolve().parents[3] / "README.md"
    found: list[list[str]] = []
    in_code = False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and line.startswith("streamscore "):
            found.append(shlex.split(line.split("  #")[0])[1:])
    return found


def test_readme_commands_parse_as_written() -> None:
    commands = readme_commands()
    assert {argv[0] for argv in commands} >= set(COMMANDS)
    parser = build_parser()
    for argv in commands:
        args = parser.parse_args(argv)  # a wrong option or command exits with a usage error
        assert callable(args.run), argv
