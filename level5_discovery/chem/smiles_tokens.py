"""SMILES tokenizer and vocabulary: regex tokens, special tokens, padded id batches.

Tokens follow Schwaller et al. (2019, Molecular Transformer): bracket atoms, two-letter halogens,
ring-closure digits (and ``%nn``), bonds and branches are one token each. A final catch-all
alternative makes every character belong to some token, so ``"".join(tokenize(s)) == s`` always
holds and unseen characters map to ``<unk>`` rather than vanishing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

SMILES_PATTERN = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9]|.)"
)
_SMILES_RE = re.compile(SMILES_PATTERN)

PAD, MASK, CLS, UNK = "<pad>", "<mask>", "<cls>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, MASK, CLS, UNK)


def tokenize(smiles: str) -> list[str]:
    """Split one SMILES string into regex tokens (their concatenation is the input)."""
    return _SMILES_RE.findall(smiles)


@dataclass(frozen=True)
class Vocab:
    """Token <-> id map; ids 0-3 are ``<pad>``, ``<mask>``, ``<cls>``, ``<unk>``.

    Attributes:
        tokens: Every token, in id order (special tokens first).
    """

    tokens: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tokens[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>`` (0)."""
        return self.index[PAD]

    @property
    def mask_id(self) -> int:
        """Id of ``<mask>``."""
        return self.index[MASK]

    @property
    def cls_id(self) -> int:
        """Id of ``<cls>``, prepended to every sequence."""
        return self.index[CLS]

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>`` (tokens not seen when the vocabulary was built)."""
        return self.index[UNK]

    @property
    def n_special(self) -> int:
        """Number of special tokens (the first ids)."""
        return len(SPECIAL_TOKENS)

    def encode(self, smiles: str) -> list[int]:
        """Ids of ``<cls>`` followed by the SMILES tokens (no padding, no truncation)."""
        unk = self.unk_id
        return [self.cls_id, *(self.index.get(t, unk) for t in tokenize(smiles))]

    def encode_batch(self, smiles: Sequence[str], max_len: int | None = None) -> np.ndarray:
        """Padded id matrix ``(n, L)`` (int64), L the longest sequence (capped at `max_len`).

        Sequences longer than `max_len` (``<cls>`` included) are truncated at the right.
        """
        seqs = [self.encode(s) for s in smiles]
        width = max((len(s) for s in seqs), default=1)
        if max_len is not None:
            width = min(width, max_len)
        out = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        for i, seq in enumerate(seqs):
            seq = seq[:width]
            out[i, : len(seq)] = seq
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """SMILES text from ids, skipping special tokens (``<unk>`` included)."""
        n_special = self.n_special
        return "".join(self.tokens[i] for i in ids if i >= n_special)

    def decode_batch(self, ids: np.ndarray) -> list[str]:
        """`decode` for every row of an id matrix."""
        return [self.decode(int(i) for i in row) for row in np.asarray(ids)]

    def to_json(self) -> str:
        """The vocabulary as JSON (``{"tokens": [...]}``)."""
        return json.dumps({"tokens": list(self.tokens)})

    @classmethod
    def from_json(cls, text: str) -> Vocab:
        """Inverse of `to_json`."""
        return cls(tuple(json.loads(text)["tokens"]))


def build_vocab(smiles: Iterable[str], min_count: int = 1) -> Vocab:
    """Vocabulary of every token seen at least `min_count` times, by decreasing frequency.

    Ties break alphabetically so the same data always gives the same ids.
    """
    counts: Counter[str] = Counter()
    for s in smiles:
        counts.update(tokenize(s))
    kept = sorted(
        (t for t, c in counts.items() if c >= min_count and t not in SPECIAL_TOKENS),
        key=lambda t: (-counts[t], t),
    )
    return Vocab((*SPECIAL_TOKENS, *kept))


def token_counts(vocab: Vocab, smiles: Iterable[str]) -> np.ndarray:
    """How often each vocabulary id occurs among the SMILES tokens (``<cls>``/padding excluded)."""
    counts = np.zeros(len(vocab), dtype=np.int64)
    for s in smiles:
        ids = vocab.encode(s)[1:]
        np.add.at(counts, ids, 1)
    return counts


def randomize_smiles(smiles: Sequence[str], seed: int) -> list[str]:
    """One random (non-canonical) SMILES per molecule, for augmentation; invalid input kept as is.

    Uses RDKit's seeded ``MolToRandomSmilesVect``, so the same seed gives the same strings.
    """
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]
    out: list[str] = []
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            out.append(s)
            continue
        # A per-molecule seed: the i-th string does not depend on how many came before it.
        out.append(Chem.MolToRandomSmilesVect(mol, 1, randomSeed=(seed * 1_000_003 + i) % 2**31)[0])
    return out
