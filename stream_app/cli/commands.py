"""The type a command module registers its subcommands on."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# Each subparser sets ``run``: a callable taking the parsed namespace and returning an exit code (or None).
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
