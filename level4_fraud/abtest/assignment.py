"""Deterministic assignment of cards to arms by a keyed hash of the card id.

A card's arm depends only on the experiment's key and the card id, never on a random state, the
process or the order cards arrive in: every scorer replica, every restart and every replay of the
traffic sends a card to the same arm, and a card's whole history stays in one arm (the card is the
unit of randomisation, so the analysis clusters by card too). HMAC-SHA256 keyed by the
experiment's name makes two experiments' assignments independent of each other.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import numpy as np
from scipy import stats

_SCALE = float(2**64)


def hash_unit(card_ids: Sequence[int | str] | np.ndarray, key: str) -> np.ndarray:
    """A uniform number in [0, 1) per card: the first 8 bytes of HMAC-SHA256(key, card id).

    Args:
        card_ids: Card ids (integers or strings; ``7`` and ``"7"`` hash alike).
        key: The experiment's key.

    Returns:
        One float per id, in the order given.
    """
    ids = np.asarray(card_ids)
    if ids.size == 0:
        return np.zeros(0, dtype=np.float64)
    unique, inverse = np.unique(ids, return_inverse=True)
    secret = key.encode()
    values = np.array(
        [
            int.from_bytes(hmac.new(secret, str(c).encode(), hashlib.sha256).digest()[:8], "big") / _SCALE
            for c in unique.tolist()
        ],
        dtype=np.float64,
    )
    return values[inverse.reshape(ids.shape)]


def assign(card_ids: Sequence[int | str] | np.ndarray, split: float, key: str) -> np.ndarray:
    """Which cards see the challenger: True for arm B (challenger), False for arm A (champion).

    Args:
        card_ids: Card ids.
        split: Share of cards routed to the challenger, in (0, 1).
        key: The experiment's key.

    Raises:
        ValueError: `split` is outside (0, 1).
    """
    if not 0 < split < 1:
        raise ValueError(f"split must be in (0, 1), got {split}")
    return hash_unit(card_ids, key) < split


def sample_ratio_pvalue(n_challenger: int, n_total: int, split: float) -> float:
    """Sample-ratio-mismatch check: two-sided binomial p-value of the cards seen in arm B.

    A tiny p-value means the traffic does not reach the arms in the configured ratio (a routing
    bug, or cards dropped by one arm): the experiment's comparisons are then not to be trusted.
    """
    if n_total == 0:
        return 1.0
    return float(stats.binomtest(int(n_challenger), int(n_total), split).pvalue)
