"""One seed drives every random generator a run touches."""

from __future__ import annotations

import random
import sys

import numpy as np


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and (when already imported) PyTorch; return a NumPy Generator.

    String hashing is not seeded here: ``PYTHONHASHSEED`` only takes effect when set before the
    interpreter starts, and no result of a level depends on set or dict-of-str iteration order.

    Args:
        seed: The run's seed from its config.

    Returns:
        ``np.random.default_rng(seed)`` for code that prefers explicit generators.
    """
    random.seed(seed)
    np.random.seed(seed % (2**32))
    # Seed torch only when the caller already imported it: importing torch just to seed it
    # costs seconds, and a level that never uses torch has nothing to seed.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def child_seeds(seed: int, n: int) -> list[int]:
    """Derive `n` independent integer seeds from one seed (for sub-components)."""
    ss = np.random.SeedSequence(seed)
    return [int(s.generate_state(1)[0]) for s in ss.spawn(n)]
