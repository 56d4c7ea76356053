"""The drift split: the first half from the early tasks, the second from the last task; the rest is history."""

from __future__ import annotations

import numpy as np
import pytest

from router_core.evaluation.drift import drift_rows


def test_halves_come_from_different_tasks_and_history_is_the_rest() -> None:
    tasks = ["a"] * 30 + ["b"] * 30 + ["c"] * 30
    test, history = drift_rows(tasks, 20, seed=1)
    assert {tasks[i] for i in test[:10]} <= {"a", "b"} and {tasks[i] for i in test[10:]} == {"c"}
    assert len(set(test)) == 20 and np.array_equal(np.sort(np.concatenate([test, history])), np.arange(90))
    again, _ = drift_rows(tasks, 20, seed=1)
    assert np.array_equal(test, again), "the seed fixes the draw"


def test_too_few_rows_or_one_task_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs"):
        drift_rows(["a"] * 10 + ["c"] * 5, 12, seed=0)
    with pytest.raises(ValueError, match="two task labels"):
        drift_rows(["a"] * 10, 4, seed=0)
