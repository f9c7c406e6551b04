"""GuacaMol objectives against values recomputed by hand from their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import QED, rdFingerprintGenerator, rdMolDescriptors

from level5_discovery.chem import objectives as ob
from shared.errors import ConfigError

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CELECOXIB_CANON = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"
MOLS = [ASPIRIN, "CC(C)Cc1ccc(C(C)C(=O)O)cc1", "CN1CCN(c2ccc(NC(=O)c3ccccc3F)cc2)CC1"]


def _counts(smiles: str, gen: object) -> dict[int, int]:
    return dict(gen.GetSparseCountFingerprint(Chem.MolFromSmiles(smiles)).GetNonzeroElements())  # type: ignore[attr-defined]


def _count_tanimoto(a: dict[int, int], b: dict[int, int]) -> float:
    """Tanimoto on count vectors: sum of minima over (sum a + sum b - sum of minima)."""
    common = sum(min(a[k], b[k]) for k in a.keys() & b.keys())
    return common / (sum(a.values()) + sum(b.values()) - common)


def _gauss(x: float, mu: float, sigma: float) -> float:
    return math.exp(-0.5 * ((x - mu) / sigma) ** 2)


ECFP4 = rdFingerprintGenerator.GetMorganGenerator(radius=2)
ECFP6 = rdFingerprintGenerator.GetMorganGenerator(radius=3)
FCFP4 = rdFingerprintGenerator.GetMorganGenerator(
    radius=2, atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
)
AP = rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10)


def test_modifiers_match_their_formulas() -> None:
    x = np.array([-1.0, 0.5, 2.0, 3.0])
    assert ob.GaussianModifier(2.0, 0.5)(np.array([2.0]))[0] == 1.0
    assert ob.GaussianModifier(2.0, 0.5)(np.array([2.5]))[0] == pytest.approx(math.exp(-0.5))
    np.testing.assert_allclose(ob.MinGaussianModifier(2.0, 1.0)(x), [1, 1, 1, math.exp(-0.5)])
    np.testing.assert_allclose(ob.MaxGaussianModifier(2.0, 1.0)(x), [math.exp(-4.5), math.exp(-1.125), 1, 1])
    np.testing.assert_allclose(
        ob.ClippedScoreModifier(upper_x=0.8)(np.array([-0.1, 0.4, 0.8, 0.95])), [0, 0.5, 1, 1]
    )
    np.testing.assert_allclose(ob.ThresholdedLinearModifier(2.0)(x), [-0.5, 0.25, 1, 1])


def test_means() -> None:
    class Const(ob.ScoringFunction):
        def __init__(self, v: float) -> None:
            self.v = v

        def score_valid(self, mols):  # type: ignore[no-untyped-def]
            return np.full(len(mols), self.v)

    parts = [Const(0.25), Const(1.0), Const(0.5)]
    assert ob.GeometricMeanScoringFunction(parts)(["C"])[0] == pytest.approx(0.125 ** (1 / 3))
    assert ob.ArithmeticMeanScoringFunction(parts)(["C"])[0] == pytest.approx(1.75 / 3)
    # Invalid SMILES score 0 whatever the parts say.
    assert ob.GeometricMeanScoringFunction(parts)(["not a smiles", ""]).tolist() == [0.0, 0.0]


def test_celecoxib_rediscovery_by_hand() -> None:
    f = ob.get_objective("celecoxib_rediscovery")
    target = _counts(ob.CELECOXIB, ECFP4)
    got = f([ob.CELECOXIB, CELECOXIB_CANON, *MOLS])
    assert got[0] == 1.0 and got[1] == 1.0
    expected = [_count_tanimoto(_counts(s, ECFP4), target) for s in MOLS]
    np.testing.assert_allclose(got[2:], expected, rtol=1e-12)
    assert got[2] == pytest.approx(0.11578947368421053)  # pinned: aspirin


def test_osimertinib_mpo_by_hand() -> None:
    got = ob.get_objective("osimertinib_mpo")([ob.OSIMERTINIB, *MOLS])
    for s, g in zip([ob.OSIMERTINIB, *MOLS], got, strict=True):
        mol = Chem.MolFromSmiles(s)
        fc = _count_tanimoto(_counts(s, FCFP4), _counts(ob.OSIMERTINIB, FCFP4))
        ec = _count_tanimoto(_counts(s, ECFP6), _counts(ob.OSIMERTINIB, ECFP6))
        parts = [
            min(fc / 0.8, 1.0),
            1.0 if ec <= 0.85 else _gauss(ec, 0.85, 0.1),
            1.0 if rdMolDescriptors.CalcTPSA(mol) >= 100 else _gauss(rdMolDescriptors.CalcTPSA(mol), 100, 10),
            1.0
            if rdMolDescriptors.CalcCrippenDescriptors(mol)[0] <= 1
            else _gauss(rdMolDescriptors.CalcCrippenDescriptors(mol)[0], 1, 1),
        ]
        assert g == pytest.approx(math.prod(parts) ** 0.25, rel=1e-9)
    assert got[0] == pytest.approx(0.1333417190026552, rel=1e-9)  # pinned: osimertinib itself


def test_fexofenadine_and_ranolazine_by_hand() -> None:
    fex = ob.get_objective("fexofenadine_mpo")([ob.FEXOFENADINE, *MOLS])
    ran = ob.get_objective("ranolazine_mpo")([ob.RANOLAZINE, *MOLS])
    for i, s in enumerate([*MOLS]):
        mol = Chem.MolFromSmiles(s)
        tpsa, logp = rdMolDescriptors.CalcTPSA(mol), rdMolDescriptors.CalcCrippenDescriptors(mol)[0]
        n_f = sum(a.GetSymbol() == "F" for a in mol.GetAtoms())
        ap_fex = _count_tanimoto(_counts(s, AP), _counts(ob.FEXOFENADINE, AP))
        parts = [
            min(ap_fex / 0.8, 1),
            1 if tpsa >= 90 else _gauss(tpsa, 90, 10),
            1 if logp <= 4 else _gauss(logp, 4, 1),
        ]
        assert fex[i + 1] == pytest.approx(math.prod(parts) ** (1 / 3), rel=1e-9)
        ap_ran = _count_tanimoto(_counts(s, AP), _counts(ob.RANOLAZINE, AP))
        parts = [
            min(ap_ran / 0.7, 1),
            1 if logp >= 7 else _gauss(logp, 7, 1),
            1 if tpsa >= 95 else _gauss(tpsa, 95, 20),
            _gauss(n_f, 1, 1),
        ]
        assert ran[i + 1] == pytest.approx(math.prod(parts) ** 0.25, rel=1e-9)
    # Ranolazine has no fluorine (a factor exp(-1/2)) and a logP far below 7.
    assert 0 < ran[0] < 1


def test_median1_scaffold_hop_and_qed() -> None:
    got = ob.get_objective("median1")(MOLS)
    for s, g in zip(MOLS, got, strict=True):
        a = _count_tanimoto(_counts(s, ECFP4), _counts(ob.CAMPHOR, ECFP4))
        b = _count_tanimoto(_counts(s, ECFP4), _counts(ob.MENTHOL, ECFP4))
        assert g == pytest.approx(math.sqrt(a * b), rel=1e-12)
    # The start molecule keeps its pharmacophore (1) and decoration (1) but also its scaffold (0): 2/3.
    assert ob.get_objective("scaffold_hop")([ob.SCAFFOLD_HOP_START])[0] == pytest.approx(2 / 3)
    assert ob.get_objective("qed")([ASPIRIN])[0] == pytest.approx(QED.qed(Chem.MolFromSmiles(ASPIRIN)))  # type: ignore[no-untyped-call]


def test_isomer_score_by_hand() -> None:
    # Zaleplon is C17H15N5O; the target formula is C19H17N3O2 (19+17+3+2 = 41 atoms vs 38).
    iso = ob.IsomerScoringFunction("C19H17N3O2")([ob.ZALEPLON])[0]
    parts = [_gauss(17, 19, 1), _gauss(15, 17, 1), _gauss(5, 3, 1), _gauss(1, 2, 1), _gauss(38, 41, 2)]
    assert iso == pytest.approx(math.prod(parts) ** (1 / 5), rel=1e-12)
    assert ob.parse_molecular_formula("C16H15F6N5O") == [("C", 16), ("H", 15), ("F", 6), ("N", 5), ("O", 1)]


def test_every_task_scores_invalid_as_zero_and_stays_in_unit_interval() -> None:
    for name in ob.TASKS:
        s = ob.get_objective(name)(["C1CC", *MOLS])
        assert s[0] == 0.0
        assert np.all((s >= 0) & (s <= 1)), name


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'nope'.*celecoxib_rediscovery.*qed"):
        ob.get_objective("nope")
