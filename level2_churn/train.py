"""Modelling stages shared by the simulator snapshots and the Telco table.

`run_modelling` does, in order, every choice on the validation folds only and touches the test
window once at the end:

1. logistic-regression baseline, per fold;
2. imbalance treatments (none, class weights, undersampling, SMOTE) with default LightGBM; the
   simplest treatment within a tolerance of the best mean PR-AUC wins;
3. feature selection inside every fold's training window; used if it costs no PR-AUC;
4. Optuna TPE search over LightGBM parameters, pruned fold by fold (median pruner), every trial a
   nested MLflow run;
5. calibration (isotonic vs Platt) chosen by log loss on folds the calibrator never saw;
6. campaign threshold chosen on the calibrated validation predictions;
7. the final model, trained on everything before the test window (minus the gap), evaluated once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd

from level2_churn.business import Economics, best_threshold, evaluate_campaign, profit_curve
from level2_churn.evaluate import classification_metrics, pr_auc, shap_values, summarise_folds
from level2_churn.models import (
    LGBM_DEFAULTS,
    Calibrator,
    ChurnModel,
    category_levels,
    fit_estimator,
    positive_scores,
)
from level2_churn.selection import SelectionResult, inner_split_mask, select_features
from level2_churn.splits import SplitPlan
from shared.errors import DataError
from shared.progress import make_progress

if TYPE_CHECKING:
    from level2_churn.config import ChurnConfig
    from level2_churn.tracking import Tracker

log = logging.getLogger(__name__)


@dataclass
class ModelData:
    """A modelling table: features, a binary label and optionally an id and a snapshot date column."""

    frame: pd.DataFrame
    features: list[str]
    label: str = "label"
    id_col: str | None = None
    date_col: str | None = None

    def __post_init__(self) -> None:
        self.frame = self.frame.reset_index(drop=True)
        y = self.frame[self.label].to_numpy()
        if len(y) == 0:
            raise DataError("the modelling table has no rows")
        if y.min() == y.max():
            raise DataError(f"the label {self.label!r} has only one class ({int(y[0])}); nothing to learn")

    def X(self, idx: np.ndarray, features: list[str] | None = None) -> pd.DataFrame:  # noqa: N802
        return self.frame.iloc[idx][features or self.features].reset_index(drop=True)

    def y(self, idx: np.ndarray) -> np.ndarray:
        return self.frame[self.label].to_numpy()[idx].astype(int)

    def dates(self, idx: np.ndarray) -> pd.Series | None:
        return None if self.date_col is None else self.frame[self.date_col].iloc[idx].reset_index(drop=True)


@dataclass
class FoldRun:
    """Per-fold metrics and out-of-fold scores of one model configuration."""

    per_fold: pd.DataFrame
    oof: pd.DataFrame  # row, fold, y, score
    fit_seconds: float

    def mean(self, metric: str = "pr_auc") -> float:
        return float(self.per_fold[metric].mean())

    def std(self, metric: str = "pr_auc") -> float:
        return float(self.per_fold[metric].std(ddof=1)) if len(self.per_fold) > 1 else 0.0


@dataclass
class ModellingResult:
    """Everything the report, metrics.json and the registry need from a modelling run."""

    plan: SplitPlan
    baseline: FoldRun
    imbalance_runs: dict[str, FoldRun]
    imbalance_choice: str
    selection_table: pd.DataFrame
    fold_features: dict[str, list[str]]
    selection_used: bool
    final_selection: SelectionResult
    trials: pd.DataFrame
    best_params: dict[str, Any]
    tuned: FoldRun
    calibration_table: pd.DataFrame
    calibration_method: str
    threshold: float
    validation_campaign: dict[str, float]
    model: ChurnModel
    test_index: np.ndarray
    y_test: np.ndarray
    test_probs: np.ndarray
    test_raw: np.ndarray
    baseline_test_probs: np.ndarray
    test_metrics: dict[str, float]
    baseline_test_metrics: dict[str, float]
    campaign: dict[str, float]
    shap: tuple[np.ndarray, pd.DataFrame] | None
    timings: dict[str, float] = field(default_factory=dict)
    oracle_folds: pd.DataFrame | None = None
    oracle_test: dict[str, float] | None = None
    test_oracle_probs: np.ndarray | None = None


def cross_validate(
    data: ModelData,
    plan: SplitPlan,
    *,
    kind: str,
    cfg: ChurnConfig,
    params: dict[str, Any] | None = None,
    imbalance: str = "none",
    fold_features: dict[str, list[str]] | None = None,
    max_train_rows: int | None = None,
) -> FoldRun:
    """Fit on each fold's training window and score its validation window.

    `max_train_rows` caps each training window (a label-stratified sample); ``None`` means the
    search's cap, ``cfg.search.max_train_rows``.
    """
    cap = cfg.search.max_train_rows if max_train_rows is None else max_train_rows
    rows, oofs, fit_s = [], [], 0.0
    for fold in plan.folds:
        feats = (fold_features or {}).get(fold.name, data.features)
        train_idx = capped(fold.train_idx, cap, cfg.seed, y=data.y(fold.train_idx))
        t0 = time.perf_counter()
        model = _fit(kind, data.X(train_idx, feats), data.y(train_idx), cfg, params, imbalance)
        fit_s += time.perf_counter() - t0
        scores = positive_scores(model, data.X(fold.valid_idx, feats))
        y = data.y(fold.valid_idx)
        rows.append({"fold": fold.name, **classification_metrics(y, scores), "n_features": len(feats)})
        oofs.append(pd.DataFrame({"row": fold.valid_idx, "fold": fold.name, "y": y, "score": scores}))
    return FoldRun(pd.DataFrame(rows), pd.concat(oofs, ignore_index=True), fit_s)


def capped(idx: np.ndarray, cap: int | None, seed: int, *, y: np.ndarray | None = None) -> np.ndarray:
    """A sample of at most `cap` row positions (sorted), or all of them.

    Args:
        idx: Row positions.
        cap: Most rows to keep (``None``: all).
        seed: Sampler seed.
        y: Labels of `idx` (aligned with it); when given, the sample is stratified by label, so
            its churn rate equals the window's exactly (a uniform sample only matches it on average).
    """
    if cap is None or len(idx) <= cap:
        return idx
    rng = np.random.default_rng(seed)
    if y is None:
        return np.sort(rng.choice(idx, size=cap, replace=False))
    y = np.asarray(y)
    parts = []
    for cls in np.unique(y):
        members = idx[y == cls]
        n = max(1, round(cap * len(members) / len(idx)))
        parts.append(rng.choice(members, size=min(n, len(members)), replace=False))
    return np.sort(np.concatenate(parts))


def _fit(kind: str, X: pd.DataFrame, y: np.ndarray, cfg: ChurnConfig, params: Any, imbalance: str) -> Any:
    return fit_estimator(
        kind,
        X,
        y,
        params=params,
        imbalance=imbalance,
        seed=cfg.seed,
        n_jobs=cfg.search.n_jobs,
        undersample_ratio=cfg.imbalance.undersample_ratio,
        smote_ratio=cfg.imbalance.smote_ratio,
    )


def choose_imbalance(runs: dict[str, FoldRun], tolerance: float) -> str:
    """The simplest treatment whose mean walk-forward PR-AUC is within `tolerance` of the best.

    Simplicity order: none, class_weight, undersample, smote. A more complex treatment has to earn
    its place by beating every simpler one by more than the tolerance.
    """
    from level2_churn.imbalance import METHODS

    means = {m: r.mean() for m, r in runs.items()}
    best = max(means.values())
    order = [m for m in METHODS if m in means] + [m for m in means if m not in METHODS]
    return next(m for m in order if means[m] >= best - tolerance)


def imbalance_table(runs: dict[str, FoldRun]) -> pd.DataFrame:
    """Per-method PR-AUC mean ± std, ROC-AUC, Brier and fit time."""
    rows = []
    for method, run in runs.items():
        rows.append(
            {
                "method": method,
                "pr_auc_mean": run.mean(),
                "pr_auc_std": run.std(),
                "roc_auc_mean": run.mean("roc_auc"),
                "brier_mean": run.mean("brier"),
                "fit_seconds": run.fit_seconds,
            }
        )
    return pd.DataFrame(rows).set_index("method")


def fold_selection(
    data: ModelData, plan: SplitPlan, cfg: ChurnConfig, imbalance: str
) -> tuple[dict[str, SelectionResult], pd.DataFrame]:
    """Run selection inside every fold's training window and compare against all features."""
    results: dict[str, SelectionResult] = {}
    rows = []
    for fold in plan.folds:
        train_idx = capped(fold.train_idx, cfg.selection.max_train_rows, cfg.seed, y=data.y(fold.train_idx))
        X_tr, y_tr = data.X(train_idx), data.y(train_idx)
        mask = inner_split_mask(data.dates(train_idx), y_tr, seed=cfg.seed)
        t0 = time.perf_counter()
        sel = select_features(
            X_tr,
            y_tr,
            cfg=cfg.selection,
            inner_valid=mask,
            imbalance=imbalance,
            seed=cfg.seed,
            n_jobs=cfg.search.n_jobs,
        )
        select_s = time.perf_counter() - t0
        results[fold.name] = sel
        y_va = data.y(fold.valid_idx)
        scores = {}
        fit_s = {}
        for name, feats in (("all", data.features), ("selected", sel.kept)):
            t0 = time.perf_counter()
            model = _fit("lgbm", data.X(train_idx, feats), y_tr, cfg, None, imbalance)
            fit_s[name] = time.perf_counter() - t0
            scores[name] = pr_auc(y_va, positive_scores(model, data.X(fold.valid_idx, feats)))
        rows.append(
            {
                "fold": fold.name,
                "n_all": len(data.features),
                "n_selected": len(sel.kept),
                "pr_auc_all": scores["all"],
                "pr_auc_selected": scores["selected"],
                "fit_seconds_all": fit_s["all"],
                "fit_seconds_selected": fit_s["selected"],
                "selection_seconds": select_s,
            }
        )
    return results, pd.DataFrame(rows)


SEARCHED = (
    "n_estimators",
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "colsample_bytree",
    "subsample",
    "reg_lambda",
)


def suggest_params(trial: optuna.Trial, n_estimators_max: int) -> dict[str, Any]:
    """The LightGBM search space."""
    return {
        "n_estimators": trial.suggest_int("n_estimators", 50, n_estimators_max, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 3, 63, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 20, 400, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 30.0, log=True),
    }


def search(
    data: ModelData,
    plan: SplitPlan,
    cfg: ChurnConfig,
    imbalance: str,
    fold_features: dict[str, list[str]],
    tracker: Tracker | None,
    *,
    show_progress: bool = True,
) -> tuple[optuna.Study, FoldRun]:
    """Optuna TPE over the walk-forward folds, median-pruned after each fold.

    Returns:
        The study and the fold run (metrics and out-of-fold scores) of the best trial.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.search.n_startup_trials)
    # Pruning starts after the second fold: the value reported is the running mean over folds, so
    # two folds of evidence (not one, whose difficulty varies most) judge a trial against the median
    # of earlier trials; a poor trial then costs two fits instead of three.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=cfg.search.n_startup_trials, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name="lgbm")
    # The first trial is the default configuration, so the search can only improve on it.
    study.enqueue_trial(
        {k: LGBM_DEFAULTS[k] for k in SEARCHED if k in LGBM_DEFAULTS}
        | {"n_estimators": min(LGBM_DEFAULTS["n_estimators"], cfg.search.n_estimators_max)}
    )
    best: dict[str, Any] = {"value": -np.inf, "run": None}
    # Every trial trains on the same fold samples: slice them once, not once per trial.
    fold_data = []
    for fold in plan.folds:
        feats = fold_features.get(fold.name, data.features)
        train_idx = capped(fold.train_idx, cfg.search.max_train_rows, cfg.seed, y=data.y(fold.train_idx))
        fold_data.append(
            (
                feats,
                data.X(train_idx, feats),
                data.y(train_idx),
                data.X(fold.valid_idx, feats),
                data.y(fold.valid_idx),
            )
        )

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, cfg.search.n_estimators_max)
        rows, oofs, fit_s = [], [], 0.0
        for step, (fold, (feats, X_tr, y_tr, X_va, y)) in enumerate(zip(plan.folds, fold_data, strict=True)):
            t0 = time.perf_counter()
            model = _fit("lgbm", X_tr, y_tr, cfg, params, imbalance)
            fit_s += time.perf_counter() - t0
            scores = positive_scores(model, X_va)
            rows.append({"fold": fold.name, **classification_metrics(y, scores), "n_features": len(feats)})
            oofs.append(pd.DataFrame({"row": fold.valid_idx, "fold": fold.name, "y": y, "score": scores}))
            running = float(np.mean([r["pr_auc"] for r in rows]))
            trial.report(running, step)
            if trial.should_prune():
                _log_trial(tracker, trial.number, params, rows, "pruned")
                raise optuna.TrialPruned()
        value = float(np.mean([r["pr_auc"] for r in rows]))
        trial.set_user_attr("pr_auc_std", float(np.std([r["pr_auc"] for r in rows], ddof=1)))
        _log_trial(tracker, trial.number, params, rows, "complete")
        if value > best["value"]:
            best["value"] = value
            best["run"] = FoldRun(pd.DataFrame(rows), pd.concat(oofs, ignore_index=True), fit_s)
        return value

    with make_progress(disable=not show_progress) as progress:
        task = progress.add_task("Optuna search", total=cfg.search.n_trials)
        study.optimize(
            objective,
            n_trials=cfg.search.n_trials,
            timeout=cfg.search.timeout_s,
            callbacks=[lambda s, t: progress.advance(task)],
        )
    if best["run"] is None:
        raise DataError("every Optuna trial was pruned or failed; raise search.n_trials")
    return study, best["run"]


def _log_trial(tracker: Tracker | None, number: int, params: dict, rows: list[dict], state: str) -> None:
    if tracker is None:
        return
    metrics = {f"pr_auc_{r['fold']}": r["pr_auc"] for r in rows}
    metrics["pr_auc_mean"] = float(np.mean([r["pr_auc"] for r in rows]))
    metrics["folds_completed"] = float(len(rows))
    tracker.log_trial(number, params, metrics, state)


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value and parameters."""
    rows = []
    for t in study.trials:
        last = t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "pr_auc_mean": t.value,
                "folds_done": len(t.intermediate_values),
                "running_mean_when_stopped": last,
                **t.params,
            }
        )
    return pd.DataFrame(rows)


def choose_calibration(
    oof: pd.DataFrame, fold_order: list[str], time_ordered: bool
) -> tuple[str, pd.DataFrame]:
    """Pick isotonic or Platt scaling by log loss on folds the calibrator was not fitted on.

    Walk-forward: the calibrator for fold k is fitted on folds before k (as it will be used). Otherwise
    leave-one-fold-out. Returns the method and a table of Brier/log loss per method (and uncalibrated).
    """
    rows = []
    for method in ("none", "platt", "isotonic"):
        ys, ps = [], []
        for k, name in enumerate(fold_order):
            fit_folds = fold_order[:k] if time_ordered else [f for f in fold_order if f != name]
            if not fit_folds:
                continue
            fit = oof[oof["fold"].isin(fit_folds)]
            target = oof[oof["fold"] == name]
            cal = Calibrator(method).fit(fit["score"].to_numpy(), fit["y"].to_numpy())
            ys.append(target["y"].to_numpy())
            ps.append(cal.transform(target["score"].to_numpy()))
        y, p = np.concatenate(ys), np.clip(np.concatenate(ps), 1e-6, 1 - 1e-6)
        m = classification_metrics(y, p)
        rows.append({"method": method, "brier": m["brier"], "log_loss": m["log_loss"], "pr_auc": m["pr_auc"]})
    table = pd.DataFrame(rows).set_index("method")
    # Log loss rather than Brier: both are proper, but log loss punishes the hard 0/1 steps isotonic
    # regression fits on small validation sets, which would zero out a churner's probability.
    chosen = str(table.loc[["platt", "isotonic"], "log_loss"].idxmin())
    return chosen, table


def cross_fitted_probs(
    oof: pd.DataFrame, fold_order: list[str], method: str, time_ordered: bool
) -> pd.DataFrame:
    """Calibrated out-of-fold probabilities, each fold calibrated on other (earlier) folds only."""
    parts = []
    for k, name in enumerate(fold_order):
        fit_folds = fold_order[:k] if time_ordered else [f for f in fold_order if f != name]
        if not fit_folds:
            continue
        fit = oof[oof["fold"].isin(fit_folds)]
        target = oof[oof["fold"] == name].copy()
        cal = Calibrator(method).fit(fit["score"].to_numpy(), fit["y"].to_numpy())
        target["prob"] = cal.transform(target["score"].to_numpy())
        parts.append(target)
    return pd.concat(parts, ignore_index=True)


def run_modelling(
    data: ModelData,
    plan: SplitPlan,
    cfg: ChurnConfig,
    *,
    tracker: Tracker | None = None,
    oracle: np.ndarray | None = None,
    show_progress: bool = True,
    source: str = "simulator",
) -> ModellingResult:
    """All modelling stages; see the module docstring for the order and what each one decides."""
    timings: dict[str, float] = {}
    econ = Economics(cfg.campaign.contact_cost, cfg.campaign.save_rate, cfg.campaign.clv)
    time_ordered = plan.kind == "walk_forward"
    fold_order = [f.name for f in plan.folds]
    for fold in [*plan.folds, plan.test]:
        y_tr = data.y(fold.train_idx)
        if len(fold.valid_idx) == 0 or y_tr.sum() == 0:
            raise DataError(f"{fold.name}: no rows to validate on or no churners to train on")

    t0 = time.perf_counter()
    log.info("baseline: logistic regression on %d folds", len(plan.folds))
    baseline = cross_validate(data, plan, kind="logistic", cfg=cfg)
    timings["baseline"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    imbalance_runs = {}
    for method in cfg.imbalance.methods:
        log.info("imbalance: %s", method)
        imbalance_runs[method] = cross_validate(
            data, plan, kind="lgbm", cfg=cfg, imbalance=method, max_train_rows=cfg.imbalance.max_train_rows
        )
    choice = choose_imbalance(imbalance_runs, cfg.imbalance.tolerance)
    timings["imbalance"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if cfg.selection.enabled:
        log.info("feature selection inside %d folds", len(plan.folds))
        selections, selection_tab = fold_selection(data, plan, cfg, choice)
        gain = float(selection_tab["pr_auc_selected"].mean() - selection_tab["pr_auc_all"].mean())
        selection_used = gain >= -cfg.selection.tolerance
    else:
        selections, selection_tab, selection_used = {}, pd.DataFrame(), False
    fold_features = {k: v.kept for k, v in selections.items()} if selection_used else {}
    timings["selection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log.info("Optuna search: %d trials", cfg.search.n_trials)
    parent = tracker.start_run("search") if tracker is not None else None
    try:
        if parent is not None:
            parent.__enter__()
        study, tuned = search(data, plan, cfg, choice, fold_features, tracker, show_progress=show_progress)
        best_params = dict(study.best_params)
        if parent is not None:
            import mlflow

            mlflow.log_params({f"best_{k}": v for k, v in best_params.items()} | {"imbalance": choice})
            mlflow.log_metrics(
                {"best_pr_auc_mean": float(study.best_value), "baseline_pr_auc_mean": baseline.mean()}
            )
    finally:
        if parent is not None:
            parent.__exit__(None, None, None)
    timings["search"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cal_method, cal_table = choose_calibration(tuned.oof, fold_order, time_ordered)
    val_probs = cross_fitted_probs(tuned.oof, fold_order, cal_method, time_ordered)
    threshold, val_k, val_profit = best_threshold(
        val_probs["prob"].to_numpy(), val_probs["y"].to_numpy(), econ
    )
    validation_campaign = {"threshold": threshold, "k": val_k, "profit": val_profit, "rows": len(val_probs)}

    # The final model: selection refitted on the final training window, best parameters, chosen treatment.
    test = plan.test
    X_final_all, y_final = data.X(test.train_idx), data.y(test.train_idx)
    if selection_used:
        sel_idx = capped(test.train_idx, cfg.selection.max_train_rows, cfg.seed, y=y_final)
        y_sel = data.y(sel_idx)
        mask = inner_split_mask(data.dates(sel_idx), y_sel, seed=cfg.seed)
        final_sel = select_features(
            data.X(sel_idx),
            y_sel,
            cfg=cfg.selection,
            inner_valid=mask,
            imbalance=choice,
            seed=cfg.seed,
            n_jobs=cfg.search.n_jobs,
        )
    else:
        final_sel = SelectionResult(kept=list(data.features))
    feats = final_sel.kept
    estimator = _fit("lgbm", X_final_all[feats], y_final, cfg, best_params, choice)
    calibrator = Calibrator(cal_method).fit(tuned.oof["score"].to_numpy(), tuned.oof["y"].to_numpy())
    model = ChurnModel(
        features=feats,
        categories=category_levels(X_final_all[feats]),
        estimator=estimator,
        calibrator=calibrator,
        threshold=threshold,
        metadata={
            "params": best_params,
            "imbalance": choice,
            "calibration": cal_method,
            "source": source,
            "seed": cfg.seed,
        },
    )
    X_test = data.X(test.valid_idx)
    y_test = data.y(test.valid_idx)
    test_raw = model.raw_scores(X_test)
    test_probs = model.predict_proba(X_test)
    test_metrics = classification_metrics(y_test, test_probs)
    test_metrics["pr_auc_uncalibrated"] = pr_auc(y_test, test_raw)
    # The baseline trains on the search's cap, as it did in the folds: a linear model on ~50 features
    # gains nothing from a million rows, and lbfgs on all of them took over a minute.
    base_idx = capped(test.train_idx, cfg.search.max_train_rows, cfg.seed, y=y_final)
    base_model = _fit("logistic", data.X(base_idx), data.y(base_idx), cfg, None, "none")
    baseline_probs = positive_scores(base_model, X_test)
    baseline_test_metrics = classification_metrics(y_test, baseline_probs)
    campaign = evaluate_campaign(test_probs, y_test, threshold, econ).as_dict()
    campaign["breakeven_probability"] = econ.breakeven_probability
    timings["final"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    shap_pair = None
    try:
        sample = X_test[feats].sample(n=min(2000, len(X_test)), random_state=cfg.seed)
        shap_pair = (shap_values(estimator.booster_, sample), sample.reset_index(drop=True))
    except Exception as exc:  # SHAP is a report figure; its failure must not lose the model
        log.warning("SHAP summary skipped: %s", exc)
    timings["shap"] = time.perf_counter() - t0

    oracle_folds, oracle_test, test_oracle = None, None, None
    if oracle is not None:
        oracle = np.asarray(oracle, dtype=float)
        rows = []
        for fold in plan.folds:
            rows.append(
                {"fold": fold.name, **classification_metrics(data.y(fold.valid_idx), oracle[fold.valid_idx])}
            )
        oracle_folds = pd.DataFrame(rows)
        test_oracle = oracle[test.valid_idx]
        oracle_test = classification_metrics(y_test, test_oracle)
        oracle_test["campaign_profit"] = evaluate_campaign(
            test_oracle, y_test, econ.breakeven_probability, econ
        ).profit

    return ModellingResult(
        plan=plan,
        baseline=baseline,
        imbalance_runs=imbalance_runs,
        imbalance_choice=choice,
        selection_table=selection_tab,
        fold_features=fold_features,
        selection_used=selection_used,
        final_selection=final_sel,
        trials=trials_table(study),
        best_params=best_params,
        tuned=tuned,
        calibration_table=cal_table,
        calibration_method=cal_method,
        threshold=threshold,
        validation_campaign=validation_campaign,
        model=model,
        test_index=test.valid_idx,
        y_test=y_test,
        test_probs=test_probs,
        test_raw=test_raw,
        baseline_test_probs=baseline_probs,
        test_metrics=test_metrics,
        baseline_test_metrics=baseline_test_metrics,
        campaign=campaign,
        shap=shap_pair,
        timings=timings,
        oracle_folds=oracle_folds,
        oracle_test=oracle_test,
        test_oracle_probs=test_oracle,
    )


def summary_metrics(res: ModellingResult) -> dict[str, Any]:
    """The numbers for metrics.json: test window at the top level, folds under ``cv``."""
    lgbm_cv = summarise_folds(res.tuned.per_fold, ("pr_auc", "roc_auc", "top_decile_lift", "brier"))
    base_cv = summarise_folds(res.baseline.per_fold, ("pr_auc", "roc_auc", "top_decile_lift", "brier"))
    out: dict[str, Any] = {
        "pr_auc": res.test_metrics["pr_auc"],
        "roc_auc": res.test_metrics["roc_auc"],
        "top_decile_lift": res.test_metrics["top_decile_lift"],
        "brier": res.test_metrics["brier"],
        "test": res.test_metrics,
        "baseline_test": res.baseline_test_metrics,
        "cv": {
            "lgbm": {**lgbm_cv, "per_fold": res.tuned.per_fold.to_dict(orient="records")},
            "logistic": {**base_cv, "per_fold": res.baseline.per_fold.to_dict(orient="records")},
            "imbalance": imbalance_table(res.imbalance_runs).reset_index().to_dict(orient="records"),
        },
        "imbalance_method": res.imbalance_choice,
        "selection_used": res.selection_used,
        "n_features_selected": len(res.model.features),
        "calibration": res.calibration_method,
        "best_params": res.best_params,
        "campaign": res.campaign,
        "campaign_profit": res.campaign["profit"],
        "profit_everybody": res.campaign["profit_everybody"],
        "profit_random_k": res.campaign["profit_random_k"],
        "campaign_k": res.campaign["k"],
        "campaign_threshold": res.threshold,
        "timings_seconds": res.timings,
    }
    if res.oracle_test is not None and res.oracle_folds is not None:
        out["oracle_pr_auc"] = res.oracle_test["pr_auc"]
        out["oracle_roc_auc"] = res.oracle_test["roc_auc"]
        out["pr_auc_vs_oracle"] = res.test_metrics["pr_auc"] / res.oracle_test["pr_auc"]
        out["cv"]["oracle"] = {
            **summarise_folds(res.oracle_folds, ("pr_auc", "roc_auc")),
            "per_fold": res.oracle_folds.to_dict(orient="records"),
        }
        out["oracle_campaign_profit"] = res.oracle_test["campaign_profit"]
    return out


def profit_curves(res: ModellingResult, econ: Economics) -> dict[str, np.ndarray]:
    """Realised profit by campaign size on the test window for the model, baseline and oracle."""
    curves = {
        "lightgbm": profit_curve(res.test_probs, res.y_test, econ),
        "logistic": profit_curve(res.baseline_test_probs, res.y_test, econ),
    }
    if res.test_oracle_probs is not None:
        curves["oracle"] = profit_curve(res.test_oracle_probs, res.y_test, econ)
    return curves
