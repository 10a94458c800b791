"""When to retrain (``streamscore retrain --if-needed``): the production model's feature drift, its online
ROC-AUC and its age, each against a threshold; ``fired`` decides which triggers fire from those numbers.

The numbers come from one of two sources: the worker's ``/metrics`` (``scraped``: the gauges the alerts
read) or, by default, what the sink recorded over a recent span (``recorded``: PSI of the served window
features in the offline feature log against the production model's reference distributions, ROC-AUC of
the production version's scores in the label log). The thresholds default to the alerts' own
(monitoring/alerts.yml; tests/monitoring/test_alerts.py checks they agree), so a retrain is triggered by
what pages an operator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from models.promote import DEFAULT_MIN_ROC_AUC
from models.validate import ValidationPolicy
from stream_app.adapters.label_log import read_labels
from stream_app.adapters.metrics_reader import Samples, by_label, max_by_label
from stream_app.adapters.model_registry import ModelMetadata, ModelRegistry
from stream_app.adapters.offline_log import read_parts
from stream_app.adapters.prometheus_metrics import FEATURE_DRIFT_PSI, ONLINE_LABELS, ONLINE_ROC_AUC
from stream_app.core.metrics import psi, roc_auc
from stream_app.core.offline_layout import LABEL_LOG, MERCHANT_WINDOW_LOG, USER_WINDOW_LOG
from stream_app.core.profiles import TIMESTAMP
from stream_app.settings import Settings

DEFAULT_MAX_PSI = ValidationPolicy().max_psi  # the StreamscoreFeatureDrift alert's threshold
DEFAULT_MIN_AUC_LABELS = 500  # the StreamscoreOnlineRocAucLow alert's label floor
DEFAULT_MAX_AGE_DAYS = 30.0
DEFAULT_RECENT = "1d"  # the span of the record the triggers read

DRIFT, ROC_AUC, AGE, NO_PRODUCTION = "drift", "roc_auc", "age", "no_production_model"


@dataclass(frozen=True)
class Thresholds:
    """Retrain when a feature's PSI exceeds ``max_psi``, the online ROC-AUC over at least
    ``min_auc_labels`` labels falls below ``min_roc_auc``, or the model is older than ``max_age_days``."""

    max_psi: float = DEFAULT_MAX_PSI
    min_roc_auc: float = DEFAULT_MIN_ROC_AUC
    min_auc_labels: int = DEFAULT_MIN_AUC_LABELS
    max_age_days: float = DEFAULT_MAX_AGE_DAYS


@dataclass(frozen=True)
class Observed:
    """The production model's numbers: PSI per feature (NaN when unknown), online ROC-AUC (None when
    undefined: no labels, or one class) over ``labels`` labels, and its age (None: no production model)."""

    source: str
    psi: Mapping[str, float]
    roc_auc: float | None
    labels: int
    age: timedelta | None

    def as_dict(self) -> dict[str, Any]:
        finite = {f: round(v, 4) for f, v in self.psi.items() if math.isfinite(v)}
        top = sorted(finite.items(), key=lambda fv: -fv[1])[:5]
        return {"source": self.source, "max_psi": dict(top), "roc_auc": self.roc_auc, "labels": self.labels,
                "age_days": None if self.age is None else round(self.age / timedelta(days=1), 3)}


@dataclass(frozen=True)
class Trigger:
    """A trigger that fired: which (``DRIFT``, ``ROC_AUC``, ``AGE``, ``NO_PRODUCTION``) and why."""

    name: str
    reason: str


def fired(observed: Observed, thresholds: Thresholds) -> list[Trigger]:
    """The triggers ``observed`` fires, in the order age, drift, ROC-AUC; empty when retraining is not
    needed. No production model fires ``NO_PRODUCTION``. A NaN PSI is unknown, not drift; ROC-AUC counts
    only over at least ``min_auc_labels`` labels (the same strictness as the alerts: PSI above the
    threshold, ROC-AUC below it)."""
    out: list[Trigger] = []
    if observed.age is None:
        out.append(Trigger(NO_PRODUCTION, "no version holds the production alias"))
    elif observed.age > timedelta(days=thresholds.max_age_days):
        out.append(Trigger(AGE, f"the production model is {observed.age / timedelta(days=1):.1f} days old, "
                                f"older than {thresholds.max_age_days:g}"))
    drifted = sorted(((f, v) for f, v in observed.psi.items() if math.isfinite(v) and v > thresholds.max_psi),
                     key=lambda fv: -fv[1])
    if drifted:
        listed = ", ".join(f"{f} {v:.3f}" for f, v in drifted)
        out.append(Trigger(DRIFT, f"PSI above {thresholds.max_psi:g} for {len(drifted)} feature(s): {listed}"))
    if (observed.roc_auc is not None and observed.labels >= thresholds.min_auc_labels
            and observed.roc_auc < thresholds.min_roc_auc):
        out.append(Trigger(ROC_AUC, f"online ROC-AUC {observed.roc_auc:.4f} over {observed.labels} labels is "
                                    f"below {thresholds.min_roc_auc:g}"))
    return out


def age(production: ModelMetadata | None, now: datetime) -> timedelta | None:
    """How long ago the production version was created; None without one."""
    return None if production is None else now - production.created_at


def scraped(samples: Samples, version: str | None) -> tuple[dict[str, float], float | None, int]:
    """(PSI per feature, ROC-AUC, labels) of ``version`` from a worker's ``/metrics`` samples: the largest
    PSI each feature is reported with, and the version's rolling ROC-AUC (None when the worker reports
    none or NaN) and label count."""
    drift = max_by_label(samples, FEATURE_DRIFT_PSI, "feature")
    if version is None:
        return drift, None, 0
    auc = by_label(samples, ONLINE_ROC_AUC, "model_version").get(version)
    labels = by_label(samples, ONLINE_LABELS, "model_version").get(version, 0.0)
    return drift, None if auc is None or math.isnan(auc) else auc, int(labels)


def recorded_drift(feature_repo: Path, reference: Mapping[str, Mapping[str, Any]], since: datetime,
                   until: datetime) -> dict[str, float]:
    """PSI against ``reference`` of each window feature the sink logged (offline feature log under
    ``feature_repo``) for events in [``since``, ``until``]: the vectors serving served. Features without a
    reference or without logged rows are left out; a malformed reference gives NaN."""
    out: dict[str, float] = {}
    for log in (USER_WINDOW_LOG, MERCHANT_WINDOW_LOG):
        parts = read_parts(feature_repo / log, hours=(since, until))
        if not parts:
            continue
        frame = pd.concat(parts, ignore_index=True)
        stamps = pd.to_datetime(frame[TIMESTAMP], utc=True)
        recent = frame[(stamps >= since) & (stamps <= until)]
        if recent.empty:
            continue
        for name in recent.columns:
            histogram = reference.get(str(name))
            if histogram is None:
                continue
            try:
                out[str(name)] = psi(histogram, recent[name].to_numpy(dtype=float, na_value=math.nan))
            except ValueError:
                out[str(name)] = math.nan
    return out


def recorded_quality(data_dir: Path, version: str, since: datetime, until: datetime) -> tuple[float | None, int]:
    """(ROC-AUC, labels) of the scores ``version`` served, over the labels the sink logged with label time in
    [``since``, ``until``]; ROC-AUC is None without both classes."""
    labels = read_labels(data_dir / LABEL_LOG, hours=(since, until))
    mine = labels[(labels["label_time"] >= since) & (labels["label_time"] <= until)
                  & (labels["model_version"] == version)]
    y = mine["is_fraud"].to_numpy(dtype=bool)
    if not 0 < int(y.sum()) < len(y):
        return None, len(y)
    return roc_auc(y, mine["score"].to_numpy(dtype=float)), len(y)


def observe(registry: ModelRegistry, settings: Settings, now: datetime, recent: timedelta,
            metrics: Samples | None = None) -> Observed:
    """The production model's numbers at ``now``: from a worker's ``metrics`` samples when given, else from
    what the sink recorded over the ``recent`` span before ``now``."""
    version = registry.get_alias("production")
    production = registry.metadata(version) if version is not None else None
    if metrics is not None:
        drift, auc, labels = scraped(metrics, version)
        return Observed("metrics", drift, auc, labels, age(production, now))
    since = now - recent
    reference = production.reference_distributions if production is not None else {}
    drift = recorded_drift(settings.feast.repo_path, reference, since, now)
    auc, labels = recorded_quality(settings.data_dir, version, since, now) if version is not None else (None, 0)
    return Observed("record", drift, auc, labels, age(production, now))
