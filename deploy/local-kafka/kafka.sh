#!/usr/bin/env bash
# The local Apache Kafka broker (KRaft, one node, 127.0.0.1 only) for development and tests.
#   kafka.sh up      obtain the broker from Maven Central (cached), format storage, start, wait ready
#   kafka.sh down    stop the broker this script started (by PID) and remove its data directory
#   kafka.sh status  exit 0 when the broker this script started is running
#   kafka.sh stop [--kill]  stop it (SIGTERM, or SIGKILL) and keep its data: for fault tests
#   kafka.sh start   start it again on the data it has (after stop), wait ready
# The broker listens on PLAINTEXT (port) and on SASL_SSL (port+2: SCRAM-SHA-512 over TLS with a CA
# and a user made at each `up`; the settings to use it are written to $state_dir/sasl.env).
# Environment: MARKETBAN_KAFKA_PORT (default 9092), MARKETBAN_KAFKA_CONTROLLER_PORT (default port+1),
# MARKETBAN_KAFKA_SASL_PORT (default port+2),
# MARKETBAN_KAFKA_STATE_DIR (default <repo>/.local/kafka), MARKETBAN_KAFKA_CACHE_DIR
# (default ~/.cache/marketban), MARKETBAN_KAFKA_HEAP (default 1g).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${MARKETBAN_KAFKA_PORT:-9092}"
controller_port="${MARKETBAN_KAFKA_CONTROLLER_PORT:-$((port + 1))}"
sasl_port="${MARKETBAN_KAFKA_SASL_PORT:-$((port + 2))}"
state_dir="${MARKETBAN_KAFKA_STATE_DIR:-$repo/.local/kafka}"
cache_root="${MARKETBAN_KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/marketban}"
heap="${MARKETBAN_KAFKA_HEAP:-1g}"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
# The cache is keyed by the pom's content, so a changed version or dependency gets a fresh classpath.
pom_hash="$(sha256sum "$here/pom.xml" | cut -c1-12)"
libs="$cache_root/kafka-$version-$pom_hash/libs"
pid_file="$state_dir/kafka.pid"
log_file="$state_dir/kafka.log"
data_dir="$state_dir/data"
tls_dir="$state_dir/tls"
bootstrap="127.0.0.1:$port"

say() { printf 'kafka: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

running_pid() {
  [ -f "$pid_file" ] || return 1
  local pid; pid="$(cat "$pid_file")"
  # Only a java process running kafka.Kafka with our config counts: a recycled PID must not.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "kafka.Kafka $state_dir/server.properties"; then
    echo "$pid"; return 0
  fi
  return 1
}

fetch() {
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null || die "mvn not found: install Maven (the broker comes from Maven Central)"
  say "fetching Apache Kafka $version from Maven Central (first run only) ..."
  rm -rf "$libs"; mkdir -p "$libs"
  if ! mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$libs" >"$cache_root/mvn-$version.log" 2>&1; then
    cat "$cache_root/mvn-$version.log" >&2
    die "Maven could not supply Apache Kafka $version (log above)"
  fi
  touch "$libs/.complete"
}

ping_broker() {
  java -Dlog4j2.level=OFF -cp "$libs/*" "$here/Ping.java" "$bootstrap" "$1"
}

up() {
  command -v java >/dev/null || die "java not found: Java 17+ is required for the broker"
  if pid="$(running_pid)"; then
    say "already running (pid $pid) at $bootstrap"
    return 0
  fi
  for p in "$port" "$sasl_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      die "port $p is in use by another process; set MARKETBAN_KAFKA_PORT or MARKETBAN_KAFKA_BOOTSTRAP"
    fi
  done
  mkdir -p "$cache_root"
  fetch
  rm -rf "$data_dir"; mkdir -p "$data_dir"
  local keystore_password scram_password
  keystore_password="$(openssl rand -hex 16)"
  scram_password="$(openssl rand -hex 16)"
  make_tls "$keystore_password"
  sed -e "s#@PORT@#$port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" -e "s#@DATA_DIR@#$data_dir#g" \
    -e "s#@SASL_PORT@#$sasl_port#g" -e "s#@TLS_DIR@#$tls_dir#g" \
    -e "s#@KEYSTORE_PASSWORD@#$keystore_password#g" \
    "$here/server.properties.in" > "$state_dir/server.properties"
  chmod 600 "$state_dir/server.properties"
  (umask 077; cat > "$state_dir/sasl.env" <<ENV
MARKETBAN_KAFKA_BOOTSTRAP=127.0.0.1:$sasl_port
MARKETBAN_KAFKA_SECURITY_PROTOCOL=SASL_SSL
MARKETBAN_KAFKA_SASL_MECHANISM=SCRAM-SHA-512
MARKETBAN_KAFKA_USERNAME=marketban
MARKETBAN_KAFKA_PASSWORD=$scram_password
MARKETBAN_KAFKA_CA_FILE=$tls_dir/ca.pem
ENV
  )
  local cluster_id
  cluster_id="$(java -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null)"
  java -cp "$libs/*" -Dlog4j2.configurationFile="$here/log4j2.yaml" kafka.tools.StorageTool format \
    -t "$cluster_id" -c "$state_dir/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=marketban,password=$scram_password]" >"$log_file" 2>&1 \
    || { cat "$log_file" >&2; die "formatting the KRaft storage failed"; }
  launch
}

# A CA and a broker certificate for 127.0.0.1/localhost signed by it, in a PKCS12 keystore.
make_tls() {
  command -v openssl >/dev/null || die "openssl not found: it makes the local broker's TLS certificates"
  rm -rf "$tls_dir"; mkdir -p "$tls_dir"; chmod 700 "$tls_dir"
  local t="$tls_dir"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/ca.pem" -days 30 \
      -subj "/CN=marketban local CA"
    openssl req -newkey rsa:2048 -nodes -keyout "$t/broker.key" -out "$t/broker.csr" -subj "/CN=localhost"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$t/san.ext"
    openssl x509 -req -in "$t/broker.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
      -out "$t/broker.pem" -days 30 -extfile "$t/san.ext"
    openssl pkcs12 -export -in "$t/broker.pem" -inkey "$t/broker.key" -certfile "$t/ca.pem" \
      -out "$t/broker.p12" -passout "pass:$1"
  } >"$t/openssl.log" 2>&1 || { cat "$t/openssl.log" >&2; die "making the TLS certificates failed"; }
}

# Starts the broker on the storage in $data_dir and waits until it answers.
launch() {
  say "starting Apache Kafka $version at $bootstrap (log: $log_file)"
  nohup java "-Xms256m" "-Xmx$heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$here/log4j2.yaml" -cp "$libs/*" \
    kafka.Kafka "$state_dir/server.properties" >>"$log_file" 2>&1 < /dev/null &
  echo $! > "$pid_file"
  if ! ping_broker 60; then
    tail -n 40 "$log_file" >&2
    down
    die "broker did not become ready within 60 s (log tail above)"
  fi
}

stop() {
  local pid signal="${1:-TERM}"
  if pid="$(running_pid)"; then
    kill "-$signal" "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then say "broker did not stop in 20 s; killing"; kill -KILL "$pid"; fi
    say "stopped (pid $pid, SIG$signal)"
  else
    say "not running"
  fi
}

down() {
  stop TERM
  rm -rf "$data_dir" "$pid_file" "$tls_dir" "$state_dir/sasl.env"
}

start() {
  if pid="$(running_pid)"; then
    say "already running (pid $pid) at $bootstrap"
    return 0
  fi
  [ -f "$state_dir/server.properties" ] && [ -d "$data_dir" ] || die "no stopped broker to start: use up"
  launch
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  stop) if [ "${2:-}" = "--kill" ]; then stop KILL; else stop TERM; fi ;;
  start) start ;;
  status) if pid="$(running_pid)"; then say "running (pid $pid) at $bootstrap"; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 up|down|status|stop [--kill]|start" >&2; exit 2 ;;
esac
