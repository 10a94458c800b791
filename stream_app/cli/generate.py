"""``streamscore generate {history,golden,live}``: write a seeded history to Parquet, write the golden
evaluation set, or stream transactions and labels to Kafka."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from stream_app.cli.commands import Commands, stop_on_signals
from stream_app.cli_types import fraction, non_negative, positive, positive_int
from stream_app.errors import ConfigError
from stream_app.generator.config import DRIFTS, HistoryConfig
from stream_app.generator.history import (
    GOLDEN_SEED,
    format_summary,
    golden_config,
    timed_generate,
    write_history,
)
from stream_app.generator.live import stream_live
from stream_app.settings import get_settings


def _moment(text: str) -> datetime | None:
    """'now' (None), a date (UTC midnight) or an ISO 8601 timestamp (UTC if no offset is given)."""
    if text.lower() == "now":
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not 'now', a date or an ISO timestamp: {text!r}") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def register(commands: Commands) -> None:
    parser = commands.add_parser("generate", help="seeded synthetic data: history, golden set, live stream",
                                 description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True, metavar="WHAT")

    hist = sub.add_parser("history", help="simulate N days and write Parquet files")
    hist.add_argument("--days", type=positive_int, default=30)
    hist.add_argument("--users", type=positive_int, default=20_000)
    hist.add_argument("--merchants", type=positive_int, default=2_000)
    hist.add_argument("--seed", type=int, default=7)
    hist.add_argument("--start", type=_moment, default=datetime(2026, 10, 1, tzinfo=UTC), help="date or timestamp")
    hist.add_argument("--out", type=Path, default=None, help="directory (default: <data_dir>/history)")

    gold = sub.add_parser("golden", help="write the fixed golden evaluation set")
    gold.add_argument("--seed", type=int, default=GOLDEN_SEED)
    gold.add_argument("--out", type=Path, default=None, help="directory (default: <data_dir>/golden)")

    live = sub.add_parser("live", help="stream transactions and labels to Kafka")
    live.add_argument("--rate", type=positive, default=2000.0, help="transaction records per second")
    live.add_argument("--duration", type=non_negative, default=60.0, help="seconds")
    live.add_argument("--seed", type=int, default=7)
    live.add_argument("--users", type=positive_int, default=20_000, help="same as history's for matching profiles")
    live.add_argument("--merchants", type=positive_int, default=2_000)
    live.add_argument("--invalid-fraction", type=fraction, default=0.0, help="share of hostile records")
    live.add_argument("--label-delay-scale", type=non_negative, default=1.0, help="e.g. 0.001: 10 days -> 14.4 min")
    live.add_argument("--start", type=_moment, default=None, help="'now' (default) or a timestamp for event times")
    live.add_argument("--drain-labels", action="store_true", help="after the duration, wait for pending labels")
    live.add_argument("--realistic", action="store_true",
                      help="every user at history's rate (a few purchases a day, some bursts): event time runs "
                      "as much faster than the wall clock as --rate needs, ending about now")
    live.add_argument("--drift", choices=tuple(DRIFTS), default="none",
                      help="depart from history: amount (every ticket x2) or pattern (gift-card cash-outs, a "
                      "fraud the model never saw)")
    parser.set_defaults(run=generate)


def generate(args: argparse.Namespace) -> int:
    try:
        if args.what == "history":
            if args.start is None:
                raise SystemExit("history needs a fixed --start (not 'now'): output must be reproducible")
            config = HistoryConfig(
                days=args.days, users=args.users, merchants=args.merchants, seed=args.seed, start=args.start
            )
            return _write(config, args.out or get_settings().data_dir / "history")
        if args.what == "golden":
            return _write(golden_config(args.seed), args.out or get_settings().data_dir / "golden")
        return _live(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _write(config: HistoryConfig, out: Path) -> int:
    history, seconds = timed_generate(config)
    paths = write_history(history, out)
    print(format_summary(history, seconds))
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def _live(args: argparse.Namespace) -> int:
    stop = stop_on_signals()
    counts = stream_live(
        get_settings(),
        rate=args.rate,
        duration_s=args.duration,
        seed=args.seed,
        users=args.users,
        merchants=args.merchants,
        invalid_fraction=args.invalid_fraction,
        label_delay_scale=args.label_delay_scale,
        start=args.start,
        drain_labels=args.drain_labels,
        stop=stop,
        realistic=args.realistic,
        drift=DRIFTS[args.drift],
    )
    print(
        f"valid {counts.valid}  invalid {counts.invalid}  labels {counts.labels}  "
        f"(pending {counts.labels_pending})  fraud {counts.fraud}  delivery errors {counts.delivery_errors}  "
        f"undelivered {counts.undelivered}"
    )
    return 1 if counts.delivery_errors or counts.undelivered else 0
