"""Model quality, run outputs and prediction on new data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level1_eda.pipeline import run
from level1_eda.predict import load_model, predict_csv
from level1_eda.results import RunResult
from level1_eda.schema import infer_schema
from level1_eda.train import split_data, train
from shared.errors import DataError, InputFileError
from shared.metrics import read_metrics

from .conftest import make_passenger_frame, small_cfg

SECTIONS = [
    "Overview",
    "Schema and column roles",
    "Data quality",
    "Exploration",
    "Missing values: drop or fill?",
    "Features: one-hot encoding in a pipeline",
    "Model against baseline",
    "Evaluation",
]


def test_penguins_logistic_beats_baseline(penguins_run: RunResult) -> None:
    m = penguins_run.metrics
    assert m["test"]["accuracy"] >= 0.95
    assert m["test"]["accuracy"] >= m["baseline"]["accuracy"] + 0.4  # majority class is 44 %
    assert m["baseline"]["accuracy"] == pytest.approx(38 / 86)  # stratified test: 38 Adelie of 86
    assert m["cv"]["accuracy_mean"] >= 0.95 and m["cv"]["folds"] == 5
    assert m["test"]["balanced_accuracy"] >= 0.95


def test_run_writes_report_metrics_and_model(penguins_run: RunResult) -> None:
    run_dir = penguins_run.run_dir
    metrics = read_metrics(run_dir / "metrics.json")
    assert metrics["level"] == 1 and metrics["dataset"] == "penguins"
    assert metrics["headline_metric"] == "accuracy"
    assert metrics["headline_value"] == metrics["test"]["accuracy"]
    assert set(metrics["missing_strategies"]) == {"drop_rows", "mean_fill", "median_fill"}
    assert metrics["missing_strategies"]["drop_rows"]["training_rows"] < metrics["train_rows"]
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html.replace("&#39;", "'").replace("&amp;", "&"), title
    assert html.count("data:image/png;base64,") >= 10
    assert "Plotly.newPlot" in html and '<script src="http' not in html  # self-contained, works offline
    assert (run_dir / "report.html").stat().st_size < 8 * 2**20
    bundle = load_model(run_dir / "model.joblib")
    assert bundle["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    # Evaluated on the 86 test rows, then refitted on all 344 labelled rows for the saved model.
    assert metrics["train_rows"] + metrics["test_rows"] == metrics["fitted_on_rows"] == 344
    assert bundle["fitted_on_rows"] == 344
    scaler = bundle["pipeline"].named_steps["features"].named_steps["columns"].named_transformers_["num"]
    assert scaler.named_steps["scale"].n_samples_seen_ == 344
    assert "refitted on all 344 labelled rows once the 86 test rows had been scored" in html


def test_same_seed_same_scores(penguins_path: Path) -> None:
    from level1_eda.data import load_csv

    df = load_csv(penguins_path).frame.dropna(subset=["species"])
    cfg = small_cfg()
    schema = infer_schema(df, "species", cfg)
    a = train(split_data(df, schema, cfg), schema, cfg).cv_model["scores"]
    b = train(split_data(df, schema, cfg), schema, cfg).cv_model["scores"]
    assert a == b


def test_predict_new_rows_unseen_category_missing_values_no_target(
    penguins_run: RunResult, penguins_path: Path, tmp_path: Path
) -> None:
    new = pd.read_csv(penguins_path).drop(columns="species").iloc[[0, 200, 300, 5]].reset_index(drop=True)
    new.loc[0, "island"] = "Atlantis"  # never seen in training
    new.loc[1, ["bill_length_mm", "sex"]] = [np.nan, np.nan]
    src = tmp_path / "new.csv"
    new.to_csv(src, index=False)
    out = tmp_path / "preds.csv"
    summary = predict_csv(penguins_run.model, src, out)
    preds = pd.read_csv(out)
    assert summary["rows"] == len(preds) == 4
    assert list(preds.columns) == ["prediction", "proba_Adelie", "proba_Chinstrap", "proba_Gentoo"]
    np.testing.assert_allclose(preds.filter(like="proba_").sum(axis=1), 1.0, atol=1e-5)
    # row order kept: file rows 200, 300 and 5 are Gentoo, Chinstrap and Adelie
    assert preds["prediction"].iloc[1:].tolist() == ["Gentoo", "Chinstrap", "Adelie"]
    assert "accuracy" not in summary  # no target column, no score


def test_predict_reports_score_when_target_present(
    penguins_heldout: tuple[RunResult, Path], tmp_path: Path
) -> None:
    result, held_path = penguins_heldout
    summary = predict_csv(result.model, held_path, tmp_path / "p.csv")
    held = pd.read_csv(held_path)
    assert summary["rows"] == len(held) == 86  # only rows the saved model never saw
    assert load_model(result.model)["fitted_on_rows"] == 344 - 86
    # The do-nothing answer on the same rows: the training file's most frequent class.
    majority = pd.read_csv(result.run_dir.parent / "known.csv")["species"].mode()[0]
    baseline = float((held["species"] == majority).mean())
    assert summary["accuracy"] >= 0.95
    assert summary["accuracy"] >= baseline + 0.4  # majority class is about 44 %


def test_predict_rejects_bad_model_and_featureless_csv(penguins_run: RunResult, tmp_path: Path) -> None:
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(InputFileError, match="cannot load model"):
        load_model(junk)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="none of the model's feature columns"):
        predict_csv(penguins_run.model, other, tmp_path / "o.csv")
    assert not (tmp_path / "o.csv").exists()


def test_regression_on_a_known_linear_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 300
    df = pd.DataFrame({"x": rng.normal(0, 1, n), "z": rng.normal(0, 1, n), "g": rng.choice(["a", "b"], n)})
    df["price"] = 3 * df["x"] - 2 * df["z"] + np.where(df["g"] == "a", 5, 0) + rng.normal(0, 0.1, n)
    csv = tmp_path / "houses.csv"
    df.to_csv(csv, index=False)
    result = run(csv, small_cfg(target="price", cv_folds=3), out=tmp_path / "run")
    m = result.metrics
    assert m["task"] == "regression" and m["headline_metric"] == "r2"
    assert m["test"]["r2"] > 0.99
    assert m["baseline"]["r2"] < 0.01
    html = result.report.read_text(encoding="utf-8")
    assert "Coefficients with feature names" in html and "num__x" in html
    assert "Residual plot: points should scatter evenly around zero" in html
    bundle = load_model(result.model)
    est = bundle["pipeline"].named_steps["model"]
    # x is standardised: its coefficient is 3 × std(x_train) ≈ 3
    names = list(bundle["pipeline"].named_steps["features"].get_feature_names_out())
    assert est.coef_[names.index("num__x")] == pytest.approx(3.0, rel=0.1)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["headline_value"] == pytest.approx(m["test"]["r2"])


OBVIOUS_NUMBERS = ["Pclass", "Age", "SibSp", "Parch", "Fare"]
OBVIOUS_CATEGORIES = ["Sex", "Embarked"]


def _default_logistic(known: pd.DataFrame, held: pd.DataFrame) -> float:
    """What a new user would fit by hand: a default LogisticRegression on the obvious columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), OBVIOUS_NUMBERS),
            ("cat", OneHotEncoder(handle_unknown="ignore"), OBVIOUS_CATEGORIES),
        ]
    )
    model = make_pipeline(columns, LogisticRegression()).fit(known, known["Survived"])
    return float(model.score(held, held["Survived"]))


def test_passenger_list_drops_near_unique_codes_and_saves_a_model_fitted_on_every_row(tmp_path: Path) -> None:
    from sklearn.model_selection import train_test_split

    from level1_eda.features import feature_names
    from level1_eda.schema import coerce_types

    df = make_passenger_frame(seed=1)
    known, held = train_test_split(df, test_size=0.25, random_state=1, stratify=df["Survived"])
    csv, held_csv = tmp_path / "passengers.csv", tmp_path / "held.csv"
    known.to_csv(csv, index=False)
    held.to_csv(held_csv, index=False)
    cfg = small_cfg(target="Survived")
    result = run(csv, cfg, out=tmp_path / "run")

    # Ticket and cabin codes are dropped like identifiers, with a warning, and the report says so.
    for col in ("Ticket", "Cabin"):
        assert any(w.startswith(f"column {col!r} is near-unique text (") for w in result.warnings), col
    bundle = load_model(result.model)
    assert bundle["features"] == OBVIOUS_NUMBERS + OBVIOUS_CATEGORIES  # id and name dropped too
    html = result.report.read_text(encoding="utf-8")
    assert "Near-unique text, dropped like identifiers: Ticket (" in html and ", Cabin (" in html

    # The saved model is the pipeline refitted on every labelled row, after the test split was scored.
    m = read_metrics(result.run_dir / "metrics.json")
    assert m["fitted_on_rows"] == bundle["fitted_on_rows"] == len(known) == m["train_rows"] + m["test_rows"]
    numbers = bundle["pipeline"].named_steps["features"].named_steps["columns"].named_transformers_["num"]
    assert numbers.named_steps["scale"].n_samples_seen_ == len(known)
    assert numbers.named_steps["impute"].statistics_.tolist() == known[OBVIOUS_NUMBERS].median().tolist()
    assert f"refitted on all {len(known):,} labelled rows" in html

    # On the quarter held aside, `predict` does at least as well as a default LogisticRegression.
    summary = predict_csv(result.model, held_csv, tmp_path / "preds.csv")
    reference = _default_logistic(known, held)
    assert summary["rows"] == len(held)
    assert summary["accuracy"] >= reference

    # This data makes that a real check: the previous behaviour (both codes one-hot encoded, the
    # model fitted on the 75 % training split only) scores below the reference on these rows
    # (0.753 against 0.789 for seed 1; 0.6 points below on average over seeds 0-7).
    old_cfg = cfg.model_copy(update={"near_unique_ratio": 1.0})
    typed, _ = coerce_types(known, target="Survived")
    old_schema = infer_schema(typed, "Survived", old_cfg)
    assert {"Ticket", "Cabin"} <= set(old_schema.features)
    split = split_data(known, old_schema, old_cfg)
    old = train(split, old_schema, old_cfg).model
    assert any(n.startswith("cat__Ticket_") for n in feature_names(old))
    assert float(old.score(held, held["Survived"].astype(str))) < reference
