#!/usr/bin/env bash
# Starts and stops named Apache Kafka clusters in KRaft mode on this machine, for the end-to-end
# suite, the benchmarks and people (make kafka-up / kafka-down).
#
#   scripts/kafka/cluster.sh up NAME [--nodes 1|3] [--version V] [--addr IP] [--netns NS]
#                                    [--extra-config FILE] [--scram 'SCRAM-SHA-512=[name=u,password=p]']
#                                    [--remote-listener]
#   scripts/kafka/cluster.sh down NAME
#   scripts/kafka/cluster.sh status NAME
#   scripts/kafka/cluster.sh bootstrap NAME          # prints host:port,host:port,...
#   scripts/kafka/cluster.sh stop-node NAME IDX [--graceful]  # kill -9 one node (broker loss);
#                                                    # --graceful: SIGTERM, a controlled shutdown
#   scripts/kafka/cluster.sh start-node NAME IDX     # bring it back with its data
#   scripts/kafka/cluster.sh logs NAME [IDX]
#   scripts/kafka/cluster.sh create-topic NAME TOPIC [PARTITIONS]   # replicated on every node
#   scripts/kafka/cluster.sh remote NAME             # per node: PROXY_ADDR UPSTREAM_ADDR
#
# Every node is a combined broker+controller (a 3-node cluster keeps a controller quorum and
# broker replicas when one node is lost). Ports come from the name: europe uses 19012/19013 for
# node 1 (broker/controller), 19022/19023 for node 2, ...; us uses 29012...; any other name
# 39012... unless KAFKA_PORT_BASE is set. Nodes listen on --addr (127.0.0.1 by default), inside
# network namespace --netns when given. State (data, logs, pids) lives under
# ${KMIRROR_KAFKA_STATE:-/tmp/kmirror-kafka}/NAME and is removed by down.
#
# --remote-listener gives every node a second client listener, REMOTE, on port +5 (19015 for
# europe's node 1), that advertises port +6 (19016): the address where a latency proxy
# (benchmarks/wan) listens and forwards to +5, so that clients which bootstrap through the proxy
# are given the proxy's addresses in metadata and stay behind it. PLAINTEXT is unchanged for local
# clients. `remote NAME` prints each node's proxy address and the REMOTE listener it forwards to.
# Not with an --extra-config that sets listeners itself.
#
# KAFKA_JVM_FLAGS replaces the nodes' garbage collector and JIT flags (default: G1, 20 ms pauses,
# the JVM's tiered compilers, as a production broker runs). The e2e suite sets flags for short-lived
# clusters (e2e/harness_test.go).
#
# Nodes run detached from this script, until down. With KAFKA_OWNER_PID set (the e2e suite sets
# it to its test binary's pid), each node started also dies within a second of that process,
# however it ends: a test binary that times out runs no cleanup, and its brokers must not outlive
# it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state_root="${KMIRROR_KAFKA_STATE:-/tmp/kmirror-kafka}"

usage() { sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

port_base() {
  if [ -n "${KAFKA_PORT_BASE:-}" ]; then echo "$KAFKA_PORT_BASE"; return; fi
  case "$1" in
    europe) echo 19000 ;;
    us) echo 29000 ;;
    *) echo 39000 ;;
  esac
}

load_meta() {
  local meta="$state_root/$1/cluster.env"
  [ -f "$meta" ] || { echo "cluster $1 is not up (no $meta)" >&2; exit 1; }
  # shellcheck disable=SC1090
  . "$meta"
}

# tool_flags are the JVM flags of the short-lived Kafka tools this script runs (format, topic
# creation): the client compiler only and the serial collector, about a third less CPU for a run
# of a second or two than the JVM's defaults.
tool_flags=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)

# random_cluster_id prints a new cluster id as `kafka-storage random-uuid` does (16 random bytes
# in URL-safe base64 without padding, never starting with '-'), without starting a JVM for it.
random_cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [[ "$id" == -* || "$id" == AAAAAAAAAAAAAAAAAAAAA[AQ] ]] || { echo "$id"; return; }
  done
}

java_for() {
  # Kafka 4 needs Java 17 or newer; the machine's default JDK 17 serves every version here.
  if [ -n "${KAFKA_JAVA:-}" ]; then echo "$KAFKA_JAVA"; else echo java; fi
}

node_cmd() { # name idx -> prints the command prefix for the namespace, if any
  if [ -n "${NETNS:-}" ]; then echo "ip netns exec $NETNS"; fi
}

start_node() {
  local name="$1" idx="$2" dir="$state_root/$1/node-$2"
  local prefix; prefix="$(node_cmd)"
  # shellcheck disable=SC2086
  $prefix env KAFKA_HEAP_OPTS= nohup "$(java_for)" -Xms192m -Xmx"${KAFKA_NODE_HEAP:-512m}" ${KAFKA_JVM_FLAGS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20} \
    -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.log.kafka.server.KafkaRaftServer=info \
    -Dlog4j2.level=WARN -Djava.awt.headless=true \
    -cp "$LIB/*" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  if [ -n "${KAFKA_OWNER_PID:-}" ]; then
    watch_owner "$KAFKA_OWNER_PID" "$pid" "$dir/pid" </dev/null >/dev/null 2>&1 &
  fi
}

# watch_owner OWNER NODE PIDFILE kills the node when the owner process ends, and ends itself when
# the node does. The node is killed only while PIDFILE still names it (down and stop-node remove
# it): a pid that came round again belongs to someone else.
watch_owner() {
  local owner="$1" node="$2" pidfile="$3"
  while kill -0 "$node" 2>/dev/null; do
    if ! kill -0 "$owner" 2>/dev/null; then
      if [ "$(cat "$pidfile" 2>/dev/null)" = "$node" ]; then kill -9 "$node" 2>/dev/null || true; fi
      return 0
    fi
    sleep 1
  done
}

wait_ready() { # name idx...
  local name="$1"; shift
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  for idx in "$@"; do
    local dir="$state_root/$name/node-$idx"
    local port=$((BASE + 10 * idx + 2))
    until grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null; do
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "kafka $name node $idx exited during start; log tail:" >&2
        tail -n 40 "$dir/kafka.log" >&2
        return 1
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "kafka $name node $idx not started within ${KAFKA_START_TIMEOUT:-120}s; log tail:" >&2
        tail -n 40 "$dir/kafka.log" >&2
        return 1
      fi
      sleep 0.5
    done
    echo "kafka $name node $idx ready on $ADDR:$port" >&2
  done
}

cmd_up() {
  local name="$1"; shift
  local nodes=1 version="${KAFKA_VERSION:-4.3.1}" addr=127.0.0.1 netns="" extra="" scram="" remote=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes="$2"; shift 2 ;;
      --version) version="$2"; shift 2 ;;
      --addr) addr="$2"; shift 2 ;;
      --netns) netns="$2"; shift 2 ;;
      --extra-config) extra="$2"; shift 2 ;;  # appended to every node's server.properties
      --scram) scram="$2"; shift 2 ;;         # a SCRAM user created when the storage is formatted
      --remote-listener) remote=1; shift ;;
      *) usage ;;
    esac
  done
  if [ -f "$state_root/$name/cluster.env" ]; then
    echo "cluster $name is already up; run: $0 down $name" >&2
    exit 1
  fi
  local lib; lib="$("$here/fetch.sh" "$version")"
  local base; base="$(port_base "$name")"
  local dir="$state_root/$name"
  mkdir -p "$dir"
  cat >"$dir/cluster.env" <<ENV
NAME=$name
NODES=$nodes
VERSION=$version
LIB=$lib
BASE=$base
ADDR=$addr
NETNS=$netns
REMOTE=$remote
ENV
  load_meta "$name"
  local voters="" i
  for i in $(seq 1 "$nodes"); do
    voters="${voters:+$voters,}$i@$addr:$((base + 10 * i + 3))"
  done
  local rf=$nodes isr=1
  [ "$nodes" -ge 3 ] && isr=2
  local cluster_id
  cluster_id="$(random_cluster_id)"
  for i in $(seq 1 "$nodes"); do
    local nd="$dir/node-$i"
    mkdir -p "$nd/data"
    local listeners="PLAINTEXT://$addr:$((base + 10 * i + 2)),CONTROLLER://$addr:$((base + 10 * i + 3))"
    local advertised="PLAINTEXT://$addr:$((base + 10 * i + 2))"
    local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if [ "$remote" = 1 ]; then
      listeners="$listeners,REMOTE://$addr:$((base + 10 * i + 5))"
      advertised="$advertised,REMOTE://$addr:$((base + 10 * i + 6))"
      protocols="$protocols,REMOTE:PLAINTEXT"
    fi
    cat >"$nd/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$nd/data
num.partitions=1
default.replication.factor=$rf
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=6
min.insync.replicas=1
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.flush.interval.messages=9223372036854775807
num.network.threads=2
num.io.threads=4
log.cleaner.threads=1
PROPS
    if [ -n "$extra" ]; then
      # @ADDR@, @PLAIN_PORT@, @CONTROLLER_PORT@ and @SECURE_PORT@ (a third listener) are this node's.
      sed "s/@SECURE_PORT@/$((base + 10 * i + 4))/g; s/@PLAIN_PORT@/$((base + 10 * i + 2))/g; s/@CONTROLLER_PORT@/$((base + 10 * i + 3))/g; s/@ADDR@/$addr/g" "$extra" >>"$nd/server.properties"
    fi
    local scram_args=()
    [ -n "$scram" ] && scram_args=(--add-scram "$scram")
    "$(java_for)" "${tool_flags[@]}" -cp "$lib/*" kafka.tools.StorageTool format -t "$cluster_id" -c "$nd/server.properties" \
      --ignore-formatted "${scram_args[@]}" >"$nd/format.log" 2>&1 || { cat "$nd/format.log" >&2; exit 1; }
  done
  for i in $(seq 1 "$nodes"); do start_node "$name" "$i"; done
  if ! wait_ready "$name" $(seq 1 "$nodes"); then
    cmd_down "$name"
    exit 1
  fi
  echo "kafka $name ($version, $nodes node(s)) up: $(cmd_bootstrap "$name")"
}

cmd_bootstrap() {
  load_meta "$1"
  local out="" i
  for i in $(seq 1 "$NODES"); do out="${out:+$out,}$ADDR:$((BASE + 10 * i + 2))"; done
  echo "$out"
}

cmd_remote() {
  load_meta "$1"
  if [ "${REMOTE:-0}" != 1 ]; then
    echo "cluster $1 has no remote listener (up ... --remote-listener)" >&2
    exit 1
  fi
  local i
  for i in $(seq 1 "$NODES"); do echo "$ADDR:$((BASE + 10 * i + 6)) $ADDR:$((BASE + 10 * i + 5))"; done
}

stop_pid() {
  local pidfile="$1" sig="${2:-TERM}"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

cmd_down() {
  local name="$1" dir="$state_root/$1"
  [ -d "$dir" ] || return 0
  local nd
  for nd in "$dir"/node-*; do
    [ -d "$nd" ] && stop_pid "$nd/pid" KILL
  done
  rm -rf "$dir"
  echo "kafka $name down" >&2
}

cmd_status() {
  load_meta "$1"
  local i
  for i in $(seq 1 "$NODES"); do
    local pidfile="$state_root/$1/node-$i/pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "node $i: running (pid $(cat "$pidfile")) on $ADDR:$((BASE + 10 * i + 2))"
    else
      echo "node $i: stopped"
    fi
  done
}

[ $# -ge 2 ] || usage
action="$1"; name="$2"; shift 2
case "$action" in
  up) cmd_up "$name" "$@" ;;
  down) cmd_down "$name" ;;
  status) cmd_status "$name" ;;
  bootstrap) cmd_bootstrap "$name" ;;
  remote) cmd_remote "$name" ;;
  stop-node)
    load_meta "$name"
    if [ "${2:-}" = "--graceful" ]; then
      stop_pid "$state_root/$name/node-$1/pid" TERM; echo "kafka $name node $1 stopped" >&2
    else
      stop_pid "$state_root/$name/node-$1/pid" KILL; echo "kafka $name node $1 killed" >&2
    fi ;;
  start-node) load_meta "$name"; : >"$state_root/$name/node-$1/kafka.log"; start_node "$name" "$1"; wait_ready "$name" "$1" ;;
  create-topic)
    [ $# -ge 1 ] || usage
    load_meta "$name"
    "$(java_for)" "${tool_flags[@]}" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$LIB/*" org.apache.kafka.tools.TopicCommand \
      --bootstrap-server "$(cmd_bootstrap "$name")" --create --topic "$1" --partitions "${2:-3}" --replication-factor "$NODES" ;;
  logs) load_meta "$name"; for f in "$state_root/$name"/node-${1:-*}/kafka.log; do echo "== $f"; tail -n "${LINES:-50}" "$f"; done ;;
  *) usage ;;
esac
