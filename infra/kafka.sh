#!/usr/bin/env bash
# Apache Kafka (KRaft) from Maven Central jars, on 127.0.0.1: one combined broker+controller node by
# default, or a cluster of KAFKA_NODES such nodes (one controller quorum of all of them, one cluster id).
#   infra/kafka.sh fetch|start|stop|status            every node
#   infra/kafka.sh start-node|stop-node|kill-node I   node I (1..N) alone: start it again on its data,
#                                                     stop it (SIGTERM: controlled shutdown) or SIGKILL it
# Idempotent: start on a running node and stop on a stopped one are no-ops.
# Environment (all optional):
#   KAFKA_NODES (1)  KAFKA_PORT (9092)  KAFKA_CONTROLLER_PORT (9093)  KAFKA_HEAP (512m; 384m each for N > 1)
#   Node I listens for clients on KAFKA_PORT+2(I-1) and for the quorum on KAFKA_CONTROLLER_PORT+2(I-1)
#   (3 nodes by default: 9092/9093, 9094/9095, 9096/9097). KAFKA_PORTS and KAFKA_CONTROLLER_PORTS,
#   comma-separated with one port per node, set them explicitly instead (and then give the node count).
#   Replication: topics default to replication factor R = min(N, 3) and min.insync.replicas max(1, R-1)
#   (N = 3: 3 and 2), the group offsets and transaction state topics alike.
#   KAFKA_START_TIMEOUT_S (90)                 how long start waits for every node to be ready
#   STREAMSCORE_RUN_DIR (<repo>/.run)          node I's data, logs and pid file in kafka-<its client port>/
#   STREAMSCORE_CACHE_DIR (~/.cache/streamscore) fetched jars, kept between runs
#   PYTHON (<repo>/.venv/bin/python)          used for the readiness probe
# An authenticated, encrypted listener for clients (optional, one node only; the PLAINTEXT and controller
# listeners stay):
#   KAFKA_SASL_SSL_PORT   adds SASL_SSL://127.0.0.1:<port> accepting SCRAM-SHA-512
#   KAFKA_SSL_DIR         holds server.pem: its unencrypted PKCS#8 private key and certificate chain
#   KAFKA_SCRAM_USERS     "name:password ..." SCRAM-SHA-512 credentials stored when the storage is formatted
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
cluster_id=streamscore-local-0001
run_root=${STREAMSCORE_RUN_DIR:-$repo/.run}
cache=${STREAMSCORE_CACHE_DIR:-$HOME/.cache/streamscore}/kafka-$version
python=${PYTHON:-$repo/.venv/bin/python}
sasl_ssl_port=${KAFKA_SASL_SSL_PORT:-}
timeout=${KAFKA_START_TIMEOUT_S:-90}

ports=() cports=()
if [[ -n ${KAFKA_PORTS:-} ]]; then
  IFS=, read -ra ports <<< "$KAFKA_PORTS"
  IFS=, read -ra cports <<< "${KAFKA_CONTROLLER_PORTS:?KAFKA_PORTS needs KAFKA_CONTROLLER_PORTS}"
  (( ${#ports[@]} == ${#cports[@]} )) || { echo "kafka: KAFKA_PORTS and KAFKA_CONTROLLER_PORTS differ in length" >&2; exit 2; }
else
  for (( i = 0; i < ${KAFKA_NODES:-1}; i++ )); do
    ports+=($(( ${KAFKA_PORT:-9092} + 2 * i )))
    cports+=($(( ${KAFKA_CONTROLLER_PORT:-9093} + 2 * i )))
  done
fi
nodes=${#ports[@]}
(( nodes >= 1 )) || { echo "kafka: no nodes" >&2; exit 2; }
if (( nodes == 1 )); then heap=${KAFKA_HEAP:-512m}; else heap=${KAFKA_HEAP:-384m}; fi
replicas=$(( nodes < 3 ? nodes : 3 ))
min_isr=$(( replicas > 1 ? replicas - 1 : 1 ))
voters=$(for (( i = 1; i <= nodes; i++ )); do printf '%d@127.0.0.1:%s,' "$i" "${cports[i-1]}"; done)
voters=${voters%,}
bootstrap=$(printf '127.0.0.1:%s,' "${ports[@]}")
bootstrap=${bootstrap%,}

log() { echo "kafka: $*" >&2; }

# Node I's client port, quorum port, directory and pid file.
port_of() { echo "${ports[$1-1]}"; }
cport_of() { echo "${cports[$1-1]}"; }
dir_of() { echo "$run_root/kafka-$(port_of "$1")"; }
pid_file_of() { echo "$(dir_of "$1")/kafka.pid"; }
label() { if (( nodes == 1 )); then echo "127.0.0.1:$(port_of "$1")"; else echo "node $1 (127.0.0.1:$(port_of "$1"))"; fi; }

fetch() {
  if [[ -f $cache/.complete ]]; then return 0; fi
  log "fetching Apache Kafka $version from Maven Central into $cache"
  mkdir -p "$cache"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$cache/libs"
  touch "$cache/.complete"
}

running() { local f; f=$(pid_file_of "$1"); [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

# Node I answers metadata and lists brokers WANT... (node ids) as alive.
ready() {
  local i=$1; shift
  "$python" - "$(port_of "$i")" "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}", "log_level": 0})
md = admin.list_topics(timeout=2)
sys.exit(0 if md.brokers and {int(n) for n in sys.argv[2:]} <= set(md.brokers) else 1)
PY
}

# Node I's server.properties.
write_config() {
  local i=$1 port cport dir
  port=$(port_of "$i") cport=$(cport_of "$i") dir=$(dir_of "$i")
  mkdir -p "$dir/data" "$dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
PROPS
  if (( nodes > 1 )); then
    # Slower, more spread-out quorum elections than Kafka's 1 s / 2 s: on a busy machine the nodes of a
    # starting cluster otherwise keep splitting the vote (each times out and votes for itself) for minutes.
    cat >> "$dir/server.properties" <<PROPS
controller.quorum.election.timeout.ms=3000
controller.quorum.election.backoff.max.ms=3000
controller.quorum.fetch.timeout.ms=6000
PROPS
  fi
}

# Appends the SASL_SSL listener to node I's rendered config (a later key overrides an earlier one).
append_sasl_ssl() {
  [[ -n $sasl_ssl_port ]] || return 0
  (( nodes == 1 )) || { log "KAFKA_SASL_SSL_PORT needs a single node"; return 1; }
  local conf; conf=$(dir_of "$1")/server.properties
  local ssl_dir=${KAFKA_SSL_DIR:?KAFKA_SSL_DIR must hold server.pem}
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

# Formats node I's storage (once) and starts it in the background, without waiting for it.
launch() {
  local i=$1 dir; dir=$(dir_of "$i")
  write_config "$i"
  append_sasl_ssl "$i"
  local scram=(); mapfile -d '' scram < <(scram_args)
  local cp="$cache/libs/*"
  local jvm=(-Xms"$heap" -Xmx"$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20
             -Dkafka.logs.dir="$dir/logs"
             -Dlog4j2.configurationFile="$here/kafka/log4j2.properties")
  java "${jvm[@]}" -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" \
    -c "$dir/server.properties" --ignore-formatted "${scram[@]}" > "$dir/logs/format.log" 2>&1 \
    || { log "$(label "$i"): storage format failed:"; cat "$dir/logs/format.log" >&2; return 1; }
  nohup java "${jvm[@]}" -cp "$cp" kafka.Kafka "$dir/server.properties" \
    > "$dir/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$(pid_file_of "$i")"
}

# Waits until every node in NODES... is up and lists the brokers WANT (a space-separated id list).
await() {
  local want=$1; shift
  local t0=$SECONDS i
  for i in "$@"; do
    # shellcheck disable=SC2086 # $want is a list of ids
    until ready "$i" $want 2>/dev/null; do
      if ! running "$i"; then
        log "$(label "$i") exited during start-up; see $(dir_of "$i")/logs"; tail -20 "$(dir_of "$i")/logs/stdout.log" >&2
        return 1
      fi
      if (( SECONDS - t0 > timeout )); then log "$(label "$i") not ready after $timeout s; see $(dir_of "$i")/logs"; return 1; fi
      sleep 0.5
    done
    log "$(label "$i") ready in $((SECONDS - t0)) s (pid $(cat "$(pid_file_of "$i")"))"
  done
}

start() {
  fetch
  local i all=() launching=() failed=0
  for (( i = 1; i <= nodes; i++ )); do
    all+=("$i")
    if running "$i"; then log "$(label "$i") already running (pid $(cat "$(pid_file_of "$i")"))"; continue; fi
    launch "$i" & launching+=($!)
  done
  (( ${#launching[@]} )) || return 0
  for i in "${launching[@]}"; do wait "$i" || failed=1; done
  (( ! failed )) || { stop; return 1; }
  # A node becomes ready only once a majority of the quorum runs: launch all, then wait.
  await "${all[*]}" "${all[@]}" || { stop; return 1; }
  if (( nodes > 1 )); then log "cluster of $nodes ready on $bootstrap"; fi
}

# Waits up to 30 s for node I to exit after SIGTERM, then SIGKILLs it.
reap() {
  local i=$1 pid_file; pid_file=$(pid_file_of "$i")
  [[ -f $pid_file ]] || return 0
  local pid; pid=$(cat "$pid_file")
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$(label "$i") did not stop in 30 s; killing"; kill -9 "$pid" 2>/dev/null || true; fi
  rm -f "$pid_file"
  log "$(label "$i") stopped"
}

stop_node() {
  local i=$1
  if ! running "$i"; then rm -f "$(pid_file_of "$i")"; log "$(label "$i") not running"; return 0; fi
  kill "$(cat "$(pid_file_of "$i")")" 2>/dev/null || true
  reap "$i"
}

kill_node() {
  local i=$1 pid_file; pid_file=$(pid_file_of "$i")
  if ! running "$i"; then rm -f "$pid_file"; log "$(label "$i") not running"; return 0; fi
  local pid; pid=$(cat "$pid_file")
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$pid_file"
  log "$(label "$i") killed (SIGKILL)"
}

start_node() {
  local i=$1
  if running "$i"; then log "$(label "$i") already running (pid $(cat "$(pid_file_of "$i")"))"; return 0; fi
  fetch
  launch "$i" && await "$i" "$i" || { stop_node "$i"; return 1; }
}

stop() {
  local i
  # All at once: a node stopping while the others run hands its partitions over first, one by one.
  for (( i = 1; i <= nodes; i++ )); do
    if running "$i"; then kill "$(cat "$(pid_file_of "$i")")" 2>/dev/null || true
    else rm -f "$(pid_file_of "$i")"; log "$(label "$i") not running"; fi
  done
  for (( i = 1; i <= nodes; i++ )); do reap "$i"; done
}

status() {
  local i code=0
  for (( i = 1; i <= nodes; i++ )); do
    if running "$i" && ready "$i" "$i" 2>/dev/null; then log "$(label "$i") running and ready"
    elif running "$i"; then log "$(label "$i") process up (pid $(cat "$(pid_file_of "$i")")) but not answering"; code=1
    else log "$(label "$i") not running"; (( code )) || code=3
    fi
  done
  return $code
}

node_arg() {
  [[ ${1:-} =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= nodes )) || { echo "node must be 1..$nodes, got '${1:-}'" >&2; exit 2; }
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  start-node) node_arg "${2:-}"; start_node "$2" ;;
  stop-node) node_arg "${2:-}"; stop_node "$2" ;;
  kill-node) node_arg "${2:-}"; kill_node "$2" ;;
  *) echo "usage: $0 fetch|start|stop|status | start-node|stop-node|kill-node NODE" >&2; exit 2 ;;
esac
