"""Comma-separated list arguments of the ``port-router`` commands."""

from __future__ import annotations


def floats(text: str) -> tuple[float, ...]:
    """``"0.5,1"`` -> ``(0.5, 1.0)``."""
    return tuple(float(x) for x in text.split(",") if x)


def ints(text: str) -> tuple[int, ...]:
    """``"42,43"`` -> ``(42, 43)``."""
    return tuple(int(x) for x in text.split(",") if x)


def names(text: str) -> tuple[str, ...]:
    """``"a, b"`` -> ``("a", "b")``."""
    return tuple(x.strip() for x in text.split(",") if x.strip())
