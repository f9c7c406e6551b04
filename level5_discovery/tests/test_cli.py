"""The command line on small inputs: ``discover`` on a known graph, ``optimize``, and bad input
as one ``error:`` line with exit code 2 (missing or malformed corpus, a CSV with non-numeric
columns or one variable, an unknown base model or task, an empty library, no run folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from level5_discovery.cli import app

runner = CliRunner()


def fails_cleanly(args: list[str], *needles: str) -> str:
    """Run the CLI, expect exit code 2 and one ``error:`` line naming the problem (no traceback)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, f"{args}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def chain_measurements(path: Path, seed: int = 0) -> Path:
    """X -> Y -> Z (and W alone), expression-like (positive levels a knockout sets to zero): 300
    observational rows and 60 knockouts of each variable."""
    rng = np.random.default_rng(seed)
    rows = []
    for target in [None] * 5 + ["X", "Y", "Z", "W"]:
        for _ in range(60):
            x = 0.0 if target == "X" else 3.0 + rng.normal()
            y = 0.0 if target == "Y" else 1.0 + 1.5 * x + 0.5 * rng.normal()
            z = 0.0 if target == "Z" else 12.0 - 1.2 * y + 0.5 * rng.normal()
            w = 0.0 if target == "W" else 2.0 + rng.normal()
            rows.append({"X": x, "Y": y, "Z": z, "W": w, "intervention": target or ""})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_discover_finds_a_known_chain_and_writes_cause_effect_confidence(tmp_path: Path) -> None:
    csv = chain_measurements(tmp_path / "m.csv")
    out = tmp_path / "edges.csv"
    result = runner.invoke(app, ["discover", "--csv", str(csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    edges = pd.read_csv(out)
    assert list(edges.columns) == ["cause", "effect", "confidence"]
    assert set(zip(edges["cause"], edges["effect"], strict=True)) == {("X", "Y"), ("Y", "Z")}


def test_discover_reads_interventions_from_a_separate_file(tmp_path: Path) -> None:
    csv = chain_measurements(tmp_path / "m.csv")
    frame = pd.read_csv(csv, keep_default_na=False)
    frame[["intervention"]].to_csv(tmp_path / "iv.csv", index=False)
    frame.drop(columns="intervention").to_csv(tmp_path / "values.csv", index=False)
    out = tmp_path / "edges.csv"
    args = ["discover", "--csv", str(tmp_path / "values.csv"), "--interventions", str(tmp_path / "iv.csv")]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert set(zip(*pd.read_csv(out)[["cause", "effect"]].T.values, strict=True)) == {("X", "Y"), ("Y", "Z")}


def test_discover_bad_csvs_are_one_line_errors(tmp_path: Path) -> None:
    fails_cleanly(["discover", "--csv", str(tmp_path / "none.csv")], "not found")
    text = tmp_path / "text.csv"
    text.write_text("a,b,label\n1,2,x\n3,4,y\n")
    fails_cleanly(["discover", "--csv", str(text)], "non-numeric", "label")
    one = tmp_path / "one.csv"
    one.write_text("a\n1\n2\n3\n")
    fails_cleanly(["discover", "--csv", str(one)], "variable")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    fails_cleanly(["discover", "--csv", str(empty)], "empty")


def test_missing_and_malformed_corpus_are_one_line_errors(tmp_path: Path) -> None:
    fails_cleanly(["train", "--corpus", str(tmp_path / "none.jsonl")], "none.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "P1", "title": "t", "abstract": "G01 activates G02.", "year": 2001}\n{not json\n')
    fails_cleanly(["train", "--corpus", str(bad)], "bad.jsonl")
    no_abstract = tmp_path / "fields.jsonl"
    no_abstract.write_text('{"id": "P1", "title": "t", "year": 2001}\n')
    fails_cleanly(["train", "--corpus", str(no_abstract)], "abstract")


def test_unknown_base_model_is_a_one_line_error(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"id": "P1", "title": "t", "abstract": "G01 activates G02.", "year": 2001}\n')
    fails_cleanly(
        ["train", "--corpus", str(corpus), "--base-model", "no/such-model-xyz"], "unknown base model"
    )


def test_optimize_writes_every_oracle_call_and_rejects_bad_input(tmp_path: Path) -> None:
    library = tmp_path / "lib.smi"
    library.write_text(
        "\n".join(["CCO", "c1ccccc1O", "CC(=O)Oc1ccccc1C(=O)O", "CCN(CC)CC", "c1ccncc1"]) + "\n"
    )
    out = tmp_path / "calls.csv"
    args = ["optimize", "--task", "qed", "--library", str(library), "--budget", "60", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    calls = pd.read_csv(out)
    assert list(calls.columns) == ["call", "smiles", "score"] and len(calls) == 60
    fails_cleanly([*args[:2], "no_such_task", *args[3:]], "no_such_task")
    empty = tmp_path / "empty.smi"
    empty.write_text("")
    fails_cleanly(["optimize", "--task", "qed", "--library", str(empty), "--out", str(out)])


@pytest.mark.parametrize("verb", ["predict", "evaluate", "register"])
def test_a_missing_run_folder_is_a_one_line_error(tmp_path: Path, verb: str) -> None:
    fails_cleanly([verb, "--run", str(tmp_path / "no-run")], "no-run")
