"""The MovieLens benchmark on the real ml-100k (bundled in the recbole wheel) against the published bar.

EASE alone takes seconds; the whole line-up (two-tower, two-stage ranker) is slow, about three
minutes on 2 cores.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from level3_recsys.benchmark import PUBLISHED, run_benchmark
from level3_recsys.movielens import export_bundled_ml100k

pytestmark = pytest.mark.skipif(importlib.util.find_spec("recbole") is None, reason="recbole not installed")

#: BiVAE, the best exact figure of the brief's table (the EASE row is an approximate 0.48).
BEST_EXACT_PUBLISHED = 0.4751


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_bundled_ml100k(tmp_path_factory.mktemp("real") / "ml-100k")


def test_ease_reproduces_and_beats_the_published_table(real_folder: Path) -> None:
    table = run_benchmark(real_folder, ["popularity", "ease"], show_progress=False)
    assert (table["users"] == 943).all()
    assert PUBLISHED["ndcg@10"].drop("EASE λ=500 (approx.)").max() == BEST_EXACT_PUBLISHED
    ease = table.loc["ease"]
    # EASE lambda=500 reproduces the brief's approximate row (0.48 / 0.42 / 0.22 / 0.148) on this split
    assert ease["ndcg@10"] == pytest.approx(0.48, abs=0.006)
    assert ease["precision@10"] == pytest.approx(0.42, abs=0.006)
    assert ease["recall@10"] == pytest.approx(0.22, abs=0.01)
    assert ease["map"] == pytest.approx(0.148, abs=0.004)
    # measured 0.4829: above BiVAE by a clear margin and above the approximate EASE row
    assert ease["ndcg@10"] > BEST_EXACT_PUBLISHED + 0.005
    assert ease["ndcg@10"] > PUBLISHED["ndcg@10"].max()
    # and far above the non-personalised baseline
    assert ease["ndcg@10"] > table.loc["popularity", "ndcg@10"] + 0.15


@pytest.mark.slow
def test_every_learned_model_on_the_real_data(real_folder: Path) -> None:
    table = run_benchmark(real_folder, show_progress=False)
    assert str(table["ndcg@10"].idxmax()) in {"ease", "two_stage"}
    assert table["ndcg@10"].max() > BEST_EXACT_PUBLISHED + 0.005
    # the two-stage ranker (candidates incl. EASE) beats every exact published row too
    assert table.loc["two_stage", "ndcg@10"] > BEST_EXACT_PUBLISHED
    # SAR-style item-kNN (Jaccard) lands near the benchmark's SAR run (0.3883)
    sar = PUBLISHED.loc["SAR, Jaccard (benchmark run)", "ndcg@10"]
    assert table.loc["itemknn", "ndcg@10"] == pytest.approx(sar, abs=0.02)
    learned = table.drop(index="popularity")["ndcg@10"]
    assert isinstance(learned, pd.Series)
    assert (learned > table.loc["popularity", "ndcg@10"]).all()
