"""Medicinal-chemistry filters for proposed molecules.

Validity (parses and sanitises), Lipinski's rule of five (at most one violation), Veber (rotatable
bonds <= 10, TPSA <= 140), a QED threshold, Ertl's synthetic accessibility (RDKit Contrib
``SA_Score``), PAINS A/B/C and Brenk unwanted substructures (RDKit FilterCatalog), novelty (largest
Tanimoto similarity to the library below a threshold) and the internal diversity of a set.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from rdkit import Chem, DataStructs, RDConfig
from rdkit.Chem import QED, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.FilterCatalog import FilterCatalog, FilterCatalogParams

from level5_discovery.chem.objectives import parse_smiles

BitVect = Any


class FilterConfig(BaseModel):
    """Thresholds of the filters; a molecule passes when every enabled filter passes."""

    model_config = ConfigDict(extra="forbid")

    max_lipinski_violations: int = Field(1, ge=0)
    max_rotatable_bonds: int = 10
    max_tpsa: float = 140.0
    min_qed: float = Field(0.5, ge=0.0, le=1.0)
    max_sa: float = Field(4.5, ge=1.0, le=10.0, description="Ertl SA score: 1 easy .. 10 hard")
    pains: bool = True
    brenk: bool = True
    max_library_similarity: float = Field(0.7, ge=0.0, le=1.0, description="novelty: max Tanimoto < this")


@lru_cache(maxsize=1)
def _sascorer() -> ModuleType:
    path = Path(RDConfig.RDContribDir) / "SA_Score" / "sascorer.py"
    spec = importlib.util.spec_from_file_location("rdkit_contrib_sascorer", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RuntimeError(f"RDKit Contrib SA_Score not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Ertl & Schuffenhauer's synthetic accessibility score (1 easy .. 10 hard)."""
    return float(_sascorer().calculateScore(mol))


@lru_cache(maxsize=2)
def _catalog(name: str) -> FilterCatalog:
    params = FilterCatalogParams()
    if name == "pains":
        for cat in (
            FilterCatalogParams.FilterCatalogs.PAINS_A,
            FilterCatalogParams.FilterCatalogs.PAINS_B,
            FilterCatalogParams.FilterCatalogs.PAINS_C,
        ):
            params.AddCatalog(cat)
    else:
        params.AddCatalog(FilterCatalogParams.FilterCatalogs.BRENK)
    return FilterCatalog(params)


def alerts(mol: Chem.Mol, catalog: str) -> list[str]:
    """Names of the ``"pains"`` or ``"brenk"`` alerts the molecule matches."""
    return [str(m.GetDescription()) for m in _catalog(catalog).GetMatches(mol)]


def lipinski_violations(mol: Chem.Mol) -> int:
    """Rule-of-five violations: MW > 500, logP > 5, H-bond donors > 5, acceptors > 10."""
    return int(
        (rdMolDescriptors._CalcMolWt(mol) > 500)
        + (rdMolDescriptors.CalcCrippenDescriptors(mol)[0] > 5)
        + (rdMolDescriptors.CalcNumHBD(mol) > 5)
        + (rdMolDescriptors.CalcNumHBA(mol) > 10)
    )


_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def morgan_fps(smiles_or_mols: Sequence[str] | Sequence[Chem.Mol]) -> list[BitVect]:
    """Morgan radius-2 2048-bit fingerprints (invalid SMILES skipped)."""
    mols = [Chem.MolFromSmiles(x) if isinstance(x, str) else x for x in smiles_or_mols]
    return [_MORGAN.GetFingerprint(m) for m in mols if m is not None]


def max_similarity(fps: Sequence[BitVect], library_fps: Sequence[BitVect]) -> np.ndarray[Any, Any]:
    """For each fingerprint, its largest Tanimoto similarity to the library (0 for an empty library)."""
    if not library_fps:
        return np.zeros(len(fps))
    return np.array([max(DataStructs.BulkTanimotoSimilarity(fp, library_fps)) for fp in fps], dtype=float)


def internal_diversity(smiles: Sequence[str]) -> float:
    """Mean pairwise Tanimoto distance (1 - similarity) over distinct pairs; 0 below two molecules."""
    fps = morgan_fps(smiles)
    n = len(fps)
    if n < 2:
        return 0.0
    total = sum(sum(DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1 :])) for i in range(n - 1))
    return float(1.0 - total / (n * (n - 1) / 2))


def _row(mol: Chem.Mol | None, cfg: FilterConfig) -> dict[str, Any]:
    if mol is None:
        return {"valid": False, "reasons": "invalid SMILES"}
    viol = lipinski_violations(mol)
    rot = int(rdMolDescriptors.CalcNumRotatableBonds(mol))
    tpsa = float(rdMolDescriptors.CalcTPSA(mol))
    qed = float(QED.qed(mol))  # type: ignore[no-untyped-call]
    sa = sa_score(mol)
    pains = alerts(mol, "pains") if cfg.pains else []
    brenk = alerts(mol, "brenk") if cfg.brenk else []
    row: dict[str, Any] = {
        "valid": True,
        "lipinski_violations": viol,
        "lipinski": viol <= cfg.max_lipinski_violations,
        "rotatable_bonds": rot,
        "tpsa": tpsa,
        "veber": rot <= cfg.max_rotatable_bonds and tpsa <= cfg.max_tpsa,
        "qed": qed,
        "qed_ok": qed >= cfg.min_qed,
        "sa": sa,
        "sa_ok": sa <= cfg.max_sa,
        "pains_ok": not pains,
        "brenk_ok": not brenk,
    }
    reasons = [f"{viol} Lipinski violations"] if not row["lipinski"] else []
    if not row["veber"]:
        reasons.append(f"Veber (rot {rot}, TPSA {tpsa:.0f})")
    if not row["qed_ok"]:
        reasons.append(f"QED {qed:.2f} < {cfg.min_qed}")
    if not row["sa_ok"]:
        reasons.append(f"SA {sa:.2f} > {cfg.max_sa}")
    reasons += [f"PAINS: {a}" for a in pains] + [f"Brenk: {a}" for a in brenk]
    row["reasons"] = "; ".join(reasons)
    return row


FLAG_COLUMNS = ("valid", "lipinski", "veber", "qed_ok", "sa_ok", "pains_ok", "brenk_ok", "novel")


def apply_filters(
    smiles: Sequence[str], cfg: FilterConfig | None = None, library_fps: Sequence[BitVect] | None = None
) -> pd.DataFrame:
    """Every filter on every molecule: one row per SMILES, a boolean per filter, ``passes`` and ``reasons``.

    Args:
        smiles: molecules to check.
        cfg: thresholds (defaults: ``FilterConfig()``).
        library_fps: Morgan fingerprints of the library (``morgan_fps``), computed once by the caller;
            None or empty makes every valid molecule novel.
    """
    cfg = cfg or FilterConfig()
    mols = parse_smiles(smiles)
    frame = pd.DataFrame([_row(m, cfg) for m in mols])
    frame.insert(0, "smiles", list(smiles))
    valid = [m for m in mols if m is not None]
    sims = np.full(len(mols), np.nan)
    sims[[i for i, m in enumerate(mols) if m is not None]] = max_similarity(
        morgan_fps(valid), library_fps or []
    )
    frame["library_similarity"] = sims
    frame["novel"] = frame["valid"] & ~(sims >= cfg.max_library_similarity)
    for col in FLAG_COLUMNS:
        frame[col] = frame[col].eq(True) if col in frame else False
    not_novel = frame["valid"] & ~frame["novel"]
    frame.loc[not_novel, "reasons"] = [
        "; ".join(x for x in (r, f"library Tanimoto {s:.2f} >= {cfg.max_library_similarity}") if x)
        for r, s in zip(
            frame.loc[not_novel, "reasons"], frame.loc[not_novel, "library_similarity"], strict=True
        )
    ]
    frame["passes"] = frame[list(FLAG_COLUMNS)].all(axis=1)
    return frame
