"""Small hand-made histories and streams for the routing-core unit tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from router_core.estimator import Estimates
from router_core.policies import Stream

MODELS = ("small", "medium", "large")


def routerbench_frame(n: int = 6, seed: int = 0) -> pd.DataFrame:
    """A RouterBench-schema table with ``n`` rows over three models."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "sample_id": [f"task.{i}" for i in range(n)],
        "eval_name": ["task"] * n,
        "prompt": [repr([f"Question number {i}?"]) for i in range(n)],
    })
    for j, model in enumerate(MODELS):
        frame[model] = rng.integers(0, 2, size=n).astype(float)
        frame[f"{model}|total_cost"] = (j + 1) * 1e-4 * (1 + rng.random(n))
        frame[f"{model}|model_response"] = [f"answer {i} from {model}" for i in range(n)]
    return frame


def random_stream(n: int, m: int, seed: int, budget_scale: float) -> Stream:
    """A stream whose estimates are noisy versions of the true values."""
    rng = np.random.default_rng(seed)
    true_quality = rng.integers(0, 2, size=(n, m)).astype(float)
    true_cost = rng.uniform(1e-4, 5e-3, size=(n, m))
    est = Estimates(np.clip(true_quality + rng.normal(0, 0.3, (n, m)), 0, 1),
                    true_cost * rng.uniform(0.5, 1.5, (n, m)))
    history = Estimates(rng.random((50, m)), rng.uniform(1e-4, 5e-3, (50, m)))
    budgets = budget_scale * true_cost.sum(axis=0) / m
    return Stream(est, est, history, true_quality, true_cost, budgets, float(true_cost.mean()))
