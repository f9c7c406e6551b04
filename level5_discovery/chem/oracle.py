"""An oracle with a call budget, as in the PMO benchmark (Gao et al. 2022).

Every call on a *new valid canonical* SMILES counts against the budget and is recorded in call
order; a molecule already scored is answered from the cache and does not count, nor does an invalid
SMILES (it scores 0). ``top_k_auc`` is PMO's top-k AUC (``top_auc`` in PMO's ``oracle.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from rdkit import Chem

from level5_discovery.chem.objectives import ScoringFunction

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


class BudgetExhaustedError(RuntimeError):
    """Raised when a new molecule is sent to an oracle whose budget is spent."""


class Oracle:
    """Budgeted, caching wrapper around a scoring function."""

    def __init__(self, objective: ScoringFunction, budget: int) -> None:
        if budget < 1:
            raise ValueError("budget must be at least 1")
        self.objective = objective
        self.budget = budget
        self._cache: dict[str, float] = {}
        self.smiles: list[str] = []
        self.scores: list[float] = []

    @property
    def n_calls(self) -> int:
        """Calls counted so far (new valid canonical molecules scored)."""
        return len(self.smiles)

    @property
    def exhausted(self) -> bool:
        """True once the budget is spent."""
        return self.n_calls >= self.budget

    def __contains__(self, smiles: str) -> bool:
        return smiles in self._cache

    def lookup(self, canonical: str) -> float | None:
        """The cached score of a canonical SMILES, or None if never scored."""
        return self._cache.get(canonical)

    def score_mols(self, mols: Sequence[Chem.Mol | None]) -> FloatArray:
        """Score parsed molecules; cached ones are free, new ones count until the budget is spent.

        New molecules beyond the budget get NaN (not scored). Calling with a new molecule once the
        budget is already spent raises ``BudgetExhaustedError``.
        """
        out = np.full(len(mols), np.nan)
        todo: dict[str, list[int]] = {}
        todo_mols: list[Chem.Mol] = []
        any_new = False
        for i, mol in enumerate(mols):
            if mol is None:
                out[i] = 0.0
                continue
            can = Chem.MolToSmiles(mol)
            if can in self._cache:
                out[i] = self._cache[can]
            elif can in todo:
                todo[can].append(i)
            else:
                any_new = True
                if self.n_calls + len(todo) < self.budget:
                    todo[can] = [i]
                    todo_mols.append(mol)
        if any_new and not todo and self.exhausted:
            raise BudgetExhaustedError(f"oracle budget of {self.budget} calls is spent")
        if todo:
            scores = self.objective.score_mols(todo_mols)
            for (can, idx), score in zip(todo.items(), scores, strict=True):
                self._cache[can] = float(score)
                self.smiles.append(can)
                self.scores.append(float(score))
                out[idx] = score
        return out

    def __call__(self, smiles: Sequence[str]) -> FloatArray:
        """Score SMILES strings (parsed and canonicalised here); see ``score_mols``."""
        mols = [Chem.MolFromSmiles(s) if s else None for s in smiles]
        return self.score_mols([m if m is not None and m.GetNumAtoms() > 0 else None for m in mols])

    def calls_frame(self) -> pd.DataFrame:
        """Every counted call in order: ``call`` (1-based), ``smiles``, ``score``."""
        return pd.DataFrame(
            {"call": np.arange(1, self.n_calls + 1), "smiles": self.smiles, "score": self.scores}
        )

    def top_k_auc(self, k: int = 10, freq: int = 100, finish: bool = True) -> float:
        """PMO's top-k AUC of this oracle's history (see ``top_k_auc``)."""
        return top_k_auc(self.scores, self.budget, k=k, freq=freq, finish=finish)


def _top_mean(scores: Sequence[float], k: int) -> float:
    return float(np.mean(sorted(scores, reverse=True)[:k]))


def top_k_auc(
    scores: Sequence[float], budget: int, k: int = 10, freq: int = 100, finish: bool = True
) -> float:
    """Area under the mean-of-top-k curve against oracle calls, normalised by the budget (PMO).

    Exactly PMO's ``top_auc``: the mean of the top ``k`` scores among the first ``idx`` calls is taken
    at ``idx = freq, 2 freq, ...`` (below ``min(n, budget)``) and once at the end; trapezoids join
    them, starting from 0 at zero calls. When ``finish`` and fewer than ``budget`` calls were made,
    the last value is carried to the budget.

    Args:
        scores: the scores in call order.
        budget: the oracle budget (the x-axis length).
        k: how many top scores to average.
        freq: the logging interval (PMO uses 100).
        finish: carry the last value to the budget when the run stopped early.
    """
    if not scores:
        return 0.0
    scores = list(scores)[:budget]
    total = 0.0
    prev = 0.0
    called = 0
    for idx in range(freq, min(len(scores), budget), freq):
        now = _top_mean(scores[:idx], k)
        total += freq * (now + prev) / 2
        prev = now
        called = idx
    now = _top_mean(scores, k)
    total += (len(scores) - called) * (now + prev) / 2
    if finish and len(scores) < budget:
        total += (budget - len(scores)) * now
    return total / budget
