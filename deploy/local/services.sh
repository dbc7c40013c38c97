#!/usr/bin/env bash
# Starts, stops and reports a local Sensorflow stack without Docker: Mosquitto,
# Apache Kafka (KRaft), Apache Cassandra and InfluxDB 2.7 on loopback.
#
#   deploy/local/services.sh up     [service...]   install what is missing, start what is not healthy
#   deploy/local/services.sh down   [service...]   stop
#   deploy/local/services.sh status [service...]   state, version, port, pid, log
#
# Services: mosquitto kafka cassandra influxdb. Everything the stack writes
# (configuration, data, logs, pid files, runtime jars) lives in
# $SENSORFLOW_SERVICES_DIR (default .services/ at the repository root).
# Downloads go through apt, Maven's ~/.m2 and Go's module cache, so a second
# start on the same machine needs no network.
#
# Secured mode (SENSORFLOW_TLS_DIR set, as the secured end-to-end test does):
# every server speaks TLS only, with the certificate and key of that folder
# (ca.pem, server.pem, server.key: PKCS#8, unencrypted, valid for 127.0.0.1),
# and asks for credentials, all with the password SENSORFLOW_SECURE_PASSWORD:
# Mosquitto with a password file and deploy/mosquitto/acl (users
# sensorflow-bridge, sensorflow-simulator, sensorflow-alerts), Kafka with
# SASL/SCRAM-SHA-512 (user sensorflow) on its client listener, Cassandra with
# PasswordAuthenticator (superuser cassandra/cassandra, as a new cluster has)
# and client TLS, InfluxDB over HTTPS with its token.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR=${SENSORFLOW_SERVICES_DIR:-$ROOT/.services}
MQTT_PORT=${SENSORFLOW_MQTT_PORT:-1883}
KAFKA_PORT=${SENSORFLOW_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${SENSORFLOW_KAFKA_CONTROLLER_PORT:-9093}
CASSANDRA_PORT=${SENSORFLOW_CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${SENSORFLOW_CASSANDRA_STORAGE_PORT:-7000}
INFLUX_PORT=${SENSORFLOW_INFLUX_PORT:-8086}
KAFKA_INTERNAL_PORT=${SENSORFLOW_KAFKA_INTERNAL_PORT:-9094} # secured mode: the broker's own plaintext listener
START_TIMEOUT=${SENSORFLOW_SERVICES_TIMEOUT:-240}
TLS_DIR=${SENSORFLOW_TLS_DIR:-}
SECURE_PASSWORD=${SENSORFLOW_SECURE_PASSWORD:-}
# Runtime jars may be shared with another stack of the same checkout.
LIB=${SENSORFLOW_SERVICES_LIB:-$DIR/lib}

INFLUX_VERSION=2.7.12
PKG_CONFIG_VERSION=0.2.14 # Flux's pkg-config: builds Flux's Rust library with cargo
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/deploy/local/kafka/pom.xml")
CASSANDRA_VERSION=$(sed -n '/cassandra-all/{n;s:.*<version>\(.*\)</version>.*:\1:p}' "$ROOT/deploy/local/cassandra/pom.xml")
# Built binaries that do not belong to one stack: shared by every checkout.
TOOLS=${SENSORFLOW_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sensorflow}
INFLUXD=$TOOLS/influxd-$INFLUX_VERSION
PROBE=$DIR/bin/sensorflow
# The InfluxDB API token of this stack (org and bucket "sensorflow"), made
# when its data is first created; the tests read it from here.
INFLUX_TOKEN_FILE=$DIR/influxdb.token
ALL=(mosquitto kafka cassandra influxdb)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

pidfile() { echo "$DIR/run/$1.pid"; }
logfile() { echo "$DIR/log/$1.log"; }
pid_of() { local f; f=$(pidfile "$1"); [[ -s $f ]] && cat "$f" || true; }
alive() { local p; p=$(pid_of "$1"); [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

port_of() {
  case $1 in
    mosquitto) echo "$MQTT_PORT" ;; kafka) echo "$KAFKA_PORT" ;;
    cassandra) echo "$CASSANDRA_PORT" ;; influxdb) echo "$INFLUX_PORT" ;;
  esac
}

version_of() {
  case $1 in
    mosquitto) (mosquitto -h 2>/dev/null || true) | sed -n 's/^mosquitto version \([^ ]*\).*/\1/p' | head -1 ;;
    kafka) echo "$KAFKA_VERSION" ;; cassandra) echo "$CASSANDRA_VERSION" ;; influxdb) echo "$INFLUX_VERSION" ;;
  esac
}

# ---------------------------------------------------------------- installing

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

install_mosquitto() {
  command -v mosquitto >/dev/null && command -v mosquitto_pub >/dev/null && return
  log "installing mosquitto from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  # The package may start a system-wide broker on 1883; ours runs on its own.
  as_root service mosquitto stop >/dev/null 2>&1 || true
  as_root pkill -x mosquitto >/dev/null 2>&1 || true
}

install_influxdb() {
  [[ -x $INFLUXD ]] && return
  # InfluxDB 2 cannot be built with `go install` (its go.mod has a replace
  # directive): build the module's source from the Go module proxy instead.
  # Flux's Rust library is built by cargo through Flux's own pkg-config.
  command -v cargo >/dev/null || die "building influxd $INFLUX_VERSION needs Rust's cargo (rustup.rs)"
  log "building influxd $INFLUX_VERSION from the Go module proxy's source (about 4 minutes the first time)"
  local work=$TOOLS/build/influxdb-$INFLUX_VERSION src
  mkdir -p "$TOOLS/gobin" "$work"
  GOBIN=$TOOLS/gobin go install "github.com/influxdata/pkg-config@v$PKG_CONFIG_VERSION"
  src=$(go mod download -json "github.com/influxdata/influxdb/v2@v$INFLUX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -d $src ]] || die "go mod download gave no source folder for influxdb v$INFLUX_VERSION"
  rm -rf "$work/src" && cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
  # Flux pins an old Rust toolchain and denies warnings that newer compilers
  # raise; RUSTFLAGS does not reach its build dependencies, a wrapper does.
  printf '#!/bin/sh\nexec "$@" --cap-lints warn\n' >"$work/rustc-wrapper" && chmod +x "$work/rustc-wrapper"
  # No `assets` tag: it downloads the web UI from outside the registries.
  (cd "$work/src" && PATH=$TOOLS/gobin:$PATH RUSTUP_TOOLCHAIN=stable RUSTC_WRAPPER=$work/rustc-wrapper \
    go build -tags sqlite_foreign_keys,sqlite_json -o "$INFLUXD.tmp" ./cmd/influxd) >"$work/build.log" 2>&1 ||
    { tail -n 40 "$work/build.log" >&2; die "building influxd $INFLUX_VERSION failed (log: $work/build.log)"; }
  mv "$INFLUXD.tmp" "$INFLUXD"
  rm -rf "$work/src"
}

install_jars() { # name
  local lib=$LIB/$1
  [[ -f $lib/.complete ]] && return
  log "resolving $1 jars from Maven Central into $lib"
  rm -rf "$lib"
  mvn -q -B -f "$ROOT/deploy/local/$1/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$lib" >"$DIR/log/$1-mvn.log" 2>&1 ||
    { tail -n 30 "$DIR/log/$1-mvn.log" >&2; die "maven could not resolve $1"; }
  touch "$lib/.complete"
}

install_probe() {
  # The probe is Sensorflow's own `check` command: it speaks each server's
  # protocol with the clients Sensorflow uses.
  log "building the sensorflow binary used as health probe"
  (cd "$ROOT" && go build -o "$PROBE" .)
}

# ---------------------------------------------------------------- configuring

mosquitto_listener() {
  if [[ -z $TLS_DIR ]]; then
    printf 'allow_anonymous true\nlistener %s 127.0.0.1\n' "$MQTT_PORT"
    return
  fi
  printf 'allow_anonymous false\npassword_file %s\nacl_file %s\nlistener %s 127.0.0.1\n' \
    "$DIR/conf/mosquitto/passwd" "$ROOT/deploy/mosquitto/acl" "$MQTT_PORT"
  printf 'cafile %s\ncertfile %s\nkeyfile %s\n' "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/server.key"
}

configure_mosquitto() {
  local c=$DIR/conf/mosquitto
  mkdir -p "$c" "$DIR/data/mosquitto/"
  if [[ -n $TLS_DIR ]]; then
    local u
    : >"$c/passwd" && chmod 600 "$c/passwd"
    for u in sensorflow-bridge sensorflow-simulator sensorflow-alerts; do
      mosquitto_passwd -b "$c/passwd" "$u" "$SECURE_PASSWORD"
    done
  fi
  cat >"$c/mosquitto.conf" <<EOF
# Generated by deploy/local/services.sh. Shared settings: deploy/mosquitto/conf.d/.
per_listener_settings false
# Run as the invoking user: started as root, Mosquitto would switch to the
# "mosquitto" user and could no longer write its persistence file here.
user $(id -un)
$(mosquitto_listener)
persistence_location $DIR/data/mosquitto/
log_dest stdout
log_type error
log_type warning
log_type notice
log_timestamp_format %Y-%m-%dT%H:%M:%S
include_dir $ROOT/deploy/mosquitto/conf.d
EOF
}

kafka_listeners() {
  if [[ -z $TLS_DIR ]]; then
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
EOF
    return
  fi
  # Clients: SASL/SCRAM-SHA-512 over TLS. The broker talks to itself on a
  # plaintext listener of its own.
  cat <<EOF
listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,INTERNAL://127.0.0.1:$KAFKA_INTERNAL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$KAFKA_PORT,INTERNAL://127.0.0.1:$KAFKA_INTERNAL_PORT
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$DIR/conf/kafka/server-keystore.pem
EOF
}

configure_kafka() {
  local c=$DIR/conf/kafka
  mkdir -p "$c" "$DIR/data/kafka"
  [[ -z $TLS_DIR ]] || (umask 077 && cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" >"$c/server-keystore.pem")
  cat >"$c/server.properties" <<EOF
# Generated by deploy/local/services.sh: one KRaft node, broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
$(kafka_listeners)
controller.listener.names=CONTROLLER
log.dirs=$DIR/data/kafka
# Sensorflow creates its own topics.
auto.create.topics.enable=false
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=48
EOF
  cat >"$c/log4j2.properties" <<EOF
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=INFO
logger.server.name=org.apache.kafka.server
logger.server.level=INFO
EOF
}

cassandra_security() {
  if [[ -z $TLS_DIR ]]; then
    printf 'authenticator: AllowAllAuthenticator\nauthorizer: AllowAllAuthorizer\n'
    return
  fi
  cat <<EOF
authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
role_manager: CassandraRoleManager
client_encryption_options:
  enabled: true
  optional: false
  require_client_auth: false
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $DIR/conf/cassandra/server-keystore.pem
EOF
}

configure_cassandra() {
  local c=$DIR/conf/cassandra d=$DIR/data/cassandra
  mkdir -p "$c" "$d"
  [[ -z $TLS_DIR ]] || (umask 077 && cat "$TLS_DIR/server.key" "$TLS_DIR/server.pem" >"$c/server-keystore.pem")
  cat >"$c/cassandra.yaml" <<EOF
# Generated by deploy/local/services.sh: one node on loopback.
cluster_name: sensorflow-local
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$CASSANDRA_STORAGE_PORT"
data_file_directories: [$d/data]
commitlog_directory: $d/commitlog
saved_caches_directory: $d/saved_caches
hints_directory: $d/hints
cdc_raw_directory: $d/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CASSANDRA_PORT
start_native_transport: true
endpoint_snitch: SimpleSnitch
$(cassandra_security)
auto_snapshot: false
concurrent_compactors: 1
EOF
  cat >"$c/logback.xml" <<EOF
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
}

configure_influxdb() {
  mkdir -p "$DIR/data/influxdb" "$DIR/conf/influxdb"
  # The token is made once, with the data it guards: new data, new token.
  if [[ ! -s $INFLUX_TOKEN_FILE || ! -d $DIR/data/influxdb/engine ]]; then
    rm -rf "$DIR/data/influxdb"/* && mkdir -p "$DIR/data/influxdb"
    (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$INFLUX_TOKEN_FILE")
  fi
}

# ---------------------------------------------------------------- starting

spawn() { # name command...
  local name=$1; shift
  : >"$(logfile "$name")"
  setsid nohup "$@" >>"$(logfile "$name")" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

start_mosquitto() { spawn mosquitto mosquitto -c "$DIR/conf/mosquitto/mosquitto.conf"; }

start_kafka() {
  local lib=$LIB/kafka conf=$DIR/conf/kafka scram=()
  # Secured: the SCRAM user is written with the cluster's first metadata.
  [[ -z $TLS_DIR ]] || scram=(--add-scram "SCRAM-SHA-512=[name=sensorflow,password=$SECURE_PASSWORD]")
  if [[ ! -f $DIR/data/kafka/meta.properties ]]; then
    log "formatting kafka storage"
    java -cp "$lib/*" -Dlog4j2.configurationFile="$conf/log4j2.properties" kafka.tools.StorageTool \
      format --standalone -t c2Vuc29yZmxvdy1sb2NhbA -c "$conf/server.properties" "${scram[@]}" >"$DIR/log/kafka-format.log" 2>&1 ||
      { cat "$DIR/log/kafka-format.log" >&2; die "kafka storage format failed"; }
  fi
  spawn kafka java -Xms512m -Xmx512m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$conf/log4j2.properties" -Dkafka.logs.dir="$DIR/log" \
    -cp "$lib/*" kafka.Kafka "$conf/server.properties"
}

start_cassandra() {
  local lib=$LIB/cassandra conf=$DIR/conf/cassandra jamm
  jamm=$(ls "$lib"/jamm-*.jar | head -1)
  # JVM options from Cassandra's conf/jvm-server.options and conf/jvm17-server.options.
  spawn cassandra java -Xms1G -Xmx1G -Xss256k -ea -da:net.openhft... \
    -XX:+UseThreadPriorities -XX:+HeapDumpOnOutOfMemoryError -XX:+UseTLAB -XX:+ResizeTLAB \
    -XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true \
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m \
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:InitiatingHeapOccupancyPercent=70 \
    -Djdk.attach.allowAttachSelf=true \
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports java.sql/java.sql=ALL-UNNAMED \
    --add-exports java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED \
    --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens java.base/java.lang.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED \
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens java.base/java.io=ALL-UNNAMED \
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens java.base/java.lang=ALL-UNNAMED \
    --add-opens java.base/java.util=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true \
    -Dio.netty.allocator.maxOrder=11 \
    -javaagent:"$jamm" \
    -Dcassandra.config="file://$conf/cassandra.yaml" -Dlogback.configurationFile="$conf/logback.xml" \
    -Dcassandra.logdir="$DIR/log" -Dcassandra.storagedir="$DIR/data/cassandra" \
    -Dcassandra-foreground=yes -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
    -Dcassandra.jmx.local.port=0 -Dcassandra.superuser_setup_delay_ms=0 \
    -cp "$conf:$lib/*" org.apache.cassandra.service.CassandraDaemon
}

start_influxdb() {
  local d=$DIR/data/influxdb
  local tls=()
  [[ -z $TLS_DIR ]] || tls=(--tls-cert "$TLS_DIR/server.pem" --tls-key "$TLS_DIR/server.key")
  spawn influxdb "$INFLUXD" run --http-bind-address "127.0.0.1:$INFLUX_PORT" --reporting-disabled \
    --bolt-path "$d/influxd.bolt" --engine-path "$d/engine" --sqlite-path "$d/influxd.sqlite" \
    --log-level warn --ui-disabled "${tls[@]}"
}

# setup_influxdb makes the org, the bucket and the token, once (GET
# /api/v2/setup says whether the server still allows it), and the bucket
# `make bench` writes to, with a one-hour retention, so that its millions of
# points neither pile up nor slow the tests' queries of the main bucket.
setup_influxdb() {
  local base allowed org curl=(curl -fsS) token
  base=$(influx_url)/api/v2
  [[ -z $TLS_DIR ]] || curl+=(--cacert "$TLS_DIR/ca.pem")
  allowed=$("${curl[@]}" "$base/setup" 2>/dev/null) || return 1
  token=$(cat "$INFLUX_TOKEN_FILE")
  if [[ $allowed != *'"allowed": false'* && $allowed != *'"allowed":false'* ]]; then
    "${curl[@]}" -o "$DIR/log/influxdb-setup.json" -XPOST "$base/setup" -H 'Content-Type: application/json' \
      -d "{\"username\":\"sensorflow\",\"password\":\"$(head -c 16 /dev/urandom | base64 | tr -d '/+=')\",\"org\":\"sensorflow\",\"bucket\":\"sensorflow\",\"token\":\"$token\"}" 2>/dev/null || return 1
  fi
  "${curl[@]}" -H "Authorization: Token $token" "$base/buckets?org=sensorflow&name=sensorflow-bench" 2>/dev/null |
    grep -q '"name": *"sensorflow-bench"' && return 0
  org=$("${curl[@]}" -H "Authorization: Token $token" "$base/orgs?org=sensorflow" 2>/dev/null |
    sed -n 's/^[[:space:]]*"id": *"\([0-9a-f]*\)",*$/\1/p' | head -1)
  [[ -n $org ]] || return 1
  "${curl[@]}" -o /dev/null -XPOST "$base/buckets" -H "Authorization: Token $token" -H 'Content-Type: application/json' \
    -d "{\"orgID\":\"$org\",\"name\":\"sensorflow-bench\",\"retentionRules\":[{\"type\":\"expire\",\"everySeconds\":3600}]}" 2>/dev/null
}

influx_url() { if [[ -n $TLS_DIR ]]; then echo "https://127.0.0.1:$INFLUX_PORT"; else echo "http://127.0.0.1:$INFLUX_PORT"; fi; }

# probe_flags NAME: the credentials and CA Sensorflow needs in secured mode.
probe_flags() {
  [[ -n $TLS_DIR ]] || return 0
  case $1 in
    kafka) echo "-kafka.sasl.mechanism SCRAM-SHA-512 -kafka.sasl.username sensorflow -kafka.sasl.password-file $DIR/conf/secure.password -kafka.tls.ca $TLS_DIR/ca.pem" ;;
    cassandra) echo "-cassandra.username cassandra -cassandra.password-file $DIR/conf/cassandra.password -cassandra.tls.ca $TLS_DIR/ca.pem" ;;
    influxdb) echo "-influx.tls.ca $TLS_DIR/ca.pem" ;;
  esac
}

# healthy NAME: the server answers its own protocol.
healthy() {
  alive "$1" || return 1
  local flags=()
  read -r -a flags <<<"$(probe_flags "$1")"
  case $1 in
    mosquitto)
      if [[ -n $TLS_DIR ]]; then
        timeout 5 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" --cafile "$TLS_DIR/ca.pem" -u sensorflow-simulator \
          -P "$SECURE_PASSWORD" -q 1 -t sensorflow/local/healthcheck/status -m ok >/dev/null 2>&1
      else
        timeout 5 mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -q 1 -t sensorflow-local/healthcheck -m ok >/dev/null 2>&1
      fi ;;
    kafka) "$PROBE" check -only kafka -kafka.brokers "127.0.0.1:$KAFKA_PORT" "${flags[@]}" -timeout 3s >/dev/null 2>&1 ;;
    cassandra) "$PROBE" check -only cassandra -cassandra.hosts "127.0.0.1:$CASSANDRA_PORT" "${flags[@]}" -timeout 3s >/dev/null 2>&1 ;;
    influxdb)
      setup_influxdb && "$PROBE" check -only influx -influx.url "$(influx_url)" \
        -influx.token-file "$INFLUX_TOKEN_FILE" "${flags[@]}" -timeout 3s >/dev/null 2>&1 ;;
  esac
}

fail_start() { # name reason
  log "$1 failed to start: $2; last lines of $(logfile "$1"):"
  tail -n 40 "$(logfile "$1")" >&2 || true
  exit 1
}

up() {
  mkdir -p "$DIR"/{bin,lib,conf,data,log,run}
  [[ -f $DIR/.gitignore ]] || echo '*' >"$DIR/.gitignore"
  if [[ -n $TLS_DIR ]]; then
    [[ -n $SECURE_PASSWORD ]] || die "SENSORFLOW_TLS_DIR (secured mode) needs SENSORFLOW_SECURE_PASSWORD"
    local f
    for f in ca.pem server.pem server.key; do [[ -s $TLS_DIR/$f ]] || die "secured mode: $TLS_DIR/$f is missing"; done
    (umask 077 && printf '%s\n' "$SECURE_PASSWORD" >"$DIR/conf/secure.password" && echo cassandra >"$DIR/conf/cassandra.password")
  fi
  local s pending=()
  [[ -x $PROBE && -z $(find "$ROOT" -name '*.go' -newer "$PROBE" -print -quit) ]] || install_probe
  for s in "$@"; do
    if healthy "$s"; then continue; fi
    if alive "$s"; then pending+=("$s"); continue; fi # starting up already
    case $s in
      mosquitto) install_mosquitto ;; influxdb) install_influxdb ;;
      kafka) install_jars kafka ;; cassandra) install_jars cassandra ;;
    esac
    "configure_$s"
    log "starting $s on 127.0.0.1:$(port_of "$s")"
    "start_$s"
    pending+=("$s")
  done
  local deadline=$((SECONDS + START_TIMEOUT)) left
  while ((${#pending[@]})); do
    left=()
    for s in "${pending[@]}"; do
      if healthy "$s"; then log "$s is ready"; continue; fi
      alive "$s" || fail_start "$s" "the process exited"
      left+=("$s")
    done
    pending=("${left[@]+"${left[@]}"}")
    ((${#pending[@]})) || break
    ((SECONDS < deadline)) || fail_start "${pending[0]}" "not ready after ${START_TIMEOUT}s"
    sleep 1
  done
  status "$@"
}

down() {
  local s p
  for s in "$@"; do
    p=$(pid_of "$s")
    [[ -n $p ]] && kill -0 "$p" 2>/dev/null || { rm -f "$(pidfile "$s")"; continue; }
    log "stopping $s (pid $p)"
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    rm -f "$(pidfile "$s")"
  done
}

status() {
  local s state rc=0
  printf '%-10s %-9s %-8s %-6s %-8s %s\n' SERVICE STATE VERSION PORT PID LOG
  for s in "$@"; do
    if healthy "$s"; then state=healthy
    elif alive "$s"; then state=starting; rc=1
    else state=stopped; rc=1; fi
    printf '%-10s %-9s %-8s %-6s %-8s %s\n' "$s" "$state" "$(version_of "$s")" "$(port_of "$s")" \
      "$(pid_of "$s" || true)" "$(logfile "$s")"
  done
  return $rc
}

cmd=${1:-status}; shift || true
(($#)) || set -- "${ALL[@]}"
for s in "$@"; do [[ " ${ALL[*]} " == *" $s "* ]] || die "unknown service $s (want: ${ALL[*]})"; done
case $cmd in
  up) up "$@" ;; down) down "$@" ;;
  status) [[ -x $PROBE ]] || { mkdir -p "$DIR/bin"; install_probe; }; status "$@" ;;
  *) die "usage: $0 up|down|status [service...]" ;;
esac
