"""Feature selection: drops constant, duplicate and noise features, and sees only its training window."""

from __future__ import annotations

import numpy as np

from level2_churn.config import SelectionConfig
from level2_churn.selection import constant_and_duplicates, inner_split_mask, select_features
from level2_churn.splits import walk_forward
from level2_churn.tests.helpers import PANEL_FEATURES


def test_constant_and_duplicates(panel) -> None:
    frame, _ = panel
    dropped = constant_and_duplicates(frame[PANEL_FEATURES])
    assert dropped["always_one"] == "constant"
    assert dropped["usage_trend_copy"] == "near-duplicate of usage_trend"
    assert "usage_trend" not in dropped and "contract" not in dropped


def test_permutation_selection_keeps_signal_drops_noise(panel) -> None:
    frame, _ = panel
    X, y = frame[PANEL_FEATURES], frame["label"].to_numpy()
    mask = inner_split_mask(frame["snapshot_date"], y)
    assert mask.sum() == (frame["snapshot_date"] == frame["snapshot_date"].max()).sum()
    res = select_features(X, y, cfg=SelectionConfig(min_features=2, n_repeats=3), inner_valid=mask, seed=0)
    for signal in ("usage_trend", "failed_payments_90d", "open_tickets"):
        assert signal in res.kept
    assert "always_one" not in res.kept and "usage_trend_copy" not in res.kept
    assert not {"noise_a", "noise_b"} <= set(res.kept)  # at least one pure-noise column goes


def test_selection_cannot_see_the_validation_window(panel) -> None:
    """Scrambling the validation window's labels and features changes nothing selection decides."""
    frame, _ = panel
    plan = walk_forward(frame["snapshot_date"], n_folds=4)
    fold = plan.folds[0]
    cfg = SelectionConfig(min_features=2, n_repeats=2)

    def run(f):
        tr = f.iloc[fold.train_idx].reset_index(drop=True)
        mask = inner_split_mask(tr["snapshot_date"], tr["label"].to_numpy())
        return select_features(tr[PANEL_FEATURES], tr["label"].to_numpy(), cfg=cfg, inner_valid=mask, seed=0)

    before = run(frame)
    scrambled = frame.copy()
    rng = np.random.default_rng(1)
    scrambled.loc[fold.valid_idx, "label"] = rng.integers(0, 2, len(fold.valid_idx))
    scrambled.loc[fold.valid_idx, "usage_trend"] = rng.normal(0, 5, len(fold.valid_idx))
    after = run(scrambled)
    assert before.kept == after.kept
    assert np.allclose(before.importance.to_numpy(), after.importance.to_numpy())


def test_selection_fits_with_the_configured_resampling_ratios(panel, tiny_cfg, monkeypatch) -> None:
    """The importance model inside selection undersamples to ``cfg.imbalance.undersample_ratio``."""
    import level2_churn.selection as selection
    from level2_churn.train import ModelData, _select_in_window

    seen: list[dict] = []
    real_fit = selection.fit_estimator

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(selection, "fit_estimator", spy)
    frame, _ = panel
    cfg = tiny_cfg.model_copy(
        update={
            "imbalance": tiny_cfg.imbalance.model_copy(
                update={"undersample_ratio": 0.37, "smote_ratio": 0.41}
            )
        }
    )
    data = ModelData(frame, PANEL_FEATURES, id_col="customer_id", date_col="snapshot_date")
    fold = walk_forward(frame["snapshot_date"], n_folds=4).folds[0]
    _select_in_window(data, fold.train_idx, cfg, "undersample")
    assert [(k["imbalance"], k["undersample_ratio"], k["smote_ratio"]) for k in seen] == [
        ("undersample", 0.37, 0.41)
    ]
