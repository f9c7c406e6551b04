"""Data-quality facts against known answers (and against plain pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level1_eda.config import L1Config
from level1_eda.explore import cramers_v, rank_features
from level1_eda.profile import count_duplicates, iqr_outliers, numeric_summary, profile_frame
from level1_eda.schema import coerce_types, infer_schema

from .conftest import make_mixed_frame


def test_duplicates_match_pandas() -> None:
    df = make_mixed_frame(100).drop(columns="row_id")
    doubled = pd.concat([df, df.iloc[:7], df.iloc[[3]]], ignore_index=True)
    assert count_duplicates(doubled) == int(doubled.duplicated().sum()) == 8
    text_only = pd.DataFrame({"a": ["x", "y", "x"], "b": ["1", "2", "1"]})
    assert count_duplicates(text_only) == 1
    # equal numbers but different text: not duplicates
    assert count_duplicates(pd.DataFrame({"n": [1, 1], "t": ["a", "b"]})) == 0


def test_numeric_summary_matches_pandas_describe_and_skew() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"a": rng.lognormal(0, 1, 500), "b": rng.normal(0, 1, 500)})
    df.loc[::10, "a"] = np.nan
    ours = numeric_summary(df, ["a", "b"])
    theirs = df.describe().T
    for col in ["count", "mean", "std", "min", "25%", "50%", "75%", "max"]:
        np.testing.assert_allclose(ours[col], theirs[col], rtol=1e-12)
    np.testing.assert_allclose(ours["skew"], df.skew(), rtol=1e-9)


def test_iqr_outliers_known_answer() -> None:
    # quartiles of 1..8 are 2.75 and 6.25: fences at -2.5 and 11.5
    df = pd.DataFrame({"v": [1, 2, 3, 4, 5, 6, 7, 8, 100, -50, np.nan]})
    table = iqr_outliers(df, numeric_summary(df.iloc[:8], ["v"]))
    assert table.loc["v", "lower fence"] == pytest.approx(-2.5)
    assert table.loc["v", "upper fence"] == pytest.approx(11.5)
    assert table.loc["v", "outliers"] == 2


def test_cramers_v_known_answers() -> None:
    a = pd.Series(list("abc") * 100)
    assert cramers_v(a, a) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = pd.Series(rng.choice(list("xy"), 300))
    assert cramers_v(a, noise) < 0.1
    assert cramers_v(a, pd.Series(["k"] * 300)) == 0.0


def test_rank_features_puts_the_signal_first() -> None:
    df = make_mixed_frame(400)
    ranked = rank_features(df, ["x1", "x2"], "label", "classification")
    assert list(ranked.index) == ["x1", "x2"]
    assert ranked["x1"] > 10 * ranked["x2"]


def test_profile_overview_counts() -> None:
    df = make_mixed_frame(120)
    df.loc[:9, "x1"] = np.nan
    df = pd.concat([df, df.iloc[[20]]], ignore_index=True)
    typed, _ = coerce_types(df, target="label")
    prof = profile_frame(typed, infer_schema(typed, "label", L1Config()))
    assert prof.overview["rows"] == 121
    assert prof.overview["duplicate_rows"] == 1
    assert prof.overview["rows_with_missing"] == 10
    assert prof.missing.loc["x1", "missing"] == 10
    assert prof.constant_columns == ["const"]
    assert prof.target_balance["rows"].sum() == 121
