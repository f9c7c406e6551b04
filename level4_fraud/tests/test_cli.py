"""The command line: the issue's train/predict interface on a small folder, and bad input as one
``error:`` line with exit code 2 (missing folder, wrong schema, empty day, missing run folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from level4_fraud import schema
from level4_fraud.cli import app
from level4_fraud.tests.integration_helpers import SMALL_CONFIG, split_folder

runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    all_dir, hist, test = split_folder(tmp)
    cfg = tmp / "small.yaml"
    cfg.write_text(yaml.safe_dump({**SMALL_CONFIG, "artifacts_dir": str(tmp / "artifacts")}))
    return {"tmp": tmp, "all": all_dir, "hist": hist, "test": test, "config": cfg}


@pytest.fixture(scope="module")
def trained_run(folders):
    run = folders["tmp"] / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "--fdh-folder",
            str(folders["hist"]),
            "--out",
            str(run),
            "--config",
            str(folders["config"]),
        ],
    )
    assert result.exit_code == 0, result.output
    return run, result.output


def _user_error(result) -> str:
    """The one-line error of a failed command (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_train_writes_and_prints_the_run_folder(trained_run):
    run, output = trained_run
    assert (run / "run.json").is_file() and (run / "models" / "ensemble.joblib").is_file()
    assert str(run) in output.splitlines()[-1]


def test_predict_writes_transaction_id_and_score(folders, trained_run, tmp_path):
    run, _ = trained_run
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app,
        ["predict", "--run", str(run), "--fdh-folder", str(folders["test"]),
         "--history", str(folders["hist"]), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["TRANSACTION_ID", "score"]
    n_test = sum(len(pd.read_parquet(f)) for f in folders["test"].glob("*.parquet"))
    assert len(scores) == n_test and scores["TRANSACTION_ID"].is_unique


def test_predict_accepts_late_labels(folders, trained_run, tmp_path):
    from level4_fraud import data

    run, _ = trained_run
    hist = data.read_fdh_folder(folders["hist"])
    labels = tmp_path / "labels.csv"
    data.late_labels_from(hist, delay_days=7).to_csv(labels, index=False)
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app,
        ["predict", "--run", str(run), "--fdh-folder", str(folders["test"]),
         "--history", str(folders["hist"]), "--labels-available", str(labels), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_train_missing_folder(tmp_path):
    line = _user_error(runner.invoke(app, ["train", "--fdh-folder", str(tmp_path / "nope")]))
    assert "no such folder" in line


def test_predict_missing_run_folder(folders, tmp_path):
    result = runner.invoke(
        app,
        ["predict", "--run", str(tmp_path / "no-run"), "--fdh-folder", str(folders["test"]),
         "--history", str(folders["hist"]), "--out", str(tmp_path / "s.csv")],
    )  # fmt: skip
    assert "no such run folder" in _user_error(result)


def test_predict_missing_test_folder(trained_run, folders, tmp_path):
    run, _ = trained_run
    result = runner.invoke(
        app,
        ["predict", "--run", str(run), "--fdh-folder", str(tmp_path / "none"),
         "--history", str(folders["hist"]), "--out", str(tmp_path / "s.csv")],
    )  # fmt: skip
    assert "no such folder" in _user_error(result)


def _broken_copy(src: Path, dst: Path, day_index: int, change) -> Path:
    shutil.copytree(src, dst)
    day = sorted(dst.glob("*.parquet"))[day_index]
    change(pd.read_parquet(day)).to_parquet(day, index=False)
    return dst


def test_train_wrong_schema(folders, tmp_path):
    bad = _broken_copy(folders["hist"], tmp_path / "bad", 3, lambda df: df.drop(columns=[schema.CUSTOMER_ID]))
    line = _user_error(
        runner.invoke(app, ["train", "--fdh-folder", str(bad), "--config", str(folders["config"])])
    )
    assert "missing column" in line and schema.CUSTOMER_ID in line


def test_train_wrong_type(folders, tmp_path):
    bad = _broken_copy(
        folders["hist"], tmp_path / "bad", 2, lambda df: df.assign(**{schema.TX_AMOUNT: "lots"})
    )
    line = _user_error(
        runner.invoke(app, ["train", "--fdh-folder", str(bad), "--config", str(folders["config"])])
    )
    assert schema.TX_AMOUNT in line


def test_predict_empty_day(folders, trained_run, tmp_path):
    run, _ = trained_run
    bad = _broken_copy(folders["test"], tmp_path / "test", 0, lambda df: df.iloc[:0])
    result = runner.invoke(
        app,
        ["predict", "--run", str(run), "--fdh-folder", str(bad),
         "--history", str(folders["hist"]), "--out", str(tmp_path / "s.csv")],
    )  # fmt: skip
    assert "no transactions" in _user_error(result)


def test_folder_without_daily_files(tmp_path):
    (tmp_path / "empty").mkdir()
    line = _user_error(runner.invoke(app, ["train", "--fdh-folder", str(tmp_path / "empty")]))
    assert "no daily files" in line


def test_report_of_a_missing_run(tmp_path):
    assert "no such run folder" in _user_error(runner.invoke(app, ["report", "--run", str(tmp_path / "x")]))


def test_unknown_profile():
    line = _user_error(runner.invoke(app, ["generate", "--profile", "huge"]))
    assert "unknown profile" in line


def test_generate_writes_the_handbook_layout(folders, tmp_path):
    out = tmp_path / "sim"
    result = runner.invoke(
        app, ["generate", "--config", str(folders["config"]), "--out", str(out), "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    days = sorted((out / "transactions").glob("*.parquet"))
    assert len(days) == SMALL_CONFIG["simulator"]["nb_days"]
    assert (out / "customers.parquet").is_file() and (out / "terminals.parquet").is_file()
