#!/usr/bin/env bash
# The docker-compose stack's one-shot `init` service: the contract's topics, `feast apply`, and — when the
# registry has no production model yet — a generated history, its backfill, training and promotion; then
# the daily profiles are materialized. Safe to run again: with a production model it only re-applies
# and re-materializes. Runs in the app image with the stack's STREAMSCORE_* settings.
# Environment: INIT_DAYS (30), INIT_USERS (20000), INIT_MERCHANTS (2000), INIT_SEED (7) size the history
# (the `traffic` service's live stream uses the same users, merchants and seed).
set -euo pipefail

days=${INIT_DAYS:-30}
users=${INIT_USERS:-20000}
merchants=${INIT_MERCHANTS:-2000}
seed=${INIT_SEED:-7}
history=${STREAMSCORE_DATA_DIR:?the data directory}/history

has_production_model() {
  python - <<'PY'
import sys
from stream_app.adapters.model_registry import ModelRegistry
sys.exit(0 if ModelRegistry.from_settings().get_alias("production") else 1)
PY
}

streamscore create-topics
if has_production_model; then
  echo "init: the registry has a production model; not training"
  streamscore feast apply
else
  # History ends yesterday so that materialize-incremental (first run: now - TTL) loads the latest profiles.
  start=$(date -u -d "$days days ago" +%F)
  streamscore generate history --days "$days" --users "$users" --merchants "$merchants" --seed "$seed" --start "$start" --out "$history"
  streamscore backfill --history "$history" --seed-state --no-progress  # the worker continues its windows
  streamscore feast apply
  streamscore train --history "$history"
  streamscore promote latest
fi
now=$(date -u +%FT%T)
streamscore feast materialize-incremental "$now" --views user_profile --views merchant_profile
echo "init: done"
