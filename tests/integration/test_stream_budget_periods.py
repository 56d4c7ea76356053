"""Budget periods on the real broker, with a short period: a model reserved for more than one period's budget
over two periods (the budget restarts), every period's reservations within the budget (the partitions' shares
are reassigned, so the bound is per model), the optimizer restarts at the new period, and a restarted router
recovers every kept period's state.

Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_budget_periods.py -v
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from router_core.periods import BudgetPeriods
from schemas import RoutingWeights
from streams import topics as T
from streams.config import ServiceConfig, load_config
from streams.kafka import read_to_end
from streams.service.app import app_id

from stream_harness import assert_accounting, outcomes, produce, random_queries, require_environment, \
    router_process, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PERIOD_S = 12.0
BUDGET_SCALE = 0.04  # the example budgets are sized for 1,000 queries: a share holds a few queries per model


@pytest.fixture(autouse=True)
def _environment() -> None:
    require_environment()


def decision_records(config: ServiceConfig) -> dict[str, dict]:
    """The newest decision record per key in the decisions changelog."""
    records: dict[str, dict] = {}
    for message in read_to_end(config.kafka.confluent(), f"{app_id(config)}-decisions-changelog"):
        key = json.loads(message.key())
        if message.value() is None:
            records.pop(key, None)
        else:
            records[key] = json.loads(message.value())
    return records


def reserved_per_period(records: dict[str, dict]) -> dict[tuple[int, int, str], list[float]]:
    """The reservations per (partition, period, model) of the routed decisions."""
    out: dict[tuple[int, int, str], list[float]] = defaultdict(list)
    for key, record in records.items():
        if record["model"] is not None:
            out[(int(key.split("/", 1)[0]), record["period"], record["model"])].append(record["reserved"])
    return out


def wait_for_boundary(grid: BudgetPeriods, after: int) -> None:
    """Wait until the clock is in a period later than ``after``."""
    deadline = time.monotonic() + 3 * PERIOD_S
    while grid.index(time.time()) <= after:
        assert time.monotonic() < deadline, "the clock did not reach the next period"
        time.sleep(0.1)


def weights_periods(config: ServiceConfig) -> set[int]:
    """The budget periods of every weights version published."""
    return {RoutingWeights.model_validate_json(m.value()).period
            for m in read_to_end(config.kafka.confluent(), config.topics.name(T.WEIGHTS)) if m.value()}


def same(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> bool:
    """Whether two per-period reports hold the same periods and models with the same dollars (to rounding)."""
    return a.keys() == b.keys() and all(a[k].keys() == b[k].keys() and
                                        all(a[k][m] == pytest.approx(b[k][m], rel=1e-9) for m in a[k]) for k in a)


def test_budgets_restart_each_period_stay_within_the_share_and_survive_a_restart(tmp_path: Path) -> None:
    path = write_config(tmp_path, partitions=2, n_expected=200, budget_scale=BUDGET_SCALE)
    data = yaml.safe_load(path.read_text())
    data.setdefault("budget", {})["period"] = f"{PERIOD_S:g}s"
    path.write_text(yaml.safe_dump(data))
    config = load_config(path, {})
    grid = config.budget.grid()
    budgets = {m.name: m.budget for m in config.models}
    router = router_process(path, tmp_path / "router.log").start()
    try:
        router.wait_ready()
        first = produce(config, random_queries(120, "a", seed=11))
        assert_accounting(outcomes(config, len(first)), first)
        first_period = max(r["period"] for r in decision_records(config).values())
        wait_for_boundary(grid, first_period)
        second = produce(config, random_queries(120, "b", seed=12))
        assert_accounting(outcomes(config, len(first) + len(second)), first + second)

        records = decision_records(config)
        handovers = {k for k, r in records.items() if r.get("partition") is not None}  # decided on the other partition
        decided = [k.split("/", 1)[1] for k in records if k not in handovers]
        assert sorted(decided) == sorted(first + second), "one decision record per query"
        assert {k.split("/", 1)[1] for k in handovers} <= set(decided)
        reserved = reserved_per_period(records)
        totals: dict[tuple[int, str], float] = defaultdict(float)  # (period, model) -> over every partition
        for (_, period, model), held in reserved.items():
            totals[(period, model)] += sum(held)
        for (period, model), total in totals.items():
            assert total <= budgets[model] * (1 + 1e-9), f"{model} reserved {total} in period {period}"
        periods = sorted({period for period, _ in totals})
        assert len(periods) >= 2, f"all decisions in periods {periods}"
        # more than one period's budget of a model over two periods: only possible because the budget restarted
        again = [model for (k, model), total in totals.items() for (j, other), later in totals.items()
                 if other == model and j > k and total + later > budgets[model] * (1 + 1e-9)]
        assert again, "no model was reserved for more than one period's budget over two periods"
        assert max(weights_periods(config)) > min(periods), "the optimizer never re-solved in a later period"

        def report(state: dict) -> dict[int, dict[str, float]]:
            return {row["period"]: {m: v["reserved"] for m, v in row["models"].items() if v["reserved"]}
                    for row in state["periods"]}

        expected: dict[int, dict[str, float]] = defaultdict(dict)
        for (_, period, model), held in reserved.items():
            expected[period][model] = expected[period].get(model, 0.0) + sum(held)
        before = report(router.state())
        assert same(before, dict(expected)), f"/state {before} is not the decision records' {dict(expected)}"
        router.stop()
        router = router_process(path, tmp_path / "router2.log", "restarted router").start()
        router.wait_ready()
        deadline = time.monotonic() + 120
        while not same(report(router.state()), before) and time.monotonic() < deadline:  # tables in recovery
            time.sleep(0.5)
        assert same(after := report(router.state()), before), f"the restarted router has {after}, not {before}"
    finally:
        router.stop()
