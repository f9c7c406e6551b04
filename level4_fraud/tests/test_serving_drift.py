"""Live drift gauges (`serving.drift_watch`): in-distribution traffic stays under the PSI threshold,
shifted amounts cross it, the statistics run every N decisions only, and the real app exports them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from level4_fraud.monitoring.drift import DriftConfig
from level4_fraud.serving.drift_watch import DriftWatch
from level4_fraud.serving.metrics import ServiceMetrics

THRESHOLD = DriftConfig().psi_threshold


def _sample(rng: np.random.Generator, n: int, amount_scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "TX_AMOUNT": rng.lognormal(3.8, 0.8, n) * amount_scale,
        "TX_HOUR": rng.integers(0, 24, n).astype(float),
        "score": rng.beta(0.5, 20, n),
    }


def _feed(watch: DriftWatch, rows: dict[str, np.ndarray], metrics: ServiceMetrics | None = None) -> int:
    recomputed = 0
    for i in range(len(rows["TX_AMOUNT"])):
        values = {"TX_AMOUNT": rows["TX_AMOUNT"][i], "TX_HOUR": rows["TX_HOUR"][i]}
        recomputed += watch.observe(values, float(rows["score"][i]), metrics)
    watch.wait()
    return recomputed


def _psi(metrics: ServiceMetrics, feature: str) -> float | None:
    return metrics.registry.get_sample_value("fraud_drift_psi", {"feature": feature})


def test_in_distribution_traffic_keeps_every_psi_below_the_threshold():
    rng = np.random.default_rng(0)
    watch = DriftWatch(_sample(rng, 20_000), window=1000, every=250)
    metrics = ServiceMetrics()
    _feed(watch, _sample(rng, 1000), metrics)
    for feature in ("TX_AMOUNT", "TX_HOUR", "score"):
        value = _psi(metrics, feature)
        assert value is not None and value < THRESHOLD, (feature, value)
        ks = metrics.registry.get_sample_value("fraud_drift_ks", {"feature": feature})
        assert ks is not None and 0 <= ks < 0.1


def test_shifted_amounts_push_tx_amount_psi_over_the_threshold_only():
    rng = np.random.default_rng(1)
    watch = DriftWatch(_sample(rng, 20_000), window=1000, every=250)
    metrics = ServiceMetrics()
    _feed(watch, _sample(rng, 1000, amount_scale=2.0), metrics)
    assert _psi(metrics, "TX_AMOUNT") > THRESHOLD
    assert _psi(metrics, "TX_HOUR") < THRESHOLD and _psi(metrics, "score") < THRESHOLD


def test_ring_keeps_only_the_last_window_so_drift_clears_when_traffic_recovers():
    rng = np.random.default_rng(2)
    watch = DriftWatch(_sample(rng, 20_000), window=500, every=500)
    metrics = ServiceMetrics()
    _feed(watch, _sample(rng, 500, amount_scale=2.0), metrics)
    assert _psi(metrics, "TX_AMOUNT") > THRESHOLD
    _feed(watch, _sample(rng, 500), metrics)
    assert _psi(metrics, "TX_AMOUNT") < THRESHOLD


def test_statistics_are_recomputed_every_n_decisions_not_per_request():
    rng = np.random.default_rng(3)
    watch = DriftWatch(_sample(rng, 2000), window=300, every=100)
    metrics = ServiceMetrics()
    assert _feed(watch, _sample(rng, 99), metrics) == 0
    assert watch.recomputes == 0 and _psi(metrics, "TX_AMOUNT") is None  # gauges untouched before the N-th
    assert _feed(watch, _sample(rng, 951), metrics) == 10
    assert watch.recomputes == 10  # 1,050 decisions: at 100, 200, ..., 1,000


def test_the_comparison_runs_off_the_deciding_thread():
    rng = np.random.default_rng(5)
    watch = DriftWatch(_sample(rng, 2000), window=100, every=100)
    metrics = ServiceMetrics()
    seen: list[str] = []
    publish = watch._publish

    def recording(result, m):
        seen.append(threading.current_thread().name)
        publish(result, m)

    watch._publish = recording  # type: ignore[method-assign]
    _feed(watch, _sample(rng, 200), metrics)
    assert len(seen) == 2 and all(name.startswith("drift-watch") for name in seen)
    assert _psi(metrics, "TX_AMOUNT") is not None


def test_missing_or_non_numeric_inputs_are_skipped_not_fatal():
    rng = np.random.default_rng(4)
    watch = DriftWatch(_sample(rng, 2000), window=100, every=100)
    for i in range(100):
        watch.observe({"TX_AMOUNT": "n/a" if i % 2 else 50.0}, 0.01)  # TX_HOUR absent
    result = watch.current()
    assert np.isfinite(result["TX_AMOUNT"][0]) and np.isnan(result["TX_HOUR"][0])


@pytest.mark.slow  # the serving run folder takes about a minute to build (once per session)
def test_app_metrics_export_drift_gauges_after_enough_decisions(tmp_path):
    from fastapi.testclient import TestClient

    from level4_fraud.serving.app import create_app
    from level4_fraud.serving.service import ScoringService
    from level4_fraud.tests.serving_helpers import payload, serving_config, serving_run

    run = serving_run()
    cfg = serving_config(run, audit_url=f"sqlite:///{tmp_path / 'audit.db'}", drift_window=40, drift_every=20)
    service = ScoringService.from_run(run.run_dir, cfg)
    assert service.drift is not None and {"TX_AMOUNT", "score"} <= set(service.drift.columns)
    bodies = [payload(row) for _, row in run.replay().head(40).iterrows()]
    try:
        with TestClient(create_app(service, cfg)) as client:
            key = {"X-API-Key": "test-key"}
            for body in bodies[:19]:
                assert client.post("/v1/score", json=body, headers=key).status_code == 200
            service.drift.wait()
            assert 'fraud_drift_psi{feature="TX_AMOUNT"}' not in client.get("/metrics").text
            for body in bodies[19:]:
                assert client.post("/v1/score", json=body, headers=key).status_code == 200
            service.drift.wait()
            text = client.get("/metrics").text
    finally:
        service.close()
    assert service.drift.recomputes == 2
    for line in ('fraud_drift_psi{feature="TX_AMOUNT"}', 'fraud_drift_ks{feature="TX_AMOUNT"}'):
        sample = [x for x in text.splitlines() if x.startswith(line)]
        assert sample and float(sample[0].split()[-1]) >= 0
    assert 'fraud_drift_psi{feature="score"}' in text
