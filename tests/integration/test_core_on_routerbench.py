"""The routing core end to end on the real RouterBench subset, through the ``bench`` command.

Needs the data (``$PORT_ROUTER_DATA``, ``../shared/data/routerbench-subset`` or the copy in
``examples/``) and embeds it with the real model (a few minutes the first time; cached).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router_core.datasets import default_data_paths

REPO = Path(__file__).resolve().parents[2]
KEYS = {"method", "split", "budget_factor", "seed", "n_test", "budget_total", "performance", "cost", "ppc",
        "throughput"}


@pytest.fixture(scope="module")
def bench_rows(tmp_path_factory) -> list[dict]:
    try:
        data = default_data_paths()
    except FileNotFoundError as exc:
        pytest.fail(f"RouterBench data not found: {exc}") if os.environ.get("CI") else pytest.skip(str(exc))
    out = tmp_path_factory.mktemp("bench") / "rows.json"
    command = [sys.executable, "-m", "streams.cli", "bench", "--data", *map(str, data), "--n-test", "1000",
               "--seeds", "42", "--budget-factors", "1", "--splits", "weighted",
               "--methods", "port,port-paper,greedy-cost,knn-cost,batchsplit,opt-estimated,opt", "--json", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1500,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def by_method(rows: list[dict]) -> dict[str, dict]:
    return {r["method"]: r for r in rows}


def test_rows_carry_the_documented_keys(bench_rows):
    assert len(bench_rows) == 7
    for row in bench_rows:
        assert KEYS <= set(row)
    assert "lp_bound" in by_method(bench_rows)["opt"]


def test_port_beats_the_online_baselines_and_nears_the_estimated_optimum(bench_rows):
    rows = by_method(bench_rows)
    port = rows["port"]["performance"]
    for baseline in ("port-paper", "greedy-cost", "knn-cost", "batchsplit"):
        assert port > rows[baseline]["performance"], baseline
    assert port >= 0.95 * rows["opt-estimated"]["performance"]


def test_nobody_beats_the_lp_bound_or_spends_past_the_budget(bench_rows):
    bound = by_method(bench_rows)["opt"]["lp_bound"]
    for row in bench_rows:
        assert row["performance"] <= bound + 1e-9
        assert row["cost"] <= row["budget_total"] * (1 + 1e-9)
