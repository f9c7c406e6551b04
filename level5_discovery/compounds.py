"""Compounds and their hidden structure-activity relationship (SAR) on the world's genes.

A compound's potency on a gene is a hidden function of its molecular graph: the Morgan count
fingerprint (radius 2, 2048 bits, counts squashed by ``log1p``) dotted with a sparse hidden weight
vector per gene (its "binding-site pharmacophore": bits common in the library), standardised and
squashed into a pIC50 between ``pic50_floor`` and ``pic50_floor + pic50_span``. Only a share of the
genes is druggable; the rest never bind (pIC50 = floor, occupancy ~0). At a dose ``d`` (uM) the
occupancy is the Hill equation ``d^h / (d^h + IC50^h)`` with ``IC50 = 10^(6 - pIC50)`` uM, and the
experiment API inhibits each bound gene by ``scale = 1 - occupancy``.

Library molecules come from the NCI sample shipped inside RDKit's wheel (``rdkit/Data/NCI``),
filtered to drug-like single molecules; without that file they are assembled from a fixed set of
scaffolds and substituents. Nothing is downloaded.

:meth:`CompoundLibrary.hidden_activity` is hidden truth: evaluators and budgeted oracles may call it
(it works on any valid SMILES, so designed molecules can be scored), agents may not.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from shared.errors import DataError

if TYPE_CHECKING:
    from level5_discovery.simulate import World

ALLOWED_ELEMENTS = frozenset({"C", "N", "O", "S", "F", "Cl", "Br"})
# Fallback chemistry: scaffolds with one or two attachment points, and substituents.
_SCAFFOLDS = (
    "c1ccc(cc1){0}",
    "c1ccc2[nH]c(cc2c1){0}",
    "c1cnc(nc1){0}",
    "O=C(N{0})c1ccccc1{1}",
    "c1ccc(cc1{1})S(=O)(=O)N{0}",
    "C1CCN(CC1){0}",
    "c1ccc2ncccc2c1{0}",
    "O=C1NC(=O)C(N1){0}",
    "c1cc(ccn1){0}",
    "c1csc(n1){0}",
)
_SUBSTITUENTS = (
    "C",
    "CC",
    "OC",
    "Cl",
    "F",
    "C(F)(F)F",
    "N1CCOCC1",
    "C(=O)O",
    "C(=O)N",
    "c1ccccc1",
    "c1ccncc1",
    "CN(C)C",
    "OCc1ccccc1",
    "C1CC1",
    "S(=O)(=O)C",
    "N",
    "O",
    "CC(C)C",
    "c1ccc(F)cc1",
    "C(=O)c1ccccc1",
)


class CompoundConfig(BaseModel):
    """Settings of a compound library and its hidden SAR; defaults are the quick profile."""

    model_config = ConfigDict(extra="forbid")

    n_compounds: int = Field(200, ge=1)
    druggable_share: float = Field(0.5, gt=0.0, le=1.0)
    bits_per_gene: int = Field(32, ge=1)
    radius: int = Field(2, ge=1)
    n_bits: int = Field(2048, ge=64)
    pic50_floor: float = 3.0
    pic50_span: float = Field(6.0, gt=0.0)
    # Standardised score -> pIC50 logit: slope and offset; offset < 0 keeps most compounds weak.
    sar_slope: float = Field(1.3, gt=0.0)
    sar_offset: float = -2.6
    hill: float = Field(1.0, gt=0.0)
    min_occupancy: float = Field(1e-3, ge=0.0, lt=1.0)
    min_heavy_atoms: int = 12
    max_heavy_atoms: int = 40
    source: str = Field("nci", pattern="^(nci|fragments)$")


def _rdkit() -> Any:
    # RDKit is imported lazily: the world and the experiment API do not need it.
    from rdkit import Chem, rdBase

    rdBase.DisableLog("rdApp.*")
    return Chem


def _drug_like(mol: Any, cfg: CompoundConfig) -> bool:
    from rdkit.Chem import rdMolDescriptors

    if len(_rdkit().GetMolFrags(mol)) != 1:
        return False
    if not cfg.min_heavy_atoms <= mol.GetNumHeavyAtoms() <= cfg.max_heavy_atoms:
        return False
    if any(a.GetSymbol() not in ALLOWED_ELEMENTS or a.GetFormalCharge() != 0 for a in mol.GetAtoms()):
        return False
    if rdMolDescriptors.CalcNumRings(mol) < 1:
        return False
    return bool(
        150 <= rdMolDescriptors.CalcExactMolWt(mol) <= 500
        and rdMolDescriptors.CalcCrippenDescriptors(mol)[0] <= 5
        and rdMolDescriptors.CalcNumHBD(mol) <= 5
        and rdMolDescriptors.CalcNumHBA(mol) <= 10
    )


def nci_smiles_path() -> Path:
    """Where RDKit's wheel keeps its NCI sample (may be absent in minimal builds)."""
    import rdkit

    return Path(rdkit.__file__).parent / "Data" / "NCI" / "first_5K.smi"


def _candidates(cfg: CompoundConfig, rng: np.random.Generator) -> list[str]:
    """Candidate SMILES in a seeded random order, from the NCI file or the fragment fallback."""
    path = nci_smiles_path()
    if cfg.source == "nci" and path.is_file():
        lines = [ln.split()[0] for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        lines = []
        for scaffold in _SCAFFOLDS:
            for a, b in itertools.product(_SUBSTITUENTS, repeat=2):
                lines.append(scaffold.format(a, b) if "{1}" in scaffold else scaffold.format(a))
        lines = list(dict.fromkeys(lines))
    return [lines[i] for i in rng.permutation(len(lines))]


def _select_molecules(cfg: CompoundConfig, rng: np.random.Generator) -> list[str]:
    """Canonical SMILES of ``n_compounds`` distinct drug-like molecules."""
    chem = _rdkit()
    chosen: dict[str, None] = {}
    for smi in _candidates(cfg, rng):
        mol = chem.MolFromSmiles(smi)
        if mol is None or not _drug_like(mol, cfg):
            continue
        chosen[chem.MolToSmiles(mol)] = None
        if len(chosen) == cfg.n_compounds:
            break
    if len(chosen) < cfg.n_compounds:
        raise DataError(f"only {len(chosen)} drug-like molecules available, {cfg.n_compounds} requested")
    return list(chosen)


class CompoundLibrary:
    """A compound library with a hidden SAR on a list of genes.

    Build one with :meth:`build` (or :func:`build_library` for a world). Public: ``ids``,
    ``smiles``, ``genes``, :meth:`smiles_of`, :meth:`occupancy` (what the experiment API uses).
    Hidden truth: :meth:`hidden_activity`, :meth:`hidden_activities`, ``druggable``.
    """

    def __init__(
        self,
        ids: Sequence[str],
        smiles: Sequence[str],
        genes: Sequence[str],
        weights: np.ndarray,
        center: np.ndarray,
        spread: np.ndarray,
        druggable: np.ndarray,
        cfg: CompoundConfig,
    ) -> None:
        if len(ids) != len(smiles) or weights.shape != (len(genes), cfg.n_bits):
            raise ValueError("ids/smiles lengths or weight shape do not match")
        self.ids: tuple[str, ...] = tuple(ids)
        self.smiles: tuple[str, ...] = tuple(smiles)
        self.genes: tuple[str, ...] = tuple(genes)
        self.cfg = cfg
        self._gene_index = {g: i for i, g in enumerate(self.genes)}
        self._id_index = {c: i for i, c in enumerate(self.ids)}
        self._weights = np.asarray(weights, dtype=float)
        self._center = np.asarray(center, dtype=float)
        self._spread = np.asarray(spread, dtype=float)
        self.druggable = np.asarray(druggable, dtype=bool)
        self._generator = _fingerprint_generator(cfg)
        self._library_pic50 = self._pic50(self._featurize(self.smiles))

    @classmethod
    def build(
        cls, genes: Sequence[str], cfg: CompoundConfig, seed: int, *, must_target: Sequence[str] = ()
    ) -> CompoundLibrary:
        """Pick molecules and draw the hidden SAR.

        Args:
            genes: Gene names the compounds can bind.
            cfg: Library settings.
            seed: Same seed -> same molecules and SAR.
            must_target: Genes forced into the druggable set (e.g. one phenotype driver).

        Returns:
            The library.
        """
        rng = np.random.default_rng(seed)
        smiles = _select_molecules(cfg, rng)
        gen = _fingerprint_generator(cfg)
        feats = _featurize_with(gen, smiles, cfg.n_bits)
        n = len(genes)
        n_drug = max(1, round(cfg.druggable_share * n))
        forced = [list(genes).index(g) for g in must_target]
        rest = [i for i in rng.permutation(n) if i not in forced]
        druggable = np.zeros(n, dtype=bool)
        druggable[(forced + rest)[: max(n_drug, len(forced))]] = True
        # The pharmacophore of each gene uses bits present in the library, so potency is learnable.
        present = np.flatnonzero((feats > 0).mean(axis=0) >= 0.02)
        weights = np.zeros((n, cfg.n_bits))
        for g in range(n):
            bits = rng.choice(present, size=min(cfg.bits_per_gene, present.size), replace=False)
            weights[g, bits] = rng.normal(0.0, 1.0, size=bits.size)
        scores = feats @ weights.T
        center, spread = scores.mean(axis=0), scores.std(axis=0) + 1e-9
        ids = [f"C{i + 1:04d}" for i in range(len(smiles))]
        return cls(ids, smiles, genes, weights, center, spread, druggable, cfg)

    def smiles_of(self, compound_id: str) -> str:
        """SMILES of a library compound.

        Raises:
            KeyError: Unknown id.
        """
        return self.smiles[self._id_index[compound_id]]

    def _featurize(self, smiles: Sequence[str]) -> np.ndarray:
        return _featurize_with(self._generator, smiles, self.cfg.n_bits)

    def _pic50(self, feats: np.ndarray) -> np.ndarray:
        """``(m, n_genes)`` pIC50 from squashed fingerprint counts."""
        z = (feats @ self._weights.T - self._center) / self._spread
        cfg = self.cfg
        pic50 = cfg.pic50_floor + cfg.pic50_span / (1.0 + np.exp(-(cfg.sar_slope * z + cfg.sar_offset)))
        return np.where(self.druggable, pic50, cfg.pic50_floor)

    def hidden_activities(self, smiles: str) -> dict[str, float]:
        """Hidden truth: pIC50 of any valid SMILES on every gene.

        Raises:
            DataError: The SMILES does not parse.
        """
        row = self._pic50(self._featurize([smiles]))[0]
        return {g: float(v) for g, v in zip(self.genes, row, strict=True)}

    def hidden_activity(self, smiles: str, gene: str) -> float:
        """Hidden truth: pIC50 of any valid SMILES on one gene (the floor for undruggable genes).

        Raises:
            DataError: The SMILES does not parse.
            KeyError: Unknown gene.
        """
        if gene not in self._gene_index:
            raise KeyError(f"unknown gene {gene!r}")
        return self.hidden_activities(smiles)[gene]

    def library_pic50(self) -> np.ndarray:
        """Hidden truth: ``(n_compounds, n_genes)`` pIC50 of the library compounds."""
        return self._library_pic50.copy()

    def occupancy(self, compound_id: str, dose: float) -> dict[str, float]:
        """Target occupancy of a library compound at ``dose`` uM, for genes above ``min_occupancy``.

        Raises:
            KeyError: Unknown compound id.
        """
        return self._occupancy_row(self._library_pic50[self._id_index[compound_id]], dose)

    def occupancy_of_smiles(self, smiles: str, dose: float) -> dict[str, float]:
        """Occupancy of any valid SMILES at ``dose`` uM (hidden truth: it uses the SAR)."""
        return self._occupancy_row(self._pic50(self._featurize([smiles]))[0], dose)

    def _occupancy_row(self, pic50: np.ndarray, dose: float) -> dict[str, float]:
        occ = hill_occupancy(pic50, dose, self.cfg.hill)
        return {
            g: float(o)
            for g, o, d in zip(self.genes, occ, self.druggable, strict=True)
            if d and o >= self.cfg.min_occupancy
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (hidden SAR included: keep it with the world, away from agents)."""
        nz = [np.flatnonzero(row).tolist() for row in self._weights]
        return {
            "ids": list(self.ids),
            "smiles": list(self.smiles),
            "genes": list(self.genes),
            "bits": nz,
            "values": [self._weights[g, bits].tolist() for g, bits in enumerate(nz)],
            "center": self._center.tolist(),
            "spread": self._spread.tolist(),
            "druggable": self.druggable.tolist(),
            "config": self.cfg.model_dump(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CompoundLibrary:
        """Rebuild a library written by :meth:`to_json`."""
        cfg = CompoundConfig.model_validate(d["config"])
        weights = np.zeros((len(d["genes"]), cfg.n_bits))
        for g, (bits, values) in enumerate(zip(d["bits"], d["values"], strict=True)):
            weights[g, bits] = values
        return cls(
            d["ids"],
            d["smiles"],
            d["genes"],
            weights,
            np.asarray(d["center"]),
            np.asarray(d["spread"]),
            np.asarray(d["druggable"], dtype=bool),
            cfg,
        )


def hill_occupancy(pic50: np.ndarray | float, dose: float, hill: float = 1.0) -> np.ndarray:
    """Fraction of target bound at ``dose`` uM for a given pIC50 (Hill equation)."""
    if dose <= 0:
        return np.zeros_like(np.asarray(pic50, dtype=float))
    ic50_um = 10.0 ** (6.0 - np.asarray(pic50, dtype=float))
    return np.asarray(1.0 / (1.0 + (ic50_um / dose) ** hill))


def _fingerprint_generator(cfg: CompoundConfig) -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=cfg.radius, fpSize=cfg.n_bits)


def _featurize_with(generator: Any, smiles: Sequence[str], n_bits: int) -> np.ndarray:
    """``log1p`` of Morgan count fingerprints, ``(len(smiles), n_bits)``."""
    chem = _rdkit()
    rows = []
    for smi in smiles:
        mol = chem.MolFromSmiles(smi) if smi else None
        if mol is None:
            raise DataError(f"invalid SMILES: {smi!r}")
        rows.append(generator.GetCountFingerprintAsNumPy(mol).astype(float))
    return np.log1p(np.vstack(rows)) if rows else np.zeros((0, n_bits))


def build_library(world: World, cfg: CompoundConfig, seed: int) -> CompoundLibrary:
    """A library for a world whose strongest phenotype driver is druggable (so a cure can exist).

    Args:
        world: The hidden world (its genes and phenotype drivers).
        cfg: Library settings.
        seed: Same seed -> same library.
    """
    pw = np.asarray(world.phenotype_weights)
    forced = [world.genes[int(np.argmax(np.abs(pw)))]] if np.any(pw) else []
    return CompoundLibrary.build(world.genes, cfg, seed, must_target=forced)
