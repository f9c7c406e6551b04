"""The investigation loop: designed experiments beat random ones at the same budget, every
accepted relation carries its evidence, refuted literature claims are rejected with a reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level5_discovery.design import Action, Choice
from level5_discovery.estimate import EstimateConfig, estimate_graph
from level5_discovery.experiments import ExperimentAPI, Intervention
from level5_discovery.investigate import (
    InvestigateConfig,
    LiteratureClaim,
    investigate,
    prefer_undecided,
    prefer_untested,
    undecided_genes,
)
from level5_discovery.simulate import WorldConfig, generate_world
from level5_discovery.truth import Evaluator

CFG = InvestigateConfig(candidates=60)


def _campaign(seed: int, strategy: str, claims=(), n_genes: int = 12, budget: float = 12.0):
    world = generate_world(WorldConfig(n_genes=n_genes), seed)
    api = ExperimentAPI(world, budget=budget, seed=seed)
    result = investigate(api, list(claims), CFG, strategy=strategy, seed=seed)  # type: ignore[arg-type]
    return world, api, result


@pytest.mark.slow
def test_designed_experiments_recover_more_true_edges_than_random_ones_at_the_same_budget() -> None:
    designed, random = [], []
    for seed in range(3):
        world, _, d = _campaign(seed, "designed")
        _, _, r = _campaign(seed, "random")
        ev = Evaluator(world)
        designed.append(ev.score(d.adjacency)["f1"])
        random.append(ev.score(r.adjacency)["f1"])
    assert np.mean(designed) >= np.mean(random) + 0.1, (designed, random)


def test_budget_is_spent_exactly_and_every_accepted_relation_has_a_trail() -> None:
    _, api, result = _campaign(0, "designed")
    assert api.spent == pytest.approx(api.budget)
    assert len(result.steps) == int(api.budget)  # a knockout costs 1
    assert result.steps["spent"].is_monotonic_increasing
    assert len(result.relations) == int(result.adjacency.sum()) > 0
    for rel in result.relations.itertuples():
        has_experiment = bool(rel.experiments) and rel.q < CFG.stats.alpha
        assert has_experiment or rel.papers, f"{rel.cause}->{rel.effect} has no evidence trail"
        if has_experiment:
            assert rel.status == "tested" and (rel.ci_high < 0 or rel.ci_low > 0)  # CI excludes 0


def test_an_untrue_literature_claim_is_rejected_with_the_reason_and_a_true_one_is_kept() -> None:
    world = generate_world(WorldConfig(n_genes=12), 1)
    ev = Evaluator(world)
    adj = ev.true_adjacency()
    reach = ev.reachability()
    i, j = map(int, np.argwhere(adj)[0])
    # A claim with no path at all between the two genes, in either direction.
    a, b = map(int, np.argwhere(~reach & ~reach.T & ~np.eye(12, dtype=bool))[0])
    g = world.genes
    claims = [
        LiteratureClaim(g[i], g[j], "+", ("P1",), 0.8),
        LiteratureClaim(g[a], g[b], "+", ("P2",), 0.8),
    ]
    api = ExperimentAPI(world, budget=12.0, seed=1)
    result = investigate(api, claims, CFG, strategy="round_robin", seed=1)
    rejected = result.rejected.set_index(["cause", "effect"])
    assert (g[i], g[j]) not in rejected.index
    assert (g[a], g[b]) in rejected.index
    assert rejected.loc[(g[a], g[b]), "reason"].startswith(("refuted", "not supported"))
    kept = result.relations.set_index(["cause", "effect"])
    assert "P1" in kept.loc[(g[i], g[j]), "papers"]


def test_parent_selection_among_ancestors_drops_mediated_paths() -> None:
    """With every gene knocked out twice, the BIC selection among each gene's true ancestors
    returns (almost) exactly its true parents: mediated ancestors drop out."""
    world = generate_world(WorldConfig(n_genes=8, expected_parents=1.5), 5)
    ev = Evaluator(world)
    api = ExperimentAPI(world, budget=100.0, seed=5)
    frames = [api.run(Intervention("knockout", gene)).data for gene in world.genes for _ in range(2)]
    closure = ev.reachability()
    adj, _ = estimate_graph(pd.concat(frames), world.genes, closure, EstimateConfig(bic_penalty=4.0))
    truth = ev.true_adjacency()
    assert ev.score(adj)["shd"] <= 1, (np.argwhere(adj != truth), truth.sum())
    assert closure.sum() > truth.sum()  # there were mediated ancestors to drop


def _choice(scores: dict[str, float]) -> tuple[Choice, list[Action]]:
    actions = [Action("knockout", g) for g in scores]
    ranking = pd.DataFrame(
        {"target": list(scores), "eig": list(scores.values()), "score_per_cost": list(scores.values()),
         "order": range(len(scores))}
    ).sort_values("score_per_cost", ascending=False)  # fmt: skip
    best = ranking.iloc[0]
    return Choice(
        actions[int(best["order"])], float(best["eig"]), float(best["score_per_cost"]), ranking
    ), actions


def test_a_repeat_gives_way_to_an_untested_gene_scoring_within_the_ratio_only() -> None:
    choice, actions = _choice({"A": 1.0, "B": 0.4, "C": 0.2})
    assert prefer_untested(choice, actions, {"A"}, 0.3).action == Action("knockout", "B")
    assert prefer_untested(choice, actions, {"A"}, 0.5).action == Action("knockout", "A")  # 0.4 < 0.5
    assert prefer_untested(choice, actions, {"A"}, 0.0).action == Action("knockout", "A")  # off
    assert prefer_untested(choice, actions, {"B"}, 0.3) is choice  # the best is untested already


def test_a_repeat_goes_to_the_tested_gene_whose_tests_left_the_most_genes_undecided() -> None:
    """The designer wants to repeat A; C's knockout left two genes undecided and B's one: C goes."""
    choice, actions = _choice({"A": 1.0, "B": 0.6, "C": 0.4, "D": 0.2})
    tested = {"A", "B", "C"}
    picked = prefer_undecided(choice, actions, tested, {"A": 0, "B": 1, "C": 2})
    assert picked.action == Action("knockout", "C")
    # Ties go to the designer's ranking; an untested gene's count never counts.
    tie = prefer_undecided(choice, actions, tested, {"A": 0, "B": 2, "C": 2, "D": 5})
    assert tie.action == Action("knockout", "B")
    assert prefer_undecided(choice, actions, tested, {"A": 0, "B": 0, "C": 0}) is choice  # all decided
    fresh = prefer_undecided(choice, actions, {"B", "C"}, {"B": 3, "C": 3})
    assert fresh is choice  # the designer's pick is untested: not a repeat, not redirected


def test_undecided_genes_are_neither_significant_nor_powered_nulls() -> None:
    tests = pd.DataFrame(
        {"variable": ["A", "B", "C", "D", "phenotype"], "is_target": [True, False, False, False, False],
         "significant": [True, True, False, False, False], "power_ok": [False, False, True, False, False]}
    )  # fmt: skip
    assert undecided_genes(tests, ["A", "B", "C", "D"]) == 1  # D (not the target A, not the phenotype)


def _wells(experiment: int, effect: float, rng: np.random.Generator, n: int = 4) -> pd.DataFrame:
    """One knockout of A: n control and n treated wells of B (B moves by ``effect``) and C (flat)."""
    arm = ["control"] * n + ["treated"] * n
    b = rng.normal(0.0, 0.5, 2 * n) + np.r_[np.zeros(n), np.full(n, effect)]
    return pd.DataFrame(
        {
            "A": np.r_[np.full(n, 3.0), np.zeros(n)] + rng.normal(0, 0.1, 2 * n),
            "B": b,
            "C": rng.normal(0.0, 0.5, 2 * n),
            "arm": arm,
            "batch": experiment,
            "experiment": experiment,
            "intervention": "knockout",
            "target": "A",
        }
    )


def test_repeats_of_an_experiment_are_tested_on_their_pooled_wells() -> None:
    """An effect one experiment's 4 + 4 wells cannot establish passes on three repeats' 12 + 12."""
    from level5_discovery.investigate import pooled_repeat_tests
    from level5_discovery.stats import StatsConfig, test_intervention

    rng = np.random.default_rng(7)
    frames = [_wells(e, 0.6, rng) for e in range(3)]
    other = _wells(3, 0.0, rng).assign(target="C")
    stats = StatsConfig(min_effect=0.8)
    single = test_intervention(frames[0], min_effect=0.8).set_index("variable")
    assert not single.loc["B", "significant"]
    assert pooled_repeat_tests(frames[:1], frames[0], stats) is None  # a first experiment: nothing to pool
    pooled = pooled_repeat_tests([*frames, other], frames[2], stats).set_index("variable")
    assert pooled.loc["B", "significant"]
    assert not pooled.loc["C", "significant"]
    assert (pooled["experiment"] == 2).all()
    assert pooled.loc["B", "n_treated"] == 12
