#!/usr/bin/env bash
# Set everything up and run the whole test suite against a real local Kafka broker.
#
#   scripts/test.sh [pytest arguments]
#
# Installs the Python environment (scripts/setup.sh), the operations tools
# (scripts/install-ops-tools.sh), starts the broker (scripts/kafka.sh), runs pytest and
# stops the broker again, whatever the outcome.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export PORT_ROUTER_CACHE="${PORT_ROUTER_CACHE:-$HOME/.cache/port-router}"  # jars, tools: reused across clones
export KAFKA_PORT="${KAFKA_PORT:-9092}"
export KAFKA_BOOTSTRAP="${KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}"
export HF_HUB_OFFLINE=1

bash scripts/setup.sh
bash scripts/install-ops-tools.sh
bash scripts/kafka.sh start
trap 'bash scripts/kafka.sh stop' EXIT
.venv/bin/python -m pytest -ra "$@"
