#!/usr/bin/env bash
# Rewrite constraints.txt from a virtual environment in which the whole test suite passed:
#
#   scripts/refresh-constraints.sh [VENV]      (default: .venv of this repository)
#
# Every installed distribution at its exact version, except the project itself (installed
# editable) and pip's own tools. scripts/setup.sh and the Dockerfile install with `-c constraints.txt`.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$REPO/.venv}"
{
  echo "# The versions the test suite passed with: scripts/setup.sh and the Dockerfile install with -c constraints.txt."
  echo "# Refresh (after a full, passing scripts/test.sh in that venv): scripts/refresh-constraints.sh [VENV]"
  "$VENV/bin/python" -m pip freeze --exclude-editable | grep -iv '^port-router[ =@]'
} > "$REPO/constraints.txt"
echo "refresh-constraints: $(grep -vc '^#' "$REPO/constraints.txt") pins written to $REPO/constraints.txt from $VENV" >&2
