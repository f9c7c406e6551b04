"""Realistic traffic for the recommendation API (Locust).

* Users are drawn from a Zipf law over the known users (a few heavy users, a long tail), in
  a fixed shuffled order so "popular" users are not simply the smallest ids;
* a share of requests come from cold users the model has never seen;
* each request carries a context (device, hour), and a share of answers are followed by
  feedback: an impression of the list and, with the click probability, a click.

Every recommendation request is reported under the source that answered it
(``recs:batch``, ``recs:model``, ``recs:fallback``; ``recs`` when the server does not say), so
one run gives the latency of cached, on-demand and fallback answers separately. Non-2xx
answers and answers without items count as failures.

Configured by environment variables (the load-test runner sets them)::

    L3_LOAD_USERS_FILE   JSON list of known user ids        L3_LOAD_API_KEY      X-API-Key value
    L3_LOAD_ZIPF_S       Zipf exponent (1.1)                 L3_LOAD_COLD_SHARE   share of cold users (0.1)
    L3_LOAD_FEEDBACK     share of answers with feedback (0.2)  L3_LOAD_CTR          click probability (0.1)
    L3_LOAD_K            list length (10)                    L3_LOAD_SEED         seed (0)
    L3_LOAD_RATE_PER_CLIENT  requests/s of each client, Poisson arrivals (0: back to back)

Run by hand: ``locust -f level3_recsys/loadtest/locustfile.py --host http://127.0.0.1:8080``.
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

from locust import FastHttpUser, events, task

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
        """Read the ``L3_LOAD_*`` variables."""
        env = os.environ if env is None else env
        path = env.get("L3_LOAD_USERS_FILE")
        users = (
            tuple(str(u) for u in json.loads(Path(path).read_text()))
            if path
            else tuple(map(str, range(1000)))
        )
        return cls(
            user_ids=users,
            zipf_s=float(env.get("L3_LOAD_ZIPF_S", 1.1)),
            cold_share=float(env.get("L3_LOAD_COLD_SHARE", 0.1)),
            feedback_share=float(env.get("L3_LOAD_FEEDBACK", 0.2)),
            ctr=float(env.get("L3_LOAD_CTR", 0.1)),
            k=int(env.get("L3_LOAD_K", 10)),
            api_key=env.get("L3_LOAD_API_KEY", ""),
            seed=int(env.get("L3_LOAD_SEED", 0)),
            rate_per_client=float(env.get("L3_LOAD_RATE_PER_CLIENT", 0.0)),
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


_TRAFFIC: dict[str, TrafficConfig] = {}


def traffic() -> TrafficConfig:
    """The traffic config, read once per Locust process."""
    if "config" not in _TRAFFIC:
        _TRAFFIC["config"] = TrafficConfig.from_env()
    return _TRAFFIC["config"]


@events.test_start.add_listener
def _load_config(environment, **_kw) -> None:
    traffic()


class RecommendationClient(FastHttpUser):
    """One simulated client app: asks for lists and reports feedback.

    Back to back (closed loop, measures the maximum throughput) or, with a rate, after
    exponential waits (Poisson arrivals, measures latency at a given load).
    """

    def on_start(self) -> None:
        cfg = traffic()
        self.cfg = cfg
        self.rng = random.Random(cfg.seed * 1_000_003 + id(self) % 1_000_003)
        self.users = ZipfUsers(cfg.user_ids, cfg.zipf_s, cfg.cold_share, self.rng)
        self.headers = {"X-API-Key": cfg.api_key} if cfg.api_key else {}

    def wait_time(self) -> float:
        rate = self.cfg.rate_per_client
        return self.rng.expovariate(rate) if rate > 0 else 0.0

    @task
    def recommend(self) -> None:
        user, _cold = self.users.draw()
        device = self.rng.choices(DEVICES, DEVICE_WEIGHTS)[0]
        hour = self.rng.randrange(24)
        url = f"/v1/recommendations/{user}?k={self.cfg.k}&device={device}&hour={hour}"
        body = None
        with self.client.get(url, headers=self.headers, name="recs", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"status {resp.status_code}")
                return
            try:
                body = resp.json()
            except ValueError:
                resp.failure("not JSON")
                return
            if not body.get("items"):
                resp.failure("empty list")
                return
            source = body.get("source")
            if source:
                resp.request_meta["name"] = f"recs:{source}"
            resp.success()
        if body is not None and self.rng.random() < self.cfg.feedback_share:
            self.feedback(user, body)

    def feedback(self, user: str, body: dict) -> None:
        """An impression of the top item and, with probability ``ctr``, a click on one."""
        items = body["items"]
        version = body.get("model_version")
        events_ = [("impression", items[0])]
        if self.rng.random() < self.cfg.ctr:
            events_.append(("click", self.rng.choice(items)))
        for event, item in events_:
            payload = {
                "user_id": user,
                "item_id": item["item_id"],
                "event": event,
                "model_version": version,
                "position": item.get("rank"),
            }
            with self.client.post(
                "/v1/feedback", json=payload, headers=self.headers, name="feedback", catch_response=True
            ) as resp:
                if resp.status_code != 202:
                    resp.failure(f"status {resp.status_code}")
