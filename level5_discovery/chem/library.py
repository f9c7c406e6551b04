"""Reading molecule libraries: a user's SMILES file (CSV or .smi) and a sample of the MOSES set."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase

from shared.errors import EmptyDataError, InputFileError, SchemaError

rdBase.DisableLog("rdApp.*")

MOSES_TRAIN_SIZE = 1_584_663


@dataclass(frozen=True)
class LibraryRead:
    """The canonical SMILES read from a file, with how many rows were rejected."""

    smiles: list[str]
    n_invalid: int
    n_rows: int


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical SMILES, or None when the SMILES does not parse/sanitise or is empty."""
    mol = Chem.MolFromSmiles(smiles.strip()) if smiles and smiles.strip() else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return str(Chem.MolToSmiles(mol))


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputFileError(f"SMILES file not found: {path}")
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise InputFileError(f"cannot read SMILES file {path}: {exc}") from None


def _csv_column(text: str, path: Path) -> list[str]:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise InputFileError(f"cannot parse {path} as CSV: {exc}") from None
    if not rows:
        raise EmptyDataError(f"{path} is empty")
    header = [h.strip().lower() for h in rows[0]]
    if "smiles" not in header:
        raise SchemaError(f"{path} has no 'smiles' column (columns: {', '.join(rows[0]) or 'none'})")
    col = header.index("smiles")
    return [r[col] if col < len(r) else "" for r in rows[1:] if any(c.strip() for c in r)]


def _smi_column(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        tokens = line.split()
        if tokens and not line.lstrip().startswith("#"):
            out.append(tokens[0])
    # A header line such as "smiles name" is not a molecule: drop it rather than count it invalid.
    if out and out[0].lower() == "smiles":
        out = out[1:]
    return out


def read_smiles_file(path: str | Path) -> LibraryRead:
    """Read a library: a CSV with a ``smiles`` column (any case) or a ``.smi`` file (first token per line).

    Invalid SMILES rows are skipped and counted. Every SMILES returned is RDKit-canonical; duplicates
    are kept once, in first-seen order.

    Raises:
        InputFileError: the file is missing or unreadable.
        SchemaError: a CSV without a ``smiles`` column.
        EmptyDataError: no rows, or no valid SMILES.
    """
    path = Path(path)
    text = _read_text(path)
    name = path.name.lower().removesuffix(".gz")
    raw = _csv_column(text, path) if name.endswith(".csv") else _smi_column(text)
    if not raw:
        raise EmptyDataError(f"{path} has no SMILES rows")
    seen: dict[str, None] = {}
    n_invalid = 0
    for s in raw:
        can = canonical_smiles(s)
        if can is None:
            n_invalid += 1
        else:
            seen.setdefault(can, None)
    if not seen:
        raise EmptyDataError(f"{path}: none of its {len(raw)} SMILES rows is a valid molecule")
    return LibraryRead(smiles=list(seen), n_invalid=n_invalid, n_rows=len(raw))


def moses_train_path() -> Path:
    """Path of the MOSES training set inside the installed ``molsets`` wheel.

    The ``moses`` package is located without being imported (its ``__init__`` needs fcd_torch).

    Raises:
        InputFileError: molsets is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("moses")
    if spec is None or spec.origin is None:
        raise InputFileError("the MOSES set needs the molsets package (pip install --no-deps molsets)")
    path = Path(spec.origin).parent / "dataset" / "data" / "train.csv.gz"
    if not path.is_file():
        raise InputFileError(f"molsets is installed but {path} is missing")
    return path


def moses_smiles(n: int, seed: int) -> list[str]:
    """A seeded random sample of ``n`` canonical SMILES from the MOSES training set (1,584,663 ZINC SMILES).

    Raises:
        InputFileError: molsets is not installed (n larger than the set is clipped to its size).
    """
    path = moses_train_path()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
        col = [h.lower() for h in header].index("smiles")
        lines = fh.read().splitlines()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(lines), size=min(n, len(lines)), replace=False)
    out: list[str] = []
    for i in idx:
        can = canonical_smiles(lines[int(i)].split(",")[col])
        if can is not None:
            out.append(can)
    return out
