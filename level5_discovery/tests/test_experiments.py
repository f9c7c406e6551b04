"""The experiment API: budget, noise structure, determinism and validation."""

from __future__ import annotations

import numpy as np
import pytest

from level5_discovery.experiments import (
    BudgetExceededError,
    CostConfig,
    ExperimentAPI,
    Intervention,
    UnknownTargetError,
)
from level5_discovery.simulate import World, WorldConfig, generate_world
from level5_discovery.truth import Evaluator
from shared.errors import UserError


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(), seed=0)


def test_columns_and_arms(world: World) -> None:
    api = ExperimentAPI(world, budget=10, seed=0)
    res = api.run(Intervention("knockout", "G03"))
    d = res.data
    assert list(d.columns) == [
        *world.genes,
        "phenotype",
        "arm",
        "batch",
        "experiment",
        "intervention",
        "target",
    ]
    assert (d["arm"] == "control").sum() == 4 and (d["arm"] == "treated").sum() == 4
    assert set(d["target"]) == {"G03"} and set(d["intervention"]) == {"knockout"}
    assert res.experiment_id == 0 and set(d["experiment"]) == {0} and set(d["batch"]) == {0}
    obs = api.run(Intervention("observe"))
    assert len(obs.data) == 8 and set(obs.data["arm"]) == {"control"} and set(obs.data["target"]) == {""}
    assert obs.experiment_id == 1 and [r.experiment_id for r in api.history] == [0, 1]
    # the knocked-out gene reads ~0 (plus batch and measurement noise), its controls do not
    assert res.treated["G03"].abs().max() < 1.0 < res.control["G03"].min()


def test_budget_accounting(world: World) -> None:
    api = ExperimentAPI(world, budget=3.0, seed=0)
    api.run(Intervention("observe"))
    assert api.spent == 0.5 and api.remaining == 2.5
    api.run(Intervention("knockout", "G01"))
    api.run(Intervention("overexpress", "G02"), n_replicates=2)  # half the replicates, half the cost
    assert api.spent == pytest.approx(2.0) and api.spent + api.remaining == pytest.approx(api.budget)
    with pytest.raises(BudgetExceededError) as exc:
        api.run(Intervention("knockdown", "G01"), n_replicates=8)  # costs 2 > 1 left
    assert "\n" not in str(exc.value) and isinstance(exc.value, UserError)
    assert api.spent == pytest.approx(2.0) and len(api.history) == 3  # a refused call costs nothing
    api.run(Intervention("knockdown", "G01"))
    assert api.remaining == pytest.approx(0.0)
    with pytest.raises(BudgetExceededError):
        api.run(Intervention("observe"))
    assert sum(r.cost for r in api.history) == pytest.approx(api.spent)


def test_custom_costs_and_observational(world: World) -> None:
    api = ExperimentAPI(world, budget=100, seed=0, costs=CostConfig(compound=5.0, observe=2.0))
    df = api.observational(16)
    assert len(df) == 16 and api.spent == pytest.approx(2.0 * 16 / 8)
    assert api.cost_of(Intervention("compound", "C0001")) == 5.0
    assert api.history[-1].intervention.kind == "observe"


def test_same_seed_same_measurements(world: World) -> None:
    plan = [Intervention("observe"), Intervention("knockout", "G05"), Intervention("knockdown", "G11")]
    runs = []
    for seed in (4, 4, 5):
        api = ExperimentAPI(world, budget=10, seed=seed)
        runs.append([api.run(iv).data for iv in plan])
    for a, b in zip(runs[0], runs[1], strict=True):
        assert a.equals(b)
    assert not runs[0][1].equals(runs[2][1])


def test_batch_effect_shared_within_experiment(world: World) -> None:
    """Controls of different experiments differ by the batch offset; treated and controls of one share it."""
    gene = world.genes[int(world.order[-1])]
    j = world.genes.index(gene)
    api = ExperimentAPI(world, budget=1e6, seed=0, batch_sd=1.0, measurement_sd=0.01, n_replicates=200)
    # knock out a gene that is not an ancestor of `gene`: its treated/control means must agree
    ev = Evaluator(world)
    other = next(g for g in world.genes if g != gene and gene not in ev.descendants(g))
    diffs, ctrl_means = [], []
    for _ in range(6):
        res = api.run(Intervention("knockout", other))
        diffs.append(res.treated[gene].mean() - res.control[gene].mean())
        ctrl_means.append(res.control[gene].mean())
    sd = world.sample(4000, np.random.default_rng(0))[:, j].std()
    se = sd * np.sqrt(2 / 200)
    # within an experiment the offset cancels (differences are pure noise) ...
    assert np.max(np.abs(diffs)) < 5 * se + 0.01
    # ... across experiments it does not (batch sd 1 >> standard error of a mean)
    assert np.std(ctrl_means) > 0.3


def test_unknown_targets_are_user_errors(world: World) -> None:
    api = ExperimentAPI(world, budget=10, seed=0)
    for bad in (
        Intervention("knockout", "G99"),
        Intervention("knockout", None),
        Intervention("compound", "C0001"),
        Intervention("observe", "G01"),
        Intervention("teleport", "G01"),  # type: ignore[arg-type]
    ):
        with pytest.raises(UnknownTargetError) as exc:
            api.run(bad)
        assert "\n" not in str(exc.value) and isinstance(exc.value, UserError)
    assert api.spent == 0.0 and api.history == []


def test_knockout_effect_visible_through_api(world: World) -> None:
    """With 4 replicates a direct child's knockout shift stands out of the noise of the paired design."""
    ev = Evaluator(world)
    reach = ev.reachability()
    api = ExperimentAPI(world, budget=1000, seed=1)
    hits, total = 0, 0
    for i, j in zip(*np.nonzero(ev.true_adjacency()), strict=True):
        if any(reach[i, p] for p in np.flatnonzero(world.weights[:, j]) if p != i):
            continue
        res = api.run(Intervention("knockout", world.genes[i]))
        g = world.genes[j]
        diff = res.treated[g].mean() - res.control[g].mean()
        hits += int(abs(diff) > 3 * np.hypot(world.config.noise_sd, api.measurement_sd))
        total += 1
    assert total >= 10 and hits / total >= 0.9


def test_overexpress_raises_target(world: World) -> None:
    api = ExperimentAPI(world, budget=10, seed=0)
    g = world.genes[0]
    res = api.run(Intervention("overexpress", g))
    assert res.treated[g].mean() - res.control[g].mean() == pytest.approx(3.0, abs=0.6)
