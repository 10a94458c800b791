"""Feast access: the store opened from Settings, the production FeatureService and its feature order,
private workspaces (a copy of the repository configuration) and applying the definitions.

``feature_store.yaml`` reads the Redis address from ``STREAMSCORE_FEAST_REDIS_CONNECTION`` (Sentinel's:
``..._REDIS_TYPE``, ``..._REDIS_SENTINEL_MASTER``); this module derives them from the one settings object,
so nothing else spells a Redis address for Feast."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from stream_app.errors import ConfigError, ServiceUnavailableError
from stream_app.settings import FEATURE_REPO, Settings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

REDIS_CONNECTION_ENV = "STREAMSCORE_FEAST_REDIS_CONNECTION"
REDIS_TYPE_ENV = "STREAMSCORE_FEAST_REDIS_TYPE"
REDIS_SENTINEL_MASTER_ENV = "STREAMSCORE_FEAST_REDIS_SENTINEL_MASTER"
REPO_FILES = ("feature_store.yaml", ".feastignore", "repo.py")
_PROJECT_LINE = re.compile(r"(?m)^project: *(\S+).*$")  # feature_store.yaml's project name


def feast_env(settings: Settings) -> dict[str, str]:
    """The environment Feast needs, derived from settings (secrets included: pass it only to Feast)."""
    return {REDIS_CONNECTION_ENV: settings.redis.feast_connection_string(),
            REDIS_TYPE_ENV: settings.redis.feast_redis_type,
            REDIS_SENTINEL_MASTER_ENV: settings.redis.sentinel_master}


def open_store(settings: Settings) -> FeatureStore:
    """A FeatureStore on ``settings.feast.repo_path`` with the Redis address from settings."""
    from feast import FeatureStore  # noqa: PLC0415  (imports feast, ~5 s: only processes that open a store pay)

    repo = ensure_repository(settings)
    os.environ.update(feast_env(settings))
    return FeatureStore(repo_path=str(repo))


def ensure_repository(settings: Settings) -> Path:
    """``settings.feast.repo_path``, made a copy of ``FEATURE_REPO``'s configuration (same project) if it
    has no ``feature_store.yaml`` yet; the definitions themselves are imported from the package."""
    repo = settings.feast.repo_path
    if not (repo / "feature_store.yaml").is_file():
        if not (FEATURE_REPO / "feature_store.yaml").is_file():
            raise ConfigError(f"no feature_store.yaml in {repo} nor in the definitions at {FEATURE_REPO}")
        prepare_workspace(FEATURE_REPO, repo)
    return repo


@contextlib.contextmanager
def in_repo(store: FeatureStore) -> Iterator[None]:
    """Run offline-store calls from inside the repository: the DuckDB offline store resolves relative
    source paths against the working directory. Not thread-safe (the working directory is per process);
    offline retrieval is a batch job."""
    with contextlib.chdir(store.repo_path):
        yield


def service_feature_names(service: FeatureService) -> list[str]:
    """The model's input columns in the service's order."""
    return [feature.name for projection in service.feature_view_projections for feature in projection.features]


def service_feature_refs(service: FeatureService) -> list[str]:
    """``view:feature`` references in the service's order."""
    refs: list[str] = []
    for projection in service.feature_view_projections:
        view = projection.name_to_use()  # type: ignore[no-untyped-call]
        refs.extend(f"{view}:{feature.name}" for feature in projection.features)
    return refs


def run_feast_cli(settings: Settings, args: Sequence[str], repo: Path | None = None) -> str:
    """Run the real ``feast`` CLI on the repository (apply, plan, materialize-incremental ...), from
    inside it: the DuckDB offline store resolves source paths against the working directory."""
    repo = (repo or ensure_repository(settings)).resolve()
    done = subprocess.run([sys.executable, "-m", "feast.cli.cli", "-c", str(repo), *args], cwd=repo,
                          env={**os.environ, **feast_env(settings)}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        raise ServiceUnavailableError(f"feast {' '.join(args)} failed:\n" + "\n".join(tail))
    return done.stdout


def project_of(repo: Path) -> str:
    """The Feast project named in ``repo``'s ``feature_store.yaml`` (read without importing Feast)."""
    yaml = repo / "feature_store.yaml"
    try:
        found = _PROJECT_LINE.search(yaml.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the Feast configuration {yaml}: {exc}") from exc
    if found is None:
        raise ConfigError(f"{yaml} names no project")
    return found.group(1)


def prepare_workspace(template: Path, dest: Path, project: str | None = None) -> Path:
    """A copy of the Feast repository's configuration at ``dest`` (same definitions, own registry and
    data dir; ``project`` renames the Feast project, for golden sets, demos, benchmarks and tests that
    must not share one)."""
    if project is not None and not re.fullmatch(r"[a-z][a-z0-9_]*", project):
        raise ValueError(f"Feast project names are lowercase identifiers, got {project!r}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copy2(template / name, dest / name)
    if project is not None:
        yaml = dest / "feature_store.yaml"
        yaml.write_text(_PROJECT_LINE.sub(f"project: {project}", yaml.read_text()))
    return dest
