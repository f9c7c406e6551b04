"""Realistic traffic for the recommendation API (Locust).

* Users are drawn from a Zipf law over the known users (a few heavy users, a long tail), in
  a fixed shuffled order so "popular" users are not simply the smallest ids;
* a share of requests come from cold users the model has never seen;
* each request carries a context (device, hour), and a share of answers are followed by
  feedback: an impression of the list and, with the click probability, a click.

Every recommendation request is reported under the source that answered it
(``recs:batch``, ``recs:model``, ``recs:fallback:<reason>``; ``recs`` when the server does
not say), so
one run gives the latency of cached, on-demand and fallback answers separately. Non-2xx
answers and answers without items count as failures.

Configured by environment variables (the load-test runner sets them), ``L3__LOAD__<NAME>``::

    USERS_FILE        JSON list of known user ids            API_KEY      X-API-Key value
    ZIPF_S            Zipf exponent (1.1)                    COLD_SHARE   share of cold users (0.1)
    FEEDBACK          share of answers with feedback (0.2)   CTR          click probability (0.1)
    K                 list length (10)                       SEED         seed (0)
    RATE_PER_CLIENT   requests/s of each client, Poisson arrivals (0: back to back)

for example ``L3__LOAD__USERS_FILE=users.json L3__LOAD__API_KEY=secret``.

Run by hand: ``locust -f level3_recsys/loadtest/locustfile.py --host http://127.0.0.1:8080``.
"""

from __future__ import annotations

import random
from itertools import count
from typing import TYPE_CHECKING, Any

from locust import FastHttpUser, events, task

from level3_recsys.loadtest.traffic import DEVICE_WEIGHTS, DEVICES, TrafficConfig, ZipfUsers

if TYPE_CHECKING:
    from locust.env import Environment

_TRAFFIC: dict[str, TrafficConfig] = {}
_CLIENT_NUMBERS = count()  # seeds each client's generator reproducibly


def traffic() -> TrafficConfig:
    """The traffic config, read once per Locust process."""
    if "config" not in _TRAFFIC:
        _TRAFFIC["config"] = TrafficConfig.from_env()
    return _TRAFFIC["config"]


@events.test_start.add_listener
def _load_config(environment: Environment, **_kw: Any) -> None:
    traffic()


class RecommendationClient(FastHttpUser):
    """One simulated client app: asks for lists and reports feedback.

    Back to back (closed loop, measures the maximum throughput) or, with a rate, after
    exponential waits (Poisson arrivals, measures latency at a given load).
    """

    def on_start(self) -> None:
        cfg = traffic()
        self.cfg = cfg
        self.rng = random.Random(cfg.seed * 1_000_003 + next(_CLIENT_NUMBERS))
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
                # fallbacks apart per reason: breaker_open answers at once, timeout waits the deadline
                reason = body.get("fallback_reason") if source == "fallback" else None
                resp.request_meta["name"] = f"recs:{source}" + (f":{reason}" if reason else "")
            resp.success()
        if body is not None and self.rng.random() < self.cfg.feedback_share:
            self.feedback(user, body)

    def feedback(self, user: str, body: dict[str, Any]) -> None:
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
