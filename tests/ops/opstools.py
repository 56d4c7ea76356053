"""Helpers of the operations tests: where the tools are, the broker, the exported metric names.

A missing tool or broker never passes silently: under CI (``CI=true``) the test fails with
the reason; on a developer machine it is skipped with the reason (``pytest -rs`` lists them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PORT_ROUTER_CACHE", REPO / ".cache"))
INSTALL_HINT = "run scripts/install-ops-tools.sh"


def tool(name: str) -> str:
    """Path of an operations tool: the ops-tools cache, the venv, then PATH."""
    for candidate in (CACHE / "ops-tools" / "bin" / name, REPO / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed ({INSTALL_HINT})")
    return str(found)


def exported_metric_names() -> set[str]:
    """Every series name streams.metrics can export (counters as *_total, histograms as
    *_bucket/_sum/_count), read from its registry's metric families."""
    from streams.metrics import REGISTRY

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count", ""), "gauge": ("",),
                "summary": ("_sum", "_count", ""), "info": ("_info",)}
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names
