"""Checks a training or evaluation frame before a model is fitted on it, so a broken backfill (missing
columns, nulls where none can occur, impossible values, a label join that went wrong, a distribution
that moved) stops the pipeline with a report instead of producing a plausible-looking bad model.

Every check always runs (on the columns that exist) so one report lists every problem at once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from stream_app.core.metrics import histogram_reference, psi
from stream_app.errors import DataValidationError

Bounds = Mapping[str, tuple[float | None, float | None]]
"""Per-feature inclusive (min, max) of non-null values; None leaves that side open."""


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """Thresholds for ``validate_frame``. Defaults suit card-fraud training sets: fraud is rare but
    not absent, a few thousand rows are the least that gives a stable AUC, and PSI above 0.25 is the
    conventional "major shift" line."""

    min_rows: int = 1000
    min_label_rate: float = 0.001
    max_label_rate: float = 0.20
    max_null_fraction: float = 0.0
    """Features not declared nullable are computed for every event, so any null is a pipeline bug."""
    max_nullable_null_fraction: float = 0.95
    """A declared-nullable feature (e.g. ``user_seconds_since_prev``) that is almost always null is
    still a sign the feature stopped being computed."""
    max_psi: float = 0.25
    psi_bins: int = 10

    def __post_init__(self) -> None:
        if self.min_rows < 1 or self.psi_bins < 1:
            raise ValueError("min_rows and psi_bins must be >= 1")
        if not 0.0 <= self.min_label_rate <= self.max_label_rate <= 1.0:
            raise ValueError("label rate bounds must satisfy 0 <= min <= max <= 1")
        if not (0.0 <= self.max_null_fraction <= 1.0 and 0.0 <= self.max_nullable_null_fraction <= 1.0):
            raise ValueError("null fractions must be in [0, 1]")
        if self.max_psi < 0:
            raise ValueError("max_psi must be >= 0")


def _check(passed: bool, **details: Any) -> dict[str, Any]:
    return {"passed": bool(passed), **details}


def _is_feature_dtype(dtype: Any) -> bool:
    """Numbers and booleans: what XGBoost accepts without encoding."""
    return bool(pd.api.types.is_numeric_dtype(dtype)) and not pd.api.types.is_complex_dtype(dtype)


def _as_float(column: pd.Series[Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Float view with NaN for nulls, whatever the dtype (bool, int, nullable Int64/boolean)."""
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def validate_frame(
    frame: pd.DataFrame,
    features: Sequence[str],
    *,
    label: str,
    timestamp: str,
    nullable: Collection[str] = frozenset(),
    bounds: Bounds | None = None,
    reference: Mapping[str, Mapping[str, Any]] | None = None,
    policy: ValidationPolicy | None = None,
) -> dict[str, Any]:
    """Run every check and return the JSON-serialisable report ``{"passed", "rows", "failed", "checks":
    {name: {"passed", ...numbers}}}``. Raises DataValidationError(message, report) if any check fails.

    ``reference`` maps feature names to ``histogram_reference`` dicts from the previous training set
    (ModelMetadata.reference_distributions); without it the shift check is skipped, not failed.
    """
    policy = policy or ValidationPolicy()
    bounds = bounds or {}
    features = list(features)
    rows = len(frame)
    checks: dict[str, dict[str, Any]] = {}

    duplicated = sorted({f for f in features if features.count(f) > 1})
    expected = [*features, label, timestamp]
    missing = [c for c in expected if c not in frame.columns]
    checks["columns"] = _check(
        not missing and not duplicated and not frame.columns.duplicated().any(),
        missing=missing,
        duplicated_features=duplicated,
        duplicated_columns=sorted({str(c) for c in frame.columns[frame.columns.duplicated()]}),
        extra=sorted(str(c) for c in frame.columns if c not in expected),
    )
    present = [f for f in dict.fromkeys(features) if f in frame.columns]

    bad_dtypes: dict[str, str] = {f: str(frame[f].dtype) for f in present if not _is_feature_dtype(frame[f].dtype)}
    if label in frame.columns and not (
        pd.api.types.is_bool_dtype(frame[label].dtype)
        or pd.api.types.is_integer_dtype(frame[label].dtype)
        or pd.api.types.is_float_dtype(frame[label].dtype)
    ):
        bad_dtypes[label] = str(frame[label].dtype)
    if timestamp in frame.columns and not pd.api.types.is_datetime64_any_dtype(frame[timestamp].dtype):
        bad_dtypes[timestamp] = str(frame[timestamp].dtype)
    checks["dtypes"] = _check(not bad_dtypes, invalid=bad_dtypes)
    numeric = [f for f in present if f not in bad_dtypes]

    checks["row_count"] = _check(rows >= policy.min_rows, rows=rows, min_rows=policy.min_rows)
    checks["label"] = _label_check(frame, label, bad_dtypes)
    checks["label_rate"] = _label_rate_check(frame, label, checks["label"], policy)
    checks["timestamps"] = _timestamp_check(frame, timestamp, bad_dtypes)
    checks["null_fraction"] = _null_check(frame, present, set(nullable), policy)
    checks["ranges"] = _range_check(frame, numeric, bounds)
    checks["shift"] = _shift_check(frame, numeric, reference, policy)

    failed = [name for name, check in checks.items() if not check["passed"]]
    report: dict[str, Any] = {
        "passed": not failed,
        "rows": rows,
        "failed": failed,
        "checks": checks,
        "policy": asdict(policy),
    }
    if failed:
        raise DataValidationError(f"data validation failed: {', '.join(_describe(n, checks[n]) for n in failed)}",
                                  report)
    return report


def _describe(name: str, check: Mapping[str, Any]) -> str:
    """One-line reason per failed check for the exception message; the report has the rest."""
    details = {k: v for k, v in check.items() if k in _HEADLINES.get(name, ()) and v not in (None, [], {})}
    return f"{name} {details}" if details else name


_HEADLINES: dict[str, tuple[str, ...]] = {
    "columns": ("missing", "duplicated_features", "duplicated_columns"),
    "dtypes": ("invalid",),
    "row_count": ("rows", "min_rows"),
    "label": ("nulls", "invalid_values"),
    "label_rate": ("rate", "min", "max"),
    "timestamps": ("nulls",),
    "null_fraction": ("violations",),
    "ranges": ("violations",),
    "shift": ("violations",),
}


def _label_check(frame: pd.DataFrame, label: str, bad_dtypes: Mapping[str, str]) -> dict[str, Any]:
    if label not in frame.columns or label in bad_dtypes:
        return _check(False, reason=f"label column {label!r} missing or not numeric")
    values = frame[label]
    nulls = int(values.isna().sum())
    non_null = values.dropna()
    invalid = sorted({float(v) for v in pd.unique(non_null) if v not in (0, 1)})[:10]
    return _check(nulls == 0 and not invalid, nulls=nulls, invalid_values=invalid)


def _label_rate_check(
    frame: pd.DataFrame, label: str, label_check: Mapping[str, Any], policy: ValidationPolicy
) -> dict[str, Any]:
    bounds = {"min": policy.min_label_rate, "max": policy.max_label_rate}
    if not label_check["passed"]:
        return _check(False, reason="label column invalid", rate=None, **bounds)
    values = frame[label].astype(np.float64)
    if values.empty:
        return _check(False, reason="no rows", rate=None, positives=0, **bounds)
    rate = float(values.mean())
    ok = policy.min_label_rate <= rate <= policy.max_label_rate
    return _check(ok, rate=rate, positives=int(values.sum()), **bounds)


def _timestamp_check(frame: pd.DataFrame, timestamp: str, bad_dtypes: Mapping[str, str]) -> dict[str, Any]:
    """Event times must all be known: training splits and point-in-time joins are by time."""
    if timestamp not in frame.columns or timestamp in bad_dtypes:
        return _check(False, reason=f"timestamp column {timestamp!r} missing or not datetime")
    values = frame[timestamp]
    nulls = int(values.isna().sum())
    non_null = values.dropna()
    return _check(
        nulls == 0,
        nulls=nulls,
        start=non_null.min().isoformat() if len(non_null) else None,
        end=non_null.max().isoformat() if len(non_null) else None,
    )


def _null_check(
    frame: pd.DataFrame, features: Sequence[str], nullable: set[str], policy: ValidationPolicy
) -> dict[str, Any]:
    fractions: dict[str, float] = {}
    violations: dict[str, float] = {}
    rows = len(frame)
    for feature in features:
        fraction = float(frame[feature].isna().sum()) / rows if rows else 0.0
        fractions[feature] = fraction
        limit = policy.max_nullable_null_fraction if feature in nullable else policy.max_null_fraction
        if fraction > limit:
            violations[feature] = fraction
    return _check(
        not violations,
        fractions=fractions,
        violations=violations,
        max_null_fraction=policy.max_null_fraction,
        max_nullable_null_fraction=policy.max_nullable_null_fraction,
        nullable=sorted(nullable & set(features)),
    )


def _range_check(frame: pd.DataFrame, features: Sequence[str], bounds: Bounds) -> dict[str, Any]:
    """Bounds per feature plus, for every feature, no infinities (XGBoost would split on them)."""
    ranges: dict[str, dict[str, Any]] = {}
    violations: dict[str, dict[str, Any]] = {}
    unknown = sorted(set(bounds) - set(features))
    for feature in features:
        values = pd.Series(_as_float(frame[feature])).dropna()
        low, high = bounds.get(feature, (None, None))
        infinite = int(np.isinf(values).sum())
        finite = values[np.isfinite(values)]
        below = int((finite < low).sum()) if low is not None else 0
        above = int((finite > high).sum()) if high is not None else 0
        ranges[feature] = {
            "min": _finite_or_none(float(finite.min())) if len(finite) else None,
            "max": _finite_or_none(float(finite.max())) if len(finite) else None,
            "bounds": [low, high],
        }
        if infinite or below or above:
            violations[feature] = {"below": below, "above": above, "infinite": infinite, "bounds": [low, high]}
    return _check(not violations, ranges=ranges, violations=violations, bounds_for_unknown_features=unknown)


def _shift_check(
    frame: pd.DataFrame,
    features: Sequence[str],
    reference: Mapping[str, Mapping[str, Any]] | None,
    policy: ValidationPolicy,
) -> dict[str, Any]:
    """PSI per feature against the previous training set's stored distributions."""
    if reference is None:
        return _check(True, skipped=True, reason="no reference distributions given", max_psi=policy.max_psi)
    values: dict[str, float] = {}
    violations: dict[str, float] = {}
    errors: dict[str, str] = {}
    for feature in features:
        if feature not in reference:
            continue
        try:
            value = psi(reference[feature], _as_float(frame[feature]))
        except ValueError as exc:
            errors[feature] = str(exc)
            continue
        values[feature] = value
        if value > policy.max_psi:
            violations[feature] = value
    return _check(
        not violations and not errors,
        skipped=False,
        psi=values,
        violations=violations,
        errors=errors,
        without_reference=sorted(set(features) - set(reference)),
        max_psi=policy.max_psi,
    )


def reference_distributions(frame: pd.DataFrame, features: Sequence[str], n_bins: int = 10) -> dict[str, Any]:
    """Per-feature ``histogram_reference`` of a training frame, to store as
    ModelMetadata.reference_distributions and pass as ``reference`` when validating the next one."""
    return {f: histogram_reference(_as_float(frame[f]), n_bins) for f in features}


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 over the frame's column names and values (row order matters), for
    ModelMetadata.training_data.content_hash: the same data always gives the same hash."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"
