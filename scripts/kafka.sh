#!/usr/bin/env bash
# A local single-node Apache Kafka (KRaft: broker + controller in one JVM) on 127.0.0.1.
#
#   scripts/kafka.sh start [--keep]   resolve the jars (once), format storage, start, wait until it answers
#   scripts/kafka.sh stop             stop the broker cleanly and wait for it to exit
#   scripts/kafka.sh status           say whether it runs and answers (exit 0 only if it answers)
#
# Needs only Java 17 and Maven. The jars come from Maven Central with
# `mvn dependency:copy-dependencies` on a generated pom and are cached.
#
# Environment:
#   KAFKA_PORT          client port (default 9092); the controller listens on KAFKA_CONTROLLER_PORT
#   KAFKA_CONTROLLER_PORT  (default KAFKA_PORT + 1000)
#   KAFKA_VERSION       org.apache.kafka:kafka_2.13 version (default 4.1.0)
#   PORT_ROUTER_CACHE   cache root; jars go to $PORT_ROUTER_CACHE/kafka (default <repo>/.cache/kafka)
#   KAFKA_DATA_DIR      data folder (default <repo>/.kafka); wiped on start unless --keep
#   KAFKA_HEAP_OPTS     JVM heap (default -Xms256m -Xmx512m)
#   KAFKA_START_TIMEOUT seconds to wait for the broker to answer (default 60)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.0}"
LOG4J_VERSION="2.24.3"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1000))}"
if [[ -n "${PORT_ROUTER_CACHE:-}" ]]; then CACHE="$PORT_ROUTER_CACHE/kafka"; else CACHE="$REPO/.cache/kafka"; fi
JARS="$CACHE/$KAFKA_VERSION/libs"
DATA="${KAFKA_DATA_DIR:-$REPO/.kafka}"
PIDFILE="$DATA/kafka.pid"
LOGFILE="$DATA/kafka.log"
HEAP="${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
TIMEOUT="${KAFKA_START_TIMEOUT:-60}"

say() { echo "kafka.sh: $*" >&2; }

resolve_jars() {
  if [[ -f "$JARS/kafka_2.13-$KAFKA_VERSION.jar" ]]; then return; fi
  command -v mvn >/dev/null || { say "Maven (mvn) is needed to fetch the Kafka jars"; exit 1; }
  local work="$CACHE/$KAFKA_VERSION/pom"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.port-router</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  say "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $JARS"
  rm -rf "$JARS.tmp"
  (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$JARS.tmp")
  mv "$JARS.tmp" "$JARS"
}

running_pid() {
  [[ -f "$PIDFILE" ]] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

answers() {
  # A metadata round trip with confluent-kafka when the venv has it, else a TCP connect.
  local py="$REPO/.venv/bin/python"
  if [[ -x "$py" ]] && "$py" -c "import confluent_kafka" 2>/dev/null; then
    "$py" - "127.0.0.1:$KAFKA_PORT" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=2)
EOF
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
  fi
}

write_config() {
  cat >"$DATA/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$DATA/logs
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
EOF
  cat >"$DATA/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $LOGFILE
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
EOF
}

java_run() {
  # shellcheck disable=SC2086
  java $HEAP -Dlog4j2.configurationFile="$DATA/log4j2.properties" -cp "$JARS/*" "$@"
}

start() {
  local keep=0
  [[ "${1:-}" == "--keep" ]] && keep=1
  if pid="$(running_pid)"; then say "already running (pid $pid) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  command -v java >/dev/null || { say "Java 17 is needed"; exit 1; }
  if answers; then say "another broker already answers on 127.0.0.1:$KAFKA_PORT (set KAFKA_PORT)"; exit 1; fi
  resolve_jars
  if [[ $keep -eq 0 || ! -f "$DATA/logs/meta.properties" ]]; then
    rm -rf "$DATA"
    mkdir -p "$DATA/logs"
    write_config
    local cluster_id
    cluster_id="$(java_run kafka.tools.StorageTool random-uuid | tail -1)"
    java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$DATA/server.properties" >>"$DATA/format.log" 2>&1 \
      || { say "formatting the storage failed, see $DATA/format.log"; exit 1; }
  fi
  say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, data $DATA)"
  # shellcheck disable=SC2086
  nohup java $HEAP -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$DATA/log4j2.properties" \
    -cp "$JARS/*" kafka.Kafka "$DATA/server.properties" >>"$DATA/kafka.out" 2>&1 &
  echo $! >"$PIDFILE"
  local waited=0
  until answers; do
    if ! running_pid >/dev/null; then
      say "the broker exited during start-up; last lines of $DATA/kafka.out and $LOGFILE:"
      tail -n 20 "$DATA/kafka.out" "$LOGFILE" >&2 || true
      exit 1
    fi
    if (( waited >= TIMEOUT )); then say "no answer after ${TIMEOUT}s, see $LOGFILE"; exit 1; fi
    sleep 1; waited=$((waited + 1))
  done
  say "ready after ~${waited}s (pid $(cat "$PIDFILE")); log: $LOGFILE"
}

stop() {
  local pid
  if ! pid="$(running_pid)"; then say "not running"; rm -f "$PIDFILE"; return 0; fi
  say "stopping pid $pid"
  kill -TERM "$pid"
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; say "stopped"; return 0; }
    sleep 1
  done
  say "still alive after 60s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid="$(running_pid)"; then
    if answers; then echo "running (pid $pid) and answering on 127.0.0.1:$KAFKA_PORT"; return 0; fi
    echo "running (pid $pid) but not answering on 127.0.0.1:$KAFKA_PORT"; return 1
  fi
  echo "not running"; return 3
}

case "${1:-}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start [--keep] | stop | status" >&2; exit 2 ;;
esac
