"""The command line: bad input gives one line on stderr and exit code 2; odd input gives warnings."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from level1_eda.cli import app
from level1_eda.predict import resolve_model
from shared.errors import InputFileError

runner = CliRunner()


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _two_class_rows(n: int = 40) -> str:
    return "x,y\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(n))


BAD_INPUTS = [
    ("missing file", None, ["--target", "y"], "file not found"),
    ("empty file", b"", ["--target", "y"], "is empty"),
    ("header only", "x,y\n", ["--target", "y"], "no data rows"),
    ("not a csv", b"PK\x03\x04\x14\x00\x00\x00\x08\x00binary\x00zip", ["--target", "y"], "binary"),
    ("unknown target", _two_class_rows(), ["--target", "Z"], "target column 'Z' not found"),
    (
        "target all missing",
        "x,y\n" + "".join(f"{i},\n" for i in range(30)),
        ["--target", "y"],
        "missing on every",
    ),
    (
        "single class",
        "x,y\n" + "".join(f"{i * 0.5},a\n" for i in range(30)),
        ["--target", "y"],
        "single class",
    ),
    (
        "no usable feature",
        "id,y\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(30)),
        ["--target", "y"],
        "no usable",
    ),
    ("bad task", _two_class_rows(), ["--target", "y", "--task", "ranking"], "task"),
    ("bad profile", _two_class_rows(), ["--target", "y", "--profile", "huge"], "unknown profile"),
]


@pytest.mark.parametrize(("name", "content", "args", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_one_line_exit_2(
    tmp_path: Path, name: str, content: str | bytes | None, args: list[str], message: str
) -> None:
    csv = tmp_path / "in.csv"
    if content is not None:
        _write(csv, content)
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--csv", str(csv), *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing half-written


def test_predict_bad_inputs(tmp_path: Path) -> None:
    csv = _write(tmp_path / "new.csv", _two_class_rows())
    result = runner.invoke(app, ["predict", "--model", str(tmp_path / "none.joblib"), "--csv", str(csv)])
    assert result.exit_code == 2 and result.stderr.startswith("error: model file not found")
    junk = _write(tmp_path / "m.joblib", b"garbage")
    result = runner.invoke(app, ["predict", "--model", str(junk), "--csv", str(csv)])
    assert result.exit_code == 2 and "cannot load model" in result.stderr
    result = runner.invoke(app, ["predict", "--run", str(tmp_path), "--csv", str(csv)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: no model.joblib in run folder {tmp_path}")
    result = runner.invoke(app, ["predict", "--run", str(tmp_path / "nope"), "--csv", str(csv)])
    assert result.exit_code == 2 and result.stderr.startswith("error: run folder not found")
    result = runner.invoke(app, ["predict", "--model", str(junk), "--run", str(tmp_path), "--csv", str(csv)])
    assert result.exit_code == 2 and "either --model FILE or --run RUN_FOLDER" in result.stderr


def test_predict_model_from_model_file_run_folder_or_newest_run(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    with pytest.raises(InputFileError, match=r"no run with a model\.joblib under"):
        resolve_model(None, None, artifacts)
    older, newer = artifacts / "a-20240101", artifacts / "b-20240102"
    for i, folder in enumerate((older, newer)):
        folder.mkdir(parents=True)
        (folder / "model.joblib").write_bytes(b"x")
        os.utime(folder / "model.joblib", (1_000_000 + i, 1_000_000 + i))
    (artifacts / "profile-only").mkdir()  # a `profile` run folder: no model
    assert resolve_model(None, None, artifacts) == newer / "model.joblib"
    assert resolve_model(None, older, artifacts) == older / "model.joblib"
    assert resolve_model(tmp_path / "m.joblib", None, artifacts) == tmp_path / "m.joblib"


def test_module_entry_point_reports_user_error_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "level1_eda", "run", "--csv", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: file not found: {tmp_path / 'missing.csv'}"]


def test_odd_but_valid_file_runs_with_warnings_and_predicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 120
    x = rng.normal(0, 1, n)
    df = pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n),
            "size": np.round(x, 3).astype(str),
            "mostly_gone": np.where(np.arange(n) % 5 == 0, rng.normal(0, 1, n).round(2).astype(str), ""),
            "région": rng.choice(["Île", "Nord", "Sud"], n),
            "label": np.where(x > 0, "élevé", "bas"),
        }
    )
    df.loc[3, "size"] = "n/a?"  # one stray text value in a numeric column
    csv = tmp_path / "odd.csv"
    csv.write_bytes(df.to_csv(index=False, sep=";").encode("cp1252"))
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["run", "--csv", str(csv), "--target", "label", "--out", str(out), "--config", str(_cfg(tmp_path))],
    )
    assert result.exit_code == 0, result.output
    err = result.stderr
    assert "warning: file is not UTF-8" in err
    assert "warning: delimiter is ';'" in err
    assert "'customer_id' looks like an identifier" in err
    assert "'mostly_gone' is 80% missing" in err
    assert "'size' mixes types" in err
    lines = {line.split(maxsplit=1)[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert lines["report"].split()[-1] == str(out / "report.html")
    assert "refitted on all 120 labelled rows" in lines["model"]
    assert re.search(r"^test accuracy\s+[01]\.\d{4}$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^3-fold cv accuracy\s+[01]\.\d{4} ± 0\.\d{4}$", result.stdout, re.MULTILINE)
    assert (out / "report.html").exists() and (out / "metrics.json").exists()

    new = pd.DataFrame({"size": ["1.5", "-2", None], "région": ["Ouest", "Nord", None]})
    new_csv = tmp_path / "new.csv"
    new.to_csv(new_csv, index=False)
    preds = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", "--run", str(out), "--csv", str(new_csv), "--out", str(preds)])
    assert result.exit_code == 0, result.output
    assert re.search(rf"^model\s+{re.escape(str(out / 'model.joblib'))}$", result.stdout, re.MULTILINE)
    assert re.search(r"^predictions\s+.*preds\.csv \(3 rows\)$", result.stdout, re.MULTILINE)
    table = pd.read_csv(preds)
    assert table["prediction"].tolist()[:2] == ["élevé", "bas"]
    assert list(table.columns) == ["prediction", "proba_bas", "proba_élevé"]
    assert "columns absent from the new file" in result.stderr  # mostly_gone was not given


def _cfg(tmp_path: Path) -> Path:
    # Small figures keep this end-to-end test quick.
    path = tmp_path / "small.yaml"
    path.write_text("plot_rows: 200\npairplot_rows: 100\nmax_plot_columns: 3\ncv_folds: 3\n")
    return path


def test_profile_command_writes_report_and_facts_without_a_model(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": np.arange(60) * 1.5, "b": ["x", "y", "z"] * 20, "t": ["p", "q"] * 30})
    df = pd.concat([df, df.iloc[:3]], ignore_index=True)  # 3 duplicate rows
    csv = tmp_path / "d.csv"
    df.to_csv(csv, index=False)
    out = tmp_path / "prof"
    result = runner.invoke(
        app,
        ["profile", "--csv", str(csv), "--target", "t", "--out", str(out), "--config", str(_cfg(tmp_path))],
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"^shape\s+63 rows × 3 columns$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^duplicate rows\s+3$", result.stdout, re.MULTILINE)
    assert (out / "report.html").exists() and (out / "profile.json").exists()
    assert not (out / "model.joblib").exists()
