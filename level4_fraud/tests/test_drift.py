"""monitoring/drift.py: PSI and KS with known answers, per-window tables and the alarm rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from level4_fraud.monitoring import MonitoringConfig
from level4_fraud.monitoring.drift import (
    DriftConfig,
    drift_by_window,
    drift_table,
    first_alarm,
    ks,
    psi,
    psi_categorical,
    quantile_edges,
    window_summary,
)


def _binned_normal_psi(mu: float, bins: int = 10) -> float:
    """PSI of N(mu, 1) against N(0, 1) over the reference's exact deciles."""
    inner = stats.norm.ppf(np.linspace(0, 1, bins + 1)[1:-1])
    cdf = np.concatenate([[0.0], stats.norm.cdf(inner - mu), [1.0]])
    c = np.diff(cdf)
    r = np.full(bins, 1.0 / bins)
    return float(np.sum((c - r) * np.log(c / r)))


def test_psi_of_identical_samples_is_zero():
    x = np.random.default_rng(0).normal(size=5000)
    assert psi(x, x) == 0.0
    assert psi(x, x.copy()[::-1]) == 0.0  # order does not matter


def test_psi_of_a_shifted_normal_matches_the_binned_analytic_value():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=400_000)
    cur = rng.normal(0.5, 1.0, size=400_000)
    expected = _binned_normal_psi(0.5)
    assert psi(ref, cur) == pytest.approx(expected, rel=0.03)
    # Binning loses information: below the continuous PSI (symmetric KL divergence, mu^2).
    assert expected < 0.5**2


def test_psi_by_hand_on_two_bins():
    # A 0/1 flag: quantile edges merge into {0}: bins (-inf, 0] and (0, inf).
    ref = np.array([0] * 80 + [1] * 20)
    cur = np.array([0] * 70 + [1] * 30)
    assert list(quantile_edges(ref)) == [0.0, 1.0]
    by_hand = (0.7 - 0.8) * math.log(0.7 / 0.8) + (0.3 - 0.2) * math.log(0.3 / 0.2)
    assert psi(ref, cur) == pytest.approx(by_hand, abs=1e-12)


def test_psi_ignores_missing_values_and_is_nan_without_data():
    ref = np.array([1.0, 2.0, 3.0, np.nan, 4.0])
    assert psi(ref, ref[~np.isnan(ref)]) == 0.0
    assert math.isnan(psi([], [1.0, 2.0]))


def test_categorical_psi_pools_unseen_categories():
    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 45 + ["b"] * 45 + ["new"] * 10
    eps = 1e-4
    by_hand = 2 * (0.45 - 0.5) * math.log(0.45 / 0.5) + (0.1 - eps) * math.log(0.1 / eps)
    assert psi_categorical(ref, cur) == pytest.approx(by_hand, rel=1e-9)
    assert psi_categorical(ref, ref) == 0.0


def test_ks_matches_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=700), rng.normal(0.2, 1.1, size=900)
    ref = stats.ks_2samp(a, b)
    assert ks(a, b) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    stat, p = ks(a, a)
    assert stat == 0.0 and p == pytest.approx(1.0)


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0, ecom: float = 0.2) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "TX_AMOUNT": rng.lognormal(3.0 + shift, 0.8, n),
            "IS_ECOM": (rng.random(n) < ecom).astype(float),
            "CHANNEL": pd.Categorical(np.where(rng.random(n) < ecom, "ecom", "pos")),
            "TX_DURING_WEEKEND": np.zeros(n),
        }
    )


def test_drift_table_flags_only_the_shifted_column():
    rng = np.random.default_rng(3)
    ref = _frame(rng, 5000)
    cur = _frame(rng, 2000, shift=0.5)
    table = drift_table(ref, cur, DriftConfig()).set_index("feature")
    assert table.loc["TX_AMOUNT", "drifted"]
    assert not table.loc["IS_ECOM", "drifted"] and not table.loc["CHANNEL", "drifted"]
    assert math.isnan(table.loc["CHANNEL", "ks"])  # categorical: PSI only
    assert "TX_DURING_WEEKEND" not in table.index  # a calendar flag is never watched


def test_windows_alarm_from_the_drift_day_and_small_windows_are_skipped():
    rng = np.random.default_rng(4)
    ref = _frame(rng, 6000)
    days = []
    for d in range(6):
        f = _frame(rng, 1500, ecom=0.2 if d < 3 else 0.45)
        f["TX_DATETIME"] = (
            pd.Timestamp("2018-05-01")
            + pd.Timedelta(days=d)
            + pd.to_timedelta(rng.integers(0, 86_399, len(f)), unit="s")
        )
        days.append(f)
    tiny = _frame(rng, 50)
    tiny["TX_DATETIME"] = pd.Timestamp("2018-05-07 12:00")
    cur = pd.concat([*days, tiny], ignore_index=True)
    cfg = DriftConfig(min_rows=200)
    table = drift_by_window(ref, cur, cfg)
    summary = window_summary(table, cfg)
    assert len(summary) == 6  # the 50-row day is not judged
    assert first_alarm(summary) == pd.Timestamp("2018-05-04")
    assert not summary["alarm"].iloc[:3].any() and summary["alarm"].iloc[3:].all()
    assert set(summary.loc["2018-05-04", "drifted"].split(",")) == {"IS_ECOM", "CHANNEL"}


def test_monitoring_section_is_validated_from_the_level_config():
    from level4_fraud.tests.integration_helpers import small_config
    from shared.errors import ConfigError

    cfg = small_config(monitoring={"drift": {"psi_threshold": 0.05}})
    mon = cfg.section("monitoring", MonitoringConfig)
    assert mon.drift.psi_threshold == 0.05 and mon.drift.ks_threshold == 0.1
    with pytest.raises(ConfigError, match="monitoring"):
        small_config(monitoring={"drift": {"psi_treshold": 0.05}}).section("monitoring", MonitoringConfig)


def test_a_prepared_reference_gives_the_same_psi_and_ks_statistic_as_the_functions() -> None:
    from level4_fraud.monitoring.drift import ReferenceSample, ks, psi

    rng = np.random.default_rng(7)
    reference = rng.lognormal(3.0, 1.0, 5000)
    reference[::97] = np.nan
    prepared = ReferenceSample(reference, bins=10)
    flags = ReferenceSample(rng.integers(0, 2, 3000).astype(float))  # ties: fewer bins
    for current in (
        rng.lognormal(3.0, 1.0, 800),
        rng.lognormal(3.5, 1.2, 1500),
        np.r_[rng.lognormal(3.0, 1.0, 300), [np.nan, np.inf]],
        reference[:50],
    ):
        assert prepared.psi(current) == psi(reference, current, 10)
        assert prepared.ks_statistic(current) == pytest.approx(ks(reference, current)[0], rel=1e-12)
    current = rng.integers(0, 2, 400).astype(float)
    assert flags.psi(current) == psi(flags.sorted, current)
    assert flags.ks_statistic(current) == pytest.approx(ks(flags.sorted, current)[0], rel=1e-12)
    assert np.isnan(prepared.psi([np.nan])) and np.isnan(prepared.ks_statistic([]))
