"""``streamscore train``, ``streamscore retrain`` and ``streamscore promote``: registered on the ``streamscore``
command through the ``streamscore.commands`` entry point (pyproject.toml), so the runtime package never imports
training."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from models import promote, retrain
from models.dataset import entity_frame, historical_features
from models.train import TrainConfig, train_frame
from stream_app.adapters.feast_store import open_store
from stream_app.adapters.model_registry import ModelRegistry
from stream_app.errors import DataValidationError
from stream_app.settings import get_settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``train``, ``retrain`` and ``promote`` to the ``streamscore`` command."""
    train = commands.add_parser(
        "train", help="validate, train, evaluate and register a model from the history's features",
        description="Labelled entity frame -> get_historical_features (production FeatureService) -> validation "
        "-> time split -> XGBoost -> threshold -> holdout evaluation -> report -> registry version. "
        "Exit code 0 registered, 1 failed, 2 the data failed validation (report printed).")
    train.add_argument("--history", type=Path, required=True, help="generator output: transactions + labels")
    train.add_argument("--holdout-days", type=float, default=TrainConfig.holdout_days)
    train.add_argument("--reports", type=Path, default=None, help="default: <data_dir>/reports")
    train.set_defaults(run=run_train)

    again = commands.add_parser("retrain", help="train and register a model from what the stream recorded "
                                "(transaction and label logs)", description=retrain.DESCRIPTION)
    retrain.add_arguments(again)
    again.set_defaults(run=retrain.run)

    gate = commands.add_parser("promote", help="move an alias to a version if it passes the golden-set gate, "
                               "or back with --rollback", description=promote.DESCRIPTION)
    promote.add_arguments(gate)
    gate.set_defaults(run=promote.run)


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
