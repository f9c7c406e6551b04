"""Real molecule sets that ship inside installed wheels (no download).

* ChEMBL assay CHEMBL2321810 (RDKit's ``Contrib/FreeWilson/data``): 1,017 molecules with a
  potency (``Act``, a pIC50-like value from 4.3 to 9.2) — the labelled set.
* NCI's first 5,000 structures (``Data/NCI/first_5K.smi``) and the WEHI screening set behind
  RDKit's PAINS tests (``Data/Pains/test_data/wehi_mols.csv``, 10,000 molecules) — unlabelled.
* MOSES training SMILES (``moses/dataset/data/train.csv.gz`` in the ``molsets`` wheel, 1.58 M
  ZINC molecules) — the pretraining corpus. Read directly: ``import moses`` needs fcd_torch.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from level5_discovery.chem.library import moses_train_path
from shared.errors import DataError, InputFileError

CHEMBL_ASSAY = "CHEMBL2321810"


def _rdkit_dirs() -> tuple[Path, Path]:
    from rdkit import RDConfig

    return Path(RDConfig.RDContribDir), Path(RDConfig.RDDataDir)


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputFileError(f"{what} not found at {path} (not shipped in this wheel?)")
    return path


def _valid(smiles: list[str]) -> np.ndarray:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]
    return np.array([Chem.MolFromSmiles(s) is not None for s in smiles], dtype=bool)


def chembl_activity_set() -> tuple[list[str], np.ndarray]:
    """ChEMBL assay CHEMBL2321810 from RDKit's wheel: SMILES and their activities (float64).

    The ``.smi`` file holds ``SMILES name`` rows and ``_act.csv`` holds ``Name,Act``; they are
    joined on the name, and rows whose SMILES RDKit cannot parse or whose activity is not
    finite are dropped.

    Raises:
        InputFileError: The files are missing from the installed RDKit.
        DataError: Nothing usable was left after the join.
    """
    contrib, _ = _rdkit_dirs()
    folder = contrib / "FreeWilson" / "data"
    smi_path = _require(folder / f"{CHEMBL_ASSAY}.smi", "ChEMBL SMILES")
    act_path = _require(folder / f"{CHEMBL_ASSAY}_act.csv", "ChEMBL activities")
    by_name: dict[str, str] = {}
    for line in smi_path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            by_name[parts[1]] = parts[0]
    smiles: list[str] = []
    values: list[float] = []
    with act_path.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            name, act = row.get("Name", ""), row.get("Act", "")
            if name in by_name:
                try:
                    value = float(act)
                except ValueError:
                    continue
                smiles.append(by_name[name])
                values.append(value)
    y = np.asarray(values, dtype=np.float64)
    keep = _valid(smiles) & np.isfinite(y)
    if not keep.any():
        raise DataError(f"no usable molecule in {smi_path.name} + {act_path.name}")
    return [s for s, k in zip(smiles, keep, strict=True) if k], y[keep]


def nci_smiles() -> list[str]:
    """NCI's first 5,000 structures from RDKit's ``Data/NCI/first_5K.smi`` (valid SMILES only)."""
    _, data = _rdkit_dirs()
    path = _require(data / "NCI" / "first_5K.smi", "NCI first_5K")
    smiles = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [s for s, k in zip(smiles, _valid(smiles), strict=True) if k]


def wehi_smiles() -> list[str]:
    """The WEHI screening molecules from RDKit's PAINS test data (valid SMILES only)."""
    _, data = _rdkit_dirs()
    path = _require(data / "Pains" / "test_data" / "wehi_mols.csv", "WEHI molecules")
    with path.open(encoding="utf-8", newline="") as fh:
        smiles = [row[0] for row in csv.reader(fh) if row and row[0]]
    return [s for s, k in zip(smiles, _valid(smiles), strict=True) if k]


def moses_train_smiles(n: int | None = None, seed: int | None = None) -> list[str]:
    """MOSES training SMILES: the first `n` rows, or (with `seed`) `n` rows drawn without replacement."""
    import pandas as pd

    path = moses_train_path()
    if seed is None:
        frame = pd.read_csv(path, nrows=n)
        return [str(s) for s in frame["SMILES"]]
    all_smiles = pd.read_csv(path)["SMILES"].astype(str).to_numpy()
    take = len(all_smiles) if n is None else min(n, len(all_smiles))
    idx = np.sort(np.random.default_rng(seed).choice(len(all_smiles), size=take, replace=False))
    return [str(s) for s in all_smiles[idx]]


def nci_wehi_sample(n: int, seed: int = 1) -> list[str]:
    """`n` NCI + WEHI molecules (seeded draw, file order): larger and more varied than ZINC's, so an
    encoder pretrained on them also sees the sequence lengths of ChEMBL-sized molecules (MOSES
    SMILES stop at ~50 tokens)."""
    pool = nci_smiles() + wehi_smiles()
    idx = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in sorted(idx)]


def pretraining_smiles(n: int, moses_share: float = 0.7, seed: int = 0) -> list[str]:
    """Unlabelled molecules for encoder pretraining: `n` in all, ``moses_share`` of them drawn from
    the MOSES training set (with `seed`), the rest from NCI + WEHI (`nci_wehi_sample`)."""
    n_moses = round(n * moses_share)
    return moses_train_smiles(n_moses, seed=seed) + nci_wehi_sample(n - n_moses)
