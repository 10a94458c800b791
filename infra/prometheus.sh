#!/usr/bin/env bash
# Debian's Prometheus (the server and promtool), for the alert-rule and dashboard tests.
#   infra/prometheus.sh install
# Idempotent. The package's systemd service is never used: the tests start their own servers
# (tests/fixtures/prometheus.py) and docker-compose.yml runs the real one.
set -euo pipefail

log() { echo "prometheus: $*" >&2; }

install() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  log "installing Debian's prometheus (server and promtool)"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
}

case "${1:-}" in
  install) install ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
