"""How the service's processes log: one format for the router, its worker processes and the tools."""

from __future__ import annotations

import logging

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int | str) -> None:
    """Log at ``level`` and above to stderr, in the service's format."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
