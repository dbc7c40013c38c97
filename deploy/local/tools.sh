#!/usr/bin/env bash
# Builds the pinned peer tools the tests and the bench run beside Sensorflow,
# from the Go module proxy, into the shared cache (one build per machine).
#
#   deploy/local/tools.sh install [tool...]   build what is missing
#   deploy/local/tools.sh path TOOL            build if missing, print its path
#
# Tools: prometheus promtool (Prometheus, which scrapes the services and
# evaluates the dashboards' PromQL in the tests); telegraf (the peer `make
# bench` runs next to the bridge and the processor, built with only the
# plugins it needs).
set -euo pipefail

PROMETHEUS_MODULE_VERSION=v0.316.0 # Prometheus 3.16.0 (its Go module tags are v0.3MINOR.PATCH), the version docker-compose.yml runs
TELEGRAF_VERSION=v1.37.2
# Telegraf's custom build: only these plugins, parsers and serializers.
TELEGRAF_TAGS=custom,inputs.mqtt_consumer,outputs.kafka,inputs.kafka_consumer,outputs.influxdb_v2,parsers.json,serializers.json,parsers.influx,serializers.influx
TOOLS=${SENSORFLOW_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sensorflow}
ALL=(prometheus promtool telegraf)

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

path_of() {
  case $1 in
    prometheus | promtool) echo "$TOOLS/$1-$PROMETHEUS_MODULE_VERSION" ;;
    telegraf) echo "$TOOLS/telegraf-$TELEGRAF_VERSION-bench" ;;
    *) die "unknown tool $1 (want: ${ALL[*]})" ;;
  esac
}

install() { # tool
  local want bin
  want=$(path_of "$1")
  [[ -x $want ]] && return
  mkdir -p "$TOOLS/gobin-$1"
  case $1 in
    prometheus | promtool)
      log "building $1 $PROMETHEUS_MODULE_VERSION with go install (a few minutes the first time)"
      # Without the builtinassets tag Prometheus serves its API but not its web UI,
      # whose assets are not in the module.
      GOBIN=$TOOLS/gobin-$1 go install "github.com/prometheus/prometheus/cmd/$1@$PROMETHEUS_MODULE_VERSION" ;;
    telegraf)
      log "building telegraf $TELEGRAF_VERSION with go install, plugins $TELEGRAF_TAGS (a few minutes the first time)"
      GOBIN=$TOOLS/gobin-$1 go install -tags "$TELEGRAF_TAGS" "github.com/influxdata/telegraf/cmd/telegraf@$TELEGRAF_VERSION" ;;
  esac
  bin=$TOOLS/gobin-$1/$1
  [[ -x $bin ]] || die "go install left no $1 binary"
  mv "$bin" "$want"
}

cmd=${1:-install}; shift || true
case $cmd in
  install) (($#)) || set -- "${ALL[@]}"; for t in "$@"; do install "$t"; done ;;
  path) (($# == 1)) || die "usage: $0 path TOOL"; install "$1"; path_of "$1" ;;
  *) die "usage: $0 install [tool...] | path TOOL" ;;
esac
