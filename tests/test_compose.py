"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the stack's services, their
ports, settings, commands and mounts agree with the settings, the ``streamscore`` command, the Makefile's
pipeline and the monitoring files they mount."""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stream_app.adapters.model_registry import AliasRecord, ModelRegistry
from stream_app.cli import build_parser
from stream_app.settings import REPO_ROOT, Settings, settings_env
from tests.fixtures.metric_catalogue import SINK_JOB, WORKER_JOB

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
MAKEFILE = REPO_ROOT / "Makefile"
INIT_SCRIPT = "infra/compose-init.sh"
APP_SERVICES = ("init", "worker", "sink", "traffic")
SERVICES = {"kafka", "redis", *APP_SERVICES, "prometheus", "grafana"}
# Values for the shell variables of the init script's command lines, to parse them as the CLI would.
SCRIPT_VARIABLES = {"$days": "30", "$users": "20000", "$merchants": "2000", "$seed": "7", "$start": "2026-10-01",
                    "$history": "/data/history", "$now": "2026-10-31T00:00:00"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def mounts(name: str) -> dict[str, Path]:
    """container path -> repository path of the service's bind mounts (named volumes left out)."""
    found = {}
    for volume in service(name).get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            found[target] = REPO_ROOT / source
    return found


def mounted_file(name: str, container_path: str) -> Path:
    """The repository file behind ``container_path`` in the service (a file mount or a directory mount)."""
    for target, source in mounts(name).items():
        if container_path == target or container_path.startswith(f"{target}/"):
            return source / os.path.relpath(container_path, target)
    raise AssertionError(f"{name}: nothing mounted at {container_path}")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("STREAMSCORE_"):
            monkeypatch.delenv(key)
    return monkeypatch


def service_settings(name: str, env: pytest.MonkeyPatch) -> Settings:
    for key, value in service(name).get("environment", {}).items():
        env.setenv(key, str(value))
    return Settings()


def script_commands(path: Path) -> Iterator[list[str]]:
    """Each ``streamscore ...`` line of a shell script as argv, shell variables replaced by sample values."""
    for line in path.read_text().splitlines():
        words = shlex.split(line.strip(), comments=True)
        if words[:1] == ["streamscore"]:
            argv = [SCRIPT_VARIABLES.get(word, word) for word in words[1:]]
            assert not any("$" in word for word in argv), f"{path.name}: a variable without a sample value: {line}"
            yield argv


def make_pipeline() -> list[list[str]]:
    """The ``streamscore`` command lines of the Makefile's ``pipeline`` targets, in order."""
    text = MAKEFILE.read_text().replace("\\\n", " ")
    steps = re.search(r"^pipeline:(.*)$", text, re.MULTILINE)
    assert steps is not None
    commands = []
    for target in steps.group(1).split():
        recipe = re.search(rf"^{re.escape(target)}:.*\n\t(.*)$", text, re.MULTILINE)
        assert recipe is not None and recipe.group(1).startswith("$(CLI) "), target
        commands.append(shlex.split(recipe.group(1))[1:])
    return commands


def shape(argv: list[str]) -> tuple[tuple[str, ...], frozenset[str]]:
    """A command line without its values: the leading words (subcommands, ``latest``) and the option names."""
    words = tuple(itertools.takewhile(re.compile(r"[a-z][a-z-]*").fullmatch, argv))
    return words, frozenset(word for word in argv if word.startswith("--"))


def test_the_stack_has_every_service() -> None:
    assert set(compose()["services"]) == SERVICES


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_run_the_image_built_from_the_dockerfile(name: str) -> None:
    assert service(name)["build"] == "."
    assert service(name)["image"] == service("worker")["image"]
    assert DOCKERFILE.is_file()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_every_app_variable_is_a_real_setting_with_its_value(name: str, clean_env: pytest.MonkeyPatch) -> None:
    variables = service(name)["environment"]
    assert all(key.startswith("STREAMSCORE_") for key in variables)
    reproduced = settings_env(service_settings(name, clean_env))
    for key, value in variables.items():
        assert key in reproduced, f"{name}: {key} is not a setting (pydantic-settings would ignore it)"
        assert reproduced[key] == str(value), key


def test_app_services_reach_kafka_and_redis_by_service_name(clean_env: pytest.MonkeyPatch) -> None:
    settings = service_settings("worker", clean_env)
    kafka = service("kafka")["environment"]
    advertised = {f"{urlsplit(listener).hostname}:{urlsplit(listener).port}"
                  for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert settings.kafka.bootstrap_servers in advertised
    assert settings.kafka.bootstrap_servers.startswith("kafka:")
    listening = {urlsplit(listener).port for listener in kafka["KAFKA_LISTENERS"].split(",")}
    assert int(settings.kafka.bootstrap_servers.rsplit(":", 1)[1]) in listening
    assert (settings.redis.host, settings.redis.port) == ("redis", 6379)  # redis-server's default port
    assert "--port" not in service("redis")["command"]


def test_kafka_and_redis_are_published_where_the_default_settings_look(clean_env: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    kafka = service("kafka")
    assert f"{defaults.kafka.bootstrap_servers}:9092" in kafka["ports"]
    assert f"EXTERNAL://{defaults.kafka.bootstrap_servers}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"{defaults.redis.host}:{defaults.redis.port}:6379" in service("redis")["ports"]


@pytest.mark.parametrize("name", ["worker", "sink", "traffic"])
def test_service_commands_parse_with_the_streamscore_parser(name: str) -> None:
    command = service(name)["command"]
    assert command[0] == "streamscore"
    assert callable(build_parser().parse_args(command[1:]).run)


def test_the_init_script_is_in_the_image_and_its_commands_parse() -> None:
    assert service("init")["command"] == [INIT_SCRIPT]
    script = REPO_ROOT / INIT_SCRIPT
    assert os.access(script, os.X_OK)
    assert re.search(rf"^COPY {re.escape(INIT_SCRIPT)} ", DOCKERFILE.read_text(), re.MULTILINE)
    parser = build_parser()
    commands = list(script_commands(script))
    assert commands[0] == ["create-topics"]
    for argv in commands:
        assert callable(parser.parse_args(argv).run), argv


def test_init_runs_the_makefile_pipeline_in_its_order() -> None:
    """Every step of ``make pipeline`` (its subcommand and options; the script's backfill shows no progress
    bar) appears in the init script, in order."""
    remaining = iter(shape(argv) for argv in script_commands(REPO_ROOT / INIT_SCRIPT))
    for step in make_pipeline():
        expected = shape(step)
        assert any((words, options - {"--no-progress"}) == expected for words, options in remaining), \
            f"{step} missing from {INIT_SCRIPT} or out of order"


def test_init_and_traffic_generate_the_makefiles_population() -> None:
    script = (REPO_ROOT / INIT_SCRIPT).read_text()
    makefile = MAKEFILE.read_text()
    traffic = service("traffic")["command"]
    for name in ("days", "users", "merchants", "seed"):
        init_default = re.search(rf"INIT_{name.upper()}:-(\d+)", script)
        make_default = re.search(rf"^{name.upper()} \?= (\d+)$", makefile, re.MULTILINE)
        assert init_default and make_default and init_default.group(1) == make_default.group(1), name
        if name != "days":
            assert traffic[traffic.index(f"--{name}") + 1] == init_default.group(1), name


@pytest.mark.parametrize("registered", [False, True], ids=["empty registry", "production model"])
def test_init_trains_only_when_the_registry_has_no_production_model(registered: bool, tmp_path: Path) -> None:
    """The script's own check, run against an empty registry and one with a production alias."""
    check = re.search(r"python - <<'PY'\n(.*?)\nPY\n", (REPO_ROOT / INIT_SCRIPT).read_text(), re.DOTALL)
    assert check is not None
    registry = ModelRegistry(tmp_path / "registry")
    if registered:
        registry.aliases_dir.mkdir(parents=True)
        (registry.aliases_dir / "production.json").write_text(
            AliasRecord(alias="production", version="v0001").model_dump_json())
    env = {**os.environ, "STREAMSCORE_MODELS_DIR": str(registry.root), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", check.group(1)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == (0 if registered else 1), done.stderr


def test_app_data_is_one_shared_volume() -> None:
    for name in APP_SERVICES:
        assert "streamscore-data:/data" in service(name)["volumes"], name
    assert "streamscore-data" in compose()["volumes"]


def test_every_bind_mount_exists_in_the_repository() -> None:
    for name in compose()["services"]:
        for target, source in mounts(name).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"


def test_prometheus_scrapes_the_worker_and_the_sink_where_they_listen(clean_env: pytest.MonkeyPatch) -> None:
    prometheus = service("prometheus")
    config_path = next(arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file="))
    config = yaml.safe_load(mounted_file("prometheus", config_path).read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    worker = service_settings("worker", clean_env).worker
    sink = service_settings("sink", clean_env).sink
    assert worker.web_bind == "0.0.0.0"
    assert sink.metrics_bind == "0.0.0.0"
    assert targets == {WORKER_JOB: [f"worker:{worker.web_port}"], SINK_JOB: [f"sink:{sink.metrics_port}"]}
    assert str(worker.web_port) in service("worker")["expose"]
    assert str(sink.metrics_port) in service("sink")["expose"]
    for rules in config["rule_files"]:
        assert mounted_file("prometheus", str(Path(config_path).parent / rules)) == REPO_ROOT / "monitoring" / rules


def test_grafana_provisioning_points_at_the_mounted_dashboards_and_prometheus() -> None:
    provisioning = mounted_file("grafana", "/etc/grafana/provisioning")
    providers = yaml.safe_load((provisioning / "dashboards" / "streamscore.yml").read_text())["providers"]
    dashboards = mounted_file("grafana", providers[0]["options"]["path"])
    assert list(dashboards.glob("*.json"))
    home = service("grafana")["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert mounted_file("grafana", home).is_file()
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    listen = next(arg for arg in service("prometheus")["command"] if arg.startswith("--web.listen-address="))
    assert source["url"] == f"http://prometheus{listen.split('=', 1)[1]}"
    # Grafana sizes $__rate_interval from the scrape interval it is told
    scraping = yaml.safe_load((REPO_ROOT / "monitoring" / "prometheus.yml").read_text())["global"]
    assert source["jsonData"]["timeInterval"] == scraping["scrape_interval"]


def test_the_dockerfile_installs_the_pinned_project_from_files_that_exist() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert "FROM python:3.11-slim" in lines
    copied = [word for line in lines if line.startswith("COPY ") for word in line.split()[1:-1]]
    assert {"pyproject.toml", "constraints.txt", "stream_app", "feature_repo", "models"} <= set(copied)
    for source in copied:
        assert (REPO_ROOT / source).exists(), source
    assert any(line.startswith("RUN pip install -c constraints.txt -e .") for line in lines)
