"""Medicinal-chemistry filters on molecules whose verdict is known."""

from __future__ import annotations

import pytest
from rdkit import Chem, DataStructs

from level5_discovery.chem.filters import (
    FilterConfig,
    apply_filters,
    internal_diversity,
    lipinski_violations,
    morgan_fps,
    sa_score,
)

ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
CATECHOL = "Oc1ccccc1O"
RHODANINE = "O=C1NC(=S)SC1=Cc1ccccc1"
HUGE = "CCCCCCCCCCCCCCCCCCCCCCCC(=O)NC(CO)C(O)C=CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"


def test_pains_and_brenk_flag_known_offenders() -> None:
    f = apply_filters([CATECHOL, RHODANINE, IMATINIB]).set_index("smiles")
    assert not f.loc[CATECHOL, "pains_ok"] and "catechol" in f.loc[CATECHOL, "reasons"]
    assert not f.loc[RHODANINE, "pains_ok"] and "rhod" in f.loc[RHODANINE, "reasons"]
    assert f.loc[IMATINIB, "pains_ok"]


def test_lipinski_veber_and_qed() -> None:
    f = apply_filters([ASPIRIN, HUGE, IMATINIB]).set_index("smiles")
    assert (
        f.loc[ASPIRIN, "lipinski"] and f.loc[ASPIRIN, "veber"] and f.loc[ASPIRIN, "lipinski_violations"] == 0
    )
    assert not f.loc[HUGE, "lipinski"] and not f.loc[HUGE, "veber"] and not f.loc[HUGE, "qed_ok"]
    assert lipinski_violations(Chem.MolFromSmiles(HUGE)) == 2  # MW > 500 and logP > 5
    assert f.loc[IMATINIB, "lipinski"] and f.loc[IMATINIB, "veber"]
    assert not f.loc[HUGE, "passes"]


def test_sa_score_orders_simple_before_complex() -> None:
    simple = sa_score(Chem.MolFromSmiles("CCO"))
    # A polycyclic natural-product-like cage with many stereocentres is hard to make.
    complex_ = sa_score(
        Chem.MolFromSmiles("C[C@H]1C[C@@]2(O)[C@@H]3C[C@H]4[C@@]5(C)CC[C@]4(O)[C@@]3(C)C[C@@H]2[C@@]15C")
    )
    assert 1.0 <= simple < 3.0 < complex_ <= 10.0


def test_novelty_against_the_library_and_invalid_rows() -> None:
    lib = morgan_fps([ASPIRIN])
    f = apply_filters([ASPIRIN, IMATINIB, "C1CC"], FilterConfig(max_library_similarity=0.7), lib)
    assert f["library_similarity"].iloc[0] == 1.0 and not f["novel"].iloc[0]
    assert f["novel"].iloc[1]
    assert not f["valid"].iloc[2] and not f["passes"].iloc[2] and f["reasons"].iloc[2] == "invalid SMILES"
    assert "library Tanimoto 1.00" in f["reasons"].iloc[0]


def test_a_clean_drug_like_molecule_passes_everything() -> None:
    f = apply_filters([IMATINIB], FilterConfig(min_qed=0.3), morgan_fps([ASPIRIN]))
    assert bool(f["passes"].iloc[0]), f["reasons"].iloc[0]


def test_internal_diversity_by_hand() -> None:
    assert internal_diversity([ASPIRIN, ASPIRIN]) == 0.0
    assert internal_diversity([ASPIRIN]) == 0.0
    a, b, c = morgan_fps([ASPIRIN, IMATINIB, CATECHOL])
    sims = [
        DataStructs.TanimotoSimilarity(a, b),
        DataStructs.TanimotoSimilarity(a, c),
        DataStructs.TanimotoSimilarity(b, c),
    ]
    assert internal_diversity([ASPIRIN, IMATINIB, CATECHOL]) == pytest.approx(1 - sum(sims) / 3)
