"""The import contracts in pyproject.toml (``lint-imports``, run by ``make lint``) hold for the tree, and
they do catch a new import that breaks a layer or closes a cycle (shown on a scratch copy of the code)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stream_app", "models", "feature_repo")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's packages, not the installed tree's
    return subprocess.run([LINT_IMPORTS, "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the packages and pyproject.toml to break on purpose."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n{statement}  # added by the architecture test\n")


def test_the_tree_keeps_every_contract() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout


def test_an_import_from_a_higher_layer_fails(scratch: Path) -> None:
    add_import(scratch / "stream_app" / "core" / "window_spec.py", "import stream_app.worker.runner")
    done = lint_imports(scratch)
    assert done.returncode != 0
    assert "stream_app.core is not allowed to import stream_app.worker" in done.stdout
    assert "stream_app.core.window_spec -> stream_app.worker.runner" in done.stdout


def test_the_runtime_importing_training_fails(scratch: Path) -> None:
    add_import(scratch / "stream_app" / "adapters" / "kafka_admin.py", "import models.train")
    done = lint_imports(scratch)
    assert done.returncode != 0
    assert "stream_app is not allowed to import models" in done.stdout
    assert "stream_app.adapters.kafka_admin -> models.train" in done.stdout


def test_a_cycle_between_modules_fails(scratch: Path) -> None:
    # engine imports window_spec; window_spec importing engine closes a cycle inside one layer
    add_import(scratch / "stream_app" / "core" / "window_spec.py", "import stream_app.core.engine")
    done = lint_imports(scratch)
    assert done.returncode != 0
    assert "No cycles are allowed in stream_app.core" in done.stdout
