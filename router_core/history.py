"""Loading routing history in the RouterBench schema.

A history table has one row per past query: a ``prompt``, one quality column per model
(named exactly as the model) and one ``<model>|total_cost`` column per model. Optional
columns: ``sample_id`` (a stable query id), ``eval_name`` (the task) and
``<model>|model_response`` (what the model answered, used by the replay worker).

Supported files: ``.csv``, ``.csv.gz``, ``.parquet``, ``.jsonl`` (``.jsonl.gz``) and
the full RouterBench pickle (``.pkl``; pandas pickles run code when loaded, so only load
pickles you trust). A directory stands for every supported file inside it.
"""

from __future__ import annotations

import ast
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from router_core.errors import HistoryFormatError

log = logging.getLogger(__name__)

COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz", ".pkl")


@dataclass(frozen=True)
class History:
    """Past queries with the true quality and cost of every model on each of them."""

    ids: tuple[str, ...]
    prompts: tuple[str, ...]
    tasks: tuple[str, ...]
    models: tuple[str, ...]
    quality: np.ndarray  # (n, M) float64
    cost: np.ndarray  # (n, M) float64, dollars
    responses: tuple[tuple[str, ...], ...] | None = None  # (n, M) or absent

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: Sequence[int] | np.ndarray) -> "History":
        """Return the history restricted to ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        pick = rows.tolist()
        return History(
            ids=tuple(self.ids[i] for i in pick),
            prompts=tuple(self.prompts[i] for i in pick),
            tasks=tuple(self.tasks[i] for i in pick),
            models=self.models,
            quality=self.quality[rows],
            cost=self.cost[rows],
            responses=None if self.responses is None else tuple(self.responses[i] for i in pick),
        )

    def content_hash(self) -> str:
        """A short hash of ids, prompts, models, quality and cost (index manifests use it)."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(self.models).encode())
        for query_id, prompt in zip(self.ids, self.prompts):
            digest.update(query_id.encode())
            digest.update(b"\x1e")
            digest.update(prompt.encode())
        digest.update(np.ascontiguousarray(self.quality).tobytes())
        digest.update(np.ascontiguousarray(self.cost).tobytes())
        return digest.hexdigest()[:16]


@dataclass
class LoadReport:
    """What a load read and what it dropped, with the reason for each dropped row."""

    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    dropped: Counter = field(default_factory=Counter)

    @property
    def rows_kept(self) -> int:
        return self.rows_read - sum(self.dropped.values())

    def summary(self) -> str:
        """One line for logs and CLIs."""
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        return (
            f"read {self.rows_read} rows from {len(self.files)} file(s), kept {self.rows_kept}; "
            f"dropped: {reasons}"
        )


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories into their supported files (sorted); keep files as given."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith(SUPPORTED_SUFFIXES))
            if not found:
                raise HistoryFormatError(f"{path}: no history files ({', '.join(SUPPORTED_SUFFIXES)})")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise HistoryFormatError(f"{path}: no such file or directory")
    return out


def read_table(path: Path) -> pd.DataFrame:
    """Read one history file into a DataFrame, choosing the reader by file name."""
    name = path.name
    try:
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path)
        if name.endswith(".parquet"):
            return pd.read_parquet(path)
        if name.endswith((".jsonl", ".jsonl.gz")):
            return pd.read_json(path, lines=True)
        if name.endswith(".pkl"):
            frame = pd.read_pickle(path)  # trusted input only: pickles execute code
            if not isinstance(frame, pd.DataFrame):
                raise HistoryFormatError(f"{path}: the pickle holds {type(frame).__name__}, not a DataFrame")
            return frame
    except HistoryFormatError:
        raise
    except Exception as exc:  # the readers raise many types; name the file in one
        raise HistoryFormatError(f"{path}: cannot read ({exc})") from exc
    raise HistoryFormatError(f"{path}: unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})")


def detect_models(frame: pd.DataFrame, source: str) -> tuple[str, ...]:
    """Models are named by their ``<model>|total_cost`` columns; each needs a quality column."""
    models = tuple(str(c)[: -len(COST_SUFFIX)] for c in frame.columns if str(c).endswith(COST_SUFFIX))
    if not models:
        raise HistoryFormatError(f"{source}: no '<model>{COST_SUFFIX}' column, so no models")
    for model in models:
        if model not in frame.columns:
            raise HistoryFormatError(f"{source}: column '{model}' (quality of model {model}) is missing")
    if "prompt" not in frame.columns:
        raise HistoryFormatError(f"{source}: column 'prompt' is missing")
    return models


def parse_prompt(value: object) -> str | None:
    """Turn a prompt cell into text; a Python list literal of strings is joined by newlines."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        parts = [str(p) for p in value]
        text = "\n".join(parts)
    else:
        text = str(value)
        stripped = text.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                parsed = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, (list, tuple)):
                text = "\n".join(str(p) for p in parsed)
    return text if text.strip() else None


def _numeric_column(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna()
    if bad.all() and len(frame) > 0:
        raise HistoryFormatError(f"{source}: column '{column}' is not numeric")
    return values.to_numpy(dtype=np.float64)


def _frame_to_history(frame: pd.DataFrame, models: tuple[str, ...], source: str, report: LoadReport,
                      seen_ids: set[str]) -> History:
    n = len(frame)
    quality = np.column_stack([_numeric_column(frame, m, source) for m in models]) if n else np.zeros((0, len(models)))
    cost = (np.column_stack([_numeric_column(frame, m + COST_SUFFIX, source) for m in models])
            if n else np.zeros((0, len(models))))
    if "sample_id" in frame.columns:
        ids = [str(v) for v in frame["sample_id"].tolist()]
    else:
        ids = [f"{Path(source).name}:{i}" for i in range(n)]
    tasks = [str(v) for v in frame["eval_name"].tolist()] if "eval_name" in frame.columns else [""] * n
    has_responses = all(m + RESPONSE_SUFFIX in frame.columns for m in models)
    response_columns = [frame[m + RESPONSE_SUFFIX].tolist() for m in models] if has_responses else None

    keep: list[int] = []
    prompts: list[str] = []
    for i, raw_prompt in enumerate(frame["prompt"].tolist()):
        prompt = parse_prompt(raw_prompt)
        if prompt is None:
            report.dropped["empty prompt"] += 1
            continue
        if not np.all(np.isfinite(quality[i])):
            report.dropped["missing or non-numeric quality"] += 1
            continue
        if not np.all(np.isfinite(cost[i])) or np.any(cost[i] < 0):
            report.dropped["missing, negative or non-numeric cost"] += 1
            continue
        if ids[i] in seen_ids:
            report.dropped["duplicate sample_id"] += 1
            continue
        seen_ids.add(ids[i])
        keep.append(i)
        prompts.append(prompt)

    responses = None
    if response_columns is not None:
        responses = tuple(tuple(str(col[i]) for col in response_columns) for i in keep)
    return History(
        ids=tuple(ids[i] for i in keep),
        prompts=tuple(prompts),
        tasks=tuple(tasks[i] for i in keep),
        models=models,
        quality=quality[keep],
        cost=cost[keep],
        responses=responses,
    )


def concat_histories(parts: Sequence[History]) -> History:
    """Concatenate histories over the same models (responses kept only if all have them)."""
    if not parts:
        raise HistoryFormatError("no history to concatenate")
    models = parts[0].models
    for part in parts[1:]:
        if part.models != models:
            raise HistoryFormatError(f"files disagree on the models: {list(models)} vs {list(part.models)}")
    keep_responses = all(p.responses is not None for p in parts)
    return History(
        ids=tuple(x for p in parts for x in p.ids),
        prompts=tuple(x for p in parts for x in p.prompts),
        tasks=tuple(x for p in parts for x in p.tasks),
        models=models,
        quality=np.concatenate([p.quality for p in parts]),
        cost=np.concatenate([p.cost for p in parts]),
        responses=tuple(x for p in parts for x in p.responses) if keep_responses else None,  # type: ignore[union-attr]
    )


def load_history(paths: Iterable[str | Path]) -> tuple[History, LoadReport]:
    """Load and clean RouterBench-schema files into one history.

    Rows with an empty prompt, a missing quality or cost, or a repeated ``sample_id``
    are dropped and counted in the report (a row whose score is missing is dropped
    before its id is claimed, so a later good copy of the same id is kept).
    """
    report = LoadReport()
    seen_ids: set[str] = set()
    parts: list[History] = []
    models: tuple[str, ...] | None = None
    for path in expand_paths(paths):
        frame = read_table(path)
        source = str(path)
        file_models = detect_models(frame, source)
        if models is None:
            models = file_models
        elif set(file_models) != set(models):
            raise HistoryFormatError(f"{source}: models {sorted(file_models)} differ from earlier files' {sorted(models)}")
        report.files.append(source)
        report.rows_read += len(frame)
        parts.append(_frame_to_history(frame, models, source, report, seen_ids))
    history = concat_histories(parts)
    log.info("history: %s", report.summary())
    return history, report
