"""The offline subcommands of ``port-router``: ``bench``, ``overhead`` and ``index build``.

The embedder's commands (``embedder distill``, ``bench-embed``) are in ``router_core.embedders.cli``.

``streams.cli`` owns the top-level parser and calls :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from router_core.argtypes import floats, ints, names
from router_core.datasets import default_data_paths
from router_core.embedders import cli as embedders_cli
from router_core.embedders.cli import add_embedding_arguments, embedding_params
from router_core.params import BudgetParams, EmbeddingParams, IndexParams, PortParams

log = logging.getLogger(__name__)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", type=Path, default=None,
                        help="history files or directories (default: $PORT_ROUTER_DATA, else the example subset)")
    add_embedding_arguments(parser)
    parser.add_argument("--embedding-backend", choices=("minilm", "static"), default=EmbeddingParams().backend)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` and ``index`` to the ``port-router`` parser."""
    defaults = PortParams()
    bench = subparsers.add_parser("bench", help="offline evaluation of PORT and the baselines on routing data")
    _add_common(bench)
    bench.add_argument("--embedding-backends", type=embedders_cli.backend_names, default=None,
                       help="comma-separated backends to compare on the same grid (overrides --embedding-backend)")
    bench.add_argument("--k", type=int, default=defaults.k, help="neighbours per estimate of knn-mean")
    bench.add_argument("--estimators", type=names, default=(defaults.estimator,),
                       help=f"comma-separated estimators to compare, each tuned per seed (default: {defaults.estimator}; "
                            "known: knn-mean, kernel-shrink, kernel-shrink-task)")
    bench.add_argument("--n-test", type=int, default=1000)
    bench.add_argument("--seeds", type=ints, default=(42, 43))
    bench.add_argument("--budget-factors", type=floats, default=(0.5, 1.0, 2.0))
    bench.add_argument("--splits", type=names, default=("weighted", "uniform"),
                       help="weighted, cost, perf, uniform, extreme[:k], random")
    bench.add_argument("--drift", action="store_true", help="the drift split: the test stream's task mix changes "
                       "mid-stream (router_core.evaluation.drift)")
    bench.add_argument("--periods", type=int, default=1, help="cut the test stream into this many budget periods, "
                       "each with 1/periods of the budgets (PORT restarts its controller at each boundary)")
    bench.add_argument("--methods", type=names, default=None, help="comma-separated policy names (default: all)")
    bench.add_argument("--eps", type=float, default=defaults.eps)
    bench.add_argument("--alpha", type=float, default=defaults.alpha)
    bench.add_argument("--accounting", choices=("oracle", "reserve"), default="oracle")
    bench.add_argument("--reserve-factor", type=float, default=BudgetParams().reserve_factor,
                       help="reserve accounting: hold this x the estimated cost; workers never spend more (1: the "
                            "estimate alone)")
    bench.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                       help="override a PORT switch of the 'port' policy, e.g. --set resolve_every=0")
    bench.add_argument("--json", type=Path, default=None, help="write every result row to this JSON file")
    bench.add_argument("--plot", type=Path, default=None, help="write a PNG of performance and throughput")
    bench.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown")
    bench.set_defaults(handler=run_bench)

    overhead = subparsers.add_parser("overhead", help="routing overhead per query vs the HNSW search alone")
    _add_common(overhead)
    overhead.add_argument("--k", type=int, default=defaults.k, help="neighbours per estimate of knn-mean")
    overhead.add_argument("--estimator", default=defaults.estimator, help="the estimator on the timed paths")
    overhead.add_argument("--n-test", type=int, default=1000)
    overhead.add_argument("--batch-size", type=int, default=256)
    overhead.add_argument("--repeats", type=int, default=15)
    overhead.add_argument("--embed-sample", type=int, default=256, help="queries embedded to time the model")
    overhead.set_defaults(handler=run_overhead)

    embedders_cli.register(subparsers)
    resolve = subparsers.add_parser("bench-resolve", help="PORT's re-solve time at 1,000 to 100,000 decisions seen")
    _add_common(resolve)
    resolve.add_argument("--checkpoints", type=ints, default=(1000, 10_000, 100_000))
    resolve.add_argument("--all-up-to", type=int, default=10_000,
                         help="also time the unbounded sample 'all' at the checkpoints up to this many decisions")
    resolve.add_argument("--repeats", type=int, default=5)
    resolve.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                         help="override a PORT parameter, e.g. --set resolve_window=2000")
    resolve.set_defaults(handler=run_resolve_time, eps=defaults.eps, alpha=defaults.alpha, k=defaults.k)

    index = subparsers.add_parser("index", help="the HNSW index over the history")
    index_commands = index.add_subparsers(dest="index_command", required=True)
    build = index_commands.add_parser("build", help="embed the history and build and save its index")
    _add_common(build)
    build.add_argument("--out", type=Path, required=True, help="directory for index.bin and manifest.json")
    build.add_argument("--m", type=int, default=IndexParams().m)
    build.add_argument("--ef-construction", type=int, default=IndexParams().ef_construction)
    build.add_argument("--estimator", default=defaults.estimator, help="the estimator to tune and record in the manifest")
    build.add_argument("--k", type=int, default=defaults.k, help="neighbours per estimate of knn-mean")
    build.set_defaults(handler=run_index_build)


def _port_params(args: argparse.Namespace) -> PortParams:
    values: dict[str, object] = {"eps": args.eps, "alpha": args.alpha, "k": args.k}
    for item in args.overrides:
        name, _, value = item.partition("=")
        values[name] = value
    return PortParams.model_validate(values)


def run_bench(args: argparse.Namespace) -> int:
    """``port-router bench``: replay the grid, print tables, write JSON and plot if asked."""
    from router_core.embedders import create_embedder
    from router_core.evaluation.experiment import BenchSettings, prepare_seed, run_seed
    from router_core.evaluation.report import markdown_tables, render_tables, write_json, write_plot
    from router_core.history import load_history
    from router_core.estimators import ESTIMATORS
    from router_core.policies import REGISTRY

    console = Console()
    params = _port_params(args)
    methods = args.methods or BenchSettings().methods
    for kind, asked, known in (("method", methods, REGISTRY), ("estimator", args.estimators, ESTIMATORS)):
        unknown = [m for m in asked if m not in known]
        if unknown:
            console.print(f"[red]unknown {kind}(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            return 2
    settings = BenchSettings(n_test=args.n_test, seeds=args.seeds, budget_factors=args.budget_factors,
                             splits=args.splits, methods=methods, accounting=args.accounting,
                             reserve_factor=args.reserve_factor,
                             estimators=args.estimators, drift=args.drift, periods=args.periods)
    data, report = load_history(args.data or default_data_paths())
    console.print(f"data: {report.summary()}; {len(data.models)} models")
    backends = args.embedding_backends or (args.embedding_backend,)
    rows: list[dict] = []
    runs = (len(backends) * len(settings.seeds) * len(settings.estimators) * len(settings.splits)
            * len(settings.budget_factors) * len(methods))
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=runs)
        for backend in backends:
            embedder = create_embedder(embedding_params(args, backend))
            for seed in settings.seeds:
                progress.update(task, description=f"{backend}, seed {seed}: embedding and indexing")
                for prepared in prepare_seed(data, embedder, IndexParams(), settings.n_test, params.k, seed,
                                             settings.estimators, settings.drift):
                    for row in run_seed(prepared, settings, params):
                        rows.append({**row, "embedder": backend})
                        progress.update(task, advance=1, description=f"{backend}, seed {seed}: {row['split']} "
                                        f"x{row['budget_factor']} {row['method']} ({row['estimator']})")
    console.print(f"{runs} runs in {time.perf_counter() - started:.1f}s ({settings.accounting} accounting, "
                  f"port switches: {params.model_dump(exclude={'eps', 'alpha', 'k', 'n_expected'})})")
    render_tables(rows, console)
    if args.json:
        write_json(rows, args.json)
        console.print(f"rows written to {args.json}")
    if args.markdown:
        args.markdown.write_text(markdown_tables(rows))
        console.print(f"tables written to {args.markdown}")
    if args.plot:
        write_plot(rows, args.plot)
        console.print(f"plot written to {args.plot}")
    return 0


def run_overhead(args: argparse.Namespace) -> int:
    """``port-router overhead``: per-query cost of PORT's hot path against the HNSW search alone."""
    import numpy as np

    from router_core.assembly import assemble
    from router_core.embedders import create_embedder
    from router_core.evaluation.experiment import split_rows
    from router_core.evaluation.overhead import measure_overhead
    from router_core.estimator import QueryFeatures
    from router_core.evaluation.splits import split_budget
    from router_core.history import load_history

    console = Console()
    data, _ = load_history(args.data or default_data_paths())
    test_rows, history_rows = split_rows(len(data), args.n_test, seed=42)
    embedder = create_embedder(embedding_params(args, args.embedding_backend))
    assembly = assemble(data, (history_rows, test_rows), embedder, IndexParams())
    history, test, index = assembly.history, assembly.held_out, assembly.index
    assert test is not None  # split above
    estimator = assembly.estimator(args.estimator, args.k)
    texts = assembly.prefixes.strip_all(test.prompts)
    vectors = assembly.held_out_vectors()
    sample = texts[: args.embed_sample]
    started = time.perf_counter()
    embedder.embed(sample)
    embed_qps = len(sample) / (time.perf_counter() - started)
    budgets = split_budget("weighted", float(test.cost.sum(axis=0).min()), history.quality.mean(axis=0),
                           history.cost.mean(axis=0), np.random.default_rng(42))
    params = PortParams(k=args.k, n_expected=args.n_test)
    result = measure_overhead(estimator, index, vectors, QueryFeatures.of(test.prompts), budgets, params,
                              float(history.cost.mean()), args.batch_size, args.repeats)
    console.print(f"{result.n_queries} queries, batches of {result.batch_size}, estimator {args.estimator} "
                  f"{estimator.settings}, median of {args.repeats} passes")
    for path, micros in result.per_query_us.items():
        console.print(f"  {path:<11} {micros:7.2f} us/query   {result.ratio(path):5.2f} x search")
    console.print(f"  dual re-solve on {result.n_queries} queries (LP, off the per-query path): "
                  f"{result.resolve_ms:.1f} ms")
    console.print(f"  embedding ({embedder.identity}, batch {embedder.params.batch_size}): "
                  f"{embed_qps:.1f} queries/s over {len(sample)} queries")
    return 0


def run_resolve_time(args: argparse.Namespace) -> int:
    """``port-router bench-resolve``: re-solve time against decisions seen, on the seed-42 test stream's estimates."""
    from router_core.embedders import create_embedder
    from router_core.evaluation.experiment import prepare_seed
    from router_core.evaluation.resolve_time import resolve_times
    from router_core.history import load_history

    console = Console(width=160)
    params = _port_params(args)
    data, _ = load_history(args.data or default_data_paths())
    prepared = next(prepare_seed(data, create_embedder(embedding_params(args, args.embedding_backend)), IndexParams(), 1000,
                                 params.k, 42, (params.estimator,)))
    budgets = prepared.budgets("weighted", 1.0) * max(args.checkpoints) / 1000  # the same budget per query
    rows = resolve_times(prepared.estimates, budgets, params, prepared.cost_scale, args.checkpoints, args.repeats)
    unbounded = tuple(c for c in args.checkpoints if c <= args.all_up_to)
    if unbounded and params.resolve_sample != "all":
        rows += resolve_times(prepared.estimates, budgets, params.model_copy(update={"resolve_sample": "all"}),
                              prepared.cost_scale, unbounded, args.repeats)
    first = {r.sample: r.median_ms for r in rows if r.seen == min(args.checkpoints)}
    for r in rows:
        console.print(f"{r.sample:9s} {r.seen:7d} decisions seen, sample {r.sample_size:6d}: {r.median_ms:9.1f} ms "
                      f"median of {args.repeats}  ({r.median_ms / first[r.sample]:5.2f} x at {min(args.checkpoints)})")
    return 0


def run_index_build(args: argparse.Namespace) -> int:
    """``port-router index build``: embed the history and save its index with a manifest."""
    from router_core.embedders import create_embedder
    from router_core.engine import build_index
    from router_core.history import load_history

    data, _ = load_history(args.data or default_data_paths())  # load_history logs its summary
    embedder = create_embedder(embedding_params(args, args.embedding_backend))
    index = build_index(data, embedder, IndexParams(m=args.m, ef_construction=args.ef_construction),
                        PortParams(estimator=args.estimator, k=args.k), show_progress=True)
    index.save(args.out)
    Console().print(f"index of {index.manifest.count} queries ({index.manifest.embedder}, {index.manifest.dimension} dims, "
                    f"{len(index.manifest.shared_prefixes)} shared templates stripped, estimator "
                    f"{index.manifest.estimator} {index.manifest.estimator_settings}) saved to {args.out}")
    return 0
