"""The offline subcommands of ``port-router``: ``bench`` and ``index build``.

``streams.cli`` owns the top-level parser and calls :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from router_core.datasets import default_data_paths
from router_core.params import BudgetParams, EmbeddingParams, IndexParams, PortParams

log = logging.getLogger(__name__)


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", nargs="+", type=Path, default=None,
                        help="history files or directories (default: $PORT_ROUTER_DATA, else the example subset)")
    parser.add_argument("--embedding-model", default=EmbeddingParams().model)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` and ``index`` to the ``port-router`` parser."""
    defaults = PortParams()
    bench = subparsers.add_parser("bench", help="offline evaluation of PORT and the baselines on routing data")
    _add_common(bench)
    bench.add_argument("--k", type=int, default=defaults.k, help="neighbours per estimate of knn-mean")
    bench.add_argument("--estimators", type=_names, default=(defaults.estimator,),
                       help=f"comma-separated estimators to compare, each tuned per seed (default: {defaults.estimator}; "
                            "known: knn-mean, kernel-shrink, kernel-shrink-task)")
    bench.add_argument("--n-test", type=int, default=1000)
    bench.add_argument("--seeds", type=_ints, default=(42, 43))
    bench.add_argument("--budget-factors", type=_floats, default=(0.5, 1.0, 2.0))
    bench.add_argument("--splits", type=_names, default=("weighted", "uniform"),
                       help="weighted, cost, perf, uniform, extreme[:k], random")
    bench.add_argument("--methods", type=_names, default=None, help="comma-separated policy names (default: all)")
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
    from router_core.embedding import Embedder
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
                             estimators=args.estimators)
    data, report = load_history(args.data or default_data_paths())
    console.print(f"data: {report.summary()}; {len(data.models)} models")
    embedder = Embedder(EmbeddingParams(model=args.embedding_model))
    rows: list[dict] = []
    runs = (len(settings.seeds) * len(settings.estimators) * len(settings.splits) * len(settings.budget_factors)
            * len(methods))
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying", total=runs)
        for seed in settings.seeds:
            progress.update(task, description=f"seed {seed}: embedding and indexing")
            for prepared in prepare_seed(data, embedder, IndexParams(), settings.n_test, params.k, seed,
                                         settings.estimators):
                for row in run_seed(prepared, settings, params):
                    rows.append(row)
                    progress.update(task, advance=1, description=f"seed {seed}: {row['split']} x{row['budget_factor']} "
                                                                 f"{row['method']} ({row['estimator']})")
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

    from router_core.embedding import Embedder
    from router_core.engine import fit_estimator, index_history
    from router_core.evaluation.experiment import split_rows
    from router_core.evaluation.overhead import measure_overhead
    from router_core.estimator import QueryFeatures
    from router_core.evaluation.splits import split_budget
    from router_core.history import load_history
    from router_core.prompts import SharedPrefixes

    console = Console()
    data, _ = load_history(args.data or default_data_paths())
    test_rows, history_rows = split_rows(len(data), args.n_test, seed=42)
    history, test = data.subset(history_rows), data.subset(test_rows)
    embedder = Embedder(EmbeddingParams(model=args.embedding_model))
    index = index_history(history, embedder, IndexParams())
    estimator = fit_estimator(index, history, args.estimator, args.k)
    texts = SharedPrefixes(index.manifest.shared_prefixes).strip_all(test.prompts)
    vectors = embedder.embed_cached(texts)
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
    console.print(f"  embedding ({embedder.params.model}, batch {embedder.params.batch_size}): "
                  f"{embed_qps:.1f} queries/s over {len(sample)} queries")
    return 0


def run_index_build(args: argparse.Namespace) -> int:
    """``port-router index build``: embed the history and save its index with a manifest."""
    from router_core.embedding import Embedder
    from router_core.engine import build_index
    from router_core.history import load_history

    data, report = load_history(args.data or default_data_paths())
    log.info("data: %s", report.summary())
    embedder = Embedder(EmbeddingParams(model=args.embedding_model))
    index = build_index(data, embedder, IndexParams(m=args.m, ef_construction=args.ef_construction),
                        PortParams(estimator=args.estimator, k=args.k), show_progress=True)
    index.save(args.out)
    Console().print(f"index of {index.manifest.count} queries ({index.manifest.dimension} dims, "
                    f"{len(index.manifest.shared_prefixes)} shared templates stripped, estimator "
                    f"{index.manifest.estimator} {index.manifest.estimator_settings}) saved to {args.out}")
    return 0
