"""Goal-directed objectives with GuacaMol's definitions (Brown et al. 2019), computed with RDKit alone.

Fingerprints follow ``guacamol/utils/fingerprints.py``: ECFP4/ECFP6/FCFP4 are *count* Morgan
fingerprints (the legacy ``GetMorganFingerprint``, here through the equivalent generators), AP is
the atom-pair count fingerprint with ``maxLength=10`` and PHCO is the Gobbi 2D pharmacophore
fingerprint. Score modifiers and the geometric/arithmetic means follow
``guacamol/score_modifier.py`` and ``guacamol/common_scoring_functions.py``; each task follows
``guacamol/standard_benchmarks.py``. Every scoring function scores a whole list at once: the SMILES
are parsed once, the fingerprints computed in bulk and compared with ``BulkTanimotoSimilarity``.
Invalid SMILES score 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import QED, rdFingerprintGenerator, rdMolDescriptors
from rdkit.Chem.Pharm2D import Generate, Gobbi_Pharm2D

from shared.errors import ConfigError

rdBase.DisableLog("rdApp.*")

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
Descriptor = Callable[[Chem.Mol], float]


# --- score modifiers (guacamol/score_modifier.py) ---------------------------------------------------


@dataclass(frozen=True)
class GaussianModifier:
    """exp(-((x - mu) / sigma)^2 / 2): 1 at mu."""

    mu: float
    sigma: float

    def __call__(self, x: FloatArray) -> FloatArray:
        return np.exp(-0.5 * np.power((np.asarray(x, dtype=float) - self.mu) / self.sigma, 2.0))


@dataclass(frozen=True)
class MinGaussianModifier:
    """Half Gaussian: 1 for x <= mu, Gaussian decay above (values over mu are penalised)."""

    mu: float
    sigma: float

    def __call__(self, x: FloatArray) -> FloatArray:
        return GaussianModifier(self.mu, self.sigma)(np.maximum(np.asarray(x, dtype=float), self.mu))


@dataclass(frozen=True)
class MaxGaussianModifier:
    """Half Gaussian: 1 for x >= mu, Gaussian decay below (values under mu are penalised)."""

    mu: float
    sigma: float

    def __call__(self, x: FloatArray) -> FloatArray:
        return GaussianModifier(self.mu, self.sigma)(np.minimum(np.asarray(x, dtype=float), self.mu))


@dataclass(frozen=True)
class ClippedScoreModifier:
    """Linear from (lower_x, low_score) to (upper_x, high_score), clipped outside."""

    upper_x: float
    lower_x: float = 0.0
    high_score: float = 1.0
    low_score: float = 0.0

    def __call__(self, x: FloatArray) -> FloatArray:
        slope = (self.high_score - self.low_score) / (self.upper_x - self.lower_x)
        intercept = self.high_score - slope * self.upper_x
        return np.clip(slope * np.asarray(x, dtype=float) + intercept, self.low_score, self.high_score)


@dataclass(frozen=True)
class ThresholdedLinearModifier:
    """min(x, threshold) / threshold."""

    threshold: float

    def __call__(self, x: FloatArray) -> FloatArray:
        return np.asarray(
            np.minimum(np.asarray(x, dtype=float), self.threshold) / self.threshold, dtype=float
        )


Modifier = Callable[[FloatArray], FloatArray]


def _identity(x: FloatArray) -> FloatArray:
    return np.asarray(x, dtype=float)


# --- fingerprints (guacamol/utils/fingerprints.py) --------------------------------------------------


@cache
def _generator(fp_type: str) -> Any:
    if fp_type == "ECFP4":
        return rdFingerprintGenerator.GetMorganGenerator(radius=2)
    if fp_type == "ECFP6":
        return rdFingerprintGenerator.GetMorganGenerator(radius=3)
    if fp_type == "FCFP4":
        return rdFingerprintGenerator.GetMorganGenerator(
            radius=2, atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
        )
    if fp_type == "AP":
        return rdFingerprintGenerator.GetAtomPairGenerator(maxDistance=10)
    raise ConfigError(f"unknown fingerprint type {fp_type!r}; valid: ECFP4, ECFP6, FCFP4, AP, PHCO")


def fingerprint(mol: Chem.Mol, fp_type: str) -> Any:
    """GuacaMol's fingerprint of one molecule (count vectors, PHCO a sparse bit vector)."""
    if fp_type == "PHCO":
        return Generate.Gen2DFingerprint(mol, Gobbi_Pharm2D.factory)  # type: ignore[no-untyped-call]
    return _generator(fp_type).GetSparseCountFingerprint(mol)


def fingerprints(mols: Sequence[Chem.Mol], fp_type: str) -> list[Any]:
    """Fingerprints of many molecules (the generator is built once)."""
    if fp_type == "PHCO":
        return [Generate.Gen2DFingerprint(m, Gobbi_Pharm2D.factory) for m in mols]  # type: ignore[no-untyped-call]
    gen = _generator(fp_type)
    return [gen.GetSparseCountFingerprint(m) for m in mols]


# --- descriptors -------------------------------------------------------------------------------------


def logp(mol: Chem.Mol) -> float:
    """Crippen logP."""
    return float(rdMolDescriptors.CalcCrippenDescriptors(mol)[0])


def tpsa(mol: Chem.Mol) -> float:
    """Topological polar surface area."""
    return float(rdMolDescriptors.CalcTPSA(mol))


def qed(mol: Chem.Mol) -> float:
    """Quantitative estimate of drug-likeness (Bickerton 2012)."""
    return float(QED.qed(mol))  # type: ignore[no-untyped-call]


def num_rotatable_bonds(mol: Chem.Mol) -> float:
    """Rotatable bonds (RDKit's default definition)."""
    return float(rdMolDescriptors.CalcNumRotatableBonds(mol))


def num_rings(mol: Chem.Mol) -> float:
    """Number of rings (SSSR)."""
    return float(rdMolDescriptors.CalcNumRings(mol))


def num_aromatic_rings(mol: Chem.Mol) -> float:
    """Number of aromatic rings."""
    return float(rdMolDescriptors.CalcNumAromaticRings(mol))


def num_atoms(mol: Chem.Mol) -> float:
    """Number of atoms hydrogens included (GuacaMol's ``num_atoms``)."""
    return float(Chem.AddHs(mol).GetNumAtoms())


@dataclass(frozen=True)
class AtomCounter:
    """Count of one element; hydrogens are made explicit when counting H (GuacaMol's AtomCounter)."""

    element: str

    def __call__(self, mol: Chem.Mol) -> float:
        if self.element == "H":
            mol = Chem.AddHs(mol)
        return float(sum(1 for a in mol.GetAtoms() if a.GetSymbol() == self.element))


# --- scoring functions -------------------------------------------------------------------------------


def parse_smiles(smiles: Sequence[str]) -> list[Chem.Mol | None]:
    """Parse (and sanitise) every SMILES once; None where RDKit rejects it."""
    out: list[Chem.Mol | None] = []
    for s in smiles:
        mol = Chem.MolFromSmiles(s) if s else None
        out.append(mol if mol is not None and mol.GetNumAtoms() > 0 else None)
    return out


class ScoringFunction:
    """Scores molecules in [0, 1]; subclasses implement ``score_valid`` over parsed molecules."""

    def score_valid(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        """Scores of valid molecules, one per molecule."""
        raise NotImplementedError

    def score_mols(self, mols: Sequence[Chem.Mol | None]) -> FloatArray:
        """Scores of parsed molecules; None (invalid) scores 0."""
        out = np.zeros(len(mols), dtype=float)
        idx = [i for i, m in enumerate(mols) if m is not None]
        if idx:
            valid = [m for m in mols if m is not None]
            out[idx] = self.score_valid(valid)
        return out

    def score(self, smiles: Sequence[str]) -> FloatArray:
        """Scores of SMILES strings; invalid SMILES score 0."""
        return self.score_mols(parse_smiles(smiles))

    def __call__(self, smiles: Sequence[str]) -> FloatArray:
        return self.score(smiles)


class TanimotoScoringFunction(ScoringFunction):
    """Tanimoto similarity to a target on a GuacaMol fingerprint, through a modifier."""

    def __init__(self, target: str, fp_type: str, score_modifier: Modifier | None = None) -> None:
        mol = Chem.MolFromSmiles(target)
        if mol is None:
            raise ConfigError(f"invalid target SMILES {target!r}")
        self.target = target
        self.fp_type = fp_type
        self.modifier: Modifier = score_modifier or _identity
        self._target_fp = fingerprint(mol, fp_type)

    def similarities(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        """Raw Tanimoto similarities to the target."""
        fps = fingerprints(mols, self.fp_type)
        return np.asarray(DataStructs.BulkTanimotoSimilarity(self._target_fp, fps), dtype=float)

    def score_valid(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        return self.modifier(self.similarities(mols))


class RdkitScoringFunction(ScoringFunction):
    """A descriptor through a modifier."""

    def __init__(self, descriptor: Descriptor, score_modifier: Modifier | None = None) -> None:
        self.descriptor = descriptor
        self.modifier: Modifier = score_modifier or _identity

    def score_valid(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        return self.modifier(np.array([self.descriptor(m) for m in mols], dtype=float))


class SMARTSScoringFunction(ScoringFunction):
    """1 if the SMARTS matches (0 if ``inverse`` and it matches)."""

    def __init__(self, smarts: str, inverse: bool = False) -> None:
        pattern = Chem.MolFromSmarts(smarts)
        if pattern is None:
            raise ConfigError(f"invalid SMARTS {smarts!r}")
        self.pattern = pattern
        self.inverse = inverse

    def score_valid(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        hits = np.array([m.HasSubstructMatch(self.pattern) for m in mols], dtype=bool)
        return (~hits if self.inverse else hits).astype(float)


class GeometricMeanScoringFunction(ScoringFunction):
    """Geometric mean of the parts' scores: (prod s_i)^(1/n)."""

    def __init__(self, functions: Sequence[ScoringFunction]) -> None:
        self.functions = list(functions)

    def score_valid(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        parts = np.stack([f.score_valid(mols) for f in self.functions])
        return np.asarray(np.prod(parts, axis=0) ** (1.0 / len(self.functions)), dtype=float)


class ArithmeticMeanScoringFunction(ScoringFunction):
    """Weighted arithmetic mean of the parts' scores."""

    def __init__(self, functions: Sequence[ScoringFunction], weights: Sequence[float] | None = None) -> None:
        self.functions = list(functions)
        self.weights = np.asarray(
            weights if weights is not None else [1.0] * len(self.functions), dtype=float
        )

    def score_valid(self, mols: Sequence[Chem.Mol]) -> FloatArray:
        parts = np.stack([f.score_valid(mols) for f in self.functions])
        return np.asarray(self.weights @ parts / self.weights.sum(), dtype=float)


def parse_molecular_formula(formula: str) -> list[tuple[str, int]]:
    """'C19H17N3O2' -> [('C', 19), ('H', 17), ('N', 3), ('O', 2)]."""
    return [(el, int(n) if n else 1) for el, n in re.findall(r"([A-Z][a-z]*)(\d*)", formula)]


class IsomerScoringFunction(GeometricMeanScoringFunction):
    """GuacaMol's isomer score: Gaussian(sigma 1) per element count, Gaussian(sigma 2) on total atoms."""

    def __init__(self, molecular_formula: str) -> None:
        counts = parse_molecular_formula(molecular_formula)
        parts: list[ScoringFunction] = [
            RdkitScoringFunction(AtomCounter(el), GaussianModifier(mu=n, sigma=1.0)) for el, n in counts
        ]
        total = sum(n for _, n in counts)
        parts.append(RdkitScoringFunction(num_atoms, GaussianModifier(mu=total, sigma=2.0)))
        super().__init__(parts)


# --- tasks (guacamol/standard_benchmarks.py) --------------------------------------------------------

CELECOXIB = "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F"
OSIMERTINIB = "COc1cc(N(C)CCN(C)C)c(NC(=O)C=C)cc1Nc2nccc(n2)c3cn(C)c4ccccc34"
FEXOFENADINE = "CC(C)(C(=O)O)c1ccc(cc1)C(O)CCCN2CCC(CC2)C(O)(c3ccccc3)c4ccccc4"
RANOLAZINE = "COc1ccccc1OCC(O)CN2CCN(CC(=O)Nc3c(C)cccc3C)CC2"
AMLODIPINE = r"Clc1ccccc1C2C(=C(/N/C(=C2/C(=O)OCC)COCCN)C)\C(=O)OC"
PERINDOPRIL = "O=C(OCC)C(NC(C(=O)N1C(C(=O)O)CC2CCCCC12)C)CCC"
SITAGLIPTIN = "Fc1cc(c(F)cc1F)CC(N)CC(=O)N3Cc2nnc(n2CC3)C(F)(F)F"
ZALEPLON = "O=C(C)N(CC)C1=CC=CC(C2=CC=NC3=C(C=NN23)C#N)=C1"
CAMPHOR = "CC1(C)C2CCC1(C)C(=O)C2"
MENTHOL = "CC(C)C1CCC(C)CC1O"
SCAFFOLD_HOP_START = "CCCOc1cc2ncnc(Nc3ccc4ncsc4c3)c2cc1S(=O)(=O)C(C)(C)C"
SCAFFOLD_HOP_DECO = "[#6]-[#6]-[#6]-[#8]-[#6]~[#6]~[#6]~[#6]~[#6]-[#7]-c1ccc2ncsc2c1"
SCAFFOLD_HOP_SCAFFOLD = "[#7]-c1n[c;h1]nc2[c;h1]c(-[#8])[c;h0][c;h1]c12"


def qed_task() -> ScoringFunction:
    """QED itself."""
    return RdkitScoringFunction(qed)


def celecoxib_rediscovery() -> ScoringFunction:
    """ECFP4 count Tanimoto to celecoxib."""
    return TanimotoScoringFunction(CELECOXIB, "ECFP4")


def osimertinib_mpo() -> ScoringFunction:
    """Like osimertinib (FCFP4, clipped at 0.8) but not too like it (ECFP6 <= 0.85), TPSA>=100, logP<=1."""
    return GeometricMeanScoringFunction(
        [
            TanimotoScoringFunction(OSIMERTINIB, "FCFP4", ClippedScoreModifier(upper_x=0.8)),
            TanimotoScoringFunction(OSIMERTINIB, "ECFP6", MinGaussianModifier(mu=0.85, sigma=0.1)),
            RdkitScoringFunction(tpsa, MaxGaussianModifier(mu=100, sigma=10)),
            RdkitScoringFunction(logp, MinGaussianModifier(mu=1, sigma=1)),
        ]
    )


def fexofenadine_mpo() -> ScoringFunction:
    """Like fexofenadine (AP, clipped at 0.8), TPSA >= 90, logP <= 4."""
    return GeometricMeanScoringFunction(
        [
            TanimotoScoringFunction(FEXOFENADINE, "AP", ClippedScoreModifier(upper_x=0.8)),
            RdkitScoringFunction(tpsa, MaxGaussianModifier(mu=90, sigma=10)),
            RdkitScoringFunction(logp, MinGaussianModifier(mu=4, sigma=1)),
        ]
    )


def ranolazine_mpo() -> ScoringFunction:
    """Like ranolazine (AP, clipped at 0.7), logP >= 7, TPSA >= 95, one fluorine."""
    return GeometricMeanScoringFunction(
        [
            TanimotoScoringFunction(RANOLAZINE, "AP", ClippedScoreModifier(upper_x=0.7)),
            RdkitScoringFunction(logp, MaxGaussianModifier(mu=7, sigma=1)),
            RdkitScoringFunction(tpsa, MaxGaussianModifier(mu=95, sigma=20)),
            RdkitScoringFunction(AtomCounter("F"), GaussianModifier(mu=1, sigma=1.0)),
        ]
    )


def amlodipine_mpo() -> ScoringFunction:
    """Like amlodipine (ECFP4) with three rings."""
    return GeometricMeanScoringFunction(
        [
            TanimotoScoringFunction(AMLODIPINE, "ECFP4"),
            RdkitScoringFunction(num_rings, GaussianModifier(mu=3, sigma=0.5)),
        ]
    )


def perindopril_mpo() -> ScoringFunction:
    """Like perindopril (ECFP4) with two aromatic rings."""
    return GeometricMeanScoringFunction(
        [
            TanimotoScoringFunction(PERINDOPRIL, "ECFP4"),
            RdkitScoringFunction(num_aromatic_rings, GaussianModifier(mu=2, sigma=0.5)),
        ]
    )


def sitagliptin_mpo() -> ScoringFunction:
    """Unlike sitagliptin (ECFP4) but with its logP, TPSA and formula C16H15F6N5O."""
    mol = Chem.MolFromSmiles(SITAGLIPTIN)
    return GeometricMeanScoringFunction(
        [
            TanimotoScoringFunction(SITAGLIPTIN, "ECFP4", GaussianModifier(mu=0, sigma=0.1)),
            RdkitScoringFunction(logp, GaussianModifier(mu=logp(mol), sigma=0.2)),
            RdkitScoringFunction(tpsa, GaussianModifier(mu=tpsa(mol), sigma=5)),
            IsomerScoringFunction("C16H15F6N5O"),
        ]
    )


def zaleplon_mpo() -> ScoringFunction:
    """Like zaleplon (ECFP4) with the formula C19H17N3O2."""
    return GeometricMeanScoringFunction(
        [TanimotoScoringFunction(ZALEPLON, "ECFP4"), IsomerScoringFunction("C19H17N3O2")]
    )


def median1() -> ScoringFunction:
    """Geometric mean of ECFP4 similarity to camphor and to menthol."""
    return GeometricMeanScoringFunction(
        [TanimotoScoringFunction(MENTHOL, "ECFP4"), TanimotoScoringFunction(CAMPHOR, "ECFP4")]
    )


def scaffold_hop() -> ScoringFunction:
    """Keep the decorations and the pharmacophore (PHCO, clipped at 0.75), lose the quinazoline scaffold."""
    return ArithmeticMeanScoringFunction(
        [
            TanimotoScoringFunction(SCAFFOLD_HOP_START, "PHCO", ClippedScoreModifier(upper_x=0.75)),
            SMARTSScoringFunction(SCAFFOLD_HOP_DECO, inverse=False),
            SMARTSScoringFunction(SCAFFOLD_HOP_SCAFFOLD, inverse=True),
        ]
    )


TASKS: dict[str, Callable[[], ScoringFunction]] = {
    "qed": qed_task,
    "celecoxib_rediscovery": celecoxib_rediscovery,
    "osimertinib_mpo": osimertinib_mpo,
    "fexofenadine_mpo": fexofenadine_mpo,
    "ranolazine_mpo": ranolazine_mpo,
    "amlodipine_mpo": amlodipine_mpo,
    "perindopril_mpo": perindopril_mpo,
    "sitagliptin_mpo": sitagliptin_mpo,
    "zaleplon_mpo": zaleplon_mpo,
    "median1": median1,
    "scaffold_hop": scaffold_hop,
}


def get_objective(name: str) -> ScoringFunction:
    """The named task's scoring function.

    Raises:
        ConfigError: the name is not a known task (the message lists the valid ones).
    """
    try:
        return TASKS[name]()
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}") from None
