"""The hard budget guarantee on the real broker: replay workers whose true costs exceed the estimates on every
query, and settled spend still within every budget share.

Run: scripts/kafka.sh start && .venv/bin/python -m pytest tests/integration/test_stream_budget_guarantee.py -v
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from router_core.history import COST_SUFFIX
from streams.tools.chaos import share_usage
from streams.config import load_config
from streams.service.data import load_engine
from streams.tools.outcomes import follow_outcomes
from streams.service.prepare import unit_embedding

from stream_harness import REPO, assert_accounting, produce, random_queries, require_environment, router_process, \
    write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _environment() -> None:
    require_environment()


def overrun_history(config_path: Path, directory: Path, queries: list, seed: int) -> tuple[Path, np.ndarray]:
    """A worker configuration whose replay history gives every query, on every model, a true cost of 1.05 to 2.5
    times the router's estimate; returns it with the (query, model) true costs."""
    config = load_config(config_path, {})
    engine = load_engine(config)
    vectors = np.stack([unit_embedding(q.embedding) for q in queries])
    estimates = engine.estimate(vectors, [None] * len(queries), [None] * len(queries))
    true_cost = estimates.cost * np.random.default_rng(seed).uniform(1.05, 2.5, size=estimates.cost.shape)
    frame = pd.DataFrame({"sample_id": [q.id for q in queries], "prompt": ["['q']"] * len(queries),
                          "eval_name": ["t"] * len(queries)})
    for i, model in enumerate(engine.models):
        frame[model] = 1.0
        frame[model + COST_SUFFIX] = true_cost[:, i]
    frame.to_csv(directory / "overrun.csv", index=False)
    data = yaml.safe_load(config_path.read_text())
    data["history"] = [str(directory / "overrun.csv")]
    worker_config = directory / "worker-config.yaml"
    worker_config.write_text(yaml.safe_dump(data))
    return worker_config, true_cost


def test_settled_spend_stays_within_every_share_when_every_answer_costs_more_than_its_estimate(tmp_path: Path) -> None:
    path = write_config(tmp_path, partitions=2, n_expected=200, budget_scale=0.1)
    config = load_config(path, {})
    queries = random_queries(240, "over", seed=11)
    worker_config, true_cost = overrun_history(path, tmp_path, queries, seed=11)
    router = router_process(path, tmp_path / "router.log").start()
    workers = [subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--config", str(worker_config),
                                 "--model", m.name], stdout=(tmp_path / f"worker-{i}.log").open("w"),
                                stderr=subprocess.STDOUT, cwd=REPO, env=os.environ.copy())
               for i, m in enumerate(config.models)]
    try:
        router.wait_ready()
        produced = produce(config, queries)
        tally = follow_outcomes(config, len(produced), timeout=300)
        assert_accounting(tally, produced)
        routed = {m["query"]["id"]: m for m in tally.routed_messages}
        assert routed and len(tally.completions) == len(routed), "every routed query gets a completion"
        row = {q.id: i for i, q in enumerate(queries)}
        models = [m.name for m in config.models]
        refused = [c for c in tally.completions.values() if c["refused"] is not None]
        served = [c for c in tally.completions.values() if c["refused"] is None]
        assert refused and served, (len(refused), len(served))
        for completion in served:  # the answers did cost more than their estimates, and no more than reserved
            message = routed[completion["query_id"]]
            assert message["estimated_cost"] < completion["cost"] <= message["reserved_cost"]
        assert all(c["cost"] == 0.0 for c in refused)
        # settled spend per model, over both input partitions, never exceeds the budget B_i
        overruns, _ = share_usage(config, tally)
        assert overruns == 0
        held: dict[str, float] = {}  # the budgets bind: some budget was nearly all reserved at some point
        for message in routed.values():
            held[message["model"]] = held.get(message["model"], 0.0) + message["reserved_cost"]
        assert max(dollars / config.model(m).budget for m, dollars in held.items()) > 0.8
        # the test can fail: had the workers answered every routed query, some budget would be overspent
        would_spend: dict[str, float] = {}
        for query_id, message in routed.items():
            model = message["model"]
            would_spend[model] = would_spend.get(model, 0.0) + true_cost[row[query_id], models.index(model)]
        assert any(dollars > config.model(m).budget for m, dollars in would_spend.items())
    finally:
        router.stop()
        for worker in workers:
            worker.terminate()
            worker.wait(30)
