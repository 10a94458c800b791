#!/usr/bin/env bash
# make bench: every benchmark, one after the other (never part of make test). Results in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
$py bench/bench_windows.py
$py bench/bench_backfill.py
