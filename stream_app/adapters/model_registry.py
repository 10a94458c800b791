"""A file-based model registry: immutable numbered versions plus movable aliases.

Layout under the root (Settings.models_dir)::

    versions/v0001/model.ubj       the booster in XGBoost's UBJSON format
    versions/v0001/metadata.json   ModelMetadata, written last: its presence means the version is complete
    aliases/production.json        AliasRecord naming the version the worker serves, and the versions it
                                   served before (``earlier``: what ``rollback_alias`` goes back to)
    aliases/shadow.json            the version scored alongside, whose decisions are not used
    aliases/history.jsonl          every alias move, appended, for audit
    .lock                          flock taken by writers (registration, alias moves); readers never lock
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import xgboost
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stream_app.adapters.files import atomic_write_text
from stream_app.core.scoring import Scorer
from stream_app.errors import RegistryError
from stream_app.settings import Settings, get_settings

Alias = Literal["production", "shadow"]
ALIASES: tuple[Alias, ...] = get_args(Alias)

# XGBoost's own UBJSON format, never pickle: loading a pickle runs code, and pickles break across versions.
MODEL_FILE = "model.ubj"
METADATA_FILE = "metadata.json"
FAILED_FILE = "FAILED"
HISTORY_FILE = "history.jsonl"
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TrainingData(BaseModel):
    """What the model was fitted on: the event-time range, row count and a content hash, so a model
    can be traced back to (and compared with) its data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime
    end: AwareDatetime
    rows: int = Field(ge=1)
    content_hash: str = Field(min_length=1)


class Lineage(BaseModel):
    """Where a retrained model's data came from (``models.retrain``): the recorded range, the label cut-off,
    how many recorded transactions and known labels it drew on, the definitions of what it consumes and
    the version it retrains. The rows, event-time range and content hash of the training frame itself
    are ``TrainingData``; the code commit is ``ModelMetadata.git_commit``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1)  # e.g. "stream record"
    since: AwareDatetime  # transactions with event time in [since, until]
    until: AwareDatetime  # also the label cut-off: labels with label_time <= until
    transactions: int = Field(ge=0)  # recorded valid transactions in the range
    labels: int = Field(ge=0)  # labels logged in [since, until]: known by the cut-off
    labelled: int = Field(ge=0)  # recorded transactions with a known label: the entity frame's rows
    feature_definitions_hash: str = Field(min_length=1)
    parent_version: str | None = None  # the production version when it was trained


class ModelMetadata(BaseModel):
    """Everything needed to serve, audit and compare a version. ``version`` and ``model_sha256`` are
    filled in by ``ModelRegistry.register``; leave them None when building metadata for a new model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str | None = None
    created_at: AwareDatetime = Field(default_factory=_utc_now)
    feature_service: str = Field(min_length=1)
    features: list[str] = Field(min_length=1)
    threshold: float = Field(ge=0.0, le=1.0)
    training_data: TrainingData
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    git_commit: str | None = None
    reference_distributions: dict[str, dict[str, Any]] = Field(default_factory=dict)
    golden_metrics: dict[str, Any] | None = None
    lineage: Lineage | None = None  # set by models.retrain; None for models trained from a generated history
    model_sha256: str | None = None

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[str]) -> list[str]:
        duplicated = sorted({f for f in features if features.count(f) > 1})
        if duplicated:
            raise ValueError(f"duplicated feature names: {duplicated}")
        return features

    @field_validator("version")
    @classmethod
    def _version_name(cls, version: str | None) -> str | None:
        if version is not None and not _VERSION_RE.match(version):
            raise ValueError(f"version must look like v0001, got {version!r}")
        return version


class AliasRecord(BaseModel):
    """The content of ``aliases/<alias>.json``: which version, since when, what it replaced, the gate's
    numbers (``details``) so an operator can see why it was allowed, and ``earlier``: the versions the
    alias pointed at before, oldest first, that a rollback returns to (last first). Keeping them in the
    alias file means the pointer and its undo stack change in one atomic write."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alias: Alias
    version: str
    previous: str | None = None
    updated_at: AwareDatetime = Field(default_factory=_utc_now)
    forced: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    earlier: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _earlier_of_a_record_without_it(cls, data: Any) -> Any:
        """A record written before ``earlier`` existed can still be rolled back to its ``previous``."""
        if isinstance(data, dict) and "earlier" not in data and data.get("previous"):
            return {**data, "earlier": [data["previous"]]}
        return data


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A booster with its metadata; ``scorer()`` is how it scores (the one scoring path)."""

    booster: xgboost.Booster
    metadata: ModelMetadata

    @property
    def version(self) -> str:
        """The version name (``v0001``), "" for a model not loaded from a registry."""
        return self.metadata.version or ""

    def scorer(self) -> Scorer:
        """The model ready to score: its booster, features in the trained order, threshold and version."""
        return Scorer(self.booster, tuple(self.metadata.features), self.metadata.threshold, self.version)


def _pushed(current: AliasRecord | None, version: str) -> list[str]:
    """The ``earlier`` stack after moving the alias from ``current`` to ``version``: the current version
    pushed on, unless the move re-points the alias at the version it already has."""
    if current is None:
        return []
    if current.version == version:
        return list(current.earlier)
    return [*current.earlier, current.version]


def _check_alias(alias: str) -> Alias:
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
    return alias


class ModelRegistry:
    """The registry rooted at ``root``. Cheap to construct; holds no open files or cached state, so
    every call sees what other processes have written.

    Version numbers are allocated with an exclusive ``mkdir``, so concurrent registrations never share
    one, and a number is never reused, even after a failed registration. Aliases are replaced with
    ``os.replace``, so a reader sees the old or the new record, never half of one; a running worker
    notices a promotion by polling ``alias_stamp``. Why files: docs/decisions/0007-file-model-registry.md."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.aliases_dir = self.root / "aliases"

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ModelRegistry:
        """The registry at ``settings.models_dir`` (the process's settings by default)."""
        return cls((settings or get_settings()).models_dir)

    # ---------------------------------------------------------------- locking

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise writers across processes; released by the kernel if the holder dies."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # ---------------------------------------------------------------- versions

    def _numbers(self) -> list[int]:
        """Every allocated number, published or not, so allocation never reuses one."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.versions_dir.iterdir() if (m := _VERSION_RE.match(p.name)))

    def _allocate(self) -> tuple[str, Path]:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(1000):
            numbers = self._numbers()
            version = f"v{(numbers[-1] if numbers else 0) + 1:04d}"
            directory = self.versions_dir / version
            try:
                directory.mkdir()  # exclusive: exactly one concurrent caller succeeds per name
            except FileExistsError:
                continue
            return version, directory
        raise RegistryError(f"could not allocate a version under {self.versions_dir} (too much contention)")

    def register(self, booster: xgboost.Booster, metadata: ModelMetadata) -> str:
        """Store a new version and return its name (``v0001``, ``v0002``, ...). The booster must take
        exactly ``metadata.features`` (same names, same order, when it carries names)."""
        if metadata.version is not None or metadata.model_sha256 is not None:
            raise RegistryError("metadata.version and model_sha256 are assigned by the registry; leave them None")
        n_features = booster.num_features()
        if n_features != len(metadata.features):
            raise RegistryError(
                f"booster takes {n_features} features but metadata lists {len(metadata.features)}"
            )
        if booster.feature_names is not None and list(booster.feature_names) != metadata.features:
            raise RegistryError(
                f"booster feature names {list(booster.feature_names)} differ from metadata.features "
                f"{metadata.features} (names or order)"
            )
        version, directory = self._allocate()
        try:
            model_path = directory / MODEL_FILE
            booster.save_model(str(model_path))
            digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
            published = metadata.model_copy(update={"version": version, "model_sha256": digest})
            atomic_write_text(directory / METADATA_FILE, published.model_dump_json(indent=2) + "\n")
        except (OSError, xgboost.core.XGBoostError) as exc:
            (directory / FAILED_FILE).write_text(f"{_utc_now().isoformat()} {exc!r}\n", encoding="utf-8")
            (directory / MODEL_FILE).unlink(missing_ok=True)
            raise RegistryError(f"registering {version} failed: {exc}") from exc
        return version

    def list_versions(self) -> list[str]:
        """Published versions (metadata written), oldest first."""
        return [
            f"v{n:04d}" for n in self._numbers() if (self.versions_dir / f"v{n:04d}" / METADATA_FILE).is_file()
        ]

    def latest_version(self) -> str | None:
        versions = self.list_versions()
        return versions[-1] if versions else None

    def _version_dir(self, version: str) -> Path:
        if not _VERSION_RE.match(version):
            raise RegistryError(f"invalid version name {version!r}; versions look like v0001")
        directory = self.versions_dir / version
        if not directory.is_dir():
            known = self.list_versions()
            raise RegistryError(
                f"unknown version {version!r} in {self.root}; known: {', '.join(known[-10:]) or 'none'}"
            )
        return directory

    def metadata(self, version: str) -> ModelMetadata:
        """The version's metadata, validated; RegistryError if missing, unparseable or inconsistent."""
        directory = self._version_dir(version)
        path = directory / METADATA_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            state = "failed" if (directory / FAILED_FILE).exists() else "incomplete (still being written?)"
            raise RegistryError(f"version {version} has no {METADATA_FILE}: registration {state}") from exc
        except OSError as exc:
            raise RegistryError(f"cannot read {path}: {exc}") from exc
        try:
            metadata = ModelMetadata.model_validate_json(text)
        except ValidationError as exc:
            raise RegistryError(f"corrupt metadata for {version} ({path}): {exc}") from exc
        if metadata.version != version:
            raise RegistryError(f"corrupt metadata for {version}: it names version {metadata.version!r}")
        return metadata

    def load(self, version: str) -> LoadedModel:
        """Booster + metadata, with the model file checked against the recorded SHA-256 before XGBoost
        parses it, so a truncated or swapped file is a clear error rather than odd scores."""
        metadata = self.metadata(version)
        path = self.versions_dir / version / MODEL_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError as exc:
            raise RegistryError(f"version {version} is missing its model file {path}") from exc
        except OSError as exc:
            raise RegistryError(f"cannot read model file {path}: {exc}") from exc
        digest = hashlib.sha256(raw).hexdigest()
        if metadata.model_sha256 is not None and digest != metadata.model_sha256:
            raise RegistryError(
                f"model file of {version} is corrupt: sha256 {digest[:12]}… != recorded {metadata.model_sha256[:12]}…"
            )
        try:
            booster = xgboost.Booster(model_file=bytearray(raw))
        except xgboost.core.XGBoostError as exc:
            raise RegistryError(f"model file of {version} is not a loadable XGBoost model: {exc}") from exc
        if booster.num_features() != len(metadata.features):
            raise RegistryError(
                f"model {version} takes {booster.num_features()} features, metadata lists {len(metadata.features)}"
            )
        if booster.feature_names is None:
            booster.feature_names = list(metadata.features)
        return LoadedModel(booster=booster, metadata=metadata)

    def record_golden_metrics(self, version: str, golden_metrics: Mapping[str, Any]) -> ModelMetadata:
        """Store the golden-set evaluation in the version's metadata (atomic rewrite). The model file
        and every other field stay as registered."""
        with self._lock():
            updated = self.metadata(version).model_copy(update={"golden_metrics": dict(golden_metrics)})
            try:
                text = updated.model_dump_json(indent=2) + "\n"
                ModelMetadata.model_validate_json(text)  # refuse to write what could not be read back
                atomic_write_text(self.versions_dir / version / METADATA_FILE, text)
            except (OSError, ValidationError, ValueError) as exc:
                raise RegistryError(f"cannot record golden metrics for {version}: {exc}") from exc
        return updated

    # ---------------------------------------------------------------- aliases

    def _alias_path(self, alias: str) -> Path:
        return self.aliases_dir / f"{_check_alias(alias)}.json"

    def _parse_alias(self, alias: str, text: str) -> AliasRecord:
        try:
            record = AliasRecord.model_validate_json(text)
        except ValidationError as exc:
            raise RegistryError(f"corrupt alias file {self._alias_path(alias)}: {exc}") from exc
        if record.alias != alias:
            raise RegistryError(f"corrupt alias file {self._alias_path(alias)}: it names alias {record.alias!r}")
        return record

    def alias_record(self, alias: str) -> AliasRecord | None:
        """The alias' full record, or None when the alias was never set."""
        return self._read_alias(alias)[0]

    def _read_alias(self, alias: str) -> tuple[AliasRecord | None, int]:
        path = self._alias_path(alias)
        try:
            # One open file: the stat and the content belong to the same inode even if os.replace
            # swaps the name in between, so the (version, mtime) pair is always consistent.
            with open(path, encoding="utf-8") as handle:
                mtime_ns = os.fstat(handle.fileno()).st_mtime_ns
                text = handle.read()
        except FileNotFoundError:
            return None, 0
        except OSError as exc:
            raise RegistryError(f"cannot read alias file {path}: {exc}") from exc
        return self._parse_alias(alias, text), mtime_ns

    def get_alias(self, alias: str) -> str | None:
        """The version the alias points at, or None when unset."""
        record = self.alias_record(alias)
        return record.version if record else None

    def alias_stamp(self, alias: str) -> tuple[str | None, int]:
        """``(version, mtime_ns)`` of the alias file, ``(None, 0)`` when unset: one open + fstat + a
        small read, cheap enough for a worker to poll every few seconds and reload when the pair
        changes (compare the whole tuple: re-promoting the same version changes only the mtime)."""
        record, mtime_ns = self._read_alias(alias)
        return (record.version if record else None), mtime_ns

    def load_alias(self, alias: str) -> LoadedModel:
        """The model the alias points at; RegistryError when the alias is unset."""
        version = self.get_alias(alias)
        if version is None:
            raise RegistryError(f"alias {alias!r} is not set in {self.root}; promote a version first")
        return self.load(version)

    def set_alias(
        self,
        alias: str,
        version: str,
        *,
        forced: bool = False,
        details: Mapping[str, Any] | None = None,
        expected_current: str | Literal[False] | None = False,
    ) -> AliasRecord:
        """Point ``alias`` at ``version`` atomically and append the move to the history.

        ``expected_current`` (a version, or None for "unset") makes the move a compare-and-swap: if the
        alias changed since the caller looked (another promotion won the race), RegistryError instead of
        silently replacing a model the caller never compared against. The default False skips that.
        """
        checked = _check_alias(alias)
        self.load(version)  # never point an alias at something the worker could not load
        with self._lock():
            existing = self.alias_record(checked)
            current = existing.version if existing else None
            if expected_current is not False and current != expected_current:
                raise RegistryError(
                    f"alias {checked} moved concurrently: expected {expected_current}, found {current}; re-run"
                )
            record = AliasRecord(alias=checked, version=version, previous=current, forced=forced,
                                 details=dict(details or {}), earlier=_pushed(existing, version))
            self._write_alias(record)
        return record

    def rollback_alias(self, alias: str) -> AliasRecord:
        """Point ``alias`` back at the version it pointed at before its current one, atomically, and
        append the move to the history. Repeated rollbacks go further back (each pops one version off
        ``earlier``); a promotion after a rollback pushes the rolled-back-to version again. RegistryError
        (nothing changes) when the alias is unset, has no earlier version, or that version cannot be loaded."""
        checked = _check_alias(alias)
        with self._lock():
            current = self.alias_record(checked)
            if current is None:
                raise RegistryError(f"alias {checked} is not set in {self.root}; there is nothing to roll back")
            if not current.earlier:
                raise RegistryError(
                    f"alias {checked} has no earlier version to roll back to (it points at {current.version} "
                    "and has never pointed at another one, or every earlier one was already rolled back to)"
                )
            target = current.earlier[-1]
            self.load(target)  # never point an alias at something the worker could not load
            record = AliasRecord(alias=checked, version=target, previous=current.version,
                                 details={"rolled_back_from": current.version}, earlier=current.earlier[:-1])
            self._write_alias(record)
        return record

    def _write_alias(self, record: AliasRecord) -> None:
        """Replace the alias file atomically, then append the move to the history (caller holds the lock)."""
        self.aliases_dir.mkdir(parents=True, exist_ok=True)
        try:
            line = record.model_dump_json() + "\n"
            atomic_write_text(self._alias_path(record.alias), record.model_dump_json(indent=2) + "\n")
            with open(self.aliases_dir / HISTORY_FILE, "a", encoding="utf-8") as history:
                history.write(line)
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot move alias {record.alias} to {record.version}: {exc}") from exc

    def alias_history(self) -> list[AliasRecord]:
        """Every alias move, oldest first (for audit and choosing a rollback target)."""
        path = self.aliases_dir / HISTORY_FILE
        if not path.is_file():
            return []
        records: list[AliasRecord] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(AliasRecord.model_validate_json(line))
            except ValidationError as exc:
                raise RegistryError(f"corrupt alias history {path} line {number}: {exc}") from exc
        return records
