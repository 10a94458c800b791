#!/usr/bin/env bash
# A replicated Redis watched by Sentinel, as local processes on 127.0.0.1 (Debian's redis-server; Sentinel
# is the same binary run with --sentinel): one master, its replicas and the sentinels, no persistence.
#   infra/redis-sentinel.sh install|start|stop|status|master|kill-master
# start starts whatever is not running (idempotent); a data node that comes back while the sentinels
# name another node master starts as that master's replica. master prints the master's address as the
# sentinels name it; kill-master SIGKILLs the process serving it (failover then takes a few seconds).
# Environment (defaults):
#   REDIS_MASTER_PORT (6380)          the first master
#   REDIS_REPLICA_PORTS ("6381")      its replicas, space-separated
#   REDIS_SENTINEL_PORTS ("26379 26380 26381")  1 or more sentinels; quorum = a majority of them
#   REDIS_SENTINEL_MASTER (streamscore)          the name the sentinels monitor the master under
#   REDIS_DOWN_AFTER_MS (1000)        silence after which a sentinel thinks the master down
#   REDIS_FAILOVER_TIMEOUT_MS (5000)  a failed failover is retried after twice this
#   STREAMSCORE_RUN_DIR (<repo>/.run) everything goes under <run dir>/redis-sentinel-<master port>/
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
master_port=${REDIS_MASTER_PORT:-6380}
read -r -a replica_ports <<<"${REDIS_REPLICA_PORTS:-6381}"
read -r -a sentinel_ports <<<"${REDIS_SENTINEL_PORTS:-26379 26380 26381}"
name=${REDIS_SENTINEL_MASTER:-streamscore}
down_after_ms=${REDIS_DOWN_AFTER_MS:-1000}
failover_timeout_ms=${REDIS_FAILOVER_TIMEOUT_MS:-5000}
run_dir=${STREAMSCORE_RUN_DIR:-$repo/.run}/redis-sentinel-$master_port
quorum=$(( ${#sentinel_ports[@]} / 2 + 1 ))

log() { echo "redis-sentinel: $*" >&2; }

install() { "$repo/infra/redis.sh" install; }  # Sentinel is part of Debian's redis-server binary

pid_file() { echo "$run_dir/$1.pid"; }  # $1: node-<port> or sentinel-<port>
running() { [[ -f $(pid_file "$1") ]] && kill -0 "$(cat "$(pid_file "$1")")" 2>/dev/null; }
answers() { [[ $(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) == PONG ]]; }
wait_answers() {
  for _ in $(seq 1 100); do answers "$1" && return 0; sleep 0.1; done
  log "127.0.0.1:$1 not ready; see $run_dir/$2.log"; return 1
}

# The master's port as the first answering sentinel names it; empty when none answers.
sentinel_master_port() {
  local port reply
  for port in "${sentinel_ports[@]}"; do
    reply=$(redis-cli -h 127.0.0.1 -p "$port" sentinel get-master-addr-by-name "$name" 2>/dev/null) || continue
    [[ -n $reply ]] && { sed -n 2p <<<"$reply"; return 0; }
  done
}

start_node() {  # $1: port, $2: the master's port, or empty for a master
  local port=$1 of=$2 id=node-$1
  running "$id" && return 0
  local replica_args=()
  [[ -n $of && $of != "$port" ]] && replica_args=(--replicaof 127.0.0.1 "$of")
  # Diskless full syncs without delay: a replica that (re)joins is in sync in well under a second.
  # Nothing is persisted, so a stop need not wait for replicas to catch up (shutdown-on-sigterm now).
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --dir "$run_dir" --pidfile "$(pid_file "$id")" --logfile "$run_dir/$id.log" \
    --repl-diskless-sync yes --repl-diskless-sync-delay 0 --shutdown-on-sigterm now "${replica_args[@]}"
  wait_answers "$port" "$id"
}

start_sentinel() {  # $1: port, $2: the master's port
  local port=$1 id=sentinel-$1
  running "$id" && return 0
  local conf=$run_dir/$id.conf
  [[ -f $conf ]] || cat >"$conf" <<EOF
bind 127.0.0.1
port $port
daemonize yes
pidfile $(pid_file "$id")
logfile $run_dir/$id.log
dir $run_dir
sentinel monitor $name 127.0.0.1 $2 $quorum
sentinel down-after-milliseconds $name $down_after_ms
sentinel failover-timeout $name $failover_timeout_ms
sentinel parallel-syncs $name 1
EOF
  redis-server "$conf" --sentinel  # the sentinel rewrites its conf as it learns (replicas, new masters)
  wait_answers "$port" "$id"
}

start() {
  install
  mkdir -p "$run_dir"
  local current; current=$(sentinel_master_port)
  if [[ -n $current ]] && ! running "node-$current"; then
    # Started empty as master again, it would be the copy the replicas sync from: wait for the failover.
    log "the master 127.0.0.1:$current is down; waiting for the sentinels to promote a replica"
    for _ in $(seq 1 600); do
      current=$(sentinel_master_port); running "node-$current" && break; sleep 0.1
    done
    running "node-$current" || { log "no failover within 60 s"; return 1; }
  fi
  local master=${current:-$master_port}
  start_node "$master" ""
  local port
  for port in "$master_port" "${replica_ports[@]}"; do start_node "$port" "$master"; done
  for port in "${sentinel_ports[@]}"; do start_sentinel "$port" "$master"; done
  for _ in $(seq 1 100); do [[ -n $(sentinel_master_port) ]] && break; sleep 0.1; done
  log "master '$name' at 127.0.0.1:$(sentinel_master_port); sentinels on ${sentinel_ports[*]} (quorum $quorum)"
}

stop() {
  local port file pids=() files=()
  for port in "${sentinel_ports[@]}"; do files+=("$(pid_file "sentinel-$port")"); done
  for port in "$master_port" "${replica_ports[@]}"; do files+=("$(pid_file "node-$port")"); done
  for file in "${files[@]}"; do [[ -f $file ]] && pids+=("$(cat "$file")"); done
  if (( ${#pids[@]} )); then
    kill "${pids[@]}" 2>/dev/null || true  # all at once: each takes a second or two to exit
    for _ in $(seq 1 100); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pids[@]}" 2>/dev/null || true
  fi
  rm -f "${files[@]}" "$run_dir"/sentinel-*.conf  # a fresh start monitors the configured master again
  log "stopped"
}

status() {
  local port down=0
  for port in "$master_port" "${replica_ports[@]}"; do
    if running "node-$port" && answers "$port"; then
      log "node 127.0.0.1:$port $(redis-cli -p "$port" role | head -1)"
    else log "node 127.0.0.1:$port down"; down=1; fi
  done
  for port in "${sentinel_ports[@]}"; do
    if running "sentinel-$port" && answers "$port"; then log "sentinel 127.0.0.1:$port"
    else log "sentinel 127.0.0.1:$port down"; down=1; fi
  done
  local current; current=$(sentinel_master_port)
  [[ -n $current ]] && log "master '$name' at 127.0.0.1:$current" || { log "no sentinel names a master"; down=1; }
  [[ $down == 0 ]] || return 3
}

master() {
  local current; current=$(sentinel_master_port)
  [[ -n $current ]] || { log "no sentinel answers"; return 3; }
  echo "127.0.0.1:$current"
}

kill_master() {
  local current; current=$(sentinel_master_port)
  [[ -n $current ]] || { log "no sentinel answers"; return 3; }
  running "node-$current" || { log "the master 127.0.0.1:$current is not running"; return 3; }
  kill -9 "$(cat "$(pid_file "node-$current")")"
  rm -f "$(pid_file "node-$current")"
  log "killed the master 127.0.0.1:$current"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  master) master ;;
  kill-master) kill_master ;;
  *) echo "usage: $0 install|start|stop|status|master|kill-master" >&2; exit 2 ;;
esac
