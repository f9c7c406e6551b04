"""Known answers for the experiment designer: hand-made candidate sets, EIG values, baselines."""

from __future__ import annotations

import time

import numpy as np
import pytest

from level5_discovery.design import (
    Action,
    DesignConfig,
    ExperimentDesigner,
    RandomDesigner,
    RoundRobinDesigner,
    default_actions,
    hop_distances,
    outcome_probabilities,
    perturbed_candidates,
    random_dag,
    simulate_campaign,
    transitive_closure,
    update_weights,
)

GENES = ["A", "B", "C", "D", "E"]


def graphs(*edge_lists: list[str]) -> np.ndarray:
    """Candidate stack from edge strings like "AB" (A -> B) over GENES."""
    out = np.zeros((len(edge_lists), len(GENES), len(GENES)), dtype=bool)
    for k, edges in enumerate(edge_lists):
        for e in edges:
            out[k, GENES.index(e[0]), GENES.index(e[1])] = True
    return out


def test_closure_and_hop_distances_on_a_chain() -> None:
    chain = graphs(["AB", "BC", "CD"])
    reach = transitive_closure(chain)[0]
    assert reach[0, 3] and reach[1, 3] and not reach[3, 0] and not reach[0, 4]
    dist = hop_distances(chain)[0]
    assert dist[0, 1] == 1 and dist[0, 2] == 2 and dist[0, 3] == 3 and dist[3, 0] == 0 and dist[0, 4] == 0


def test_designer_picks_the_only_knockout_that_separates_all_three_graphs() -> None:
    cand = graphs(["BC"], ["BD"], ["BC", "BD"])
    choice = ExperimentDesigner(GENES).choose(cand, None, default_actions(GENES))
    assert choice.action == Action("knockout", "B")
    assert choice.eig == pytest.approx(np.log2(3))
    others = choice.ranking[choice.ranking["target"] != "B"]
    assert (others["eig"] == 0).all()


def test_action_with_identical_outcomes_has_zero_eig_and_is_never_chosen() -> None:
    cand = graphs(["AB", "CD"], ["AB", "CD", "CE"])
    ranking = ExperimentDesigner(GENES).score_actions(cand, None, default_actions(GENES))
    eig = dict(zip(ranking["target"], ranking["eig"], strict=True))
    assert eig["A"] == 0.0 and eig["C"] == pytest.approx(1.0)
    # Once the candidates agree on every outcome nothing is worth running.
    same = graphs(["AB"], ["AB"])
    assert ExperimentDesigner(GENES).choose(same, None, default_actions(GENES)).action is None


def test_perfect_split_of_four_equal_graphs_is_two_bits() -> None:
    cand = graphs(["BC"], ["BD"], ["BC", "BD"], [])
    ranking = ExperimentDesigner(GENES).score_actions(cand, None, default_actions(GENES))
    assert ranking.iloc[0]["target"] == "B"
    assert ranking.iloc[0]["eig"] == pytest.approx(2.0)


def test_weights_change_the_choice() -> None:
    cand = graphs(["AC"], ["AD"], ["BC"], ["BD"])
    designer = ExperimentDesigner(GENES)
    acts = default_actions(GENES)
    # Uniform: A and B both give 1.5 bits; the tie goes to the first offered action.
    uniform = designer.choose(cand, None, acts)
    assert uniform.action == Action("knockout", "A") and uniform.eig == pytest.approx(1.5)
    skewed = designer.choose(cand, np.array([0.05, 0.05, 0.45, 0.45]), acts)
    assert skewed.action == Action("knockout", "B")
    assert skewed.eig == pytest.approx(-(0.1 * np.log2(0.1) + 2 * 0.45 * np.log2(0.45)))


def test_cost_divides_the_gain() -> None:
    cand = graphs(["BC"], ["BD"], ["BC", "BD"], [])
    acts = [Action("knockout", "B"), Action("knockdown", "B")]
    choice = ExperimentDesigner(GENES).choose(cand, None, acts, {"knockdown": 0.5})
    assert choice.action == Action("knockdown", "B") and choice.eig_per_cost == pytest.approx(4.0)


def test_observation_separates_graphs_by_marginal_dependence() -> None:
    # A -> B vs no edge: observation alone tells them apart; a collider-free pair of chains does not.
    cand = graphs(["AB"], [])
    choice = ExperimentDesigner(GENES).choose(cand, None, [Action("observe")])
    assert choice.action == Action("observe") and choice.eig == pytest.approx(1.0)
    reversed_ = graphs(["AB"], ["BA"])  # same dependence, Markov equivalent
    assert ExperimentDesigner(GENES).choose(reversed_, None, [Action("observe")]).action is None


def test_focus_prefers_information_about_the_drivers_ancestors() -> None:
    # Knocking out B splits the graphs more, but only A tells whether A is an ancestor of driver D.
    cand = graphs(["AD"], [], ["BC"], ["BC", "BE"])
    acts = [Action("knockout", "A"), Action("knockout", "B")]
    assert ExperimentDesigner(GENES).choose(cand, None, acts).action == Action("knockout", "B")
    focused = ExperimentDesigner(GENES, DesignConfig(focus_weight=1.0), focus=["D"]).choose(cand, None, acts)
    assert focused.action == Action("knockout", "A")
    row = focused.ranking.set_index("target").loc["B"]
    assert row["eig_focus"] == pytest.approx(1.5 + 0.811278 - 2.0, abs=1e-5)


def test_noisy_readout_lowers_eig_and_monte_carlo_matches_the_exact_limit() -> None:
    cand = graphs(["BC"], ["BD"], ["BC", "BD"], [])
    acts = [Action("knockout", "B")]
    near_exact = ExperimentDesigner(GENES, DesignConfig(false_positive=1e-4)).score_actions(cand, None, acts)
    assert near_exact.iloc[0]["eig"] == pytest.approx(2.0, abs=0.02)
    noisy = ExperimentDesigner(GENES, DesignConfig(false_positive=0.1)).score_actions(cand, None, acts)
    assert 0.5 < noisy.iloc[0]["eig"] < 1.9
    again = ExperimentDesigner(GENES, DesignConfig(false_positive=0.1)).score_actions(cand, None, acts)
    assert again.equals(noisy)


def test_hop_power_decays_detection_with_path_length() -> None:
    chain = graphs(["AB", "BC", "CD"])
    p = outcome_probabilities(chain, Action("knockout", "A"), GENES, DesignConfig(hop_power=0.5))[0]
    np.testing.assert_allclose(p, [0.0, 1.0, 0.5, 0.25, 0.0])


def test_update_weights_eliminates_and_masks() -> None:
    cand = graphs(["BC"], ["BD"], ["BC", "BD"], [])
    a = Action("knockout", "B")
    shifted_c = np.array([False, False, True, False, False])
    post = update_weights(cand, None, a, shifted_c, GENES)
    assert post[0] == pytest.approx(1.0, abs=1e-5) and post[1] < 1e-5
    # Only C was decided: graphs that differ on D stay tied.
    mask = np.array([False, False, True, False, False])
    post_masked = update_weights(cand, None, a, shifted_c, GENES, mask=mask)
    assert post_masked[0] == pytest.approx(post_masked[2]) and post_masked[0] == pytest.approx(0.5, abs=1e-5)


def test_bad_inputs_raise() -> None:
    designer = ExperimentDesigner(GENES)
    with pytest.raises(ValueError, match="shape"):
        designer.choose(np.zeros((2, 3, 3), dtype=bool), None, default_actions(GENES))
    with pytest.raises(ValueError, match="weights"):
        designer.choose(graphs(["AB"], []), np.array([1.0, -1.0]), default_actions(GENES))
    with pytest.raises(ValueError, match="unknown"):
        ExperimentDesigner(GENES, focus=["Z"])


def _mean_steps(make, n_worlds: int = 10, budget: float = 40, power: float = 1.0) -> float:
    steps = []
    for s in range(n_worlds):
        truth = random_dag(8, 0.3, np.random.default_rng(s))
        res = simulate_campaign(
            truth, make(s), budget, np.random.default_rng(100 + s), k=200, detection_power=power
        )
        steps.append(res.identified_at if res.identified_at is not None else budget + 1)
    return float(np.mean(steps))


GENES8 = [f"G{i:02d}" for i in range(8)]


def test_designed_campaign_identifies_the_truth_faster_than_random() -> None:
    designed = _mean_steps(lambda s: ExperimentDesigner(GENES8))
    random_ = _mean_steps(lambda s: RandomDesigner(s))
    round_robin = _mean_steps(lambda s: RoundRobinDesigner(s))
    assert designed <= 0.6 * random_  # measured 5.9 vs 16.3
    assert designed <= round_robin  # measured 5.9 vs 6.5: the strong baseline is close


def test_campaign_trajectory_and_identification() -> None:
    truth = random_dag(8, 0.3, np.random.default_rng(3))
    res = simulate_campaign(truth, ExperimentDesigner(GENES8), 40, np.random.default_rng(7))
    traj = res.trajectory
    assert res.identified_at is not None and traj.iloc[-1]["p_true"] >= 0.99
    assert traj.iloc[-1]["f1"] == 1.0 and traj.iloc[-1]["shd"] == 0
    assert (np.diff(traj["spent"]) > 0).all() and traj["step"].tolist() == list(range(len(traj)))
    assert traj.iloc[1:]["eig"].gt(0).all()


def test_noisy_campaign_still_beats_random() -> None:
    designed = _mean_steps(lambda s: ExperimentDesigner(GENES8, DesignConfig(hop_power=0.7)), 5, power=0.7)
    random_ = _mean_steps(lambda s: RandomDesigner(s), 5, power=0.7)
    assert designed <= 0.7 * random_


def test_baselines_are_deterministic_and_round_robin_covers_every_gene() -> None:
    cand = graphs(["AB"], [])
    acts = default_actions(GENES)
    picks = [RandomDesigner(5).choose(cand, None, acts).action for _ in range(3)]
    r1, r2 = RandomDesigner(5), RandomDesigner(5)
    assert [r1.choose(cand, None, acts).action for _ in range(20)] == [
        r2.choose(cand, None, acts).action for _ in range(20)
    ]
    assert len(set(picks)) == 1  # fresh designers with one seed agree
    rr = RoundRobinDesigner(1)
    first = [rr.choose(cand, None, acts).action for _ in range(len(GENES))]
    assert sorted(a.target or "" for a in first) == GENES


def test_perturbed_candidates_contain_the_truth_once() -> None:
    truth = random_dag(8, 0.3, np.random.default_rng(0))
    cand, idx = perturbed_candidates(truth, 50, np.random.default_rng(1))
    assert np.array_equal(cand[idx], truth)
    keys = {transitive_closure(c).tobytes() for c in cand}
    assert len(keys) == len(cand) == 50


def test_choose_is_fast_on_200_candidates_of_20_genes() -> None:
    genes = [f"G{i:02d}" for i in range(20)]
    truth = random_dag(20, 0.08, np.random.default_rng(1))
    cand, _ = perturbed_candidates(truth, 200, np.random.default_rng(2), max_edits=4)
    acts = default_actions(genes)
    for cfg in (DesignConfig(), DesignConfig(hop_power=0.8)):
        designer = ExperimentDesigner(genes, cfg)
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            designer.choose(cand, None, acts)
            best = min(best, time.perf_counter() - t0)
        assert best < 0.2, f"choose took {best:.3f} s"
