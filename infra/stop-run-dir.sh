#!/usr/bin/env bash
# Stops every service whose pid file lies under the given run directory, then removes it.
# Used by `make test` as a backstop for a test session that died before its own teardown.
set -uo pipefail
dir=${1:?usage: $0 RUN_DIR}
[[ -d $dir ]] || exit 0
while IFS= read -r pid_file; do
  pid=$(cat "$pid_file")
  kill "$pid" 2>/dev/null && for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null
done < <(find "$dir" -name '*.pid' -type f)
rm -rf "$dir"
