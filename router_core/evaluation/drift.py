"""The drift split: a test stream whose task mix changes mid-stream.

The first half of the stream is drawn from every task but the last (in name order), the
second half from the last task only: e.g. arc-challenge and mbpp, then winogrande. The
history is every other row, so it covers all tasks. A policy that learned its weights on
the first half routes the second half with weights fitted to another mix.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np


def drift_rows(tasks: Sequence[str], n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Test rows (in arrival order: the early tasks' half, then the late task's half) and history rows."""
    labels = sorted(set(tasks))
    if len(labels) < 2:
        raise ValueError(f"the drift split needs at least two task labels, the data has {labels}")
    late = labels[-1]
    early_pool = [i for i, t in enumerate(tasks) if t != late]
    late_pool = [i for i, t in enumerate(tasks) if t == late]
    first, second = n_test // 2, n_test - n_test // 2
    if not (0 < first < len(early_pool) and 0 < second < len(late_pool)):
        raise ValueError(f"n_test={n_test} needs {first} rows of {labels[:-1]} (the data has {len(early_pool)}) and "
                         f"{second} of {late!r} ({len(late_pool)}), each leaving some for the history")
    rng = random.Random(seed)
    test = np.array(rng.sample(early_pool, first) + rng.sample(late_pool, second), dtype=np.int64)
    return test, np.setdiff1d(np.arange(len(tasks)), test)
