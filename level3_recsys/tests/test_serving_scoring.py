"""The model service's single-user scoring path ranks exactly like the recommender's `recommend`."""

from __future__ import annotations

import pytest

from level3_recsys.serving.scoring import ModelRunner, RecommendRequest


@pytest.fixture(scope="module", params=["itemknn", "popularity"])
def runner(request) -> ModelRunner:
    from level3_recsys.models import build_model
    from level3_recsys.simulate import SimulatorConfig, simulate

    world = simulate(
        SimulatorConfig(n_users=60, n_items=40, new_items_per_day=1, days=4, show_progress=False)
    )
    return ModelRunner(build_model(request.param).fit(world.interaction_data()), "reg/m", "3")


@pytest.mark.parametrize("k", [1, 5, 100])
def test_top_items_equals_recommend_for_known_and_cold_users(runner, k):
    rec = runner.recommender
    users = [*rec.user_ids_.tolist()[:25], "never-seen"]
    for user in users:
        expected = rec.recommend([user], k=k, exclude_seen=True)
        item_ids, scores = runner.top_items(str(user), k)
        assert item_ids == expected["item_id"].tolist()
        assert scores == pytest.approx(expected["score"].tolist())
        answer = runner.recommend(RecommendRequest(user_id=str(user), k=k))
        assert [i.item_id for i in answer.items] == item_ids
        assert [i.rank for i in answer.items] == list(range(1, len(item_ids) + 1))
        assert answer.known_user is (user != "never-seen")
    # k larger than the unseen catalogue: seen items are left out, never padded with them
    known = rec.user_ids_[0]
    seen = set(rec.item_ids_[rec.seen_[0].indices].tolist())
    assert not seen & set(runner.top_items(str(known), 100)[0])
