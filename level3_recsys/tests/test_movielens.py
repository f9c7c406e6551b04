"""The MovieLens reader on generated folders in both layouts, and the benchmark protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level3_recsys.benchmark import PUBLISHED, run_benchmark
from level3_recsys.movielens import (
    detect_layout,
    load_movielens,
    read_items,
    read_ratings,
    write_fake_ml100k,
    write_fake_ml_latest_small,
)
from level3_recsys.split import python_stratified_split
from shared.errors import EmptyDataError, InputFileError


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_ml100k(
        tmp_path_factory.mktemp("ml") / "ml-100k", n_users=40, n_items=70, n_ratings=1200
    )


@pytest.fixture(scope="module")
def mlsmall(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_ml_latest_small(
        tmp_path_factory.mktemp("ml") / "ml-latest-small", n_users=30, n_items=50
    )


def test_ml100k_layout(ml100k: Path) -> None:
    assert detect_layout(ml100k) == "ml-100k"
    ratings = read_ratings(ml100k)
    raw = pd.read_csv(ml100k / "u.data", sep="\t", header=None)
    assert len(ratings) == len(raw)
    # file order is kept (the stratified split's random numbers depend on it)
    assert (ratings["user_id"].to_numpy() == raw[0].to_numpy()).all()
    assert (ratings["timestamp"].to_numpy() == raw[3].to_numpy()).all()
    items = read_items(ml100k)
    assert len(items) == 70 and items["item_id"].tolist() == list(range(1, 71))
    # latin-1 titles decode, genre flags become pipe-joined names, dates become epoch seconds
    assert items.loc[0, "title"].startswith("Café Société")
    flags = pd.read_csv(ml100k / "u.item", sep="|", header=None, encoding="latin-1").iloc[:, 5:].to_numpy()
    n_genres = items["genres"].str.split("|").map(len).to_numpy()
    assert (n_genres == flags.sum(axis=1)).all()
    assert items["publish_time"].isna().sum() == 1  # the one missing release date
    year = items["title"].str.extract(r"\((\d{4})\)")[0].astype(int)
    dates = pd.to_datetime(items["publish_time"], unit="s")
    ok = dates.notna()
    assert (dates[ok].dt.year == year[ok]).all()


def test_ml100k_as_interaction_data(ml100k: Path) -> None:
    data = load_movielens(ml100k)
    assert data.name == "ml-100k"
    assert len(data.interactions) == len(read_ratings(ml100k))
    assert (data.interactions["weight"] == 1.0).all()
    assert {"age", "gender", "occupation"} <= set(data.users.columns)
    liked = load_movielens(ml100k, min_rating=4)
    ratings = read_ratings(ml100k)
    assert len(liked.interactions) == int((ratings["rating"] >= 4).sum())
    weighted = load_movielens(ml100k, weight="rating")
    assert weighted.interactions["weight"].sum() == ratings["rating"].sum()


def test_ml_latest_small_layout(mlsmall: Path) -> None:
    assert detect_layout(mlsmall) == "ml-latest-small"
    data = load_movielens(mlsmall)
    ratings = pd.read_csv(mlsmall / "ratings.csv")
    assert len(data.interactions) == len(ratings)
    assert set(data.item_ids) == set(pd.read_csv(mlsmall / "movies.csv")["movieId"])
    assert not data.items["genres"].str.contains("no genres").any()
    assert (pd.to_datetime(data.items["publish_time"], unit="s").dt.year >= 1950).all()


def test_reader_errors(tmp_path: Path, ml100k: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_movielens(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="neither"):
        load_movielens(empty)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ratings.csv").write_text("user,item\n1,2\n")
    with pytest.raises(InputFileError, match="lacks"):
        load_movielens(bad)
    with pytest.raises(EmptyDataError):
        load_movielens(ml100k, min_rating=6)


def test_benchmark_protocol_on_a_generated_folder(ml100k: Path) -> None:
    table = run_benchmark(ml100k, models=("popularity", "ease"), show_progress=False)
    assert list(table.index) == sorted(table.index, key=lambda m: -table.loc[m, "ndcg@10"])
    assert {"ndcg@10", "precision@10", "recall@10", "map", "map@10", "train_seconds"} <= set(table.columns)
    assert (table["map"] <= table["map@10"] + 1e-12).all()
    ratings = read_ratings(ml100k)
    _, test = python_stratified_split(ratings, ratio=0.75, filter_by="item", seed=42)
    assert (table["users"] == test["user_id"].nunique()).all()
    # recomputing the same run gives the same numbers (seeded split and models)
    again = run_benchmark(ml100k, models=("ease",), show_progress=False)
    assert again.loc["ease", "ndcg@10"] == table.loc["ease", "ndcg@10"]
    assert PUBLISHED["ndcg@10"].max() == pytest.approx(0.48)
    assert np.isfinite(table.to_numpy(dtype=float)).all()
