#!/usr/bin/env bash
# Set everything up and run the main job: the end-to-end streaming demo on a local broker.
#
#   scripts/run.sh [port-router demo arguments, e.g. --queries 500 --json out/demo.json]
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export HF_HUB_OFFLINE=1
export PORT_ROUTER_CACHE="${PORT_ROUTER_CACHE:-$HOME/.cache/port-router}"
bash scripts/setup.sh
exec .venv/bin/port-router demo "$@"
