"""The command line: MovieLens train -> predict, the simulated stages -> evaluate -> register -> report,
the mounted serving commands, and bad inputs ending in one line with exit code 2."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from level3_recsys.cli import app
from level3_recsys.movielens import load_movielens, write_fake_ml100k


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Every output (MLflow, runs, store) under tmp_path, no progress bars."""
    return {
        "L3__ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "L3__DATA_DIR": str(tmp_path / "data"),
        "L3__SHOW_PROGRESS": "false",
    }


def invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(app, args, env=env)


def assert_user_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def ml_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_ml100k(tmp_path_factory.mktemp("ml-100k"), n_users=40, n_items=80, n_ratings=1200)


def test_train_on_movielens_then_predict_for_every_user(ml_folder: Path, env, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = invoke(
        ["train", "--movielens", str(ml_folder), "--model", "itemknn", "--out", str(run_dir)], env
    )
    assert result.exit_code == 0, result.output
    assert (run_dir / "models" / "itemknn").is_dir()
    assert (tmp_path / "artifacts" / "mlflow" / "mlflow.db").is_file()  # logged to the run's own MLflow store

    out = tmp_path / "recs.csv"
    result = invoke(["predict", "--run", str(run_dir), "--k", "5", "--out", str(out)], env)
    assert result.exit_code == 0, result.output
    # `recommend` (level 3's domain word) is the same command
    alias_out = tmp_path / "recs-alias.csv"
    result = invoke(["recommend", "--run", str(run_dir), "--k", "5", "--out", str(alias_out)], env)
    assert result.exit_code == 0, result.output
    assert alias_out.read_bytes() == out.read_bytes()
    recs = pd.read_csv(out)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    data = load_movielens(ml_folder)
    assert set(recs["user_id"]) == set(data.interactions["user_id"])
    assert (
        recs.groupby("user_id")["rank"].apply(list)
        == pd.Series([[1, 2, 3, 4, 5]] * recs["user_id"].nunique(), index=sorted(recs["user_id"].unique()))
    ).all()
    seen = data.interactions[["user_id", "item_id"]]
    assert recs.merge(seen, on=["user_id", "item_id"]).empty
    # scores fall with rank inside each list
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 1e-6).all()


def test_missing_movielens_folder(env, tmp_path: Path) -> None:
    assert_user_error(
        invoke(["train", "--movielens", str(tmp_path / "nope"), "--model", "ease"], env), "not found"
    )


def test_movielens_folder_with_the_wrong_layout(env, tmp_path: Path) -> None:
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ratings.txt").write_text("1 2 3\n")
    assert_user_error(invoke(["train", "--movielens", str(folder), "--model", "ease"], env), "u.data")


def test_unknown_model_name(ml_folder: Path, env) -> None:
    assert_user_error(
        invoke(["train", "--movielens", str(ml_folder), "--model", "bert4rec"], env), "bert4rec"
    )


def test_missing_run_path(env, tmp_path: Path) -> None:
    assert_user_error(invoke(["predict", "--run", str(tmp_path / "no-run"), "--k", "10"], env), "not found")


def test_folder_that_is_not_a_run(env, tmp_path: Path) -> None:
    assert_user_error(invoke(["predict", "--run", str(tmp_path)], env), "run.json")


def test_no_run_given_and_none_trained_yet(env, tmp_path: Path) -> None:
    for verb in ("predict", "evaluate", "register", "report"):
        assert_user_error(invoke([verb], env), "pass --run")


@pytest.mark.parametrize("k", ["0", "101", "-3"])
def test_k_out_of_range(env, tmp_path: Path, k: str) -> None:
    out = tmp_path / "recs.csv"
    assert_user_error(invoke(["predict", "--run", str(tmp_path), "--k", k, "--out", str(out)], env), "--k")
    assert not out.exists()


def test_unknown_profile(env) -> None:
    assert_user_error(invoke(["generate", "--profile", "huge"], env), "unknown profile")


def test_batch_without_a_registered_model(env, tmp_path: Path) -> None:
    log = tmp_path / "train.parquet"
    pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [0], "weight": [1.0]}).to_parquet(log)
    assert_user_error(invoke(["batch", "--interactions", str(log)], env), "alias 'champion'")


def test_benchmark_with_a_missing_folder(env, tmp_path: Path) -> None:
    assert_user_error(invoke(["benchmark", "--movielens", str(tmp_path / "ml-100k")], env), "not found")


def test_report_rebuilds_from_a_comparison_table(env, tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "ndcg@10": [0.16, 0.03],
            "recall@10": [0.19, 0.04],
            "coverage": [0.27, 0.01],
            "novelty": [4.9, 3.7],
            "popularity_bias": [0.92, 0.99],
            "cold_ndcg@10": [0.24, 0.02],
            "expected_ctr": [0.22, 0.08],
            "oracle_ctr": [0.28, 0.28],
        },
        index=pd.Index(["two_stage", "popularity"], name="model"),
    )
    table.to_csv(tmp_path / "comparison.csv")
    result = invoke(["report", "--run", str(tmp_path)], env)
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "two_stage" in html and html.count("data:image/png;base64") == 5
    assert_user_error(invoke(["report", "--run", str(tmp_path / "empty")], env), "comparison.csv")


def test_serving_commands_are_mounted_under_serve(env) -> None:
    from level3_recsys.serving.cli import app as serving_app

    names = [c.name for c in serving_app.registered_commands if not c.hidden]
    assert names and all(names)
    result = invoke(["serve", "--help"], env)
    assert result.exit_code == 0, result.output
    listed = {line.strip("│ ").split(" ")[0] for line in result.output.splitlines()}
    assert set(names) <= listed
    # a serving command itself is reached through the level's CLI
    result = invoke(["serve", names[0], "--help"], env)
    assert result.exit_code == 0 and f"serve {names[0]} [OPTIONS]" in result.output, result.output


TINY_ENV = {
    "L3__SIMULATOR__N_USERS": "150",
    "L3__SIMULATOR__N_ITEMS": "120",
    "L3__SIMULATOR__NEW_ITEMS_PER_DAY": "4",
    "L3__SIMULATOR__DAYS": "12",
    "L3__SIMULATOR__N_CREATORS": "30",
    "L3__SPLIT__TEST_DAYS": "3",
    "L3__MODELS": "[popularity, itemknn]",
}


def test_stages_then_evaluate_register_and_report(env, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    env = {**env, **TINY_ENV}
    for verb in ("generate", "split", "features"):
        result = invoke([verb, "--seed", "5"] if verb == "generate" else [verb], env)
        assert result.exit_code == 0, result.output
    run_dir = tmp_path / "artifacts" / "tiny-run"
    result = invoke(["train", "--model", "all", "--out", str(run_dir), "--seed", "5"], env)
    assert result.exit_code == 0, result.output

    # evaluate without --register logs metrics but registers nothing
    result = invoke(["evaluate", "--run", str(run_dir)], env)
    assert result.exit_code == 0, result.output
    uri = f"sqlite:///{(tmp_path / 'artifacts' / 'mlflow' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.search_registered_models() == []
    table = pd.read_csv(run_dir / "comparison.csv", index_col=0)
    best = str(table["ndcg@10"].idxmax())

    # register, with the run found as the newest one
    result = invoke(["register"], env)
    assert result.exit_code == 0, result.output
    champion = client.get_model_version_by_alias("level3_recsys", "champion")
    challenger = client.get_model_version_by_alias("level3_recsys", "challenger")
    assert champion.tags["model_name"] == best
    assert challenger.tags["model_name"] == (set(table.index) - {best}).pop()
    assert re.search(rf"champion\s+level3_recsys v{champion.version}: {best} ", result.output)

    # the rebuilt report names the run, never the machine's absolute path
    out = tmp_path / "elsewhere" / "report.html"
    result = invoke(["report", "--run", str(run_dir), "--out", str(out)], env)
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    assert "run tiny-run" in html and str(tmp_path) not in html
    assert "train_seconds" in html  # training times come from the run's run.json
