"""bench/ holds scripts that import each other as top-level modules (``python bench/x.py`` puts bench/ first on
the path); the tests import them the same way."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))
