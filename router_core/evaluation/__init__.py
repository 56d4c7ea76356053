"""Offline evaluation: budget splits, the replay evaluator and the ``bench`` experiment."""
