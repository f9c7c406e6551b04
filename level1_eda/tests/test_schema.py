"""Column roles, task inference and the target checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level1_eda.config import L1Config
from level1_eda.schema import clean_target, coerce_types, infer_schema, infer_task
from shared.errors import DataError, EmptyDataError, SchemaError

from .conftest import make_mixed_frame


def test_every_role_is_recognised() -> None:
    df, _ = coerce_types(make_mixed_frame(), target="label")
    schema = infer_schema(df, "label", L1Config())
    roles = {c: i.role for c, i in schema.columns.items()}
    assert roles == {
        "row_id": "identifier",
        "x1": "numeric",
        "x2": "numeric",
        "colour": "categorical",
        "flag": "boolean",
        "city": "high_cardinality",
        "when": "datetime",
        "comment": "text",
        "const": "constant",
        "label": "boolean",  # yes/no
    }
    assert schema.numeric == ["x1", "x2"]
    assert schema.categorical == ["colour", "flag", "city"]
    assert set(schema.dropped) == {"row_id", "when", "comment", "const"}
    assert any("'row_id' looks like an identifier" in w for w in schema.warnings)


def test_mixed_types_coerced_or_reported() -> None:
    mostly_numbers = [str(v) for v in range(99)] + ["unknown"]
    half_half = [str(v) for v in range(50)] + [f"w{v}" for v in range(50)]
    df = pd.DataFrame({"a": mostly_numbers, "b": half_half, "y": ["p", "q"] * 50})
    out, warnings = coerce_types(df, target="y")
    assert pd.api.types.is_float_dtype(out["a"]) and int(out["a"].isna().sum()) == 1
    assert out["b"].dtype == object
    assert any("'a' mixes types" in w and "'unknown'" in w for w in warnings)
    assert any("'b' mixes types: 50% numbers" in w for w in warnings)


def test_mostly_missing_column_warns() -> None:
    df = make_mixed_frame()
    df["sparse"] = np.where(np.arange(len(df)) % 10 == 0, np.arange(len(df)) * 0.5, np.nan)
    schema = infer_schema(df, "label", L1Config())
    assert any("'sparse' is 90% missing" in w for w in schema.warnings)
    assert "sparse" in schema.numeric  # kept: imputed, not dropped


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (["a", "b", "a"], "classification"),
        ([True, False, True], "classification"),
        ([0, 1, 2, 1, 0], "classification"),
        ([0.5, 1.7, 2.2, 3.9], "regression"),
        (list(range(100)), "regression"),
    ],
)
def test_task_inference(values: list, task: str) -> None:
    assert infer_task(pd.Series(values), L1Config()) == task


def test_unknown_target_suggests_the_right_name() -> None:
    with pytest.raises(SchemaError, match="did you mean 'label'"):
        infer_schema(make_mixed_frame(), "LABEL", L1Config())


def test_target_all_missing() -> None:
    df = make_mixed_frame().assign(label=np.nan)
    with pytest.raises(EmptyDataError, match="missing on every row"):
        infer_schema(df, "label", L1Config())


def test_single_class_and_no_features() -> None:
    df = make_mixed_frame().assign(label="yes")
    schema = infer_schema(df, "label", L1Config())
    with pytest.raises(DataError, match="single class"):
        clean_target(df, schema)
    only_id = pd.DataFrame({"id": range(30), "y": ["a", "b"] * 15})
    with pytest.raises(DataError, match="no usable feature"):
        infer_schema(only_id, "y", L1Config())


def test_rows_without_target_and_singleton_classes_are_left_out() -> None:
    df = make_mixed_frame()
    df.loc[:4, "label"] = np.nan
    df.loc[5, "label"] = "rare"
    schema = infer_schema(df, "label", L1Config())
    out, warnings = clean_target(df, schema)
    assert len(out) == len(df) - 6
    assert any("5 rows have no target" in w for w in warnings)
    assert any("rare" in w for w in warnings)


def test_numeric_text_target_becomes_numeric_and_too_many_classes_is_refused() -> None:
    x = np.random.default_rng(0).normal(0, 1, 300)
    df = pd.DataFrame({"x": x[:200], "y": [str(v * 2.5) for v in range(199)] + ["?"]})
    typed, warnings = coerce_types(df, target="y")
    assert typed["y"].isna().sum() == 1 and any("'y' mixes types" in w for w in warnings)
    assert infer_schema(typed, "y", L1Config()).task == "regression"
    ids = pd.DataFrame({"x": x, "y": [f"user{i % 150}" for i in range(300)]})
    schema = infer_schema(ids, "y", L1Config())
    with pytest.raises(DataError, match="150 classes"):
        clean_target(ids, schema)


def test_regression_target_must_be_numeric() -> None:
    with pytest.raises(SchemaError, match="not numeric"):
        infer_schema(make_mixed_frame(), "label", L1Config(), task="regression")


def test_near_unique_text_is_dropped_like_an_identifier_with_a_warning() -> None:
    rng = np.random.default_rng(1)
    n = 400
    groups = rng.integers(0, 500, n)  # about 70 % of values distinct, as on a real passenger list
    present = rng.random(n) < 0.2
    df = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "ticket": [f"A/5 {10_000 + g}" for g in groups],
            "cabin": np.where(present, [f"C{i}" for i in rng.integers(0, 150, n)], None),
            "city": [f"town{i}" for i in rng.integers(0, 80, n)],  # 80 levels, each on ~5 rows
            "deck": np.where(present, [f"D{i}" for i in rng.integers(0, 12, n)], None),  # few levels
            "y": rng.choice(["a", "b"], n),
        }
    )
    schema = infer_schema(df, "y", L1Config())
    ticket, cabin = schema.columns["ticket"], schema.columns["cabin"]
    assert ticket.n_unique / n >= 0.5 and cabin.n_unique / (n - cabin.n_missing) >= 0.5
    assert (ticket.role, cabin.role) == ("identifier", "identifier")
    assert schema.near_unique == ["ticket", "cabin"]
    assert ticket.note.startswith("near-unique text (") and "%)" in ticket.note
    assert schema.columns["city"].role == "high_cardinality" and "city" in schema.categorical
    assert schema.columns["deck"].role == "categorical"  # 12 values: one-hot handles them
    assert set(schema.dropped) == {"ticket", "cabin"} and schema.features == ["x", "city", "deck"]
    for col in ("ticket", "cabin"):
        assert any(
            w.startswith(f"column {col!r} is near-unique text (") and "dropped from the features" in w
            for w in schema.warnings
        ), schema.warnings
    assert not any("'cabin' is" in w and "missing" in w for w in schema.warnings)  # one warning per column
    # The threshold is a config value: above the ticket's share of distinct values, it is kept.
    lenient = infer_schema(df, "y", L1Config(near_unique_ratio=0.95))
    assert lenient.columns["ticket"].role == "high_cardinality" and lenient.near_unique == []
