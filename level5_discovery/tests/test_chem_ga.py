"""Graph GA and the guided GA: valid canonical proposals, determinism, improvement over the library."""

from __future__ import annotations

import numpy as np
from rdkit import Chem

from level5_discovery.chem.ga import GAConfig, default_config, propose, run_ga, selection_weights
from level5_discovery.chem.mutations import crossover, mutate
from level5_discovery.chem.objectives import get_objective
from level5_discovery.chem.oracle import Oracle
from level5_discovery.tests.test_chem_optimize import LIB

SMALL = GAConfig(population_size=10, offspring_size=20)


def test_proposals_are_valid_canonical_and_distinct() -> None:
    mols = [Chem.MolFromSmiles(s) for s in LIB]
    children = propose(mols, [1.0] * len(mols), 60, GAConfig(mutation_rate=0.5), np.random.default_rng(0))
    assert len(children) >= 20
    smiles = [s for s, _ in children]
    assert len(set(smiles)) == len(smiles)
    for s, mol in children:
        again = Chem.MolFromSmiles(s)
        assert again is not None and Chem.MolToSmiles(again) == s == Chem.MolToSmiles(mol)
        assert (
            again.GetNumAtoms() > 5 and max((len(r) for r in again.GetRingInfo().AtomRings()), default=0) <= 6
        )


def test_rank_selection_keeps_its_pressure_when_every_score_is_close() -> None:
    close = [0.60, 0.61, 0.62, 0.63]  # a late population: scores within 5 % of each other
    proportional = selection_weights(close, "score", rank_k=0.1)
    assert proportional.max() / proportional.min() < 1.06  # almost a uniform draw
    # 1 / (k n + rank) with k n = 0.4: the best is drawn 1 / 0.4 / (1 / 3.4) = 8.5 times as often
    # as the worst, and the weights depend on the order alone, not on the scale.
    ranked = selection_weights(close, "rank", rank_k=0.1)
    assert np.isclose(ranked[3] / ranked[0], 3.4 / 0.4)
    np.testing.assert_allclose(ranked, selection_weights([6.0, 6.1, 6.2, 6.3], "rank", rank_k=0.1))
    assert np.isclose(ranked.sum(), 1.0) and list(np.argsort(ranked)) == [0, 1, 2, 3]
    assert default_config("guided").selection == "rank" and default_config("ga").selection == "score"


def test_mutation_changes_the_molecule_and_crossover_differs_from_parents() -> None:
    rng = np.random.default_rng(3)
    a, b = Chem.MolFromSmiles(LIB[3]), Chem.MolFromSmiles(LIB[5])
    changed = [mutate(Chem.Mol(a), 1.0, rng) for _ in range(10)]
    assert any(m is not None and Chem.MolToSmiles(m) != LIB[3] for m in changed)
    kids = [crossover(a, b, rng) for _ in range(5)]
    parents = {Chem.MolToSmiles(a), Chem.MolToSmiles(b)}
    assert all(Chem.MolToSmiles(k) not in parents for k in kids if k is not None)
    assert any(k is not None for k in kids)


def _run(method: str, seed: int, budget: int, task: str = "celecoxib_rediscovery") -> Oracle:
    oracle = Oracle(get_objective(task), budget)
    run_ga(oracle, LIB, seed, method, SMALL)  # type: ignore[arg-type]
    return oracle


def test_same_seed_same_run_other_seed_other_run() -> None:
    a, b, c = _run("ga", 7, 50), _run("ga", 7, 50), _run("ga", 8, 50)
    assert a.smiles == b.smiles and a.scores == b.scores
    assert a.smiles != c.smiles


def test_ga_beats_the_best_library_molecule_on_celecoxib() -> None:
    best_library = float(get_objective("celecoxib_rediscovery")(LIB).max())
    oracle = _run("ga", 0, 300)
    assert oracle.n_calls == 300
    assert max(oracle.scores) > best_library + 0.1


def test_guided_ga_is_valid_deterministic_and_improves() -> None:
    best_library = float(get_objective("celecoxib_rediscovery")(LIB).max())
    a, b = _run("guided", 0, 70), _run("guided", 0, 70)
    assert a.smiles == b.smiles and a.n_calls == 70
    assert all(Chem.MolToSmiles(Chem.MolFromSmiles(s)) == s for s in a.smiles)
    assert max(a.scores) > best_library + 0.1
