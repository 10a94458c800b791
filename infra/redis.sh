#!/usr/bin/env bash
# The system's redis-server on 127.0.0.1, no persistence (a cache for tests and the demo).
#   infra/redis.sh install|start|stop|status
# Idempotent. Environment: REDIS_PORT (6379), STREAMSCORE_RUN_DIR (<repo>/.run), and optionally
#   REDIS_TLS_PORT  also serve TLS on this port, with REDIS_TLS_DIR holding ca.crt, server.crt, server.key
#                   (clients are not asked for certificates)
#   REDIS_ACL_FILE  users and their passwords (redis.conf's aclfile); a disabled default user makes the
#                   readiness probe's PING answer NOAUTH, which counts as ready
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
port=${REDIS_PORT:-6379}
run_dir=${STREAMSCORE_RUN_DIR:-$repo/.run}/redis-$port
pid_file=$run_dir/redis.pid

log() { echo "redis: $*" >&2; }

install() {
  command -v redis-server >/dev/null && return 0
  log "installing Debian's redis-server"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
}

running() { [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }
ready() { [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) =~ ^(PONG|NOAUTH) ]]; }

# redis-server arguments for the optional TLS port and ACL file.
security_args() {
  if [[ -n ${REDIS_TLS_PORT:-} ]]; then
    local tls=$REDIS_TLS_DIR
    printf '%s\0' --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" \
      --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no
  fi
  if [[ -n ${REDIS_ACL_FILE:-} ]]; then printf '%s\0' --aclfile "$REDIS_ACL_FILE"; fi
}

start() {
  if running; then log "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"; return 0; fi
  install
  mkdir -p "$run_dir"
  if [[ -n ${REDIS_TLS_PORT:-} && ! -f ${REDIS_TLS_DIR:-}/server.key ]]; then
    log "REDIS_TLS_PORT needs REDIS_TLS_DIR holding ca.crt, server.crt and server.key"; return 1
  fi
  local security=(); mapfile -d '' security < <(security_args)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --dir "$run_dir" --pidfile "$pid_file" --logfile "$run_dir/redis.log" "${security[@]}"
  for _ in $(seq 1 100); do ready && break; sleep 0.1; done
  ready || { log "not ready; see $run_dir/redis.log"; return 1; }
  log "ready on 127.0.0.1:$port (pid $(cat "$pid_file"))"
}

stop() {
  if ! running; then rm -f "$pid_file"; log "not running"; return 0; fi
  local pid; pid=$(cat "$pid_file")
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pid_file"
  log "stopped"
}

status() {
  if running && ready; then log "running on 127.0.0.1:$port"; return 0; fi
  log "not running"; return 3
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
