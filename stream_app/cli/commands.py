"""What every command module shares: the type its subcommands register on, and a stop event for signals."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import TypeAlias

# Each subparser sets ``run``: a callable taking the parsed namespace and returning an exit code (or None).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM: a long-running command polls it to stop cleanly."""
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return stop
