#!/usr/bin/env bash
# Build the container image with buildah and smoke-run it with podman; print its size and step times.
#
#   scripts/build-image.sh            build, then smoke-run: --help, the user, topics create, serve until
#                                     /ready, 100 queries routed, the healthcheck
#   scripts/build-image.sh --no-smoke build only
#
# Installs buildah, podman, runc and debootstrap from Debian when absent (apt-get, as root).
# The base is BASE_IMAGE when a registry serves it; otherwise a Debian bookworm + Python 3.11 base made
# with debootstrap, cached as a tarball under $PORT_ROUTER_CACHE/image-base and as a local image.
# Layers stay in the container storage (the build stage is tagged so that pruning keeps them); pip's
# cache mount keeps the wheels it compiled (hnswlib): the proxy here lets pip cache no download.
# The smoke run uses the broker on $KAFKA_BOOTSTRAP, starting one with scripts/kafka.sh when none answers
# (and stopping only that one). Exits non-zero on any failure; removes the containers it started.
#
# Environment:
#   IMAGE               tag to build (default localhost/port-router:<the chart's appVersion>)
#   BASE_IMAGE          base tried first (default docker.io/library/python:3.11-slim-bookworm)
#   BASE_PULL_TIMEOUT   seconds to wait for a registry (default 60)
#   DEBIAN_MIRROR       debootstrap mirror (default http://deb.debian.org/debian)
#   CA_BUNDLE           CA bundle given to pip as a build secret (default /etc/ssl/certs/ca-certificates.crt)
#   PIP_EXTRAS          passed to the Dockerfile (default "[minilm]": torch, MiniLM and the distilled static model;
#                       empty: a torch-free image without a static model, which the smoke run does not mount)
#   PORT_ROUTER_CACHE   cache root (default <repo>/.cache)
#   KAFKA_PORT / KAFKA_BOOTSTRAP  broker for the smoke run (default 127.0.0.1:9092; either one sets the other)
#   SMOKE_WEB_PORT      the router's web port in the smoke run (default 16066; host network)
#   SMOKE_TIMEOUT       seconds to wait for /ready and for the routed queries (default 900)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP_VERSION="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$REPO/helm/Chart.yaml")"
IMAGE="${IMAGE:-localhost/port-router:$APP_VERSION}"  # the chart's default image is port-router:<appVersion>
BUILD_STAGE="$IMAGE-build-stage"
BASE_IMAGE="${BASE_IMAGE:-docker.io/library/python:3.11-slim-bookworm}"
BASE_PULL_TIMEOUT="${BASE_PULL_TIMEOUT:-60}"
BASE_RECIPE=2  # bump when make_base_tar changes: the cached tarball and image are named after it
LOCAL_BASE="localhost/port-router-base:python3.11-bookworm-r$BASE_RECIPE"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
BASE_CACHE="${PORT_ROUTER_CACHE:-$REPO/.cache}/image-base"
BASE_TAR="$BASE_CACHE/bookworm-python3.11-r$BASE_RECIPE.tar"
KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"
KAFKA_PORT="${KAFKA_PORT:-${KAFKA_BOOTSTRAP##*:}}"  # the port of a broker this script starts
WEB_PORT="${SMOKE_WEB_PORT:-16066}"
TIMEOUT="${SMOKE_TIMEOUT:-900}"
QUERIES=100
SMOKE_CONFIG="examples/config.yaml"
# crun refuses hybrid cgroups here; runc works. Limits must stay within the sandbox's.
RUN_OPTS=(--runtime runc --network host --ulimit nofile=20000:20000 --ulimit nproc=32768:32768)
SMOKE_ID="port-router-smoke-$$"
SERVE_CTR=""
BROKER_STARTED=0
STEPS=()

say() { echo "build-image: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

elapsed() {
  # Seconds since the EPOCHREALTIME value $1, with one decimal.
  awk -v t0="$1" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.1f", t1 - t0 }'
}

step() {
  # Run one named step and record its duration.
  local name="$1" t0=$EPOCHREALTIME
  shift
  say "== $name"
  "$@"
  STEPS+=("$(printf '%-16s %7s s' "$name" "$(elapsed "$t0")")")
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
  }
}

install_tools() {
  local need=() tool
  for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
  ((${#need[@]})) || return 0
  say "apt-get install ${need[*]}"
  apt_install "${need[@]}"
}

make_base_tar() {
  # Debian bookworm (minbase) with Python 3.11, venv and its C headers (not the static library), `python`
  # on PATH: what the python image offers a build.
  local root="$BASE_CACHE/rootfs.tmp"
  rm -rf "$root" && mkdir -p "$root"
  say "debootstrap bookworm into $root (first run only)"
  # apt inside the chroot, not --include: debootstrap does not resolve virtual packages (venv's distutils).
  { debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$DEBIAN_MIRROR" &&
    chroot "$root" apt-get install -y -q --no-install-recommends python3.11 python3.11-venv libpython3.11-dev; } \
    >"$BASE_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$BASE_CACHE/debootstrap.log" >&2; fail "debootstrap (log: $BASE_CACHE/debootstrap.log)"; }
  ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python"
  ln -sf /usr/bin/python3.11 "$root/usr/local/bin/python3"
  rm -rf "$root"/usr/lib/x86_64-linux-gnu/libpython3.11*.a "$root"/usr/lib/python3.11/config-*/*.a \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -cf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
  rm -rf "$root"
}

local_base() {
  # The debootstrap stand-in for the python image, made once and cached.
  if podman image exists "$LOCAL_BASE"; then return; fi
  mkdir -p "$BASE_CACHE"
  [[ -s "$BASE_TAR" ]] || make_base_tar
  podman import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$BASE_TAR" "$LOCAL_BASE" >/dev/null
}

resolve_base() {
  # Sets BASE: the configured image when a registry serves it, else the local stand-in.
  if podman image exists "$BASE_IMAGE" || timeout "$BASE_PULL_TIMEOUT" buildah pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    BASE="$BASE_IMAGE"
  else
    say "no registry serves $BASE_IMAGE: using $LOCAL_BASE (debootstrap)"
    local_base
    BASE="$LOCAL_BASE"
  fi
  say "base: $BASE"
}

bud() {
  local secret=()
  [[ -s "$CA_BUNDLE" ]] && secret=(--secret "id=ca,src=$CA_BUNDLE")
  nice -n 10 buildah bud --layers --format docker --isolation chroot \
    --build-arg "PYTHON_IMAGE=$BASE" --build-arg "PIP_EXTRAS=${PIP_EXTRAS-[minilm]}" "${secret[@]}" \
    -f "$REPO/Dockerfile" "$@" "$REPO"
}

build() {
  # The build stage is tagged too, so that pruning untagged images keeps its cached layers.
  bud --target build -t "$BUILD_STAGE"
  bud -t "$IMAGE"
}

prune() {
  # Layers of earlier builds that no tag reaches any more (each build of a changed venv leaves ~6 GB).
  podman image prune -f >/dev/null
}

image_size() {
  local bytes
  bytes="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
  IMAGE_SIZE="$(awk -v b="$bytes" 'BEGIN { printf "%.2f GB (%.0f bytes, uncompressed)", b / 1e9, b }')"
  say "image $IMAGE: $IMAGE_SIZE"
}

run_image() {
  podman run --rm "${RUN_OPTS[@]}" "$@"
}

smoke_help() {
  run_image "$IMAGE" --help >/dev/null
}

smoke_user() {
  local uid
  uid="$(run_image --entrypoint id "$IMAGE" -u)"
  [[ "$uid" == 10001 ]] || fail "the image runs as uid $uid, not 10001"
}

broker_answers() {
  local host="${KAFKA_BOOTSTRAP%%,*}"
  (exec 3<>"/dev/tcp/${host%:*}/${host##*:}") 2>/dev/null
}

ensure_broker() {
  if broker_answers; then say "using the broker on $KAFKA_BOOTSTRAP"; return; fi
  KAFKA_PORT="$KAFKA_PORT" bash "$REPO/scripts/kafka.sh" start
  BROKER_STARTED=1
}

smoke_env() {
  # The shipped example configuration, on this broker, with topics and web port of this run.
  printf '%s\n' -v "$REPO/examples:/var/lib/port-router/examples:ro" \
    -e "PORT_ROUTER__KAFKA__BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP" -e "PORT_ROUTER__TOPICS__PREFIX=$SMOKE_ID." \
    -e "PORT_ROUTER__ROUTER__WEB_PORT=$WEB_PORT" -e "PORT_ROUTER_HEALTH_URL=http://127.0.0.1:$WEB_PORT/health"
}

smoke_topics() {
  local env
  mapfile -t env < <(smoke_env)
  run_image "${env[@]}" "$IMAGE" topics create --config "$SMOKE_CONFIG" >/dev/null
}

container_running() {
  [[ "$(podman inspect --format '{{.State.Running}}' "$SERVE_CTR" 2>/dev/null)" == true ]]
}

wait_until() {
  # wait_until WHAT COMMAND...: poll COMMAND every 2 s while the router runs, for at most $TIMEOUT s.
  local what="$1" waited=0
  shift
  until "$@"; do
    container_running || { podman logs --tail 40 "$SERVE_CTR" >&2 || true; fail "the router exited before $what"; }
    ((waited < TIMEOUT)) || { podman logs --tail 40 "$SERVE_CTR" >&2 || true; fail "no $what after ${TIMEOUT}s"; }
    sleep 2
    waited=$((waited + 2))
  done
}

router_ready() {
  curl -fs -o /dev/null "http://127.0.0.1:$WEB_PORT/ready"
}

smoke_serve() {
  local env
  mapfile -t env < <(smoke_env)
  SERVE_CTR="$SMOKE_ID-serve"
  podman run -d --name "$SERVE_CTR" "${RUN_OPTS[@]}" "${env[@]}" "$IMAGE" serve --config "$SMOKE_CONFIG" >/dev/null
  wait_until "/ready" router_ready
}

metric_sum() {
  # The sum of the router's counters whose name matches $1 (an awk regular expression), from /metrics.
  curl -fsS "http://127.0.0.1:$WEB_PORT/metrics" |
    awk -v re="^($1)[{]" '$0 ~ re { n += $NF } END { printf "%d\n", n }'
}

all_decided() {
  # Every query decided: routed to a model or unserved.
  (($(metric_sum 'port_router_(routed|unserved)_total') >= QUERIES))
}

smoke_route() {
  podman exec "$SERVE_CTR" port-router produce --config "$SMOKE_CONFIG" --limit "$QUERIES" --embeddings --quiet
  wait_until "$QUERIES decisions" all_decided
  local routed
  routed="$(metric_sum port_router_routed_total)"
  say "decided $(metric_sum 'port_router_(routed|unserved)_total') of $QUERIES queries, $routed routed to a model"
  ((routed > 0)) || fail "no query was routed to a model"
}

smoke_health() {
  podman healthcheck run "$SERVE_CTR" || fail "the image's HEALTHCHECK fails on the running router"
}

cleanup() {
  local rc=$?
  [[ -n "$SERVE_CTR" ]] && podman rm -f -t 10 "$SERVE_CTR" >/dev/null 2>&1
  ((BROKER_STARTED)) && KAFKA_PORT="$KAFKA_PORT" bash "$REPO/scripts/kafka.sh" stop
  report
  exit "$rc"
}

report() {
  say "step times:"
  printf '  %s\n' "${STEPS[@]}" >&2
  [[ -n "${IMAGE_SIZE:-}" ]] && say "image size: $IMAGE_SIZE"
  return 0
}

main() {
  [[ $EUID -eq 0 ]] || fail "run as root (apt-get, buildah and podman with the system storage)"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local t0=$EPOCHREALTIME
  step tools install_tools
  step base resolve_base
  step build build
  step prune prune
  image_size
  if [[ "${1:-}" != "--no-smoke" ]]; then
    step help smoke_help
    step user smoke_user
    step broker ensure_broker
    step topics smoke_topics
    step serve-ready smoke_serve
    step route smoke_route
    step healthcheck smoke_health
  fi
  STEPS+=("$(printf '%-16s %7s s' total "$(elapsed "$t0")")")
  say "OK"
}

main "$@"
