"""Shared fixtures: small generated CSVs and one penguins run reused by many tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level1_eda.config import L1Config
from level1_eda.data import penguins_csv
from level1_eda.pipeline import run
from level1_eda.results import RunResult


def small_cfg(**overrides: object) -> L1Config:
    """A config with small samples so tests stay fast."""
    values = {"plot_rows": 300, "pairplot_rows": 100, "max_plot_columns": 3, "cv_folds": 3, **overrides}
    return L1Config(**values)


@pytest.fixture(scope="session")
def penguins_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return penguins_csv(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def penguins_run(tmp_path_factory: pytest.TempPathFactory, penguins_path: Path) -> RunResult:
    """The level's default run (quick profile, 5-fold CV) on penguins, once per session."""
    # Level defaults (split, 5-fold CV, model); smaller figures to keep the suite quick.
    cfg = L1Config(plot_rows=400, pairplot_rows=150, max_plot_columns=3)
    return run(penguins_path, cfg, out=tmp_path_factory.mktemp("penguins-run"))


@pytest.fixture(scope="session")
def penguins_heldout(tmp_path_factory: pytest.TempPathFactory, penguins_path: Path) -> tuple[RunResult, Path]:
    """A run on three quarters of the penguins, and the other quarter (stratified, seeded) held aside.

    The saved model is refitted on every row it is given, so only rows it never saw
    can say how it does on new penguins.
    """
    from sklearn.model_selection import train_test_split

    df = pd.read_csv(penguins_path).dropna(subset=["species"])
    known, held = train_test_split(df, test_size=0.25, random_state=0, stratify=df["species"])
    folder = tmp_path_factory.mktemp("penguins-heldout")
    known.to_csv(folder / "known.csv", index=False)
    held.to_csv(folder / "held.csv", index=False)
    return run(folder / "known.csv", small_cfg(), out=folder / "run"), folder / "held.csv"


def make_mixed_frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """A frame with one column of every role and a learnable 2-class target."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, n)
    x2 = rng.normal(5, 2, n)
    colour = rng.choice(["red", "green", "blue"], n)
    label = np.where(x1 + (colour == "red") * 1.5 + rng.normal(0, 0.5, n) > 0.5, "yes", "no")
    return pd.DataFrame(
        {
            "row_id": np.arange(1, n + 1),
            "x1": np.round(x1, 3),
            "x2": np.round(x2, 3),
            "colour": colour,
            "flag": rng.choice(["true", "false"], n),
            "city": [f"c{i}" for i in rng.integers(0, 80, n)],  # 73 levels: most repeat
            "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "comment": [f"note number {i} about this row" for i in range(n)],
            "const": "same",
            "label": label,
        }
    )


def make_passenger_frame(n: int = 891, seed: int = 0) -> pd.DataFrame:
    """A passenger list shaped like the well-known survival CSV: an id, names, ticket and cabin codes.

    Survival depends on sex, class, age and the size of one's travel group. Travel groups
    share a ticket code (about 75 % of values distinct) and, in first class mostly, a cabin
    code (about 78 % missing, most present values distinct). Neither code carries signal
    beyond what class and family size already say: one-hot encoding their most frequent
    values only adds features to memorise.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 2, 3, 4, 5, 6, 7], n, p=[0.85, 0.09, 0.03, 0.01, 0.01, 0.005, 0.005])
    group = np.repeat(np.arange(n), sizes)[:n]
    group_size = np.repeat(sizes, sizes)[:n]
    big = group_size >= 4  # large families travelled third class
    pclass = np.where(
        big, rng.choice([1, 2, 3], n, p=[0.1, 0.1, 0.8]), rng.choice([1, 2, 3], n, p=[0.26, 0.22, 0.52])
    )
    sex = rng.choice(["male", "female"], n, p=[0.65, 0.35])
    age = np.clip(rng.normal(38 - 5 * pclass, 13, n), 0.5, 80).round()
    sibsp = np.minimum(rng.poisson(0.3, n) + (group_size > 1), group_size - 1)
    parch = group_size - 1 - sibsp
    fare = np.round(np.exp(rng.normal(4.4 - 0.8 * pclass, 0.5, n)), 2)
    embarked = rng.choice(["S", "C", "Q"], n, p=[0.72, 0.19, 0.09])
    logit = 0.2 + 2.5 * (sex == "female") - (pclass - 1) - 0.03 * (age - 30) - 0.25 * (group_size - 1)
    survived = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    prefix = rng.choice(["A/5 ", "PC ", "STON/O2. ", "", "", ""], n)
    ticket = np.array([f"{prefix[g]}{100_000 + g * 7919 % 800_000}" for g in group])
    deck = rng.choice(list("ABCDEF"), n)
    room = rng.integers(1, 150, n)
    has_cabin = rng.random(n) < np.where(pclass == 1, 0.8, 0.06)
    cabin = np.where(has_cabin, [f"{deck[g]}{room[g]}" for g in group], None)
    age = np.where(rng.random(n) < 0.2, np.nan, age)  # a fifth of ages unknown
    title = np.where(sex == "female", "Mrs", "Mr")
    order = rng.permutation(n)  # groups are not listed together
    frame = pd.DataFrame(
        {
            "PassengerId": np.arange(1, n + 1),
            "Survived": survived[order],
            "Pclass": pclass[order],
            "Name": [f"Surname{group[i]}, {title[i]}. Given{i}" for i in order],
            "Sex": sex[order],
            "Age": age[order],
            "SibSp": sibsp[order],
            "Parch": parch[order],
            "Ticket": ticket[order],
            "Fare": fare[order],
            "Cabin": cabin[order],
            "Embarked": embarked[order],
        }
    )
    return frame
