"""Imbalance treatments change only the training rows, as specified."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level2_churn.imbalance import model_params, resample, scale_pos_weight


@pytest.fixture
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 2000
    y = (rng.random(n) < 0.05).astype(int)
    X = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n) + 2 * y,
            "count": rng.poisson(2, n).astype(float),
            "plan": pd.Categorical(rng.choice(["a", "b", "c"], n)),
        }
    )
    X.loc[:30, "x"] = np.nan
    return X, y


def test_none_and_class_weight_keep_rows(data) -> None:
    X, y = data
    for method in ("none", "class_weight"):
        Xr, yr = resample(X, y, method, seed=0)
        assert Xr is X and np.array_equal(yr, y)
    assert model_params("class_weight", y)["scale_pos_weight"] == pytest.approx(scale_pos_weight(y))
    assert scale_pos_weight(np.array([1, 0, 0, 0])) == 3.0
    assert model_params("none", y) == {}


def test_undersample_reaches_ratio_and_keeps_every_positive(data) -> None:
    X, y = data
    Xr, yr = resample(X, y, "undersample", seed=0, undersample_ratio=0.5)
    assert yr.sum() == y.sum()
    assert yr.sum() / (len(yr) - yr.sum()) == pytest.approx(0.5, abs=0.01)
    assert Xr["plan"].dtype == X["plan"].dtype


def test_smote_adds_only_positives_with_valid_categories(data) -> None:
    X, y = data
    Xr, yr = resample(X, y, "smote", seed=0, smote_ratio=0.5)
    assert (len(yr) - yr.sum()) == (len(y) - y.sum())  # negatives untouched
    assert yr.sum() / (len(yr) - yr.sum()) == pytest.approx(0.5, abs=0.01)
    assert set(Xr["plan"].dropna().unique()) <= {"a", "b", "c"}
    # original rows come back exactly (missing values included); synthetic rows are new positives
    pd.testing.assert_frame_equal(Xr.iloc[: len(X)], X)
    # synthetic counts stay whole numbers, synthetic positives sit near the real positives
    assert np.allclose(Xr["count"], np.round(Xr["count"]))
    assert Xr.loc[yr == 1, "x"].mean() > 1.0


def test_unknown_method_is_rejected(data) -> None:
    X, y = data
    with pytest.raises(ValueError, match="unknown imbalance"):
        resample(X, y, "oversample-everything", seed=0)
