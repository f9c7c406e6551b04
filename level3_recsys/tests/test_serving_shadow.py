"""Shadow deployment: comparison maths, bounded queue, isolation of users from the challenger."""

from __future__ import annotations

import asyncio
import json
import math
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from level3_recsys.serving import monitoring as mon
from level3_recsys.serving.api import create_app
from level3_recsys.serving.shadow import (
    ItemCTREstimator,
    ShadowJob,
    ShadowRunner,
    overlap_at_k,
    position_weights,
)
from level3_recsys.tests.serving_helpers import FakeModel, H, reference_path_fixture, settings  # noqa: F401


def test_overlap_at_k_known_answers():
    assert overlap_at_k([1, 2, 3, 4], [4, 3, 9, 8], 4) == 0.5
    assert overlap_at_k([1, 2, 3, 4], [1, 2, 3, 4], 2) == 1.0
    assert overlap_at_k([1, 2, 3, 4], [3, 4, 1, 2], 2) == 0.0  # only the top 2 of each count
    assert overlap_at_k([], [1], 3) == 0.0


def test_position_weights_and_predicted_ctr():
    w = position_weights(2)
    assert w == pytest.approx([1 / (1 + 1 / math.log2(3)), (1 / math.log2(3)) / (1 + 1 / math.log2(3))])
    est = ItemCTREstimator(alpha=1, beta=9)  # prior CTR 0.1
    assert est.item_ctr("new") == pytest.approx(0.1)
    for _ in range(10):
        est.observe("a", "impression")
    for _ in range(5):
        est.observe("a", "click")
    est.observe("a", "watch")  # ignored
    assert est.item_ctr("a") == pytest.approx(6 / 20)
    assert est.predicted_ctr(["a", "new"]) == pytest.approx(w[0] * 0.3 + w[1] * 0.1)
    assert est.predicted_ctr([]) is None


def test_ctr_estimator_is_bounded():
    est = ItemCTREstimator(max_items=2)
    for item in ("a", "b", "c"):
        est.observe(item, "click")
    assert est.item_ctr("c") == pytest.approx(est.alpha / (est.alpha + est.beta))


def job(user: str = "1", items=(1, 2, 3, 4)) -> ShadowJob:
    return ShadowJob(user, len(items), "tv", 3, list(items), "7", 0.002)


def test_full_queue_drops_without_waiting():
    async def never(j):  # workers are not started: the queue only fills
        raise AssertionError("not called")

    async def scenario() -> tuple[list[bool], float]:
        runner = ShadowRunner(never, metrics=mon.Metrics(), ctr=ItemCTREstimator(), queue_size=2)
        start = time.perf_counter()
        accepted = [runner.submit(job()) for _ in range(5)]
        elapsed = time.perf_counter() - start
        left = await runner.aclose(0.0)
        assert left == 2 and runner.dropped == 5
        return accepted, elapsed

    accepted, elapsed = asyncio.run(scenario())
    assert accepted == [True, True, False, False, False]
    assert elapsed < 0.5


def test_runner_compares_and_logs(tmp_path):
    async def challenger(j: ShadowJob):
        return [j.champion_items[0], j.champion_items[1], 98, 99], "8"

    async def scenario():
        metrics = mon.Metrics()
        runner = ShadowRunner(
            challenger, metrics=metrics, ctr=ItemCTREstimator(), log_path=tmp_path / "shadow.jsonl"
        )
        runner.start()
        for u in range(4):
            runner.submit(job(str(u)))
        left = await runner.aclose(5.0)
        return runner.summary(), left, metrics

    summary, left, _ = asyncio.run(scenario())
    assert left == 0
    assert summary["compared"] == 4 and summary["errors"] == 0
    assert summary["mean_overlap_at_k"] == pytest.approx(0.5)
    assert summary["challenger_version"] == "8"
    assert summary["champion_predicted_ctr"] == pytest.approx(0.05)  # prior only: 1 / (1 + 19)
    lines = [json.loads(line) for line in (tmp_path / "shadow.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and lines[0]["overlap_at_k"] == 0.5


def test_shadow_log_rotates_at_its_size_bound(tmp_path):
    async def challenger(j: ShadowJob):
        return j.champion_items, "8"

    async def scenario():
        runner = ShadowRunner(
            challenger,
            metrics=mon.Metrics(),
            ctr=ItemCTREstimator(),
            log_path=tmp_path / "shadow.jsonl",
            log_max_bytes=1000,
        )
        runner.start()
        for u in range(40):
            runner.submit(job(str(u)))
            await asyncio.sleep(0)
        await runner.aclose(5.0)

    asyncio.run(scenario())
    current, backup = tmp_path / "shadow.jsonl", tmp_path / "shadow.jsonl.1"
    assert current.stat().st_size <= 1000 and backup.stat().st_size <= 1000
    lines = current.read_text().splitlines() + backup.read_text().splitlines()
    assert all(json.loads(line)["overlap_at_k"] == 1.0 for line in lines)
    assert len(lines) < 40  # older lines were rotated away, not kept forever


def test_failing_challenger_is_counted_not_raised():
    async def broken(j):
        raise RuntimeError("challenger crashed")

    async def slow(j):
        await asyncio.sleep(10)

    async def scenario(call):
        metrics = mon.Metrics()
        runner = ShadowRunner(call, metrics=metrics, ctr=ItemCTREstimator(), timeout_s=0.05)
        runner.start()
        runner.submit(job())
        await runner.aclose(2.0)
        return runner.summary()

    assert asyncio.run(scenario(broken))["errors"] == 1
    start = time.perf_counter()
    assert asyncio.run(scenario(slow))["errors"] == 1
    assert time.perf_counter() - start < 2.0  # the 0.05 s deadline cut the 10 s call


class Challenger:
    """Challenger model service double: slow, failing or fine."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.calls = 0
        self.requests: list[tuple[str, int, str, int]] = []  # (user, k, device, hour) received

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        payload = json.loads(request.content)
        self.requests.append((payload["user_id"], payload["k"], payload["device"], payload["hour"]))
        if self.mode == "slow":
            await asyncio.sleep(3.0)
        if self.mode == "fail":
            return httpx.Response(503, json={"error": "down"})
        items = [{"item_id": 500 + i, "score": 1.0, "rank": i + 1} for i in range(0, 2 * payload["k"], 2)]
        body = {"user_id": payload["user_id"], "items": items, "model_name": "reg/als", "model_version": "8"}
        return httpx.Response(200, json={**body, "known_user": True, "took_ms": 1.0})


def _serve(reference_path, challenger: Challenger | None, **kw):
    extra = {"challenger_service_url": "http://challenger.test"} if challenger else {}
    app = create_app(
        settings(reference_path, **extra, **kw),
        model_transport=httpx.MockTransport(FakeModel()),
        challenger_transport=httpx.MockTransport(challenger) if challenger else None,
    )
    return TestClient(app)


@pytest.mark.parametrize("mode", ["slow", "fail"])
def test_bad_challenger_never_changes_answers_or_latency(reference_path, mode):
    challenger = Challenger(mode)
    paths = [f"/v1/recommendations/{u}?k=4&hour=5" for u in ("1", "2", "9")] * 3
    with _serve(reference_path, None) as plain:
        expected = [plain.get(p, headers=H).json() for p in paths]
    with _serve(reference_path, challenger, shadow_timeout_s=5.0, drain_timeout_s=0.2) as c:
        start = time.perf_counter()
        got = [c.get(p, headers=H).json() for p in paths]
        elapsed = time.perf_counter() - start
        shutdown_start = time.perf_counter()
        shadow = c.app.state.serving.shadow
    shutdown = time.perf_counter() - shutdown_start
    strip = ("request_id",)
    assert [{k: v for k, v in g.items() if k not in strip} for g in got] == [
        {k: v for k, v in e.items() if k not in strip} for e in expected
    ]
    mirrored = [(u, 4, "unknown", 5) for u in ("1", "2", "9")] * 3  # every answer came from the model
    summary = shadow.summary()
    if mode == "fail":
        # every request reached the challenger once, as it was asked; each failure is counted
        assert sorted(challenger.requests) == sorted(mirrored)
        assert (summary["errors"], summary["compared"], summary["dropped"]) == (9, 0, 0)
    else:
        # the two workers each hold one copy for 3 s; the seven queued ones are dropped at shutdown
        assert len(challenger.requests) == 2
        assert sorted(challenger.requests) == sorted(mirrored[:2])
        assert (summary["errors"], summary["compared"], summary["dropped"]) == (0, 0, 7)
        assert elapsed < 2.5  # nine requests did not wait for a challenger taking 3 s per call
        assert shutdown < 2.5  # the drain is bounded by drain_timeout_s, not by the slow copies


def test_healthy_challenger_is_compared_in_summary(reference_path):
    with _serve(reference_path, Challenger("ok")) as c:
        for u in ("1", "2", "3", "4"):
            c.get(f"/v1/recommendations/{u}?k=4", headers=H)
        deadline = time.monotonic() + 5
        summary = c.get("/v1/shadow", headers=H).json()
        while summary["compared"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
            summary = c.get("/v1/shadow", headers=H).json()
        values = c.get("/metrics").text
    assert summary["enabled"] is True and summary["compared"] == 4
    # champion 500..503, challenger 500, 502, 504, 506: overlap 2/4
    assert summary["mean_overlap_at_k"] == pytest.approx(0.5)
    assert summary["challenger_version"] == "8"
    assert f'{mon.SHADOW_REQUESTS}{{outcome="ok"}} 4.0' in values


def test_fallback_answers_are_not_mirrored(reference_path):
    challenger = Challenger("ok")
    app = create_app(
        settings(reference_path, challenger_service_url="http://challenger.test"),
        model_transport=httpx.MockTransport(lambda r: httpx.Response(500)),
        challenger_transport=httpx.MockTransport(challenger),
    )
    with TestClient(app) as c:
        assert c.get("/v1/recommendations/1", headers=H).json()["fallback"] is True
    assert challenger.calls == 0


def test_shadow_disabled_summary(reference_path):
    with _serve(reference_path, None) as c:
        assert c.get("/v1/shadow", headers=H).json() == {"enabled": False}
