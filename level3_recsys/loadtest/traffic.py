"""The traffic model of the load test, free of Locust (importing Locust monkey-patches the process).

`locustfile` drives it; tests check its shape without starting Locust.
"""

from __future__ import annotations

import json
import os
import random
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from level3_recsys.serving.settings import LOAD_ENV_PREFIX

DEVICES = ("mobile", "desktop", "tv", "tablet")
DEVICE_WEIGHTS = (0.55, 0.3, 0.1, 0.05)


@dataclass(frozen=True)
class TrafficConfig:
    """The traffic model's parameters (see the module docstring)."""

    user_ids: tuple[str, ...]
    zipf_s: float = 1.1
    cold_share: float = 0.1
    feedback_share: float = 0.2
    ctr: float = 0.1
    k: int = 10
    api_key: str = ""
    seed: int = 0
    rate_per_client: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrafficConfig:
        """Read the ``L3__LOAD__*`` variables (see `locustfile`)."""
        env = os.environ if env is None else env

        def get(name: str, default: object) -> str:
            return env.get(f"{LOAD_ENV_PREFIX}{name}", str(default))

        path = env.get(f"{LOAD_ENV_PREFIX}USERS_FILE")
        users = (
            tuple(str(u) for u in json.loads(Path(path).read_text()))
            if path
            else tuple(map(str, range(1000)))
        )
        return cls(
            user_ids=users,
            zipf_s=float(get("ZIPF_S", 1.1)),
            cold_share=float(get("COLD_SHARE", 0.1)),
            feedback_share=float(get("FEEDBACK", 0.2)),
            ctr=float(get("CTR", 0.1)),
            k=int(get("K", 10)),
            api_key=get("API_KEY", ""),
            seed=int(get("SEED", 0)),
            rate_per_client=float(get("RATE_PER_CLIENT", 0.0)),
        )


class ZipfUsers:
    """Draws user ids: Zipf(s) over `user_ids` in a seeded shuffled order, plus cold users.

    Args:
        user_ids: Known users.
        s: Zipf exponent (probability of the r-th most active user ∝ r^-s).
        cold_share: Probability that a draw is a new, never-seen user.
        rng: Random generator (one per simulated client).
    """

    def __init__(self, user_ids: Sequence[str], s: float, cold_share: float, rng: random.Random) -> None:
        if not user_ids:
            raise ValueError("the traffic needs at least one known user")
        if not 0 <= cold_share <= 1:
            raise ValueError("cold_share must be within [0, 1]")
        order = list(user_ids)
        random.Random(len(order)).shuffle(order)  # same ranking for every client
        self.ranked = order
        self.cumulative = list(accumulate((r + 1) ** -s for r in range(len(order))))
        self.cold_share = cold_share
        self.rng = rng

    def draw(self) -> tuple[str, bool]:
        """One request's user id and whether it is a cold user."""
        if self.rng.random() < self.cold_share:
            return f"cold-{self.rng.getrandbits(40):x}", True
        x = self.rng.random() * self.cumulative[-1]
        return self.ranked[min(bisect_left(self.cumulative, x), len(self.ranked) - 1)], False
