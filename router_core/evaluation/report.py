"""Summaries of bench rows: mean +- std tables, the JSON file and the plot."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

METRICS = ("performance", "cost", "ppc", "throughput")
ESTIMATE_METRICS = ("brier", "log_loss", "cost_mape")


COMPARED = ("estimator", "embedder")


def varying_keys(rows: Sequence[dict]) -> list[str]:
    """Which of the compared settings (estimator, embedder) take more than one value in ``rows``."""
    return [key for key in COMPARED if len({r.get(key) for r in rows}) > 1]


def variant(row: dict, varying: Sequence[str]) -> str:
    """The row's values of the ``varying`` settings, comma-separated."""
    return ", ".join(str(row.get(key)) for key in varying)


def method_label(row: dict, varying: Sequence[str]) -> str:
    """The method's name, with its estimator and/or embedder in parentheses when a run compares them."""
    return f"{row['method']} ({variant(row, varying)})" if varying else row["method"]


def group_rows(rows: Sequence[dict]) -> dict[tuple[str, float], dict[str, list[dict]]]:
    """Rows grouped by (split, budget factor), then by method (and estimator, embedder), in first-seen order."""
    varying = varying_keys(rows)
    groups: dict[tuple[str, float], dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[(row["split"], row["budget_factor"])][method_label(row, varying)].append(row)
    return groups


def estimate_quality(rows: Sequence[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """Per estimator (and embedder when a run compares them), mean and std over seeds of the test
    stream's Brier score, log-loss and cost MAPE."""
    varying = varying_keys(rows) or ["estimator"]
    per_seed: dict[str, dict[int, dict]] = defaultdict(dict)
    for row in rows:
        if "brier" in row:
            per_seed[variant(row, varying)][row["seed"]] = row
    return {name: {metric: mean_std(list(seeds.values()), metric) for metric in ESTIMATE_METRICS}
            for name, seeds in per_seed.items()}


def estimate_quality_markdown(rows: Sequence[dict]) -> str:
    """The estimate-quality table in Markdown."""
    out = ["**estimate quality on the test streams** (mean ± std over seeds; lower is better)\n",
           "| estimator | Brier | log-loss | cost MAPE (%) |", "|---|---|---|---|"]
    for name, scores in estimate_quality(rows).items():
        out.append(f"| {name} | " + " | ".join(f"{m:.4f} ± {s:.4f}" for m, s in scores.values()) + " |")
    return "\n".join(out) + "\n"


def mean_std(rows: Sequence[dict], key: str) -> tuple[float, float]:
    """Mean and (population) standard deviation of ``key`` over ``rows``."""
    values = np.array([r[key] for r in rows], dtype=np.float64)
    return float(values.mean()), float(values.std())


def render_tables(rows: Sequence[dict], console: Console) -> None:
    """One table per (split, budget factor): every method's metrics, mean +- std over seeds."""
    for (split, factor), by_method in group_rows(rows).items():
        seeds = sorted({r["seed"] for r in rows})
        table = Table(title=f"split={split}  budget factor={factor}  seeds={','.join(map(str, seeds))}")
        table.add_column("method")
        for metric in METRICS:
            table.add_column(metric, justify="right")
        for method, method_rows in by_method.items():
            cells = []
            for metric in METRICS:
                mean, std = mean_std(method_rows, metric)
                cells.append(f"{mean:.3g} ± {std:.2g}" if metric in ("cost", "ppc") else f"{mean:.1f} ± {std:.1f}")
            if "lp_bound" in method_rows[0]:
                cells[0] += f" (LP {mean_std(method_rows, 'lp_bound')[0]:.1f})"
            table.add_row(method, *cells)
        console.print(table)
    quality = Table(title="estimate quality on the test streams (mean ± std over seeds; lower is better)")
    for column in ("estimator", "Brier", "log-loss", "cost MAPE (%)"):
        quality.add_column(column, justify="left" if column == "estimator" else "right")
    for name, scores in estimate_quality(rows).items():
        quality.add_row(name, *(f"{m:.4f} ± {s:.4f}" for m, s in scores.values()))
    console.print(quality)


def markdown_tables(rows: Sequence[dict]) -> str:
    """The same tables as ``render_tables``, in Markdown (for docs)."""
    out: list[str] = []
    for (split, factor), by_method in group_rows(rows).items():
        out.append(f"**{split}, budget factor {factor}** (mean ± std over {len(next(iter(by_method.values())))} seeds)\n")
        out.append("| method | performance | cost ($) | PPC | throughput |")
        out.append("|---|---|---|---|---|")
        for method, method_rows in by_method.items():
            perf, perf_sd = mean_std(method_rows, "performance")
            cost, cost_sd = mean_std(method_rows, "cost")
            ppc, ppc_sd = mean_std(method_rows, "ppc")
            thr, thr_sd = mean_std(method_rows, "throughput")
            bound = f" (LP bound {mean_std(method_rows, 'lp_bound')[0]:.1f})" if "lp_bound" in method_rows[0] else ""
            out.append(f"| {method} | {perf:.1f} ± {perf_sd:.1f}{bound} | {cost:.4f} ± {cost_sd:.4f} | "
                       f"{ppc:.0f} ± {ppc_sd:.0f} | {thr:.1f} ± {thr_sd:.1f} |")
        out.append("")
    out.append(estimate_quality_markdown(rows))
    return "\n".join(out)


def write_json(rows: Sequence[dict], path: Path) -> None:
    """All rows as a JSON list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(rows), indent=1))


def write_plot(rows: Sequence[dict], path: Path) -> None:
    """PNG: performance and throughput per method against the budget factor, one column per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = list(dict.fromkeys(r["split"] for r in rows))
    fig, axes = plt.subplots(2, len(splits), figsize=(6 * len(splits), 8), squeeze=False)
    for col, split in enumerate(splits):
        split_rows = [r for r in rows if r["split"] == split]
        for method in dict.fromkeys(r["method"] for r in split_rows):
            factors = sorted({r["budget_factor"] for r in split_rows if r["method"] == method})
            for row_index, metric in enumerate(("performance", "throughput")):
                means = [mean_std([r for r in split_rows if r["method"] == method and r["budget_factor"] == f],
                                  metric)[0] for f in factors]
                axes[row_index][col].plot(factors, means, marker="o", label=method)
                axes[row_index][col].set_title(f"{metric} ({split})")
                axes[row_index][col].set_xlabel("budget factor")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
