"""Modelling stages shared by the simulator snapshots and the Telco table.

`run_modelling` runs one function per stage, in order. Every choice is made on the validation folds
only; the test window is touched once, at the end:

1. `baseline_stage`: logistic regression, per fold;
2. `imbalance_stage`: imbalance treatments (none, class weights, undersampling, SMOTE) with default
   LightGBM; the simplest treatment within a tolerance of the best mean PR-AUC wins;
3. `selection_stage`: feature selection inside every fold's training window; used if it costs no PR-AUC;
4. `search_stage`: Optuna TPE search over LightGBM parameters, pruned fold by fold (median pruner),
   every trial a nested MLflow run;
5. `calibration_stage`: calibration (isotonic vs Platt) chosen by log loss on folds the calibrator
   never saw, and the campaign threshold chosen on the calibrated validation predictions;
6. `final_stage`: the final model, trained on everything before the test window (minus the gap),
   evaluated once on the test window next to a logistic baseline trained the same way.

Each stage reads its own config section (``cfg.imbalance`` for stage 2, and so on). How one model is
fitted (seed, threads, resampling ratios) is read from the config once, by `Fitting.from_config`;
`models.py` only builds estimators from explicit arguments.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import pandas as pd

from level2_churn.business import Economics, best_threshold, evaluate_campaign, profit_curve
from level2_churn.evaluate import classification_metrics, pr_auc, shap_values, summarise_folds
from level2_churn.imbalance import METHODS as IMBALANCE_METHODS
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
    from shared.tracking import MlflowTracker

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


# ------------------------------------------------------------------------------- fitting one model


@dataclass(frozen=True)
class Fitting:
    """How every stage fits a model, read from the config in this one place.

    Attributes:
        seed: ``cfg.seed``: resampling, LightGBM and logistic regression.
        n_jobs: ``cfg.search.n_jobs``: LightGBM threads.
        undersample_ratio: ``cfg.imbalance.undersample_ratio``: positives/negatives after undersampling.
        smote_ratio: ``cfg.imbalance.smote_ratio``: positives/negatives after SMOTE.
    """

    seed: int
    n_jobs: int
    undersample_ratio: float
    smote_ratio: float

    @classmethod
    def from_config(cls, cfg: ChurnConfig) -> Fitting:
        return cls(
            seed=cfg.seed,
            n_jobs=cfg.search.n_jobs,
            undersample_ratio=cfg.imbalance.undersample_ratio,
            smote_ratio=cfg.imbalance.smote_ratio,
        )

    def fit(
        self,
        kind: str,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        params: dict[str, Any] | None = None,
        imbalance: str = "none",
    ) -> Any:
        """Fit a ``logistic`` or ``lgbm`` model on `X`, `y` with an imbalance treatment."""
        return fit_estimator(
            kind,
            X,
            y,
            params=params,
            imbalance=imbalance,
            seed=self.seed,
            n_jobs=self.n_jobs,
            undersample_ratio=self.undersample_ratio,
            smote_ratio=self.smote_ratio,
        )


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


def cross_validate(
    data: ModelData,
    plan: SplitPlan,
    fitting: Fitting,
    *,
    kind: str,
    max_train_rows: int | None,
    params: dict[str, Any] | None = None,
    imbalance: str = "none",
    fold_features: dict[str, list[str]] | None = None,
) -> FoldRun:
    """Fit on each fold's training window (at most `max_train_rows` of it) and score its validation window.

    The cap is a label-stratified sample (``None``: every row); `fold_features` gives a fold its own
    feature list (the fold's selection), else every feature is used.
    """
    rows, oofs, fit_s = [], [], 0.0
    for fold in plan.folds:
        feats = (fold_features or {}).get(fold.name, data.features)
        train_idx = capped(fold.train_idx, max_train_rows, fitting.seed, y=data.y(fold.train_idx))
        t0 = time.perf_counter()
        model = fitting.fit(
            kind, data.X(train_idx, feats), data.y(train_idx), params=params, imbalance=imbalance
        )
        fit_s += time.perf_counter() - t0
        scores = positive_scores(model, data.X(fold.valid_idx, feats))
        y = data.y(fold.valid_idx)
        rows.append({"fold": fold.name, **classification_metrics(y, scores), "n_features": len(feats)})
        oofs.append(pd.DataFrame({"row": fold.valid_idx, "fold": fold.name, "y": y, "score": scores}))
    return FoldRun(pd.DataFrame(rows), pd.concat(oofs, ignore_index=True), fit_s)


# ------------------------------------------------------------------------------- 1. baseline


def baseline_stage(data: ModelData, plan: SplitPlan, cfg: ChurnConfig) -> FoldRun:
    """Logistic regression on every fold, the yardstick for everything after it.

    Config: it trains on the search's cap (``cfg.search.max_train_rows``), like the models it is
    compared with.
    """
    log.info("baseline: logistic regression on %d folds", len(plan.folds))
    return cross_validate(
        data, plan, Fitting.from_config(cfg), kind="logistic", max_train_rows=cfg.search.max_train_rows
    )


# ------------------------------------------------------------------------------- 2. imbalance


@dataclass
class ImbalanceChoice:
    """Every treatment's fold run and the one chosen."""

    runs: dict[str, FoldRun]
    choice: str


def imbalance_stage(data: ModelData, plan: SplitPlan, cfg: ChurnConfig) -> ImbalanceChoice:
    """Default LightGBM under each treatment; the simplest one close enough to the best is chosen.

    Config: ``cfg.imbalance`` (methods, tolerance, max_train_rows and the resampling ratios).
    """
    settings = cfg.imbalance
    fitting = Fitting.from_config(cfg)
    runs = {}
    for method in settings.methods:
        log.info("imbalance: %s", method)
        runs[method] = cross_validate(
            data, plan, fitting, kind="lgbm", imbalance=method, max_train_rows=settings.max_train_rows
        )
    return ImbalanceChoice(runs, choose_imbalance(runs, settings.tolerance))


def choose_imbalance(runs: dict[str, FoldRun], tolerance: float) -> str:
    """The simplest treatment whose mean walk-forward PR-AUC is within `tolerance` of the best.

    Simplicity order: none, class_weight, undersample, smote. A more complex treatment has to earn
    its place by beating every simpler one by more than the tolerance.
    """
    means = {m: r.mean() for m, r in runs.items()}
    best = max(means.values())
    order = [m for m in IMBALANCE_METHODS if m in means] + [m for m in means if m not in IMBALANCE_METHODS]
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


# ------------------------------------------------------------------------------- 3. selection


@dataclass
class SelectionChoice:
    """Selection inside each fold, the all-vs-selected comparison, and whether selection is used."""

    per_fold: dict[str, SelectionResult]
    table: pd.DataFrame
    used: bool

    @property
    def fold_features(self) -> dict[str, list[str]]:
        """Each fold's kept features when selection is used (empty: every fold uses every feature)."""
        return {name: sel.kept for name, sel in self.per_fold.items()} if self.used else {}


def selection_stage(data: ModelData, plan: SplitPlan, cfg: ChurnConfig, imbalance: str) -> SelectionChoice:
    """Select features inside every fold's training window; use them if they cost no PR-AUC.

    Config: ``cfg.selection`` (enabled, tolerance, and the settings `select_features` reads).
    """
    settings = cfg.selection
    if not settings.enabled:
        return SelectionChoice({}, pd.DataFrame(), used=False)
    log.info("feature selection inside %d folds", len(plan.folds))
    per_fold, table = fold_selection(data, plan, cfg, imbalance)
    gain = float(table["pr_auc_selected"].mean() - table["pr_auc_all"].mean())
    return SelectionChoice(per_fold, table, used=gain >= -settings.tolerance)


def _select_in_window(
    data: ModelData, idx: np.ndarray, cfg: ChurnConfig, imbalance: str
) -> tuple[np.ndarray, SelectionResult]:
    """Selection fitted on one training window (capped at ``cfg.selection.max_train_rows``).

    Returns:
        The (capped) training rows used and the selection.
    """
    train_idx = capped(idx, cfg.selection.max_train_rows, cfg.seed, y=data.y(idx))
    y = data.y(train_idx)
    fitting = Fitting.from_config(cfg)
    selection = select_features(
        data.X(train_idx),
        y,
        cfg=cfg.selection,
        inner_valid=inner_split_mask(data.dates(train_idx), y, seed=cfg.seed),
        imbalance=imbalance,
        seed=fitting.seed,
        n_jobs=fitting.n_jobs,
        undersample_ratio=fitting.undersample_ratio,
        smote_ratio=fitting.smote_ratio,
    )
    return train_idx, selection


def fold_selection(
    data: ModelData, plan: SplitPlan, cfg: ChurnConfig, imbalance: str
) -> tuple[dict[str, SelectionResult], pd.DataFrame]:
    """Run selection inside every fold's training window and compare against all features."""
    fitting = Fitting.from_config(cfg)
    results: dict[str, SelectionResult] = {}
    rows = []
    for fold in plan.folds:
        t0 = time.perf_counter()
        train_idx, sel = _select_in_window(data, fold.train_idx, cfg, imbalance)
        select_s = time.perf_counter() - t0
        results[fold.name] = sel
        y_tr, y_va = data.y(train_idx), data.y(fold.valid_idx)
        scores = {}
        fit_s = {}
        for name, feats in (("all", data.features), ("selected", sel.kept)):
            t0 = time.perf_counter()
            model = fitting.fit("lgbm", data.X(train_idx, feats), y_tr, imbalance=imbalance)
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


# ------------------------------------------------------------------------------- 4. search


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


@dataclass
class SearchOutcome:
    """The Optuna study, its best parameters and the best trial's fold run."""

    study: optuna.Study
    best_params: dict[str, Any]
    best: FoldRun


def search_stage(
    data: ModelData,
    plan: SplitPlan,
    cfg: ChurnConfig,
    *,
    imbalance: str,
    fold_features: dict[str, list[str]],
    baseline: FoldRun,
    tracker: MlflowTracker | None,
    show_progress: bool = True,
) -> SearchOutcome:
    """The Optuna search, inside one MLflow ``search`` run (its trials nested under it).

    Config: ``cfg.search`` (trials, timeout, start-up trials, trees, training cap, threads).
    """
    log.info("Optuna search: %d trials", cfg.search.n_trials)
    parent = tracker.start_run("search") if tracker is not None else contextlib.nullcontext()
    with parent:
        study, best = search(data, plan, cfg, imbalance, fold_features, tracker, show_progress=show_progress)
        best_params = dict(study.best_params)
        if tracker is not None:
            tracker.log_params({f"best_{k}": v for k, v in best_params.items()} | {"imbalance": imbalance})
            tracker.log_metrics(
                {"best_pr_auc_mean": float(study.best_value), "baseline_pr_auc_mean": baseline.mean()}
            )
    return SearchOutcome(study, best_params, best)


def search(
    data: ModelData,
    plan: SplitPlan,
    cfg: ChurnConfig,
    imbalance: str,
    fold_features: dict[str, list[str]],
    tracker: MlflowTracker | None,
    *,
    show_progress: bool = True,
) -> tuple[optuna.Study, FoldRun]:
    """Optuna TPE over the walk-forward folds, median-pruned after each fold.

    Returns:
        The study and the fold run (metrics and out-of-fold scores) of the best trial.
    """
    settings = cfg.search
    fitting = Fitting.from_config(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=settings.n_startup_trials)
    # Pruning starts after the second fold: the value reported is the running mean over folds, so
    # two folds of evidence (not one, whose difficulty varies most) judge a trial against the median
    # of earlier trials; a poor trial then costs two fits instead of three.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials, n_warmup_steps=1)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner, study_name="lgbm")
    # The first trial is the default configuration, so the search can only improve on it.
    study.enqueue_trial(
        {k: LGBM_DEFAULTS[k] for k in SEARCHED if k in LGBM_DEFAULTS}
        | {"n_estimators": min(LGBM_DEFAULTS["n_estimators"], settings.n_estimators_max)}
    )
    best: dict[str, Any] = {"value": -np.inf, "run": None}
    # Every trial trains on the same fold samples: slice them once, not once per trial.
    fold_data = []
    for fold in plan.folds:
        feats = fold_features.get(fold.name, data.features)
        train_idx = capped(fold.train_idx, settings.max_train_rows, cfg.seed, y=data.y(fold.train_idx))
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
        params = suggest_params(trial, settings.n_estimators_max)
        # one record per fold (fold name, metrics, feature count): the rows of a DataFrame
        rows: list[dict[str, Any]] = []
        oofs: list[pd.DataFrame] = []
        fit_s = 0.0
        for step, (fold, (feats, X_tr, y_tr, X_va, y)) in enumerate(zip(plan.folds, fold_data, strict=True)):
            t0 = time.perf_counter()
            model = fitting.fit("lgbm", X_tr, y_tr, params=params, imbalance=imbalance)
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
        task = progress.add_task("Optuna search", total=settings.n_trials)
        study.optimize(
            objective,
            n_trials=settings.n_trials,
            timeout=settings.timeout_s,
            callbacks=[lambda s, t: progress.advance(task)],
        )
    if best["run"] is None:
        raise DataError("every Optuna trial was pruned or failed; raise search.n_trials")
    return study, best["run"]


def _log_trial(
    tracker: MlflowTracker | None, number: int, params: dict[str, Any], rows: list[dict[str, Any]], state: str
) -> None:
    """One nested MLflow run per Optuna trial: its parameters, per-fold PR-AUC and final state."""
    if tracker is None:
        return
    metrics = {f"pr_auc_{r['fold']}": r["pr_auc"] for r in rows}
    metrics["pr_auc_mean"] = float(np.mean([r["pr_auc"] for r in rows]))
    metrics["folds_completed"] = float(len(rows))
    with tracker.start_run(f"trial-{number:03d}", nested=True, tags={"optuna_state": state}):
        tracker.log_params(params)
        tracker.log_metrics(metrics)


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


# ------------------------------------------------------------------------------- 5. calibration


@dataclass
class CalibrationChoice:
    """The calibration method and fitted calibrator, and the campaign threshold chosen on validation."""

    method: str
    table: pd.DataFrame
    calibrator: Calibrator
    threshold: float
    validation_campaign: dict[str, float]


def calibration_stage(tuned: FoldRun, plan: SplitPlan, cfg: ChurnConfig) -> CalibrationChoice:
    """Choose the calibration on folds the calibrator never saw, then the threshold that pays best.

    The calibrator itself is fitted on every out-of-fold score of the best trial. Config: the
    campaign economics (``cfg.campaign``) decide the threshold.
    """
    econ = economics(cfg)
    time_ordered = plan.kind == "walk_forward"
    fold_order = [f.name for f in plan.folds]
    method, table = choose_calibration(tuned.oof, fold_order, time_ordered)
    val_probs = cross_fitted_probs(tuned.oof, fold_order, method, time_ordered)
    threshold, k, profit = best_threshold(val_probs["prob"].to_numpy(), val_probs["y"].to_numpy(), econ)
    return CalibrationChoice(
        method=method,
        table=table,
        calibrator=Calibrator(method).fit(tuned.oof["score"].to_numpy(), tuned.oof["y"].to_numpy()),
        threshold=threshold,
        validation_campaign={"threshold": threshold, "k": k, "profit": profit, "rows": len(val_probs)},
    )


def _calibration_folds(fold_order: list[str], k: int, time_ordered: bool) -> list[str]:
    """Folds a calibrator for fold `k` may be fitted on: earlier ones (walk-forward) or all others."""
    name = fold_order[k]
    return fold_order[:k] if time_ordered else [f for f in fold_order if f != name]


def choose_calibration(
    oof: pd.DataFrame, fold_order: list[str], time_ordered: bool
) -> tuple[str, pd.DataFrame]:
    """Pick isotonic or Platt scaling by log loss on folds the calibrator was not fitted on.

    Walk-forward: the calibrator for fold k is fitted on folds before k (as it will be used). Otherwise
    leave-one-fold-out. Returns the method and a table of Brier/log loss per method (and uncalibrated).
    """
    rows = []
    for method in ("none", "platt", "isotonic"):
        probs = cross_fitted_probs(oof, fold_order, method, time_ordered)
        y, p = probs["y"].to_numpy(), np.clip(probs["prob"].to_numpy(), 1e-6, 1 - 1e-6)
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
        fit_folds = _calibration_folds(fold_order, k, time_ordered)
        if not fit_folds:
            continue
        fit = oof[oof["fold"].isin(fit_folds)]
        target = oof[oof["fold"] == name].copy()
        cal = Calibrator(method).fit(fit["score"].to_numpy(), fit["y"].to_numpy())
        target["prob"] = cal.transform(target["score"].to_numpy())
        parts.append(target)
    return pd.concat(parts, ignore_index=True)


# ------------------------------------------------------------------------------- 6. final model


@dataclass
class FinalModel:
    """The saved model and its one evaluation on the test window, next to the logistic baseline's."""

    selection: SelectionResult
    model: ChurnModel
    y_test: np.ndarray
    test_raw: np.ndarray
    test_probs: np.ndarray
    test_metrics: dict[str, float]
    baseline_probs: np.ndarray
    baseline_metrics: dict[str, float]
    campaign: dict[str, float]
    X_test: pd.DataFrame


def final_stage(
    data: ModelData,
    plan: SplitPlan,
    cfg: ChurnConfig,
    *,
    imbalance: str,
    selection_used: bool,
    best_params: dict[str, Any],
    calibration: CalibrationChoice,
    source: str,
) -> FinalModel:
    """Fit the final model on the whole training window before the test window and evaluate it once.

    Selection (if used) is refitted on that window; the estimator gets the search's best parameters
    and the chosen treatment, the calibrator and threshold come from validation. The logistic
    baseline is refitted on the search's cap of the same window. Config: ``cfg.selection``,
    ``cfg.search.max_train_rows`` (baseline only) and ``cfg.campaign``.
    """
    fitting = Fitting.from_config(cfg)
    econ = economics(cfg)
    test = plan.test
    if selection_used:
        _, selection = _select_in_window(data, test.train_idx, cfg, imbalance)
    else:
        selection = SelectionResult(kept=list(data.features))
    feats = selection.kept
    X_train, y_train = data.X(test.train_idx), data.y(test.train_idx)
    estimator = fitting.fit("lgbm", X_train[feats], y_train, params=best_params, imbalance=imbalance)
    model = ChurnModel(
        features=feats,
        categories=category_levels(X_train[feats]),
        estimator=estimator,
        calibrator=calibration.calibrator,
        threshold=calibration.threshold,
        metadata={
            "params": best_params,
            "imbalance": imbalance,
            "calibration": calibration.method,
            "source": source,
            "seed": cfg.seed,
        },
    )
    X_test, y_test = data.X(test.valid_idx), data.y(test.valid_idx)
    test_raw = model.raw_scores(X_test)
    test_probs = model.predict_proba(X_test)
    test_metrics = classification_metrics(y_test, test_probs)
    test_metrics["pr_auc_uncalibrated"] = pr_auc(y_test, test_raw)
    # The baseline trains on the search's cap, as it did in the folds: a linear model on ~50 features
    # gains nothing from a million rows, and lbfgs on all of them took over a minute.
    base_idx = capped(test.train_idx, cfg.search.max_train_rows, cfg.seed, y=y_train)
    base_model = fitting.fit("logistic", data.X(base_idx), data.y(base_idx))
    baseline_probs = positive_scores(base_model, X_test)
    campaign = evaluate_campaign(test_probs, y_test, calibration.threshold, econ).as_dict()
    campaign["breakeven_probability"] = econ.breakeven_probability
    return FinalModel(
        selection=selection,
        model=model,
        y_test=y_test,
        test_raw=test_raw,
        test_probs=test_probs,
        test_metrics=test_metrics,
        baseline_probs=baseline_probs,
        baseline_metrics=classification_metrics(y_test, baseline_probs),
        campaign=campaign,
        X_test=X_test,
    )


def shap_summary(final: FinalModel, seed: int) -> tuple[np.ndarray, pd.DataFrame] | None:
    """SHAP values of the final model on up to 2,000 test rows, or ``None`` when SHAP fails."""
    feats = final.model.features
    try:
        sample = final.X_test[feats].sample(n=min(2000, len(final.X_test)), random_state=seed)
        return shap_values(final.model.estimator.booster_, sample), sample.reset_index(drop=True)
    except Exception as exc:  # SHAP is a report figure; its failure must not lose the model
        log.warning("SHAP summary skipped: %s", exc)
        return None


@dataclass
class OracleComparison:
    """The true hazard scored like a model: per fold, on the test window, and its campaign profit."""

    folds: pd.DataFrame
    test: dict[str, float]
    test_probs: np.ndarray


def oracle_comparison(
    oracle: np.ndarray, data: ModelData, plan: SplitPlan, y_test: np.ndarray, cfg: ChurnConfig
) -> OracleComparison:
    """Score the true churn probabilities (the simulator's hidden hazard) on the folds and test window."""
    econ = economics(cfg)
    oracle = np.asarray(oracle, dtype=float)
    rows = [
        {"fold": fold.name, **classification_metrics(data.y(fold.valid_idx), oracle[fold.valid_idx])}
        for fold in plan.folds
    ]
    test_probs = oracle[plan.test.valid_idx]
    test = classification_metrics(y_test, test_probs)
    test["campaign_profit"] = evaluate_campaign(test_probs, y_test, econ.breakeven_probability, econ).profit
    return OracleComparison(pd.DataFrame(rows), test, test_probs)


# ------------------------------------------------------------------------------- all stages


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - t0


def _check_windows(data: ModelData, plan: SplitPlan) -> None:
    for fold in [*plan.folds, plan.test]:
        if len(fold.valid_idx) == 0 or data.y(fold.train_idx).sum() == 0:
            raise DataError(f"{fold.name}: no rows to validate on or no churners to train on")


def run_modelling(
    data: ModelData,
    plan: SplitPlan,
    cfg: ChurnConfig,
    *,
    tracker: MlflowTracker | None = None,
    oracle: np.ndarray | None = None,
    show_progress: bool = True,
    source: str = "simulator",
) -> ModellingResult:
    """All modelling stages; see the module docstring for the order and what each one decides."""
    _check_windows(data, plan)
    timings: dict[str, float] = {}
    with _timed(timings, "baseline"):
        baseline = baseline_stage(data, plan, cfg)
    with _timed(timings, "imbalance"):
        imbalance = imbalance_stage(data, plan, cfg)
    with _timed(timings, "selection"):
        selection = selection_stage(data, plan, cfg, imbalance.choice)
    with _timed(timings, "search"):
        searched = search_stage(
            data,
            plan,
            cfg,
            imbalance=imbalance.choice,
            fold_features=selection.fold_features,
            baseline=baseline,
            tracker=tracker,
            show_progress=show_progress,
        )
    with _timed(timings, "calibration"):
        calibration = calibration_stage(searched.best, plan, cfg)
    with _timed(timings, "final"):
        final = final_stage(
            data,
            plan,
            cfg,
            imbalance=imbalance.choice,
            selection_used=selection.used,
            best_params=searched.best_params,
            calibration=calibration,
            source=source,
        )
    with _timed(timings, "shap"):
        shap_pair = shap_summary(final, cfg.seed)
    compared = None if oracle is None else oracle_comparison(oracle, data, plan, final.y_test, cfg)
    return ModellingResult(
        plan=plan,
        baseline=baseline,
        imbalance_runs=imbalance.runs,
        imbalance_choice=imbalance.choice,
        selection_table=selection.table,
        fold_features=selection.fold_features,
        selection_used=selection.used,
        final_selection=final.selection,
        trials=trials_table(searched.study),
        best_params=searched.best_params,
        tuned=searched.best,
        calibration_table=calibration.table,
        calibration_method=calibration.method,
        threshold=calibration.threshold,
        validation_campaign=calibration.validation_campaign,
        model=final.model,
        test_index=plan.test.valid_idx,
        y_test=final.y_test,
        test_probs=final.test_probs,
        test_raw=final.test_raw,
        baseline_test_probs=final.baseline_probs,
        test_metrics=final.test_metrics,
        baseline_test_metrics=final.baseline_metrics,
        campaign=final.campaign,
        shap=shap_pair,
        timings=timings,
        oracle_folds=None if compared is None else compared.folds,
        oracle_test=None if compared is None else compared.test,
        test_oracle_probs=None if compared is None else compared.test_probs,
    )


def economics(cfg: ChurnConfig) -> Economics:
    """The campaign economics of ``cfg.campaign``."""
    return Economics(cfg.campaign.contact_cost, cfg.campaign.save_rate, cfg.campaign.clv)


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
