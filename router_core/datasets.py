"""Where the example routing data is found when the user names none."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "PORT_ROUTER_DATA"
_REPO = Path(__file__).resolve().parent.parent
SHARED_SUBSET = _REPO.parent / "shared" / "data" / "routerbench-subset"
SHIPPED_SUBSET = _REPO / "examples" / "data" / "routerbench-subset"


def default_data_paths() -> list[Path]:
    """``$PORT_ROUTER_DATA`` (paths separated by ``os.pathsep``), else the shared subset, else the shipped copy."""
    if os.environ.get(DATA_ENV):
        return [Path(p) for p in os.environ[DATA_ENV].split(os.pathsep) if p]
    for candidate in (SHARED_SUBSET, SHIPPED_SUBSET):
        if candidate.is_dir():
            return [candidate]
    raise FileNotFoundError(f"no routing data: set {DATA_ENV} or pass --data")
