"""``streamscore train`` and ``streamscore promote``: registered on the ``streamscore`` command through the
``streamscore.commands`` entry point (pyproject.toml), so the runtime package never imports training."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd

from models.dataset import entity_frame, historical_features
from models.features import model_feature_names
from models.golden import golden_set
from models.promote import DEFAULT_MIN_ROC_AUC, DEFAULT_TOLERANCE, promote
from models.train import TrainConfig, train_frame
from stream_app.adapters.feast_store import open_store
from stream_app.adapters.model_registry import ALIASES, ModelRegistry
from stream_app.errors import DataValidationError, RegistryError, StreamscoreError
from stream_app.settings import get_settings

log = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train`` and ``promote`` to the ``streamscore`` command."""
    train = commands.add_parser(
        "train", help="validate, train, evaluate and register a model from the history's features",
        description="Labelled entity frame -> get_historical_features (production FeatureService) -> validation "
        "-> time split -> XGBoost -> threshold -> holdout evaluation -> report -> registry version. "
        "Exit code 0 registered, 1 failed, 2 the data failed validation (report printed).")
    train.add_argument("--history", type=Path, required=True, help="generator output: transactions + labels")
    train.add_argument("--holdout-days", type=float, default=TrainConfig.holdout_days)
    train.add_argument("--reports", type=Path, default=None, help="default: <data_dir>/reports")
    train.set_defaults(run=run_train)

    gate = commands.add_parser(
        "promote", help="move an alias to a version if it passes the golden-set gate",
        description="Promote a registered version to production (or shadow) if it consumes exactly the "
        "FeatureService's features and is not worse than production on the golden set. Exit code 0 "
        "promoted, 1 refused or failed, 2 bad arguments.")
    gate.add_argument("version", help="the registered version to promote, e.g. v0003, or 'latest'")
    gate.add_argument("--alias", choices=ALIASES, default="production")
    gate.add_argument("--force", action="store_true",
                      help="promote even if the gate or the feature-list check fails (logged as FORCED)")
    gate.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                      help="allowed absolute drop in ROC-AUC and PR-AUC against production (default %(default)s)")
    gate.add_argument("--min-roc-auc", type=float, default=DEFAULT_MIN_ROC_AUC,
                      help="floor when there is no production model yet (default %(default)s)")
    gate.add_argument("--registry", type=Path, default=None, help="registry root (default: Settings.models_dir)")
    gate.set_defaults(run=run_promote)


def run_train(args: argparse.Namespace) -> int:
    settings = get_settings()
    registry = ModelRegistry.from_settings(settings)
    try:
        transactions = pd.read_parquet(args.history / "transactions.parquet")
        labels = pd.read_parquet(args.history / "labels.parquet")
        frame = historical_features(open_store(settings), entity_frame(transactions, labels))
        result = train_frame(frame, registry, args.reports or settings.data_dir / "reports",
                             TrainConfig(holdout_days=args.holdout_days))
    except DataValidationError as exc:
        print(f"training stopped: {exc}\n{json.dumps(exc.report, indent=2, default=str)}", file=sys.stderr)
        return 2
    m = result.metrics
    print(f"registered {result.version}: holdout ROC-AUC {m['roc_auc']:.4f}, PR-AUC {m['pr_auc']:.4f}, "
          f"threshold {m['threshold']:.3f} (precision {m['precision']:.3f}, recall {m['recall']:.3f}); "
          f"report in {result.report_dir}")
    return 0


def run_promote(args: argparse.Namespace) -> int:
    try:
        registry = ModelRegistry(args.registry) if args.registry is not None else ModelRegistry.from_settings()
        version = args.version
        if version == "latest":
            version = registry.latest_version()
            if version is None:
                raise RegistryError("the registry has no versions to promote")
        result = promote(registry, version, args.alias, model_feature_names(), golden_set(),
                         tolerance=args.tolerance, force=args.force, min_roc_auc=args.min_roc_auc)
    except StreamscoreError as exc:
        log.error("promotion of %s to %s refused or failed: %s", args.version, args.alias, exc)
        return 1
    print(json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str))
    return 0
