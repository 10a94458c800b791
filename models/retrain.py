"""Retrain from what the stream recorded (``streamscore retrain`` or ``python -m models.retrain``, for cron
or an orchestrator): no generated history, only the sink's logs.

The labelled entity frame joins the transaction log (valid transactions' request fields, event time in
[since, until]) with the label log, counting only labels known by the cut-off (``label_time <= until``;
a label follows its transaction, so only label hours from ``since`` on are read);
the label log holds labels the worker joined to its predictions, so every row is a transaction the worker
scored. Features come from ``get_historical_features`` through the production FeatureService, i.e. from
the window rows the sink logged from the predictions: what serving served. Then ``train.train_frame``
validates (schema, ranges, label rate, PSI against production's reference), trains, evaluates on the
most recent labelled days (its time holdout) and registers the version with its ``Lineage``; the
version is evaluated on the golden set, and with ``--promote shadow`` the promotion gate decides.
With ``--if-needed`` all that runs only when a trigger of ``models.triggers`` fires (drift, online
ROC-AUC, model age).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from models import promote, triggers
from models.dataset import entity_frame, historical_features
from models.features import feature_definitions_hash, model_feature_names
from models.golden import GoldenSet, golden_metrics, golden_set
from models.train import TrainConfig, TrainResult, train_frame
from stream_app.adapters.feast_store import open_store
from stream_app.adapters.label_log import read_labels
from stream_app.adapters.metrics_reader import scrape_url
from stream_app.adapters.model_registry import ALIASES, Lineage, ModelRegistry
from stream_app.adapters.transaction_log import read_transactions
from stream_app.cli_types import configure_logging
from stream_app.core.offline_layout import LABEL_LOG, TRANSACTION_LOG
from stream_app.errors import DataValidationError, RegistryError, StreamscoreError
from stream_app.settings import Settings, get_settings

log = logging.getLogger(__name__)

SOURCE = "stream record"
DEFAULT_MIN_LABELS = 1000
HistoricalFeatures = Callable[[pd.DataFrame], pd.DataFrame]  # entity frame -> the FeatureService's features


@dataclass(frozen=True)
class Recorded:
    """The labelled entity frame built from the logs, with what it was drawn from."""

    entities: pd.DataFrame
    since: datetime
    until: datetime
    transactions: int  # recorded valid transactions with event time in [since, until]
    labels: int  # logged labels with label time in [since, until]: known by the cut-off


@dataclass(frozen=True)
class RetrainResult:
    """A registered retraining run: the training result, its golden metrics and the promotion, if asked:
    its result, or why the gate refused it."""

    trained: TrainResult
    golden: dict[str, float] | None
    promotion: promote.PromotionResult | None = None
    refused: str | None = None


def parse_span(text: str) -> pd.Timedelta:
    """A positive duration such as ``30d``, ``12h`` or ``90m`` (anything ``pd.Timedelta`` reads)."""
    try:
        span = pd.Timedelta(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30d, 12h)") from exc
    if span <= pd.Timedelta(0):
        raise argparse.ArgumentTypeError(f"the duration must be positive, got {text!r}")
    return span


def parse_instant(text: str) -> datetime:
    """An instant in ISO 8601; without an offset it is UTC."""
    try:
        stamp = pd.Timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).to_pydatetime()


def recorded_entities(data_dir: Path, since: datetime, until: datetime, *,
                      min_labels: int = DEFAULT_MIN_LABELS) -> Recorded:
    """The labelled entity frame of the recorded transactions with event time in [``since``, ``until``]
    and a label known by ``until``. DataValidationError (with the counts) when fewer than ``min_labels``
    rows result: too few to validate, split and train on, so nothing is fetched or trained."""
    if since >= until:
        raise DataValidationError(f"empty range: since {since} is not before until {until}")
    in_range = read_transactions(data_dir / TRANSACTION_LOG, since=since, until=until)
    labels = read_labels(data_dir / LABEL_LOG, hours=(since, until))  # a label comes after its transaction
    known = labels[(labels["label_time"] >= since) & (labels["label_time"] <= until)]
    entities = entity_frame(in_range, known)
    counts = {"since": since.isoformat(), "until": until.isoformat(), "transactions": len(in_range),
              "labels_known": len(known), "labelled": len(entities), "min_labels": min_labels}
    if len(entities) < min_labels:
        raise DataValidationError(f"only {len(entities)} recorded transactions in [{since}, {until}] have a "
                                  f"label known by {until}; retraining needs at least {min_labels}", counts)
    log.info("retrain: %s", counts)
    return Recorded(entities, since, until, len(in_range), len(known))


def recorded_frame(settings: Settings, since: datetime, until: datetime, *, min_labels: int = DEFAULT_MIN_LABELS,
                   historical: HistoricalFeatures | None = None) -> tuple[pd.DataFrame, Recorded]:
    """The training frame: ``recorded_entities`` with the production FeatureService's historical features
    (from ``settings``' Feast store unless ``historical`` is given)."""
    recorded = recorded_entities(settings.data_dir, since, until, min_labels=min_labels)
    if historical is None:
        historical = store_features(settings)
    return historical(recorded.entities), recorded


def store_features(settings: Settings) -> HistoricalFeatures:
    """``dataset.historical_features`` on ``settings``' Feast store."""
    store = open_store(settings)
    return lambda entities: historical_features(store, entities)


def retrain(settings: Settings, registry: ModelRegistry, since: datetime, until: datetime, *,
            config: TrainConfig | None = None, golden: Callable[[], GoldenSet] | None = None,
            promote_to: str | None = None,
            min_labels: int = DEFAULT_MIN_LABELS, reports_root: Path | None = None,
            historical: HistoricalFeatures | None = None) -> RetrainResult:
    """Build the frame from the record, train and register with lineage (``train.train_frame``), record the
    golden-set metrics (when ``golden`` is given: it is called once a version is registered, so a run
    that stops on its data never builds the golden set) and, with ``promote_to``, run the promotion gate
    (a refusal is the result's ``refused``; the version stays registered)."""
    if golden is None and promote_to is not None:
        raise ValueError("promotion needs the golden set")
    parent = registry.get_alias("production")
    frame, recorded = recorded_frame(settings, since, until, min_labels=min_labels, historical=historical)
    lineage = Lineage(source=SOURCE, since=since, until=until, transactions=recorded.transactions,
                      labels=recorded.labels, labelled=len(recorded.entities),
                      feature_definitions_hash=feature_definitions_hash(), parent_version=parent)
    trained = train_frame(frame, registry, reports_root or settings.data_dir / "reports", config, lineage=lineage)
    measured, judged = None, None
    if golden is not None:
        judged = golden()
        judged.check()
        measured = golden_metrics(registry.load(trained.version).scorer(), judged)
        registry.record_golden_metrics(trained.version, {"evaluated_at": datetime.now(UTC).isoformat(),
                                                         "candidate": {"version": trained.version, **measured}})
    if promote_to is None or judged is None:
        return RetrainResult(trained, measured)
    try:
        promotion = promote.promote(registry, trained.version, promote_to, model_feature_names(), judged)
    except RegistryError as exc:
        log.warning("retrained %s, not promoted to %s: %s", trained.version, promote_to, exc)
        return RetrainResult(trained, measured, refused=str(exc))
    return RetrainResult(trained, measured, promotion)


# --- the command line ------------------------------------------------------------------------------------

DESCRIPTION = (
    "Retrain from what the stream recorded: transactions the sink logged with event time in [now - SINCE, "
    "UNTIL] and labels known by UNTIL -> get_historical_features (production FeatureService) -> validation "
    "-> training -> evaluation on the most recent labelled days and the golden set -> registry version with "
    "its lineage; with --promote, the promotion gate. Exit code 0 registered (and promoted), 1 failed or "
    "promotion refused (the version stays registered), 2 the data failed validation (report printed). "
    "With --if-needed it first reads the production model's feature drift (PSI), online ROC-AUC and age, "
    "from the worker's /metrics (--metrics-url) or from the recorded logs of the last --recent span, "
    "prints which trigger fired and retrains only if one did (exit code 0 without training otherwise)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``streamscore retrain`` and ``python -m models.retrain``."""
    parser.add_argument("--since", type=parse_span, required=True,
                        help="how far back from --until transactions count, e.g. 30d")
    parser.add_argument("--until", type=parse_instant, default=None,
                        help="end of the range and label cut-off, ISO 8601 (default: now)")
    parser.add_argument("--promote", choices=ALIASES, default=None, dest="promote_to",
                        help="send a candidate that passes the promotion gate to this alias (e.g. shadow)")
    parser.add_argument("--holdout-days", type=float, default=TrainConfig.holdout_days,
                        help="the most recent days, evaluated on and never trained on (default %(default)s)")
    parser.add_argument("--min-labels", type=int, default=DEFAULT_MIN_LABELS,
                        help="refuse to train on fewer labelled transactions (default %(default)s)")
    parser.add_argument("--reports", type=Path, default=None, help="default: <data_dir>/reports")
    when = parser.add_argument_group("triggers (--if-needed)")
    when.add_argument("--if-needed", action="store_true",
                      help="retrain only when a trigger fires: drift, online ROC-AUC, model age")
    when.add_argument("--metrics-url", default=None,
                      help="read drift and ROC-AUC from this worker /metrics, e.g. http://worker:6066/metrics "
                      "(default: from the recorded logs)")
    when.add_argument("--recent", type=parse_span, default=triggers.DEFAULT_RECENT,
                      help="the span of the recorded logs the triggers read, back from --until "
                      "(default %(default)s)")
    when.add_argument("--max-psi", type=float, default=triggers.DEFAULT_MAX_PSI,
                      help="drift trigger: a feature's PSI above this (default %(default)s, the drift alert's)")
    when.add_argument("--min-roc-auc", type=float, default=promote.DEFAULT_MIN_ROC_AUC,
                      help="quality trigger: online ROC-AUC below this (default %(default)s, the alert's)")
    when.add_argument("--min-auc-labels", type=int, default=triggers.DEFAULT_MIN_AUC_LABELS,
                      help="the online ROC-AUC counts over at least this many labels (default %(default)s)")
    when.add_argument("--max-age-days", type=float, default=triggers.DEFAULT_MAX_AGE_DAYS,
                      help="age trigger: the production model is older than this (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Retrain as parsed by ``add_arguments``; prints a summary as JSON."""
    settings = get_settings()
    until: datetime = args.until or datetime.now(UTC)
    since = (pd.Timestamp(until) - args.since).to_pydatetime()
    if args.if_needed:
        try:
            fired = check_triggers(args, settings, until)
        except (OSError, ValueError, StreamscoreError) as exc:
            log.error("retrain triggers could not be read: %s", exc)
            return 1
        if not fired:
            return 0
    try:
        result = retrain(settings, ModelRegistry.from_settings(settings), since, until,
                         config=TrainConfig(holdout_days=args.holdout_days), golden=lambda: golden_set(settings),
                         promote_to=args.promote_to, min_labels=args.min_labels, reports_root=args.reports)
    except DataValidationError as exc:
        print(f"retraining stopped: {exc}\n{json.dumps(exc.report, indent=2, default=str)}", file=sys.stderr)
        return 2
    except StreamscoreError as exc:
        log.error("retraining failed: %s", exc)
        return 1
    print(json.dumps(summary(result), indent=2, default=str))
    return 1 if result.refused else 0


def check_triggers(args: argparse.Namespace, settings: Settings, now: datetime) -> list[triggers.Trigger]:
    """The triggers that fire at ``now`` as parsed by ``add_arguments``; prints them (or that none fired)
    with the numbers they were judged on. Raises OSError / ValueError when the metrics cannot be read."""
    metrics = scrape_url(args.metrics_url) if args.metrics_url else None
    observed = triggers.observe(ModelRegistry.from_settings(settings), settings, now,
                                pd.Timedelta(args.recent).to_pytimedelta(), metrics)
    thresholds = triggers.Thresholds(max_psi=args.max_psi, min_roc_auc=args.min_roc_auc,
                                     min_auc_labels=args.min_auc_labels, max_age_days=args.max_age_days)
    fired = triggers.fired(observed, thresholds)
    for trigger in fired:
        print(f"retrain trigger fired: {trigger.name}: {trigger.reason}")
    if not fired:
        print("no retrain trigger fired: not retraining")
    print(json.dumps({"observed": observed.as_dict(), "thresholds": vars(thresholds),
                      "fired": [t.name for t in fired]}, default=str))
    return fired


def summary(result: RetrainResult) -> dict[str, Any]:
    """What a run did, for the log of whatever scheduled it."""
    m = result.trained.metrics
    return {"version": result.trained.version, "report_dir": str(result.trained.report_dir),
            "recent_days": {k: m[k] for k in ("n", "positives", "roc_auc", "pr_auc", "threshold")},
            "golden": result.golden,
            "promoted": result.promotion.as_dict() if result.promotion else None, "refused": result.refused}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.retrain ARGS``: the same as ``streamscore retrain ARGS``."""
    parser = argparse.ArgumentParser(prog="python -m models.retrain", description=DESCRIPTION)
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
