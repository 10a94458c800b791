"""The promotion gate (``streamscore promote``): a version reaches ``production`` (or ``shadow``) only if it
consumes exactly the features the FeatureService serves and is not worse than the current production
model on the golden set; ``--force`` overrides. The rules and why: docs/decisions/0006-promotion-gate.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.golden import GoldenSet
from stream_app.adapters.model_registry import ALIASES, LoadedModel, ModelRegistry
from stream_app.core.metrics import pr_auc, roc_auc
from stream_app.errors import DataValidationError, RegistryError

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
    scores = model.scorer().score_frame(golden.X)
    y = np.asarray(golden.y)
    return {"version": model.version, "roc_auc": roc_auc(y, scores), "pr_auc": pr_auc(y, scores)}


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
