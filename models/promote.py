"""The promotion gate (``streamscore promote``, or ``python -m models.promote``): a version reaches
``production`` (or ``shadow``) only if it consumes exactly the features the FeatureService serves and is not
worse than the current production model on the golden set; ``--force`` overrides. ``--rollback`` moves the
alias back to the version it pointed at before. The rules and why: docs/decisions/0006-promotion-gate.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.features import model_feature_names
from models.golden import GoldenSet, golden_metrics, golden_set
from stream_app.adapters.model_registry import ALIASES, LoadedModel, ModelRegistry
from stream_app.cli_types import configure_logging
from stream_app.errors import DataValidationError, RegistryError, StreamscoreError

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.005
DEFAULT_MIN_ROC_AUC = 0.75


@dataclass(frozen=True)
class PromotionResult:
    """The gate's outcome, as recorded in the alias record (``details``) and the version's golden_metrics."""

    version: str
    alias: str
    previous: str | None
    passed: bool
    forced: bool
    candidate: dict[str, Any] | None
    baseline: dict[str, Any]
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data."""
        return asdict(self)


def _golden_metrics(model: LoadedModel, golden: GoldenSet) -> dict[str, Any]:
    """ROC-AUC and PR-AUC of ``model`` on the golden set (DataValidationError if it lacks features)."""
    return {"version": model.version, **golden_metrics(model.scorer(), golden)}


def _feature_difference(actual: Sequence[str], expected: Sequence[str]) -> str:
    missing = [f for f in expected if f not in actual]
    extra = [f for f in actual if f not in expected]
    if missing or extra:
        return f"missing {missing}, extra {extra}"
    return f"same features in a different order: {list(actual)} vs FeatureService {list(expected)}"


def promote(
    registry: ModelRegistry,
    version: str,
    alias: str,
    expected_features: Sequence[str],
    golden: GoldenSet,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    force: bool = False,
    min_roc_auc: float = DEFAULT_MIN_ROC_AUC,
) -> PromotionResult:
    """Gate and move ``alias`` to ``version``. Raises RegistryError stating the numbers when refused
    (nothing changes then), DataValidationError when the golden set itself is unusable.

    Both models are scored now on the same golden set, never compared with numbers stored earlier, so a
    changed golden set cannot make the comparison unfair. ``force`` overrides the gate and a feature-list
    mismatch; it logs at CRITICAL and is recorded in the alias record and the history."""
    if alias not in ALIASES:
        raise RegistryError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
    if tolerance < 0:
        raise RegistryError(f"tolerance must be >= 0, got {tolerance}")
    golden.check()
    candidate = registry.load(version)
    current = registry.get_alias(alias)
    failures: list[str] = []

    expected = list(expected_features)
    if candidate.metadata.features != expected:
        difference = _feature_difference(candidate.metadata.features, expected)
        mismatch = f"feature list differs from the FeatureService: {difference}"
        if not force:
            raise RegistryError(f"refusing to promote {version} to {alias}: {mismatch}")
        failures.append(mismatch)

    candidate_metrics: dict[str, Any] | None
    try:
        candidate_metrics = _golden_metrics(candidate, golden)
    except DataValidationError as exc:
        candidate_metrics = None
        failures.append(f"candidate {version} cannot be scored on the golden set: {exc}")

    positives = int(np.count_nonzero(np.asarray(golden.y) == 1))
    golden_info = {"n": len(golden.X), "positives": positives, "base_rate": positives / len(golden.X)}
    baseline = _compare(registry, golden, candidate_metrics, tolerance=tolerance, min_roc_auc=min_roc_auc,
                        failures=failures)

    if failures and not force:
        raise RegistryError(f"refusing to promote {version} to {alias}: " + "; ".join(failures))
    forced = bool(failures)
    if forced:
        log.critical("FORCED promotion of %s to %s despite: %s", version, alias, "; ".join(failures))

    result = PromotionResult(
        version=version,
        alias=alias,
        previous=current,
        passed=not failures,
        forced=forced,
        candidate=candidate_metrics,
        baseline=baseline,
        failures=failures,
    )
    record = {"evaluated_at": datetime.now(UTC).isoformat(), "golden": golden_info, **result.as_dict()}
    registry.record_golden_metrics(version, record)
    # Compare-and-swap: if another promotion moved the alias meanwhile, our comparison is stale.
    registry.set_alias(alias, version, forced=forced, details=record, expected_current=current)
    log.info("promoted %s to %s (previous %s, gate %s)", version, alias, current, "FORCED" if forced else "passed")
    return result


def _compare(
    registry: ModelRegistry,
    golden: GoldenSet,
    candidate: Mapping[str, Any] | None,
    *,
    tolerance: float,
    min_roc_auc: float,
    failures: list[str],
) -> dict[str, Any]:
    """Judge the candidate's golden metrics against production (or the floor when there is none),
    appending a sentence with the numbers to ``failures`` per violated rule; returns the baseline.

    The baseline is production for both aliases. Against it, a metric fails when ``candidate <
    production - tolerance`` (absolute, in metric units), so equal models pass. With no production
    model: ROC-AUC >= ``min_roc_auc`` and PR-AUC above the golden base rate. A production model that
    cannot be scored on the golden set fails the gate (the comparison is impossible)."""
    production_version = registry.get_alias("production")
    if production_version is None:
        base_rate = float(np.mean(np.asarray(golden.y) == 1))
        if candidate is not None:
            if candidate["roc_auc"] < min_roc_auc:
                failures.append(
                    f"ROC-AUC {candidate['roc_auc']:.4f} is below the floor {min_roc_auc:.4f} "
                    "(no production model to compare with)"
                )
            if candidate["pr_auc"] <= base_rate:
                failures.append(
                    f"PR-AUC {candidate['pr_auc']:.4f} does not beat the golden base rate {base_rate:.4f}"
                )
        return {"kind": "floor", "min_roc_auc": min_roc_auc, "pr_auc_above": base_rate}

    baseline: dict[str, Any] = {"kind": "production", "version": production_version, "tolerance": tolerance}
    try:
        production = _golden_metrics(registry.load(production_version), golden)
    except DataValidationError as exc:
        failures.append(
            f"production model {production_version} cannot be scored on the golden set, so the candidate "
            f"cannot be compared with it ({exc}); use --force if the feature service changed on purpose"
        )
        return baseline
    baseline.update(roc_auc=production["roc_auc"], pr_auc=production["pr_auc"])
    if candidate is not None:
        for metric, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
            ours, theirs = float(candidate[metric]), float(production[metric])
            if ours < theirs - tolerance:
                failures.append(
                    f"{label} {ours:.4f} is worse than production {production_version}'s {theirs:.4f} "
                    f"by {theirs - ours:.4f} (> tolerance {tolerance:.4f})"
                )
    return baseline


# --- the command line ------------------------------------------------------------------------------------

DESCRIPTION = (
    "Promote a registered version to production (or shadow) if it consumes exactly the FeatureService's "
    "features and is not worse than production on the golden set; or, with --rollback, move the alias back "
    "to the version it pointed at before (again: further back). Exit code 0 promoted or rolled back, 1 "
    "refused or failed, 2 bad arguments."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``streamscore promote`` and ``python -m models.promote``."""
    parser.add_argument("version", nargs="?", help="the registered version to promote, e.g. v0003, or 'latest'")
    parser.add_argument("--rollback", action="store_true",
                        help="instead of promoting, point the alias at the version it pointed at before")
    parser.add_argument("--alias", choices=ALIASES, default="production")
    parser.add_argument("--force", action="store_true",
                        help="promote even if the gate or the feature-list check fails (logged as FORCED)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="allowed absolute drop in ROC-AUC and PR-AUC against production (default %(default)s)")
    parser.add_argument("--min-roc-auc", type=float, default=DEFAULT_MIN_ROC_AUC,
                        help="floor when there is no production model yet (default %(default)s)")
    parser.add_argument("--registry", type=Path, default=None, help="registry root (default: Settings.models_dir)")


def run(args: argparse.Namespace) -> int:
    """Promote (or roll back) as parsed by ``add_arguments``; prints the result as JSON."""
    if args.rollback == (args.version is not None):
        print("error: give a VERSION to promote, or --rollback (not both)", file=sys.stderr)
        return 2
    try:
        registry = ModelRegistry(args.registry) if args.registry is not None else ModelRegistry.from_settings()
        if args.rollback:
            record = registry.rollback_alias(args.alias)
            log.warning("rolled %s back from %s to %s", args.alias, record.previous, record.version)
            print(record.model_dump_json(indent=2))
            return 0
        version = args.version
        if version == "latest":
            version = registry.latest_version()
            if version is None:
                raise RegistryError("the registry has no versions to promote")
        result = promote(registry, version, args.alias, model_feature_names(), golden_set(),
                         tolerance=args.tolerance, force=args.force, min_roc_auc=args.min_roc_auc)
    except StreamscoreError as exc:
        action = f"rollback of {args.alias}" if args.rollback else f"promotion of {args.version} to {args.alias}"
        log.error("%s refused or failed: %s", action, exc)
        return 1
    print(json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.promote ARGS``: the same as ``streamscore promote ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m models.promote", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
