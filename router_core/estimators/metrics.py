"""Scores of estimates against true outcomes: Brier score, log-loss and cost errors."""

from __future__ import annotations

import numpy as np

LOG_LOSS_CLIP = 1e-6


def brier(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean squared error of quality estimates in [0, 1] (lower is better)."""
    return float(np.mean((estimated - true) ** 2))


def log_loss(estimated: np.ndarray, true: np.ndarray, clip: float = LOG_LOSS_CLIP) -> float:
    """Mean cross-entropy of quality estimates (clipped to [clip, 1 - clip]) against qualities in [0, 1]."""
    p = np.clip(estimated, clip, 1 - clip)
    return float(-np.mean(true * np.log(p) + (1 - true) * np.log(1 - p)))


def mape(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error of cost estimates, over the entries whose true cost is positive."""
    positive = true > 0
    return float(np.mean(np.abs(estimated[positive] - true[positive]) / true[positive]) * 100)


def log_cost_error(estimated: np.ndarray, true: np.ndarray) -> float:
    """Mean |log(estimate / true)| over entries where both are positive (symmetric in over and under)."""
    both = (true > 0) & (estimated > 0)
    return float(np.mean(np.abs(np.log(estimated[both] / true[both]))))
