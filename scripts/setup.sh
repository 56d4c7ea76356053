#!/usr/bin/env bash
# Create or reuse the project's virtual environment in .venv/ and install port-router into it.
#
# Every dependency is installed at the version of constraints.txt (the versions the tests passed
# with; refresh: scripts/refresh-constraints.sh). A second run reuses .venv and skips pip entirely
# while pyproject.toml and constraints.txt are unchanged (a stamp file records their hash). torch
# comes from PyPI (a CUDA build that runs on the CPU), through the `minilm` extra (the MiniLM
# embedding backend and the distillation of the static one need it).
# Then it distils the static embedder (the default backend) from the packaged all-MiniLM-L6-v2, offline, into
# $PORT_ROUTER_CACHE/embedders/ (reused while its manifest and files match; ~2 minutes the first time).
#
# Environment: PYTHON (default python3.11, else python3); PORT_ROUTER_CACHE (default <repo>/.cache).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAMP="$VENV/.port-router-installed"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"

say() { echo "setup: $*" >&2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
want="$(cat "$REPO/pyproject.toml" "$REPO/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && "$VENV/bin/python" -c "import router_core, streams" 2>/dev/null; then
  say "reusing $VENV (pyproject.toml and constraints.txt unchanged)"
else
  say "installing port-router and its dependencies into $VENV (the first time downloads torch: several minutes)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c "$REPO/constraints.txt" -e "$REPO[test,minilm]"
  echo "$want" > "$STAMP"
  say "done: $("$VENV/bin/port-router" --help >/dev/null && echo 'port-router is installed')"
fi
(cd "$REPO" && HF_HUB_OFFLINE=1 "$VENV/bin/port-router" embedder distill)
