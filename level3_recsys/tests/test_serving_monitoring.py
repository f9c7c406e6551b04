"""Monitoring: PSI known answers, sliding windows, CTR, per-app registries; the serving reference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from level3_recsys.serving import monitoring as mon
from level3_recsys.serving.reference import NEW_BUCKET, ServingReference, build_reference, popularity_buckets
from shared.errors import InputFileError


def samples(metrics: mon.Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_psi_known_answer():
    # (0.2-0.5)ln(0.2/0.5) + (0.8-0.5)ln(0.8/0.5) = 0.3 ln 2.5 + 0.3 ln 1.6
    expected = 0.3 * math.log(2.5) + 0.3 * math.log(1.6)
    assert mon.psi({"a": 0.5, "b": 0.5}, {"a": 20, "b": 80}) == pytest.approx(expected)
    assert mon.psi({"a": 1, "b": 3}, {"a": 10, "b": 30}) == pytest.approx(0.0)
    assert math.isnan(mon.psi({"a": 1}, {}))


def test_psi_empty_bin_is_floored_not_infinite():
    value = mon.psi({"a": 0.5, "b": 0.5}, {"a": 1.0})
    assert math.isfinite(value) and value > 3


def test_sliding_distribution_forgets_old_values():
    d = mon.SlidingDistribution(window=3)
    d.add(["a", "a", "b"])
    d.add(["c", "c"])
    assert d.counts() == {"b": 1, "c": 2}
    assert len(d) == 3


def test_drift_monitor_detects_shift_only_with_enough_data():
    drift = mon.DriftMonitor({"device": {"mobile": 0.6, "desktop": 0.3, "tv": 0.1}}, window=500, min_count=50)
    drift.observe("device", ["mobile"] * 30)
    assert drift.values() == {}
    drift.observe("device", ["mobile"] * 60 + ["desktop"] * 30 + ["tv"] * 10)
    same = drift.values()["device"]
    drift.observe("device", ["tv"] * 500)  # the whole window is now tv
    shifted = drift.values()["device"]
    assert same < 0.05 < 0.2 < shifted
    drift.observe("unmonitored", ["x"])  # no reference: ignored
    assert set(drift.values()) == {"device"}


def test_ctr_window_per_version_and_bounded_labels():
    ctr = mon.CTRWindow(window=6, max_versions=2)
    assert ctr.version_label("1") == "1"
    assert ctr.version_label("2") == "2"
    assert ctr.version_label("3") == mon.UNKNOWN_VERSION  # cardinality bound
    assert ctr.version_label(None) == mon.UNKNOWN_VERSION
    for _ in range(4):
        ctr.add("1", False)
    ctr.add("1", True)
    ctr.add("2", False)
    assert ctr.rates() == pytest.approx({"1": 0.25, "2": 0.0, "all": 1 / 5})
    for _ in range(6):  # the window slides: only version 2 impressions remain
        ctr.add("2", False)
    assert ctr.rates() == {"2": 0.0, "all": 0.0}


def test_metrics_exposed_on_own_registry_with_documented_names():
    a = mon.Metrics(
        drift_reference={"device": {"mobile": 1.0}},
        drift_window=100,
        batch_age=lambda: 120.0,
        freshness_s=60.0,
    )
    b = mon.Metrics()
    a.recommendations.labels("model", "3").inc()
    a.set_breaker_state("model", "open")
    a.observe_feedback("impression", "3")
    a.observe_feedback("impression", "3")
    a.observe_feedback("click", "3")
    a.drift.observe("device", ["tv"] * 60)
    s = samples(a)
    assert s[(mon.RECOMMENDATIONS, (("model_version", "3"), ("source", "model")))] == 1
    assert s[(mon.BREAKER_STATE, (("breaker", "model"),))] == 2
    assert s[(mon.CTR, (("model_version", "3"),))] == pytest.approx(0.5)
    assert s[(mon.BATCH_AGE, ())] == 120.0
    assert s[(mon.BATCH_FRESH, ())] == 0.0  # 120 s old, freshness 60 s
    assert s[(mon.PSI, (("feature", "device"),))] > 5
    assert s[(mon.FEEDBACK_EVENTS, (("event", "click"), ("model_version", "3")))] == 1
    # a second app instance has its own, untouched registry
    assert (mon.RECOMMENDATIONS, (("model_version", "3"), ("source", "model"))) not in samples(b)
    text = a.exposition().decode()
    for metric in mon.ALL_METRICS:  # every documented family is declared under its constant
        assert f"# TYPE {metric} " in text, metric


def test_batch_age_errors_do_not_break_the_scrape():
    def broken() -> float:
        raise ConnectionError("redis down")

    s = samples(mon.Metrics(batch_age=broken))
    assert s[(mon.BATCH_FRESH, ())] == 0.0
    assert (mon.BATCH_AGE, ()) not in s


# ---------------------------------------------------------------------- reference
def test_popularity_buckets_equal_interaction_shares():
    # counts 50, 30, 10, 10 over 4 items; 2 buckets: item a holds the first half of the mass
    buckets = popularity_buckets(np.array(["b", "a", "c", "d"]), np.array([30, 50, 10, 10]), n_buckets=2)
    assert buckets == {"a": "0", "b": "1", "c": "1", "d": "1"}


class TinyModel:
    item_ids_ = np.array([10, 11, 12, 13])
    fallback_ = np.array([1.0, 8.0, 3.0, 0.0], dtype=np.float32)


def test_build_reference_and_round_trip(tmp_path):
    interactions = pd.DataFrame({"timestamp": [0, 3600, 3600 * 25, 7200]})
    users = pd.DataFrame({"user_id": [1, 2, 3, 4], "device": ["tv", "mobile", "mobile", "mobile"]})
    ref = build_reference(
        TinyModel(), model_name="m", model_version="7", interactions=interactions, users=users
    )
    assert ref.popular_items[:3] == [11, 12, 10]
    assert ref.popular_scores[:3] == [8.0, 3.0, 1.0]
    assert ref.features["device"] == {"mobile": 0.75, "tv": 0.25}
    assert ref.features["hour"] == {"1": 0.5, "0": 0.25, "2": 0.25}
    assert sum(ref.features["item_popularity"].values()) == pytest.approx(1.0)
    assert ref.bucket_of(11) == "0" and ref.bucket_of(999) == NEW_BUCKET
    back = ServingReference.load(ref.save(tmp_path / "ref.json"))
    assert back == ref


def test_reference_load_errors(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        ServingReference.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputFileError, match="malformed"):
        ServingReference.load(bad)
