"""Two-stage options for rating data: the protocol's item-stratified inner holdout, numeric user features."""

from __future__ import annotations

import numpy as np
import pytest

from level3_recsys.models import build_model
from level3_recsys.movielens import load_movielens, write_fake_ml100k

CFG = {
    "candidates": ["popularity", "itemknn", "ease"],
    "holdout": "stratified",
    "holdout_fraction": 0.25,
    "holdout_windows": 1,
    "n_candidates": 20,
    "n_estimators": 20,
    "min_child_samples": 5,
    "user_numeric": ["age"],
    "show_progress": False,
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    folder = write_fake_ml100k(
        tmp_path_factory.mktemp("ml") / "ml-100k", n_users=50, n_items=90, n_ratings=1800
    )
    return load_movielens(folder)


def test_stratified_inner_holdout_cuts_every_item_like_the_protocol(data) -> None:
    model = build_model("two_stage", CFG)
    fit_part, label_part = model._inner_split(data, 0)
    assert len(fit_part.interactions) + len(label_part.interactions) == len(data.interactions)
    total = data.interactions.groupby("item_id").size()
    held = label_part.interactions.groupby("item_id").size().reindex(total.index, fill_value=0)
    # round-half-even of 0.75 * n stays in the fit part, the rest is labelled
    expected = total - np.round(0.75 * total).astype(int)
    assert (held == expected).all()
    assert (held[total <= 2] == 0).all()
    # another window draws another cut
    _, other = model._inner_split(data, 1)
    assert not other.interactions.equals(label_part.interactions)


def test_two_stage_uses_numeric_user_columns(data) -> None:
    model = build_model("two_stage", CFG).fit(data)
    assert "user_age" in model.feature_names_
    recs = model.recommend(data.user_ids[:5], k=5)
    assert len(recs) == 25
    without = build_model("two_stage", {**CFG, "user_numeric": []}).fit(data)
    assert "user_age" not in without.feature_names_
