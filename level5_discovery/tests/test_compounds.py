"""Compounds: drug-like library, hidden SAR of the molecular graph, Hill occupancy, effect via the API."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import rdMolDescriptors

from level5_discovery.compounds import CompoundConfig, CompoundLibrary, build_library, hill_occupancy
from level5_discovery.experiments import ExperimentAPI, Intervention
from level5_discovery.simulate import World, WorldConfig, generate_world
from level5_discovery.truth import Evaluator
from shared.errors import DataError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
ASPIRIN_OTHER_SPELLING = "OC(=O)c1ccccc1OC(C)=O"


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(WorldConfig(), seed=0)


@pytest.fixture(scope="module")
def lib(world: World) -> CompoundLibrary:
    return build_library(world, CompoundConfig(), seed=0)


def test_library_is_drug_like_and_deterministic(world: World, lib: CompoundLibrary) -> None:
    assert len(lib.ids) == len(lib.smiles) == 200 and lib.ids[0] == "C0001"
    assert len(set(lib.smiles)) == 200
    for smi in lib.smiles:
        mol = Chem.MolFromSmiles(smi)
        assert mol is not None and Chem.MolToSmiles(mol) == smi  # canonical
        assert 150 <= rdMolDescriptors.CalcExactMolWt(mol) <= 500 and len(Chem.GetMolFrags(mol)) == 1
    again = build_library(world, CompoundConfig(), seed=0)
    assert again.smiles == lib.smiles and np.array_equal(again.library_pic50(), lib.library_pic50())
    other = build_library(world, CompoundConfig(), seed=1)
    assert other.smiles != lib.smiles


def test_hidden_activity_is_a_function_of_the_graph(lib: CompoundLibrary) -> None:
    p = lib.library_pic50()
    g = lib.genes[int(np.flatnonzero(lib.druggable)[0])]
    j = lib.genes.index(g)
    assert lib.hidden_activity(lib.smiles[5], g) == pytest.approx(p[5, j])
    # any valid SMILES works, and the spelling does not matter (same graph, same activity)
    assert lib.hidden_activity(ASPIRIN, g) == pytest.approx(lib.hidden_activity(ASPIRIN_OTHER_SPELLING, g))
    # different graphs get different potencies on a druggable gene
    assert len({round(v, 6) for v in p[:, j]}) > 100  # (molecules with none of its bits tie)
    cfg = lib.cfg
    assert np.all((p >= cfg.pic50_floor) & (p <= cfg.pic50_floor + cfg.pic50_span))
    with pytest.raises(DataError) as exc:
        lib.hidden_activity("C1CC(", g)
    assert "\n" not in str(exc.value)
    with pytest.raises(KeyError):
        lib.hidden_activity(ASPIRIN, "G99")


def test_undruggable_genes_never_bind(lib: CompoundLibrary) -> None:
    p = lib.library_pic50()
    assert lib.druggable.sum() == 10
    assert np.all(p[:, ~lib.druggable] == lib.cfg.pic50_floor)
    for cid in lib.ids[:20]:
        bound = lib.occupancy(cid, 100.0)
        assert all(lib.druggable[lib.genes.index(g)] for g in bound)


def test_hit_rate_is_realistic(lib: CompoundLibrary) -> None:
    """Potent binders are rare but each druggable gene has some in the library (a learnable SAR)."""
    p = lib.library_pic50()[:, lib.druggable]
    hit_rate = float((p >= 6.0).mean())
    assert 0.005 < hit_rate < 0.10
    assert np.all(p.max(axis=0) >= 6.0)
    assert np.median(p) < 4.5


def test_strongest_driver_is_druggable(world: World, lib: CompoundLibrary) -> None:
    strongest = int(np.argmax(np.abs(world.phenotype_weights)))
    assert lib.druggable[strongest]


def test_hill_occupancy_known_values() -> None:
    # pIC50 6 -> IC50 1 uM: half occupied at 1 uM, 10/11 at 10 uM, none at 0
    assert hill_occupancy(6.0, 1.0) == pytest.approx(0.5)
    assert hill_occupancy(6.0, 10.0) == pytest.approx(10 / 11)
    assert hill_occupancy(6.0, 0.0) == 0.0
    assert hill_occupancy(6.0, 10.0, hill=2.0) == pytest.approx(100 / 101)
    occ = hill_occupancy(np.array([4.0, 5.0, 6.0, 7.0]), 1.0)
    assert np.all(np.diff(occ) > 0)


def test_compound_inhibits_its_targets_through_the_api(world: World, lib: CompoundLibrary) -> None:
    p = lib.library_pic50()
    i, j = np.unravel_index(int(np.argmax(p)), p.shape)  # the most potent compound-target pair
    cid, target = lib.ids[i], lib.genes[j]
    occ = lib.occupancy(cid, 10.0)
    assert occ[target] > 0.99
    api = ExperimentAPI(world, budget=10, seed=0, compounds=lib, n_replicates=50)
    res = api.run(Intervention("compound", cid, dose=10.0))
    assert res.cost == pytest.approx(1.5 * 50 / 50)
    ratio = res.treated[target].mean() / res.control[target].mean()
    assert ratio < 0.15  # scale = 1 - occupancy ~ 0.01, plus measurement noise
    # genes that are neither bound nor downstream of a bound gene do not move
    ev = Evaluator(world)
    touched = set(occ) | {d for g in occ for d in ev.descendants(g)}
    untouched = [g for g in world.genes if g not in touched]
    assert untouched
    for g in untouched:
        diff = res.treated[g].mean() - res.control[g].mean()
        assert abs(diff) < 5 * 0.6 * np.sqrt(2 / 50)  # sd of a gene across wells is < 0.6 here
    assert api.compound_ids == lib.ids and api.compound_smiles(cid) == lib.smiles[i]


def test_json_round_trip(lib: CompoundLibrary) -> None:
    back = CompoundLibrary.from_json(json.loads(json.dumps(lib.to_json())))
    assert back.ids == lib.ids and np.allclose(back.library_pic50(), lib.library_pic50())
    g = lib.genes[int(np.flatnonzero(lib.druggable)[0])]
    assert back.hidden_activity(ASPIRIN, g) == pytest.approx(lib.hidden_activity(ASPIRIN, g))


def test_fragment_fallback_builds_valid_molecules(world: World) -> None:
    lib = build_library(world, CompoundConfig(source="fragments", n_compounds=50), seed=0)
    assert len(lib.smiles) == 50
    assert all(Chem.MolFromSmiles(s) is not None for s in lib.smiles)
    with pytest.raises(DataError, match="requested"):
        CompoundLibrary.build(world.genes, CompoundConfig(source="fragments", n_compounds=100_000), seed=0)
