"""Always-valid inference on a difference of means: the mixture sequential probability ratio test.

Johari, Pekelis, Koomen & Walsh (2017), *Peeking at A/B tests: why it matters, and what to do
about it*, and Johari et al. (2022), *Always valid inference*. The estimate of the difference
``delta`` (challenger minus champion) is approximately ``N(theta, V)`` at every look; mixing the
likelihood ratio of ``theta`` against ``theta0`` over a normal prior ``theta ~ N(theta0, tau^2)``
gives::

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 (delta - theta0)^2 / (2 V (V + tau^2)))

a martingale under ``theta = theta0``, so by Ville's inequality it ever exceeds ``1/alpha`` with
probability at most ``alpha``, however often and whenever one looks. Hence:

* the always-valid p-value ``p_n = min(p_{n-1}, 1 / Lambda_n)``: stopping the first time
  ``p_n <= alpha`` keeps the type-I error at ``alpha``;
* the always-valid confidence sequence ``{theta0 : Lambda_n(theta0) < 1/alpha}``, i.e.
  ``delta +/- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))``, intersected
  over looks, covers the true difference at every look at once with probability ``1 - alpha``.

``V`` is the plug-in variance of the estimate (so validity is asymptotic, as in the paper's
Section 4.3). The naive test — a z-test at ``alpha`` repeated at every look — is here too, to
show what peeking does to it.

Every function works elementwise on arrays; the running minimum and intersection run along the
last axis (the looks), so a batch of simulated experiments is one call.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def _informative(var: np.ndarray) -> np.ndarray:
    return np.isfinite(var) & (var > 0)


def msprt_log_lr(
    delta: np.ndarray | float, var: np.ndarray | float, tau2: np.ndarray | float, theta0: float = 0.0
) -> np.ndarray:
    """Log of the normal-mixture likelihood ratio ``Lambda`` at each look.

    Args:
        delta: Estimated difference (challenger minus champion).
        var: Variance of that estimate (NaN or inf: no information yet, ``Lambda = 1``).
        tau2: Variance of the normal mixture over the true difference.
        theta0: The null value of the difference.

    Returns:
        ``log Lambda`` with the broadcast shape of the inputs.
    """
    d = np.asarray(delta, dtype=np.float64)
    v = np.asarray(var, dtype=np.float64)
    t2 = np.asarray(tau2, dtype=np.float64)
    ok = _informative(v) & np.isfinite(d)
    v_safe = np.where(ok, v, 1.0)
    d_safe = np.where(ok, d, theta0)
    out = 0.5 * np.log(v_safe / (v_safe + t2)) + t2 * (d_safe - theta0) ** 2 / (2 * v_safe * (v_safe + t2))
    return np.where(ok, out, 0.0)


def always_valid_pvalue(log_lr: np.ndarray) -> np.ndarray:
    """``p_n = min(1, min_{k <= n} 1 / Lambda_k)`` along the last axis (the looks)."""
    p = np.minimum(1.0, np.exp(-np.asarray(log_lr, dtype=np.float64)))
    return np.minimum.accumulate(p, axis=-1)


def always_valid_halfwidth(var: np.ndarray | float, tau2: np.ndarray | float, alpha: float) -> np.ndarray:
    """Half-width of the mSPRT's confidence interval at one look (inf without information)."""
    v = np.asarray(var, dtype=np.float64)
    t2 = np.asarray(tau2, dtype=np.float64)
    ok = _informative(v)
    v_safe = np.where(ok, v, 1.0)
    half = np.sqrt(v_safe * (v_safe + t2) / t2 * (2 * np.log(1 / alpha) + np.log((v_safe + t2) / v_safe)))
    return np.where(ok, half, np.inf)


def always_valid_ci(
    delta: np.ndarray, var: np.ndarray, tau2: np.ndarray | float, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The confidence sequence: each look's mSPRT interval intersected with every earlier one.

    Args:
        delta: Estimates at each look (last axis).
        var: Their variances.
        tau2: Mixture variance.
        alpha: Miscoverage of the whole sequence.

    Returns:
        ``(lower, upper)`` arrays; with a plug-in variance the intersection can (rarely) come out
        empty (lower > upper), which is itself evidence against the model.
    """
    d = np.asarray(delta, dtype=np.float64)
    half = always_valid_halfwidth(var, tau2, alpha)
    lower = np.where(np.isfinite(half), d - half, -np.inf)
    upper = np.where(np.isfinite(half), d + half, np.inf)
    return np.maximum.accumulate(lower, axis=-1), np.minimum.accumulate(upper, axis=-1)


def naive_z(delta: np.ndarray, var: np.ndarray) -> np.ndarray:
    """The fixed-horizon z statistic at each look (0 without information)."""
    v = np.asarray(var, dtype=np.float64)
    ok = _informative(v)
    return np.where(ok, np.asarray(delta, dtype=np.float64) / np.sqrt(np.where(ok, v, 1.0)), 0.0)


def naive_pvalue(delta: np.ndarray, var: np.ndarray) -> np.ndarray:
    """Two-sided fixed-horizon p-value at each look: valid at one pre-set look only."""
    return 2 * stats.norm.sf(np.abs(naive_z(delta, var)))


def naive_ci(delta: np.ndarray, var: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-horizon ``1 - alpha`` interval at each look (no correction for peeking)."""
    v = np.asarray(var, dtype=np.float64)
    ok = _informative(v)
    half = np.where(ok, stats.norm.isf(alpha / 2) * np.sqrt(np.where(ok, v, 1.0)), np.inf)
    d = np.asarray(delta, dtype=np.float64)
    return d - half, d + half


def first_true(flags: np.ndarray) -> np.ndarray:
    """Index of the first True along the last axis; -1 where there is none."""
    f = np.asarray(flags, dtype=bool)
    idx = np.argmax(f, axis=-1)
    return np.where(f.any(axis=-1), idx, -1)


def mixture_variance(effect_size: float, sigma: np.ndarray | float) -> np.ndarray:
    """``tau^2`` for a mixture whose standard deviation is `effect_size` per-observation sds."""
    return (effect_size * np.asarray(sigma, dtype=np.float64)) ** 2


# Standard errors of a difference a two-sided 5 % test detects with 80 % power: 1.96 + 0.84.
MDE_SE = 2.8


def horizon_mixture_variance(
    var: np.ndarray | float, n: np.ndarray | float, n_horizon: np.ndarray | float, mde_se: float = MDE_SE
) -> np.ndarray:
    """``tau^2`` matched to the planned traffic: ``(mde_se)^2 V_N`` with ``V_N = V n / n_horizon``.

    The variance of the estimate at an early look, scaled to the planned number of observations,
    is the variance expected at the horizon; a mixture of sd `mde_se` standard errors there puts
    its weight on the differences the planned traffic can detect (80 % power by default), which
    also brings the interval at the horizon close to its narrowest.
    """
    return (
        mde_se**2
        * np.asarray(var, dtype=np.float64)
        * np.asarray(n, dtype=np.float64)
        / np.asarray(n_horizon)
    )
