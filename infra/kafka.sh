#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller) from Maven Central jars, on 127.0.0.1.
#   infra/kafka.sh fetch|start|stop|status
# Idempotent: start on a running broker and stop on a stopped one are no-ops.
# Environment (all optional):
#   KAFKA_PORT (9092)  KAFKA_CONTROLLER_PORT (9093)  KAFKA_HEAP (512m)
#   STREAMSCORE_RUN_DIR (<repo>/.run)          data, logs and pid file
#   STREAMSCORE_CACHE_DIR (~/.cache/streamscore) fetched jars, kept between runs
#   PYTHON (<repo>/.venv/bin/python)          used for the readiness probe
# An authenticated, encrypted listener for clients (optional; the PLAINTEXT and controller listeners stay):
#   KAFKA_SASL_SSL_PORT   adds SASL_SSL://127.0.0.1:<port> accepting SCRAM-SHA-512
#   KAFKA_SSL_DIR         holds server.pem: its unencrypted PKCS#8 private key and certificate chain
#   KAFKA_SCRAM_USERS     "name:password ..." SCRAM-SHA-512 credentials stored when the storage is formatted
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
port=${KAFKA_PORT:-9092}
cport=${KAFKA_CONTROLLER_PORT:-9093}
heap=${KAFKA_HEAP:-512m}
run_dir=${STREAMSCORE_RUN_DIR:-$repo/.run}/kafka-$port
cache=${STREAMSCORE_CACHE_DIR:-$HOME/.cache/streamscore}/kafka-$version
python=${PYTHON:-$repo/.venv/bin/python}
pid_file=$run_dir/kafka.pid
sasl_ssl_port=${KAFKA_SASL_SSL_PORT:-}

log() { echo "kafka: $*" >&2; }

fetch() {
  if [[ -f $cache/.complete ]]; then return 0; fi
  log "fetching Apache Kafka $version from Maven Central into $cache"
  mkdir -p "$cache"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$cache/libs"
  touch "$cache/.complete"
}

running() { [[ -f $pid_file ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }

ready() {
  "$python" - "$port" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}", "log_level": 0})
md = admin.list_topics(timeout=2)
sys.exit(0 if md.brokers else 1)
PY
}

write_config() {
  mkdir -p "$run_dir/data" "$run_dir/logs"
  cat > "$run_dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$run_dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
}

# Appends the SASL_SSL listener to the rendered config (a later key overrides an earlier one).
append_sasl_ssl() {
  [[ -n $sasl_ssl_port ]] || return 0
  local conf=$run_dir/server.properties ssl_dir=${KAFKA_SSL_DIR:?KAFKA_SSL_DIR must hold server.pem}
  [[ -f $ssl_dir/server.pem ]] || { log "no server.pem in $ssl_dir"; return 1; }
  last() { sed -n "s/^$1=//p" "$conf" | tail -1; }
  local listeners advertised protocols
  listeners=$(last listeners); advertised=$(last advertised.listeners); protocols=$(last listener.security.protocol.map)
  cat >> "$conf" <<PROPS
listeners=$listeners,SASL_SSL://127.0.0.1:$sasl_ssl_port
advertised.listeners=$advertised,SASL_SSL://127.0.0.1:$sasl_ssl_port
listener.security.protocol.map=$protocols,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$ssl_dir/server.pem
PROPS
}

# The --add-scram arguments of the storage format for KAFKA_SCRAM_USERS.
scram_args() {
  local user
  for user in ${KAFKA_SCRAM_USERS:-}; do
    printf '%s\0' --add-scram "SCRAM-SHA-512=[name=${user%%:*},password=${user#*:}]"
  done
}

start() {
  if running; then log "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"; return 0; fi
  fetch
  write_config
  append_sasl_ssl
  local scram=(); mapfile -d '' scram < <(scram_args)
  local cp="$cache/libs/*"
  local jvm=(-Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
             -Dkafka.logs.dir="$run_dir/logs"
             -Dlog4j2.configurationFile="$here/kafka/log4j2.properties")
  java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format -t streamscore-local-0001 \
    -c "$run_dir/server.properties" --ignore-formatted "${scram[@]}" > "$run_dir/logs/format.log" 2>&1 \
    || { log "storage format failed:"; cat "$run_dir/logs/format.log" >&2; return 1; }
  nohup java "${jvm[@]}" -cp "$cp" kafka.Kafka "$run_dir/server.properties" \
    > "$run_dir/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  local t0=$SECONDS
  until ready 2>/dev/null; do
    if ! running; then log "broker exited during start-up; see $run_dir/logs"; tail -20 "$run_dir/logs/stdout.log" >&2; return 1; fi
    if (( SECONDS - t0 > 90 )); then log "broker not ready after 90 s; see $run_dir/logs"; stop; return 1; fi
    sleep 0.5
  done
  log "ready on 127.0.0.1:$port in $((SECONDS - t0)) s (pid $(cat "$pid_file"))"
}

stop() {
  if ! running; then rm -f "$pid_file"; log "not running"; return 0; fi
  local pid; pid=$(cat "$pid_file")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "did not stop in 30 s; killing"; kill -9 "$pid"; fi
  rm -f "$pid_file"
  log "stopped"
}

status() {
  if running && ready 2>/dev/null; then log "running and ready on 127.0.0.1:$port"; return 0; fi
  if running; then log "process up (pid $(cat "$pid_file")) but not answering"; return 1; fi
  log "not running"; return 3
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
