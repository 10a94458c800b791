"""What the demo runs: sizes, rates and where it writes. Defaults are chosen to finish well under ten
minutes on a shared 2-core machine (see README "make demo"); every one can be overridden on the
command line for a longer or heavier run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from stream_app.cli_types import fraction, positive
from stream_app.settings import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "data" / "demo"


@dataclass(frozen=True)
class DemoConfig:
    """One demo run.

    ``users`` is the same for history and the live stream so live users have batch profiles. The live
    stream gives every user history's arrival process (``generate live --realistic``), so per-user window
    features look like the ones the model was trained on: event time runs ``rate`` / (the population's
    purchases per second) times the wall clock and ends about now (20k users buy about 19k times a day:
    the default minute covers most of a day). ``days`` is what we shrink to save time (training needs more
    than the 5 holdout days). ``rate`` must stay below what the worker sustains while the broker, the
    generator and this process share its cores; above it the backlog grows and the reported latency
    becomes queueing time. ``label_delay_scale`` scales the 1-3 day chargeback delay in event time: 1e-4
    makes it seconds of event time, so labels arrive while the demo runs."""

    out: Path = DEFAULT_OUT
    days: int = 14
    users: int = 20_000
    merchants: int = 2_000
    seed: int = 7
    rate: float = 300.0
    duration_s: float = 60.0
    invalid_fraction: float = 0.02
    label_delay_scale: float = 1e-4
    drain_s: float = 15.0  # after the stream: labels keep arriving, the worker catches up
    catch_up_timeout_s: float = 120.0  # give up waiting for the worker this long after the stream
    worker_ready_timeout_s: float = 240.0
    warm_up_events: int = 50

    @property
    def history_dir(self) -> Path:
        return self.out / "history"

    @property
    def repo_dir(self) -> Path:
        return self.out / "feature_repo"

    @property
    def registry_dir(self) -> Path:
        return self.out / "registry"

    @property
    def logs_dir(self) -> Path:
        return self.out / "logs"

    @property
    def summary_json(self) -> Path:
        return self.out / "summary.json"

    @property
    def summary_png(self) -> Path:
        return self.out / "summary.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options, defaults from DemoConfig."""
    d = DemoConfig()
    parser.add_argument("--out", type=Path, default=d.out, help="workspace and results (default: data/demo)")
    parser.add_argument("--days", type=history_days, default=d.days,
                        help="days of history (at least 7: training holds out the last 5)")
    parser.add_argument("--users", type=int, default=d.users)
    parser.add_argument("--merchants", type=int, default=d.merchants)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--rate", type=positive, default=d.rate, help="live transaction records per second")
    parser.add_argument("--duration", type=positive, default=d.duration_s, help="seconds of live transactions")
    parser.add_argument("--invalid-fraction", type=fraction, default=d.invalid_fraction)
    parser.add_argument("--label-delay-scale", type=positive, default=d.label_delay_scale)
    parser.add_argument("--drain", type=float, default=d.drain_s, help="seconds of labels/catch-up after the stream")


def history_days(text: str) -> int:
    days = int(text)
    if days < 7:
        raise argparse.ArgumentTypeError("must be at least 7 (training holds out the last 5 days)")
    return days


def config_from(args: argparse.Namespace) -> DemoConfig:
    """The DemoConfig of parsed ``streamscore demo`` options."""
    return DemoConfig(out=args.out.resolve(), days=args.days, users=args.users, merchants=args.merchants,
                      seed=args.seed, rate=args.rate, duration_s=args.duration, invalid_fraction=args.invalid_fraction,
                      label_delay_scale=args.label_delay_scale, drain_s=max(0.0, args.drain))
