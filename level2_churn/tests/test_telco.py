"""The Telco layout: cleaning quirks, run/train/predict --telco-csv (and the old names), every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from level2_churn.cli import app
from level2_churn.telco import COLUMNS, clean_telco, load_model, read_telco, synthetic_telco

runner = CliRunner()

TINY_YAML = {
    "search": {"n_trials": 4, "n_startup_trials": 2, "n_estimators_max": 150},
    "selection": {"n_repeats": 1},
    "splits": {"n_folds": 3},
    "imbalance": {"methods": ["none", "smote"]},
}


@pytest.fixture(scope="session")
def telco_run(telco_csv: Path, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("telco-run")
    cfg = base / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_YAML))
    out = base / "out"
    uri = f"sqlite:///{base / 'mlflow.db'}"
    result = runner.invoke(
        app,
        ["run", "--telco-csv", str(telco_csv), "--out", str(out), "--config", str(cfg), "--mlflow-uri", uri],
    )
    assert result.exit_code == 0, result.output
    return out


def test_clean_handles_blank_total_charges_and_yes_no() -> None:
    raw = synthetic_telco(300, seed=5).astype(str)  # as read: every column is text
    raw.loc[0, ["tenure", "TotalCharges"]] = ["0", " "]
    raw.loc[1, ["tenure", "MonthlyCharges", "TotalCharges", "Partner"]] = ["3", "20.0", "", "Yes"]
    df = clean_telco(raw)
    assert df.loc[0, "TotalCharges"] == 0.0  # first month: nothing billed yet
    assert df.loc[1, "TotalCharges"] == pytest.approx(60.0)  # blank elsewhere: tenure x monthly
    assert df.loc[1, "Partner"] == 1.0
    assert set(df["Churn"].unique()) <= {0, 1}
    assert isinstance(df["Contract"].dtype, pd.CategoricalDtype)
    assert not df["TotalCharges"].isna().any()


def test_telco_trains_saves_and_reports(telco_run: Path) -> None:
    metrics = json.loads((telco_run / "metrics.json").read_text())
    assert metrics["level"] == 2 and metrics["dataset"] == "telco" and metrics["headline_metric"] == "pr_auc"
    assert metrics["source"] == "telco.csv"  # the file's name, not a path of this machine
    assert metrics["roc_auc"] > 0.68  # the generated file has a real churn mechanism
    assert metrics["pr_auc"] > 1.5 * metrics["test"]["base_rate"]
    assert metrics["campaign_profit"] > metrics["profit_random_k"]
    assert len(metrics["cv"]["lgbm"]["per_fold"]) == 3
    html = (telco_run / "report.html").read_text()
    for title in ("Class imbalance", "Feature selection", "Calibration", "Business metric", "SHAP summary"):
        assert title in html
    model = load_model(telco_run / "model.joblib")
    assert model.metadata["source"] == "telco"


def test_predict_telco_csv_writes_probabilities(telco_run: Path, tmp_path: Path) -> None:
    new = synthetic_telco(400, seed=11, churn=False)
    assert "Churn" not in new.columns
    new.loc[0, "TotalCharges"] = " "
    new.loc[0, "tenure"] = 0
    csv = tmp_path / "new.csv"
    new.to_csv(csv, index=False)
    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app, ["predict", "--run", str(telco_run), "--telco-csv", str(csv), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    preds = pd.read_csv(out)
    assert list(preds.columns) == ["customerID", "churn_probability"]
    assert preds["customerID"].tolist() == new["customerID"].tolist()
    assert preds["churn_probability"].between(0, 1).all()
    # directional: month-to-month contracts churn more than two-year ones in the generating mechanism
    p = preds["churn_probability"].to_numpy()
    assert p[new["Contract"] == "Month-to-month"].mean() > p[new["Contract"] == "Two year"].mean() + 0.1


def _layout_csv(tmp_path: Path, df: pd.DataFrame) -> Path:
    path = tmp_path / "in.csv"
    df.to_csv(path, index=False)
    return path


BAD = [
    ("missing file", None, "Telco CSV not found"),
    ("empty file", "", "is empty"),
    ("header only", ",".join(COLUMNS) + "\n", "no rows"),
    ("wrong columns", "a,b\n1,2\n", "not in the Telco layout: missing columns customerID"),
    ("one class", "one-class", "only one class"),
    ("bad yes/no", "bad-yes-no", "must be Yes/No"),
    ("bad number", "bad-number", "must be numeric"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD, ids=[b[0] for b in BAD])
def test_telco_bad_input_one_line_exit_2(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    csv = tmp_path / "in.csv"
    df = synthetic_telco(60, seed=2).astype(str)
    if content == "one-class":
        df["Churn"] = "No"
        df.to_csv(csv, index=False)
    elif content == "bad-yes-no":
        df.loc[3, "Partner"] = "Maybe"
        df.to_csv(csv, index=False)
    elif content == "bad-number":
        df.loc[3, "tenure"] = "twelve"
        df.to_csv(csv, index=False)
    elif content is not None:
        csv.write_text(content)
    out = tmp_path / "out"
    result = runner.invoke(app, ["train", "--telco-csv", str(csv), "--out", str(out), "--no-mlflow"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert not out.exists()


def test_telco_predict_bad_inputs(telco_run: Path, tmp_path: Path) -> None:
    csv = _layout_csv(tmp_path, synthetic_telco(20, seed=1, churn=False))
    out = tmp_path / "p.csv"
    cases = [
        ([str(tmp_path / "none.joblib"), str(csv)], "model file not found"),
        ([str(tmp_path / "junk.joblib"), str(csv)], "cannot load a model"),
        ([str(telco_run / "metrics.json"), str(csv)], "cannot load a model"),
        ([str(telco_run / "model.joblib"), str(tmp_path / "missing.csv")], "Telco CSV not found"),
    ]
    (tmp_path / "junk.joblib").write_bytes(b"garbage")
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"customerID": ["a"], "tenure": [1]}).to_csv(wrong, index=False)
    cases.append(([str(telco_run / "model.joblib"), str(wrong)], "missing columns"))
    for (model, data), message in cases:
        result = runner.invoke(app, ["predict", "--model", model, "--telco-csv", data, "--out", str(out)])
        assert result.exit_code == 2, (message, result.output)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and message in lines[0], result.stderr
        assert not out.exists()


def test_read_telco_accepts_the_exact_layout(telco_csv: Path) -> None:
    df = read_telco(telco_csv, require_target=True)
    assert list(df.columns) == COLUMNS
    assert (df["TotalCharges"].str.strip() == "").sum() == (df["tenure"] == "0").sum()
    assert np.isclose((df["Churn"] == "Yes").mean(), 0.26, atol=0.06)  # about the real file's churn rate


def test_train_telco_csv_then_evaluate_and_report_the_run(telco_csv: Path, tmp_path: Path) -> None:
    """The stage verbs work on a Telco run as on a simulator run: train, then evaluate and report it."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_YAML | {"imbalance": {"methods": ["none"]}}))
    out = tmp_path / "run"
    trained = runner.invoke(
        app, ["train", "--telco-csv", str(telco_csv), "--out", str(out), "--config", str(cfg), "--no-mlflow"]
    )
    assert trained.exit_code == 0, trained.output
    assert (out / "model.joblib").is_file() and not (out / "metrics.json").exists()
    for verb, written in (("evaluate", "metrics.json"), ("report", "report.html")):
        result = runner.invoke(app, [verb, "--run", str(out), "--config", str(cfg)])
        assert result.exit_code == 0, result.output
        assert str(out / written) in result.output
    assert json.loads((out / "metrics.json").read_text())["dataset"] == "telco"
    html = (out / "report.html").read_text()
    assert "Level 2 — Telco churn" in html and "Data quality" not in html


def test_old_telco_command_names_still_work(telco_run: Path, telco_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    result = runner.invoke(
        app,
        [
            "telco-predict",
            "--model",
            str(telco_run / "model.joblib"),
            "--csv",
            str(telco_csv),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) == len(pd.read_csv(telco_csv))
    bad = runner.invoke(app, ["telco", "--csv", str(tmp_path / "none.csv"), "--no-mlflow"])
    assert bad.exit_code == 2 and "Telco CSV not found" in bad.stderr
    hidden = {c.name for c in app.registered_commands if c.hidden}
    assert {"telco", "telco-predict"} <= hidden  # run/train/predict --telco-csv are the verbs
