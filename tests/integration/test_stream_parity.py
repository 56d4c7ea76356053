"""``bench-parity`` on one setting: the service, fed the offline benchmark's exact test stream through the
real broker, router and replay workers, performs within the bar of offline ``port`` and re-solves.

The stream is sent at 50 queries/s (bench-parity's default); both sides settle each answer after the
delay measured for it in the stream (answers in flight), so the comparison holds whatever the load.
The budget shares of the 2 partitions are reassigned by the optimizer (streams/service/shares.py).

The bar here, 0.93, is the level this setting holds, not issue 7's 0.97 (open): on this machine the ratio
of this setting spread from 0.945 to 0.990 over the runs of docs/EVALUATION.md, on the code before and
after session 18 alike, and a test at 0.97 failed about one run in three. Since session 20 the queries are sent
once every worker is up, and three runs of the command gave 0.974 to 0.994; the floor stays where it was, a guard
against regressions on a loaded machine. The grid of docs/EVALUATION.md measures the issue's bar."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from streams.config import load_config
from streams.tools.parity import parity_rows

import stream_harness as h

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARITY_FLOOR = 0.93  # the stream's performance / offline port's (see the module's docstring)


def test_the_service_matches_offline_port_on_the_benchmark_stream(tmp_path: Path) -> None:
    h.require_environment()
    base = load_config(h.write_config(tmp_path, partitions=2, n_expected=1000), {})
    args = argparse.Namespace(seeds=[42], budget_factors=[1.0], splits=["weighted"], repeats=1, n_test=1000,
                              drift=False, timeout=600.0, rate=50.0)
    (row,) = list(parity_rows(args, base))
    assert row["offline_performance"] > 0 and row["stream_served"] > 0
    assert row["ratio"] >= PARITY_FLOOR, row
    assert not row["over_budget_models"] and row["stream_spent"] <= row["budget_total"] * (1 + 1e-9), row
    assert not row["service_over_budget"], f"the workers charged more than a budget: {row}"
    assert row["weights_versions"] >= 2, f"the learned decisions used one weights version only: {row}"
    assert row["weights_published"] >= row["weights_versions"]
