"""The in-silico biochemical assay: a compound's potency on one gene, measured with noise, for a price.

The only way the campaign learns how strongly a molecule binds a target. Each call returns a
measured pIC50 = the hidden pIC50 (`compounds.CompoundLibrary.hidden_activity`) + Gaussian noise,
clipped to the assay's range (no binding reads as the floor), and costs ``cost``. Noise depends
only on the seed and the call's index, so replaying the same calls gives the same readings (a
resumed campaign measures exactly what the first run did).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from level5_discovery.experiments import BudgetExceededError

if TYPE_CHECKING:
    from level5_discovery.compounds import CompoundLibrary


class Assay:
    """Budgeted, noisy pIC50 measurements.

    Args:
        library: Holds the hidden structure-activity function (kept private).
        seed: Seed of the measurement noise.
        cost: Price of one measurement.
        sd: Noise of a reading (pIC50 units).
        calls_done: Readings already taken (a resumed campaign continues the sequence).
    """

    def __init__(
        self, library: CompoundLibrary, seed: int, cost: float, sd: float, calls_done: int = 0
    ) -> None:
        self._library = library
        self._seed = int(seed)
        self.cost = float(cost)
        self.sd = float(sd)
        self.calls = int(calls_done)
        low = library.cfg.pic50_floor
        self._range = (low, low + library.cfg.pic50_span)

    def price(self, n: int) -> float:
        """Cost of ``n`` readings."""
        return self.cost * n

    def measure(self, smiles: Sequence[str], gene: str, remaining: float) -> np.ndarray:
        """Measured pIC50 of each molecule on ``gene``.

        Args:
            smiles: Valid SMILES.
            gene: The target.
            remaining: Budget left; the whole batch must fit.

        Raises:
            BudgetExceededError: The batch costs more than ``remaining`` (nothing is measured).
        """
        price = self.price(len(smiles))
        if price > remaining + 1e-9:
            raise BudgetExceededError(f"{len(smiles)} assays cost {price:g}, only {remaining:g} left")
        out = np.empty(len(smiles))
        for i, smi in enumerate(smiles):
            rng = np.random.default_rng([self._seed, self.calls])
            self.calls += 1
            true = self._library.hidden_activity(smi, gene)
            out[i] = float(np.clip(true + rng.normal(0.0, self.sd), *self._range))
        return out
