"""``port-router bench-parity``: the offline benchmark's test stream through the real service, side by side.

For each seed the offline benchmark's split is drawn (``router_core.evaluation.experiment``),
and for each (budget split, factor) the offline ``port`` policy is replayed with ``reserve``
accounting (the service's semantics: the estimate is reserved, the true cost replaces it when
the answer completes). The same test stream, in the same order, with the same budgets, then
goes through the service on the local broker: a router (``port-router serve``) with the
configured partition count, indexing the same history (``history_rows: split:<seed>:<n>``),
and one replay worker per model that answers with the true cost and quality. Events carry
the text, the task label and the precomputed embedding the offline benchmark uses. The
service's decisions are then accounted for and scored by the offline evaluator (``replay``
with the recorded choices, reserve accounting), so both sides lose an answer whose true cost
no longer fits; what the workers actually charged is reported beside it.

Both sides hold the same answers in flight. The offline reserve accounting settles each answer
``in_flight`` queries after its decision (``replay``); how many that is in the service depends on the
rate the queries arrive at and on how fast the workers answer, which on a loaded machine changes
during the run (from a few to hundreds). So the stream runs first, and for every query the delay
of its answer is measured in queries (the queries decided after a routed one and
by the time its completion was written; for a query the service did not route, interpolated from
its neighbours in arrival order); offline ``port`` and the scoring of the stream's choices both
replay with those delays. The row gives their median and 90th percentile (``stream_in_flight``,
``stream_in_flight_p90``) and offline ``port``
at the evaluator's fixed 32 (``offline_performance_32``). The stream is sent at ``--rate`` queries
per second (default 50; 0: one burst).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from router_core.evaluation.replay import ReplayResult, replay
from router_core.params import PortParams
from router_core.policies import Stream, create_policy
from router_core.policies.base import Policy
from router_core.rule import SKIP
from schemas import QueryEvent
from streams.tools import processes
from streams.config import ServiceConfig, load_config
from streams.tools.outcomes import OutcomeTally, follow_outcomes
from streams.tools.processes import REPO, ServiceProcess
from streams.service.app import app_id
from streams.worker import worker_group
from streams.kafka import topic_size
from streams.topics import QUERIES, WEIGHTS, create_topics

log = logging.getLogger(__name__)


class RecordedChoices(Policy):
    """Replays the choices the service made, so that the offline evaluator accounts for them."""

    def __init__(self, choices: np.ndarray) -> None:
        self.recorded = choices

    def choose(self, j: int, remaining: np.ndarray) -> int:
        return int(self.recorded[j])


@dataclass(frozen=True)
class StreamRun:
    """What the service did with one test stream."""

    result: ReplayResult  # the service's choices through the offline evaluator (reserve accounting)
    charged: np.ndarray  # dollars the workers charged per model (true costs of every completed answer)
    versions_used: int  # distinct weights versions the learned decisions carried
    delays: np.ndarray  # per query in arrival order: queries decided before its answer completed (``replay``'s in_flight)


def stream_config(base: ServiceConfig, directory: Path, seed: int, n_test: int, budgets: dict[str, float],
                  drift: bool) -> Path:
    """A configuration file for one run: the base one under a fresh topic prefix, the seed's split, the
    setting's budgets, N = the test stream's length."""
    data: dict[str, Any] = base.model_dump(mode="json")
    data["topics"]["prefix"] = f"parity{uuid.uuid4().hex[:8]}."
    data["history_rows"] = f"{'drift' if drift else 'split'}:{seed}:{n_test}"
    data["port"]["n_expected"] = n_test
    data["index_dir"] = str(REPO / ".cache" / "index" / f"parity-{'drift' if drift else 'split'}-{seed}-{n_test}")
    data["router"]["data_dir"] = str(directory / "faust")
    for model in data["models"]:
        model["budget"] = float(budgets[model["name"]])
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_events(ids: tuple[str, ...], prompts: tuple[str, ...], tasks: tuple[str, ...],
                vectors: np.ndarray) -> list[QueryEvent]:
    """The test stream as query events in arrival order: text, task label and the offline embedding."""
    return [QueryEvent(id=i, text=p, task=t or None, embedding=[float(x) for x in v])
            for i, p, t, v in zip(ids, prompts, tasks, vectors)]


def score_stream(tally: OutcomeTally, ids: tuple[str, ...], models: tuple[str, ...], stream: Stream,
                 reserve_factor: float) -> StreamRun:
    """The service's decisions as the offline evaluator accounts for and scores them (reserve accounting with the
    service's ``reserve_factor`` and the stream's measured in-flight: an answer whose true cost does not fit its
    reservation is lost, as the offline policy's are), and what the workers charged."""
    position = {query_id: j for j, query_id in enumerate(ids)}
    choices = np.full(len(ids), SKIP, dtype=np.int64)
    versions = set()
    for message in tally.routed_messages:
        choices[position[message["query"]["id"]]] = models.index(message["model"])
        if message["phase"] == "learned":
            versions.add(message["weights_version"])
    charged = np.zeros(len(models))
    for completion in tally.completions.values():
        charged[models.index(completion["model"])] += completion["cost"]
    delays = answer_delays(tally, ids)
    result = replay(RecordedChoices(choices), stream, np.random.default_rng(0), "reserve", in_flight=delays,
                    reserve_factor=reserve_factor)
    return StreamRun(result, charged, len(versions), delays)


def answer_delays(tally: OutcomeTally, ids: tuple[str, ...]) -> np.ndarray:
    """The stream's counterpart of ``replay``'s ``in_flight``, per query of ``ids`` (arrival order): for a routed
    query that completed, the queries decided (routed or unserved) after it and by the time its completion was
    written (the router applies it a little later still); for the others, interpolated from the nearest such
    queries in arrival order; at least 1 (32 when no routed query completed)."""
    routed: dict[str, float] = {}
    for message in tally.routed_messages:
        routed.setdefault(message["query"]["id"], message["routed_at"])
    decided = {**{m["query_id"]: m["decided_at"] for m in tally.unserved_messages}, **routed}
    times = np.sort(np.fromiter(decided.values(), dtype=np.float64))
    position = {query_id: j for j, query_id in enumerate(ids)}
    measured = sorted((position[q], np.searchsorted(times, tally.completions[q]["completed_at"], side="right")
                       - np.searchsorted(times, at, side="right")) for q, at in routed.items() if q in tally.completions)
    if not measured:
        return np.full(len(ids), 32, dtype=np.int64)
    at, lag = zip(*measured)
    return np.maximum(np.rint(np.interp(np.arange(len(ids)), at, lag)), 1).astype(np.int64)


def offline_jitter(params: PortParams, stream: Stream, seed: int, delays: np.ndarray,
                   reserve_factor: float) -> list[float]:
    """Offline ``port``'s performance under perturbations smaller than the stream's own timing jitter: every answer
    one query later, one query sooner (at least 1), and the re-solve one decision sooner or later (when it re-solves
    at all). Their range is how far offline ``port`` moves by itself, the noise a single run's ratio carries."""
    variants = [(params, delays + 1), (params, np.maximum(delays - 1, 1))]
    if params.resolve_every > 0:
        variants += [(params.model_copy(update={"resolve_every": every}), delays)
                     for every in (params.resolve_every - 1, params.resolve_every + 1) if every > 0]
    return [replay(create_policy("port", p), stream, np.random.default_rng(seed), "reserve", in_flight=d,
                   reserve_factor=reserve_factor).performance for p, d in variants]


def run_stream(config_path: Path, events: list[QueryEvent], timeout: float, log_dir: Path,
               rate: float = 0.0) -> OutcomeTally:
    """Start a router and one replay worker per model, send ``events`` once the router is ready and every worker
    has joined its consumer group (as in a deployment, where the fleet runs before the traffic comes), wait for
    every decision and completion; stop them all."""
    from streams.tools.bench_stream import send_queries

    config = load_config(config_path)
    create_topics(config)
    children: list[ServiceProcess] = []
    try:
        router = processes.router(config_path, log_dir / "router.log")
        children.append(router.start())
        router.wait_ready(timeout=timeout)
        workers = [processes.worker(config_path, model.name, log_dir / f"worker-{model.name.replace('/', '_')}.log")
                   for model in config.models]
        children.extend(worker.start() for worker in workers)
        groups = [worker_group(app_id(config), model.name) for model in config.models]
        processes.wait_for_groups(config.kafka.confluent(), groups, workers, timeout)
        send_queries(config, events, rate)
        tally = follow_outcomes(config, len(events), timeout)
        if tally.decided() < len(events) or len(tally.completions) < sum(tally.routed.values()):
            raise TimeoutError(f"after {timeout:.0f}s: {tally.decided()} of {len(events)} decided, "
                               f"{len(tally.completions)} of {sum(tally.routed.values())} routed completed "
                               f"(logs in {log_dir})")
        rejected = [d for d in tally.dead_letters if d["source_topic"] == config.topics.name(QUERIES)]
        if rejected:
            raise RuntimeError(f"{len(rejected)} test queries went to the dead-letter topic: {rejected[:3]}")
        return tally
    finally:
        processes.stop_all(children)


def parity_rows(args: argparse.Namespace, base: ServiceConfig) -> Iterator[dict[str, Any]]:
    """One row per (seed, split, factor): offline ``port`` (reserve accounting) and the stream."""
    from router_core.embedders import create_embedder
    from router_core.evaluation.experiment import prepare_seed
    from router_core.history import load_history

    data, _ = load_history(base.history)
    embedder = create_embedder(base.embedding)
    models = tuple(data.models)
    params = base.port.model_copy(update={"n_expected": args.n_test})
    for seed in args.seeds:
        prepared = next(prepare_seed(data, embedder, base.index, args.n_test, params.k, seed, (params.estimator,),
                                     drift=args.drift))
        test = prepared.test
        events = test_events(test.ids, test.prompts, test.tasks, prepared.test_vectors)
        for split in args.splits:
            for factor in args.budget_factors:
                budgets = prepared.budgets(split, factor)
                stream = prepared.stream(budgets)
                for repeat in range(args.repeats):
                    with tempfile.TemporaryDirectory(prefix="parity-") as tmp:
                        path = stream_config(base, Path(tmp), seed, args.n_test, dict(zip(models, budgets)),
                                             args.drift)
                        started = time.monotonic()
                        log_dir = REPO / ".cache" / "parity-logs" / f"{seed}-{split}-{factor}-{repeat}"
                        tally = run_stream(path, events, args.timeout, log_dir, args.rate)
                        run = score_stream(tally, test.ids, models, stream, base.budget.reserve_factor)
                        config = load_config(path)
                        published = topic_size(config.kafka.confluent(), config.topics.name(WEIGHTS))
                        handovers = topic_size(config.kafka.confluent(), config.topics.name(QUERIES)) - len(events)
                    offline, offline_32 = (replay(create_policy("port", params), stream, np.random.default_rng(seed),
                                                  "reserve", in_flight=delays,
                                                  reserve_factor=base.budget.reserve_factor)
                                           for delays in (run.delays, 32))
                    jitter = offline_jitter(params, stream, seed, run.delays, base.budget.reserve_factor)
                    yield {
                        "split": split, "budget_factor": factor, "seed": seed, "repeat": repeat, "n_test": args.n_test,
                        "drift": args.drift, "offline_performance": offline.performance,
                        "stream_performance": run.result.performance,
                        "ratio": run.result.performance / offline.performance if offline.performance else float("nan"),
                        "offline_spent": float(offline.spent.sum()), "stream_spent": float(run.result.spent.sum()),
                        "budget_total": float(budgets.sum()),
                        "over_budget_models": [m for m, s, b in zip(models, run.result.spent, budgets)
                                               if s > b * (1 + 1e-9)],
                        "service_charged": float(run.charged.sum()),
                        "service_performance": float(sum(tally.quality.values())),  # every completed answer, as served
                        "service_over_budget": {m: round(float(c - b), 6)
                                                for m, c, b in zip(models, run.charged, budgets)
                                                if c > b * (1 + 1e-9)},
                        "weights_versions": run.versions_used, "weights_published": published,
                        "handovers": handovers,  # queries the router sent back to the queries topic (docs/STREAMS.md)
                        "stream_served": int(run.result.throughput), "offline_served": int(offline.throughput),
                        "stream_routed": sum(tally.routed.values()), "stream_unserved": dict(tally.unserved_reasons),
                        "stream_seconds": round(time.monotonic() - started, 1), "rate": args.rate,
                        "stream_in_flight": int(np.median(run.delays)),
                        "offline_performance_32": offline_32.performance,
                        "stream_in_flight_p90": int(np.percentile(run.delays, 90)),
                        "offline_jitter_min": min(jitter), "offline_jitter_max": max(jitter),
                    }


def setting_means(rows: list[dict[str, Any]]) -> dict[tuple[str, float, int], dict[str, float]]:
    """Per (split, factor, seed): the mean offline and stream performance over its runs, their ratio (the bar
    applies to it), the lowest and highest single-run ratio, and the range of offline jitter over the runs."""
    groups: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["split"], row["budget_factor"], row["seed"]), []).append(row)
    means = {}
    for key, runs in groups.items():
        offline = float(np.mean([r["offline_performance"] for r in runs]))
        stream = float(np.mean([r["stream_performance"] for r in runs]))
        means[key] = {"offline": offline, "stream": stream, "ratio": stream / offline if offline else float("nan"),
                      "low": min(r["ratio"] for r in runs), "high": max(r["ratio"] for r in runs),
                      "jitter_low": min(r["offline_jitter_min"] for r in runs),
                      "jitter_high": max(r["offline_jitter_max"] for r in runs)}
    return means


def run_parity(args: argparse.Namespace) -> int:
    """Run the grid, print the table, write the JSON rows (one per run); exit 1 when a setting's mean ratio misses the
    bar or a run overspent."""
    base = load_config(args.config)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    processes.exit_on_sigterm()
    rows = []
    print(f"{'split':9s} {'factor':>6s} {'seed':>4s} {'offline':>9s} {'stream':>9s} {'ratio':>6s} "
          f"{'spent':>8s} {'budget':>8s} {'versions':>8s} {'in-flight':>9s} {'offline@32':>10s} {'handovers':>9s}")
    for row in parity_rows(args, base):
        rows.append(row)
        print(f"{row['split']:9s} {row['budget_factor']:6g} {row['seed']:4d} {row['offline_performance']:9.1f} "
              f"{row['stream_performance']:9.1f} {row['ratio']:6.3f} {row['stream_spent']:8.4f} "
              f"{row['budget_total']:8.4f} {row['weights_versions']:8d} {row['stream_in_flight']:9d} "
              f"{row['offline_performance_32']:10.1f} {row['handovers']:9d}"
              + (f"  OVER BUDGET: {row['over_budget_models']}" if row["over_budget_models"] else "")
              + (f"  (service charged over: {row['service_over_budget']})" if row["service_over_budget"] else ""),
              flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    settings = setting_means(rows)
    if args.repeats > 1:
        print(f"mean of {args.repeats} runs per setting (stream / offline at each run's delays; offline jitter: the "
              "range of offline port moved by one query or one re-solve):")
        for key, mean in settings.items():
            print(f"{key[0]:9s} {key[1]:6g} {key[2]:4d} {mean['offline']:9.1f} {mean['stream']:9.1f} "
                  f"{mean['ratio']:6.3f}   runs {mean['low']:.3f}..{mean['high']:.3f}   "
                  f"offline jitter {mean['jitter_low']:.0f}..{mean['jitter_high']:.0f}")
    worst = min(mean["ratio"] for mean in settings.values())
    over = [r for r in rows if r["over_budget_models"]]
    print(f"{len(settings)} settings, {len(rows)} runs: worst ratio {worst:.3f} (bar {args.min_ratio}"
          f"{', on the mean of each setting' if args.repeats > 1 else ''}); over budget in {len(over)} runs")
    return 0 if worst >= args.min_ratio and not over else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--budget-factors", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--splits", nargs="+", default=["weighted"])
    parser.add_argument("--repeats", type=int, default=1, help="runs of the stream per setting; the bar applies to the "
                        "ratio of their mean performances (a single run's ratio carries the noise of offline jitter)")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--drift", action="store_true", help="the drift split: the task mix changes mid-stream")
    parser.add_argument("--rate", type=float, default=50.0, help="queries per second sent (0: one burst, as fast "
                        "as possible); at the default the replay workers keep about as many answers in flight as "
                        "the offline reserve accounting models (32)")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--timeout", type=float, default=900.0, help="limit for each wait (seconds)")
    parser.add_argument("--min-ratio", type=float, default=0.97, help="exit 1 when a stream/offline ratio is below")
