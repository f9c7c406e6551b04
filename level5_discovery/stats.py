"""Statistical tests of one experiment: did the intervention change each measured variable?

Per experiment and measured variable (every gene and the phenotype): Welch's t-test of treated
against the paired controls, the effect (difference of means) with its confidence interval (level
``1 - alpha``, 95 % by default; Welch–Satterthwaite degrees of freedom), a standardized effect
(Hedges' g), and multiple-testing control across the variables of one experiment
(Benjamini–Hochberg q-values by default).

A null result is only evidence of no effect when it is precise: ``power_ok`` marks a result whose
confidence interval lies inside ``(-min_effect, +min_effect)``, i.e. every effect of interest is
excluded (an equivalence test at the same level). A designer should record "do(X) did not
change Y" only then.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from shared.errors import DataError, EmptyDataError, SchemaError

Method = Literal["fdr_bh", "bonferroni", "none"]
META_COLUMNS = ("phenotype", "arm", "batch", "experiment", "intervention", "target")
RESULT_COLUMNS = [
    "experiment", "intervention", "target", "variable", "is_target", "n_control", "n_treated",
    "mean_control", "mean_treated", "effect", "std_effect", "ci_low", "ci_high", "t", "df", "p", "q",
    "significant", "power_ok",
]  # fmt: skip


class StatsConfig(BaseModel):
    """Settings of the per-experiment tests."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)
    min_effect: float = Field(0.4, gt=0)  # smallest expression change worth detecting (units of the data)
    method: Method = "fdr_bh"


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input order.

    ``q_(i) = min_{j >= i} min(1, m * p_(j) / j)`` over the p-values sorted ascending.

    Args:
        p: 1-d p-values in ``[0, 1]`` (NaN stays NaN and is not counted in ``m``).

    Returns:
        q-values, same shape as `p`.
    """
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    pv = p[ok]
    order = np.argsort(pv, kind="stable")
    scaled = pv[order] * m / np.arange(1, m + 1)
    # A running minimum from the largest p-value down keeps the q-values monotone.
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1].clip(max=1.0)
    out = np.empty(m)
    out[order] = adjusted
    q[ok] = out
    return q


def adjust(p: np.ndarray, method: Method) -> np.ndarray:
    """Adjust p-values for the variables of one experiment by `method`."""
    p = np.asarray(p, dtype=float)
    if method == "fdr_bh":
        return bh_qvalues(p)
    if method == "bonferroni":
        return np.asarray(np.minimum(p * int((~np.isnan(p)).sum()), 1.0), dtype=float)
    return p.copy()


def welch(control: np.ndarray, treated: np.ndarray, level: float = 0.95) -> dict[str, float]:
    """Welch's t-test and CI of ``mean(treated) - mean(control)`` for 1-d samples (each n >= 2).

    Returns:
        effect, std_effect (Hedges' g with the pooled sd), ci_low, ci_high, t, df, p. Both arms
        constant: the effect is exact (zero-width CI; p = 1 when equal, 0 otherwise).
    """
    n1, n2 = len(control), len(treated)
    m1, m2 = float(np.mean(control)), float(np.mean(treated))
    v1, v2 = float(np.var(control, ddof=1)), float(np.var(treated, ddof=1))
    effect = m2 - m1
    se = float(np.sqrt(v1 / n1 + v2 / n2))
    pooled = float(np.sqrt(((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2)))
    correction = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)  # Hedges' small-sample correction
    if se == 0.0:
        exact = 0.0 if effect == 0 else float(np.sign(effect) * np.inf)
        return {"effect": effect, "std_effect": exact, "ci_low": effect, "ci_high": effect,
                "t": exact, "df": float(n1 + n2 - 2), "p": 1.0 if effect == 0 else 0.0}  # fmt: skip
    df = se**4 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    t = effect / se
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return {
        "effect": effect,
        "std_effect": effect / pooled * correction,
        "ci_low": effect - half,
        "ci_high": effect + half,
        "t": t,
        "df": float(df),
        "p": float(2 * sps.t.sf(abs(t), df)),
    }


def _frame_of(result_or_frame: Any) -> pd.DataFrame:
    frame = getattr(result_or_frame, "data", result_or_frame)
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"expected an ExperimentResult or a DataFrame, got {type(result_or_frame).__name__}"
        )
    if frame.empty:
        raise EmptyDataError("the experiment has no samples to test")
    if "arm" not in frame.columns:
        raise SchemaError("the experiment frame needs an 'arm' column (control | treated)")
    return frame


def _variables(frame: pd.DataFrame, variables: list[str] | None) -> list[str]:
    if variables is not None:
        missing = [v for v in variables if v not in frame.columns]
        if missing:
            raise SchemaError(f"columns not in the experiment frame: {missing}")
        return variables
    genes = [c for c in frame.columns if c not in META_COLUMNS and pd.api.types.is_numeric_dtype(frame[c])]
    return genes + (["phenotype"] if "phenotype" in frame.columns else [])


def _test_one(exp_id: Any, group: pd.DataFrame, variables: list[str], cfg: StatsConfig) -> pd.DataFrame:
    control, treated = group[group["arm"] == "control"], group[group["arm"] == "treated"]
    if len(control) < 2 or len(treated) < 2:
        raise DataError(
            f"experiment {exp_id}: a test needs >= 2 control and >= 2 treated samples, "
            f"got {len(control)} control and {len(treated)} treated"
        )
    kind = str(group["intervention"].iloc[0]) if "intervention" in group else ""
    target = str(group["target"].iloc[0]) if "target" in group else ""
    rows = []
    for var in variables:
        res = welch(control[var].to_numpy(float), treated[var].to_numpy(float), level=1 - cfg.alpha)
        rows.append({"experiment": exp_id, "intervention": kind, "target": target, "variable": var,
                     "is_target": var == target, "n_control": len(control), "n_treated": len(treated),
                     "mean_control": float(control[var].mean()), "mean_treated": float(treated[var].mean()),
                     **res})  # fmt: skip
    out = pd.DataFrame(rows)
    out["q"] = adjust(out["p"].to_numpy(), cfg.method)
    out["significant"] = out["q"] < cfg.alpha
    out["power_ok"] = (out["ci_low"] > -cfg.min_effect) & (out["ci_high"] < cfg.min_effect)
    return out[RESULT_COLUMNS]


def test_intervention(
    result_or_frame: Any,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.4,
    method: Method = "fdr_bh",
    variables: list[str] | None = None,
) -> pd.DataFrame:
    """Test every measured variable of each experiment, treated vs control.

    Args:
        result_or_frame: An ``ExperimentResult`` (its ``.data`` is used) or its sample frame: one row per
            sample with the variables and ``arm`` (``"control"``/``"treated"``), optionally
            ``experiment``, ``intervention``, ``target``, ``batch``.
        alpha: ``significant`` means ``q < alpha``; confidence intervals have level ``1 - alpha`` (95 %).
        min_effect: Smallest effect of interest; ``power_ok`` when the CI excludes every effect this large.
        method: Multiple-testing control across the variables of one experiment.
        variables: Columns to test; default every numeric non-metadata column, then ``phenotype``.

    Returns:
        One row per experiment and variable with columns ``RESULT_COLUMNS``.

    Raises:
        EmptyDataError: No samples.
        SchemaError: No ``arm`` column, or unknown `variables`.
        DataError: An experiment without >= 2 samples in both arms (e.g. an observation).
    """
    cfg = StatsConfig(alpha=alpha, min_effect=min_effect, method=method)
    frame = _frame_of(result_or_frame)
    cols = _variables(frame, variables)
    if not cols:
        raise SchemaError("the experiment frame has no numeric variables to test")
    groups = frame.groupby("experiment", sort=True) if "experiment" in frame.columns else [(0, frame)]
    return pd.concat([_test_one(k, g, cols, cfg) for k, g in groups], ignore_index=True)


# Its name starts with "test": keep pytest from collecting it where a test module imports it.
test_intervention.__test__ = False  # type: ignore[attr-defined]
