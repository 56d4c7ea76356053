"""History loading: every supported format, cleaning, and errors that name file and column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from router_core.errors import HistoryFormatError
from router_core.history import load_history, parse_prompt
from tests.unit.routing_fixtures import MODELS, routerbench_frame


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".jsonl", ".pkl"])
def test_every_format_loads_the_same_history(tmp_path, suffix):
    frame = routerbench_frame()
    path = tmp_path / f"history{suffix}"
    if suffix.startswith(".csv"):
        frame.to_csv(path)
    elif suffix == ".parquet":
        frame.to_parquet(path)
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_pickle(path)
    history, report = load_history([path])
    assert history.models == MODELS
    assert history.prompts[2] == "Question number 2?"
    np.testing.assert_allclose(history.quality, frame[list(MODELS)].to_numpy())
    np.testing.assert_allclose(history.cost[:, 1], frame["medium|total_cost"].to_numpy(), rtol=1e-6)
    assert history.responses[0][2] == "answer 0 from large"
    assert report.rows_kept == 6 and not report.dropped


def test_unusable_rows_are_dropped_and_reported(tmp_path):
    frame = routerbench_frame(8)
    frame.loc[1, "medium"] = np.nan  # missing score
    frame.loc[2, "prompt"] = "  "  # empty prompt
    frame.loc[3, "large|total_cost"] = -1.0  # negative cost
    frame.loc[5, "sample_id"] = "task.4"  # duplicate id
    frame.to_csv(tmp_path / "h.csv")
    history, report = load_history([tmp_path])
    assert len(history) == 4
    assert report.dropped == {"missing or non-numeric quality": 1, "empty prompt": 1,
                              "missing, negative or non-numeric cost": 1, "duplicate sample_id": 1}
    assert "dropped" in report.summary()


def test_missing_quality_column_names_file_and_column(tmp_path):
    frame = routerbench_frame().drop(columns=["medium"])
    path = tmp_path / "bad.csv"
    frame.to_csv(path)
    with pytest.raises(HistoryFormatError, match=r"bad\.csv.*'medium'"):
        load_history([path])


def test_non_numeric_cost_column_names_it(tmp_path):
    frame = routerbench_frame()
    frame["small|total_cost"] = "cheap"
    frame.to_csv(tmp_path / "bad.csv")
    with pytest.raises(HistoryFormatError, match=r"'small\|total_cost' is not numeric"):
        load_history([tmp_path / "bad.csv"])


def test_no_model_columns_is_an_error(tmp_path):
    pd.DataFrame({"prompt": ["a"]}).to_csv(tmp_path / "x.csv")
    with pytest.raises(HistoryFormatError, match="no '<model>|total_cost' column"):
        load_history([tmp_path / "x.csv"])


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(HistoryFormatError, match="no such file"):
        load_history([tmp_path / "absent.csv"])


def test_list_literal_prompts_are_joined_and_plain_text_kept():
    assert parse_prompt("['a', 'b']") == "a\nb"
    assert parse_prompt("[not a literal") == "[not a literal"
    assert parse_prompt(float("nan")) is None
