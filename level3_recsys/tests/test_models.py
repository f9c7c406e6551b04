"""Every model behind one interface: shapes, seen-item exclusion, fallback, persistence, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level3_recsys.models import MODEL_NAMES, Recommender, build_model, top_k
from level3_recsys.models.base import NEG_INF
from level3_recsys.tests.recsys_helpers import silent_configs, tiny, tiny_models
from shared.errors import ConfigError, DataError, InputFileError


def test_top_k_matches_a_full_sort_and_breaks_ties_by_index() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 300)).astype(np.float32)
    idx, vals = top_k(scores, 7)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(vals, np.take_along_axis(scores, expected, axis=1))
    ties = np.array([[1.0, 3.0, 3.0, 2.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(top_k(ties, 3)[0], [[1, 2, 4]])
    assert top_k(ties, 10)[0].shape == (1, 5)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_recommend_contract(name: str) -> None:
    _, train, _ = tiny()
    model = tiny_models()[name]
    users = train.user_ids[:40]
    recs = model.recommend(users, k=5)
    assert list(recs.columns) == ["user_id", "item_id", "rank", "score"]
    assert (recs.groupby("user_id").size() == 5).all()
    assert set(recs["user_id"]) == set(users)
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    # scores never increase down a list
    assert (recs.groupby("user_id")["score"].diff().dropna() <= 1e-6).all()
    seen = pd.MultiIndex.from_frame(train.interactions[["user_id", "item_id"]])
    assert not pd.MultiIndex.from_frame(recs[["user_id", "item_id"]]).isin(seen).any()
    with_seen = model.recommend(users, k=5, exclude_seen=False)
    assert len(with_seen) == len(recs)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip(name: str, tmp_path: Path) -> None:
    _, train, _ = tiny()
    model = tiny_models()[name]
    users = train.user_ids[:30]
    path = model.save(tmp_path / name)
    loaded = Recommender.load(path)
    assert type(loaded) is type(model) and loaded.name == name
    pd.testing.assert_frame_equal(loaded.recommend(users, k=10), model.recommend(users, k=10))


def test_unknown_users_get_the_popularity_fallback() -> None:
    models = tiny_models()
    pop = models["popularity"].recommend(np.array([-1]), k=5)
    for name in ("itemknn", "als", "two_stage"):
        recs = models[name].recommend(np.array([10**9]), k=5)
        assert len(recs) == 5
    # the popularity model's own fallback is its decayed list; others use plain counts
    assert list(pop["item_id"]) == list(models["popularity"].recommend(np.array([-2]), k=5)["item_id"])


def test_restricted_items_and_cold_items() -> None:
    _world, train, _ = tiny()
    models = tiny_models()
    cold = np.setdiff1d(train.item_ids, train.interactions["item_id"].unique())
    assert len(cold) >= 10
    users = train.user_ids[:20]
    recs = models["two_tower"].recommend(users, k=5, items=cold)
    assert set(recs["item_id"]) <= set(cold) and len(recs) == 5 * len(users)
    # content gives cold items distinct scores in the two-tower model, not one constant
    scores = models["two_tower"].score_items(np.repeat(users[:1], len(cold)), cold)
    assert np.unique(scores).size > len(cold) // 2
    assert np.isfinite(scores).all()
    assert models["two_tower"].score_items(users[:1], np.array([-5]))[0] == NEG_INF


def test_score_items_agree_with_recommend() -> None:
    _, train, _ = tiny()
    model = tiny_models()["ease"]
    recs = model.recommend(train.user_ids[:10], k=3)
    scores = model.score_items(recs["user_id"].to_numpy(), recs["item_id"].to_numpy())
    np.testing.assert_allclose(scores, recs["score"].to_numpy(), rtol=1e-5)


def test_build_model_rejects_bad_names_and_configs() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("svd")
    with pytest.raises(ConfigError, match="invalid config"):
        build_model("als", {"factors": 0})
    with pytest.raises(ConfigError, match="needs a"):
        build_model("als", build_model("ease").config)
    with pytest.raises(DataError, match="not fitted"):
        build_model("ease").recommend([1])


def test_load_rejects_a_folder_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"meta\.json"):
        Recommender.load(tmp_path)


@pytest.mark.parametrize("name", ["als", "two_tower", "two_stage"])
def test_same_seed_same_recommendations(name: str) -> None:
    _, train, _ = tiny()
    cfg = silent_configs(
        two_tower={"epochs": 2},
        two_stage={
            "holdout_days": 3.0,
            "n_estimators": 20,
            "min_child_samples": 5,
            "candidates": ["itemknn", "als"],
        },
    )[name]
    a = build_model(name, cfg).fit(train).recommend(train.user_ids[:50], k=10)
    b = build_model(name, cfg).fit(train).recommend(train.user_ids[:50], k=10)
    pd.testing.assert_frame_equal(a, b)


def test_ease_closed_form_on_a_tiny_matrix() -> None:
    from level3_recsys.data import InteractionData

    inter = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "c"]})
    data = InteractionData.from_frames(inter)
    model = build_model("ease", {"l2": 1.0}).fit(data)
    x = data.matrix("binary").toarray()
    g = x.T @ x + np.eye(3)
    p = np.linalg.inv(g)
    b = np.eye(3) - p / np.diag(p)
    np.testing.assert_allclose(model.weights_, b, atol=1e-6)
    assert np.allclose(np.diag(model.weights_), 0)


def test_itemknn_jaccard_by_hand() -> None:
    from level3_recsys.data import InteractionData

    inter = pd.DataFrame({"user_id": [1, 1, 2, 2, 3], "item_id": ["a", "b", "a", "b", "a"]})
    model = build_model("itemknn", {"half_life_days": None, "use_weights": False}).fit(
        InteractionData.from_frames(inter)
    )
    # a: 3 users, b: 2 users, both: 2 -> jaccard 2 / (3 + 2 - 2)
    assert model.similarity_[0, 1] == pytest.approx(2 / 3)
    assert model.similarity_[0, 0] == pytest.approx(1.0)


def test_two_stage_uses_fewer_windows_when_history_is_short() -> None:
    from level3_recsys.data import SECONDS_PER_DAY

    _, train, _ = tiny()
    cfg = {
        "show_progress": False,
        "candidates": ["popularity", "itemknn"],
        "holdout_days": 4.0,
        "holdout_windows": 5,
        "n_estimators": 10,
        "min_child_samples": 5,
    }
    # Windows the history holds: window w labels (end - 4 days, end], end = last - 4w days,
    # and needs interactions before its cutoff to fit the candidates on.
    ts = train.interactions["timestamp"].to_numpy()
    available = 0
    for w in range(5):
        end = ts.max() - w * 4 * SECONDS_PER_DAY
        cutoff = end - 4 * SECONDS_PER_DAY
        if not ((ts <= cutoff).any() and ((ts > cutoff) & (ts <= end)).any()):
            break
        available += 1
    assert 1 < available < 5, "the tiny world should hold some windows, not all five"

    model = build_model("two_stage", cfg).fit(train)
    assert model.windows_used_ == available
    assert len(model.recommend(train.user_ids[:5], k=3)) == 15
    # Asking for exactly the windows that exist trains the ranker on the same rows;
    # one window trains it on fewer.
    exact = build_model("two_stage", {**cfg, "holdout_windows": available}).fit(train)
    one = build_model("two_stage", {**cfg, "holdout_windows": 1}).fit(train)
    assert exact.windows_used_ == available and one.windows_used_ == 1
    assert model.train_rows_ == exact.train_rows_ > one.train_rows_
    with pytest.raises(DataError, match="holdout"):
        build_model("two_stage", {**cfg, "holdout_days": 100.0}).fit(train)


@pytest.mark.parametrize("name", ["popularity", "als"])
def test_saved_model_folder_is_readable_by_others_and_replaced_whole(name: str, tmp_path: Path) -> None:
    import os

    model = tiny_models()[name]
    target = tmp_path / name
    target.mkdir()
    (target / "stale.txt").write_text("from an older save")
    umask = os.umask(0o022)
    try:
        model.save(target)
    finally:
        os.umask(umask)
    # published with 0777 & ~umask, not mkdtemp's private 0700 (a container user reads it)
    assert target.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in target.iterdir()) == ["meta.json", "model.pkl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary folder left"


def test_top_k_matches_exact_reference_with_ties_and_masked_items():
    from level3_recsys.models.base import top_k

    rng = np.random.default_rng(0)
    for trial in range(100):
        scores = rng.integers(0, 5, size=(7, 30)).astype(np.float32)
        scores[rng.random(scores.shape) < 0.2] = -np.inf
        if trial % 3 == 0:
            scores[:] = 0.0  # every score tied: lowest indices must win
        k = int(rng.integers(1, 31))
        cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        expected = np.lexsort((cols, -scores), axis=1)[:, :k]
        idx, vals = top_k(scores, k)
        np.testing.assert_array_equal(idx, expected)
        np.testing.assert_array_equal(vals, np.take_along_axis(scores, expected, axis=1))
