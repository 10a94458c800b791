#!/usr/bin/env bash
# make bench: every benchmark, one after the other (never part of make test). Results in bench/results/.
# `bash bench/run.sh soak` (make bench-soak) runs the soak alone, with its own Kafka and Redis.
#
# The end-to-end benchmark needs Kafka and Redis: this script starts private ones on free ports (data and
# logs under .run/bench/, never shared with test sessions or `make infra-up`) and stops them at the end,
# also when a benchmark fails or the run is interrupted.
#
# Environment (optional): BENCH_QUICK=1 shrinks every e2e duration (a harness check, numbers meaningless);
# bench_restart.py measures restart to first prediction after a SIGKILL (bench/results/restart.json).
# BENCH_EXTRA=1 also runs bench_online_store.py and bench_state_store.py (not in the default run: time budget);
# KAFKA_PORT / KAFKA_CONTROLLER_PORT / REDIS_PORT pin the ports; BENCH_E2E_ARGS is passed to bench_e2e.py and
# BENCH_SOAK_ARGS to bench_soak.py (the soak, last: 20 minutes at half the e2e rate; a growth fails make bench).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
started=$SECONDS

free_port() { $py -c 'from stream_app.worker.process import free_port; print(free_port())'; }

export STREAMSCORE_RUN_DIR=$PWD/.run/bench
export KAFKA_PORT=${KAFKA_PORT:-$(free_port)}
export KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$(free_port)}
export REDIS_PORT=${REDIS_PORT:-$(free_port)}
export BENCH_PID_FILE=$STREAMSCORE_RUN_DIR/children-$$  # every worker/generator bench_e2e.py starts
mkdir -p "$STREAMSCORE_RUN_DIR"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -f $BENCH_PID_FILE ]]; then  # children left behind by an interrupted bench_e2e.py, by pid
    while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$BENCH_PID_FILE"
    rm -f "$BENCH_PID_FILE"
  fi
  infra/kafka.sh stop || true
  infra/redis.sh stop || true
  rm -rf "$STREAMSCORE_RUN_DIR/kafka-$KAFKA_PORT/data"  # the backlogs (GBs); logs stay
  echo "bench: finished in $((SECONDS - started)) s (exit $rc)" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

only=${1:-all}
if [[ $only != all && $only != soak ]]; then
  echo "usage: bench/run.sh [soak]" >&2
  exit 2
fi
if [[ $only == all ]]; then
  $py bench/bench_windows.py
  $py bench/bench_backfill.py
fi

infra/redis.sh start
infra/kafka.sh start
export STREAMSCORE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export STREAMSCORE_REDIS__URL=redis://127.0.0.1:$REDIS_PORT/0

if [[ $only == all ]]; then
  if [[ ${BENCH_EXTRA:-0} != 0 ]]; then
    $py bench/bench_online_store.py
    $py bench/bench_state_store.py --url "redis://127.0.0.1:$REDIS_PORT/15"
  fi
  # shellcheck disable=SC2086  # BENCH_E2E_ARGS is a list of arguments
  $py bench/bench_e2e.py ${BENCH_E2E_ARGS:-}
  $py bench/bench_restart.py
fi
# shellcheck disable=SC2086  # BENCH_SOAK_ARGS is a list of arguments
$py bench/bench_soak.py ${BENCH_SOAK_ARGS:-}
