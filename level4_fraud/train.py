"""Training and evaluation stages of level 4, one function per stage, and the run folder.

For each fold (`datasets.FoldData`):

1. `fit_baselines`: every baseline is fitted twice — on ``valid_train`` (scored on ``valid``:
   the validation scores) and, with what validation chose (LightGBM's rounds), on ``train``
   (scored on every ``test`` row: the test scores, and the final model).
2. `add_members`: scores of more models (the deep stage's PyTorch models) join the fold.
3. `fit_fold_ensemble`: the ensemble is chosen on the validation scores (`ensemble.Ensemble`) and
   applied to the test scores.
4. `choose_thresholds`: the cost-optimal alert threshold of every model on its *validation*
   scores (fraud amount caught minus a review cost per alert; `evaluate.cost_optimal_threshold`).
5. `evaluate_fold`: test metrics on the protocol's test rows (known-compromised cards removed):
   ROC-AUC, AP, CP@100, recall at 1 % FPR, and the money at the validation threshold.

`comparison_table` averages the folds; `save_run` writes the deployable model (fold 0's, the
latest) and `write_run_metrics` the ``metrics.json`` every level writes. Run folder::

    RUN/run.json                 what was trained: features, members, ensemble, threshold, periods
    RUN/models/<model>.joblib    the final baselines (fold 0, trained on its training week)
    RUN/models/ensemble.joblib   the ensemble (members, scales, method, calibration)
    RUN/deep/models/...          the deep stage's final PyTorch models (when it ran)
    RUN/scores/fold<k>.parquet   validation and test scores of every model, per fold
    RUN/comparison.csv           test metrics per model, mean over folds
    RUN/metrics.json             level, dataset, headline (ensemble AP), per-model test metrics
    RUN/report.html              plots (report.py)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from level4_fraud import evaluate, schema
from level4_fraud.baselines import BaselineModel, BaselinesConfig
from level4_fraud.datasets import FeatureConfig, FeatureSpec, FoldData
from level4_fraud.ensemble import Ensemble, EnsembleConfig
from level4_fraud.evaluate import CostResult, EvaluationConfig
from shared.atomic import atomic_path, atomic_write_json, atomic_write_text, json_safe
from shared.errors import InputFileError
from shared.metrics import write_metrics

if TYPE_CHECKING:
    from level4_fraud.config import FraudConfig

LEVEL = 4
ENSEMBLE = "ensemble"
HEADLINE_METRIC = "average_precision"
RUN_FILE = "run.json"
MODELS_DIR = "models"
SCORES_DIR = "scores"
COMPARISON_FILE = "comparison.csv"
METRICS_FILE = "metrics.json"
DEEP_MODELS_DIR = Path("deep") / "models"
TEST_METRICS = ("average_precision", "card_precision_at_k", "roc_auc", "recall_at_fpr", "savings")


@dataclass
class FoldRun:
    """Everything learnt and scored on one fold.

    Attributes:
        fold: The fold's data.
        valid: Validation scores per model, aligned with ``fold.valid``.
        test: Test scores per model, aligned with ``fold.test`` (every test-day row).
        final: The final baselines (fitted on ``fold.train``).
        settings: What validation chose per model (LightGBM's rounds...).
        seconds: Training seconds per model (both fits).
        ensemble: The fitted ensemble (after `fit_fold_ensemble`).
        thresholds: Cost-optimal threshold per model, from validation (after `choose_thresholds`).
        metrics: Test metrics per model (after `evaluate_fold`).
        external: Models whose scores came from elsewhere (the deep stage).
    """

    fold: FoldData
    valid: dict[str, np.ndarray] = field(default_factory=dict)
    test: dict[str, np.ndarray] = field(default_factory=dict)
    final: dict[str, BaselineModel] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    ensemble: Ensemble | None = None
    thresholds: dict[str, CostResult] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    external: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """Every scored model (members first, the ensemble last)."""
        return list(self.valid)


# ---------------------------------------------------------------------------------- 1. baselines
def fit_baselines(
    fold: FoldData,
    names: Sequence[str],
    cfg: BaselinesConfig | None = None,
    *,
    seed: int = 42,
    final_only: bool = False,
) -> FoldRun:
    """Fit each baseline on ``valid_train`` (validation scores) then on ``train`` (test scores).

    Args:
        fold: The fold.
        names: Baselines to fit (`baselines.BASELINES`).
        cfg: Their settings.
        seed: Random seed.
        final_only: Skip the test scores (a training fold without test days still fits both).

    Returns:
        A `FoldRun` with validation and test scores and the final models.
    """
    run = FoldRun(fold)
    x_vt, y_vt = fold.X("valid_train"), fold.y("valid_train")
    x_v, y_v = fold.X("valid"), fold.y("valid")
    x_tr, y_tr = fold.X("train"), fold.y("train")
    x_te = fold.X("test")
    for name in names:
        t0 = time.perf_counter()
        val_model = BaselineModel(name, fold.spec, cfg, seed=seed).fit(x_vt, y_vt, valid=(x_v, y_v))
        run.valid[name] = val_model.predict_proba(x_v)
        settings = val_model.refit_settings()
        final = BaselineModel(name, fold.spec, cfg, seed=seed, **settings).fit(x_tr, y_tr)
        run.final[name] = final
        run.settings[name] = final.describe()
        if not final_only and len(x_te):
            run.test[name] = final.predict_proba(x_te)
        else:
            run.test[name] = np.zeros(len(x_te))
        run.seconds[name] = time.perf_counter() - t0
    return run


# ---------------------------------------------------------------------------------- 2. more members
def add_members(run: FoldRun, scores: Mapping[str, Mapping[str, np.ndarray]]) -> FoldRun:
    """Add models scored elsewhere: ``{name: {"valid": ..., "test": ...}}`` aligned with the
    fold's ``valid`` and ``test`` rows (the deep stage's result ``scores``)."""
    for name, s in scores.items():
        valid = np.asarray(s["valid"], dtype=np.float64)
        test = np.asarray(s["test"], dtype=np.float64)
        if len(valid) != len(run.fold.index["valid"]) or len(test) != len(run.fold.index["test"]):
            raise ValueError(f"{name}: scores do not align with the fold's valid/test rows")
        run.valid[name] = valid
        run.test[name] = test
        if name not in run.external:
            run.external.append(name)
    return run


# ---------------------------------------------------------------------------------- 3. ensemble
def fit_fold_ensemble(
    run: FoldRun, cfg: EnsembleConfig | None = None, *, candidates: Sequence[str] | None = None
) -> Ensemble:
    """Choose the ensemble on the validation scores and score validation and test rows with it.

    Args:
        run: The fold's scores.
        cfg: Ensemble settings.
        candidates: Models the ensemble may combine (default: every scored model).
    """
    members = {
        m: s for m, s in run.valid.items() if m != ENSEMBLE and (candidates is None or m in candidates)
    }
    days = run.fold.valid[schema.TX_DATETIME].dt.normalize().to_numpy()
    ens = Ensemble.fit(members, run.fold.y("valid"), days, cfg)
    run.ensemble = ens
    run.valid[ENSEMBLE] = ens.predict_proba(members)
    run.test[ENSEMBLE] = ens.predict_proba({m: s for m, s in run.test.items() if m in ens.members})
    return ens


# ---------------------------------------------------------------------------------- 4. thresholds
def choose_thresholds(run: FoldRun, cfg: EvaluationConfig | None = None) -> dict[str, CostResult]:
    """The cost-optimal threshold of every model on its validation scores (never the test's)."""
    cfg = cfg or EvaluationConfig()
    y = run.fold.y("valid")
    amount = run.fold.valid[schema.TX_AMOUNT].to_numpy()
    run.thresholds = {
        m: evaluate.cost_optimal_threshold(y, s, amount, cfg.review_cost) for m, s in run.valid.items()
    }
    return run.thresholds


# ---------------------------------------------------------------------------------- 5. metrics
def evaluate_fold(run: FoldRun, cfg: EvaluationConfig | None = None) -> dict[str, dict[str, float]]:
    """Test metrics of every model on the protocol's test rows, money at the validation threshold."""
    cfg = cfg or EvaluationConfig()
    mask = run.fold.test_eval_mask
    frame = run.fold.test_eval
    out: dict[str, dict[str, float]] = {}
    for m, s in run.test.items():
        thr = run.thresholds.get(m)
        metrics = evaluate.fraud_metrics(frame, s[mask], cfg, threshold=thr.threshold if thr else None)
        metrics["valid_average_precision"] = evaluate.average_precision(run.fold.y("valid"), run.valid[m])
        if thr is not None:
            metrics["threshold"] = thr.threshold
        out[m] = metrics
    run.metrics = out
    return out


def recall_by_scenario(run: FoldRun) -> pd.DataFrame:
    """Share of each fraud scenario's test transactions alerted at each model's threshold."""
    frame = run.fold.test_eval
    mask = run.fold.test_eval_mask
    rows = []
    for m, s in run.test.items():
        thr = run.thresholds.get(m)
        if thr is None:
            continue
        rec = evaluate.recall_by_scenario(frame[schema.TX_FRAUD_SCENARIO], s[mask] >= thr.threshold)
        rows.append({"model": m, **rec})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def run_fold(
    fold: FoldData,
    names: Sequence[str],
    cfg: FraudConfig,
    *,
    extra_scores: Mapping[str, Mapping[str, np.ndarray]] | None = None,
) -> FoldRun:
    """Stages 1-5 on one fold."""
    run = fit_baselines(fold, names, cfg.baselines, seed=cfg.seed)
    if extra_scores:
        add_members(run, extra_scores)
    fit_fold_ensemble(run, cfg.ensemble, candidates=ensemble_candidates(cfg, run))
    choose_thresholds(run, cfg.evaluation)
    evaluate_fold(run, cfg.evaluation)
    return run


def ensemble_candidates(cfg: FraudConfig, run: FoldRun) -> list[str]:
    """The models the ensemble may combine: the baselines, plus the deep stage's models when
    ``deep_in_ensemble`` is on."""
    return [*cfg.models, *(run.external if cfg.deep_in_ensemble else [])]


def comparison_table(runs: Sequence[FoldRun]) -> pd.DataFrame:
    """Test metrics per model, mean over the folds (``_std`` columns: spread over folds).

    Models scored on some folds only (none by default) are averaged over those folds.
    """
    models: list[str] = []
    for r in runs:
        models += [m for m in r.metrics if m not in models]
    if ENSEMBLE in models:  # the ensemble last, as in every table of the level
        models = [m for m in models if m != ENSEMBLE] + [ENSEMBLE]
    rows = {}
    for m in models:
        per_fold = [r.metrics[m] for r in runs if m in r.metrics]
        mean = evaluate.mean_over_folds(per_fold)
        mean["folds"] = float(len(per_fold))
        rows[m] = mean
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return table


# ---------------------------------------------------------------------------------- run folder
def write_scores(run_dir: Path, runs: Sequence[FoldRun]) -> list[Path]:
    """Per fold: every model's validation and test scores with ids, labels and scenario."""
    out = []
    folder = run_dir / SCORES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for r in runs:
        parts = []
        for split, scores in (("valid", r.valid), ("test", r.test)):
            rows = r.fold.rows(split)  # type: ignore[arg-type]
            keep = [schema.TRANSACTION_ID, schema.TX_DATETIME, schema.CUSTOMER_ID, schema.TX_AMOUNT]
            df = rows[[*keep, schema.TX_FRAUD]].copy()
            df[schema.TX_FRAUD_SCENARIO] = rows[schema.TX_FRAUD_SCENARIO].to_numpy()
            if schema.CHANNEL in rows.columns:
                df[schema.CHANNEL] = rows[schema.CHANNEL].astype(str).to_numpy()
            df["split"] = split
            df["evaluated"] = r.fold.test_eval_mask if split == "test" else True
            for m, s in scores.items():
                df[f"score_{m}"] = s
            parts.append(df)
        path = folder / f"fold{r.fold.number}.parquet"
        table = pd.concat(parts, ignore_index=True)
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
        out.append(path)
    return out


def read_scores(run_dir: Path, fold: int = 0) -> pd.DataFrame:
    """The scores `write_scores` wrote for one fold."""
    path = Path(run_dir) / SCORES_DIR / f"fold{fold}.parquet"
    if not path.is_file():
        raise InputFileError(f"{path}: no scores (train or run first)")
    return pd.read_parquet(path)


def save_run(
    run_dir: Path,
    run: FoldRun,
    *,
    feature_cfg: FeatureConfig,
    dataset: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the deployable model of a fold: final baselines, ensemble, ``run.json``.

    The ensemble's threshold is the cost-optimal one on validation; ``run.json`` also records the
    feature settings and columns, so ``predict`` rebuilds exactly the model's inputs.
    """
    if run.ensemble is None:
        raise ValueError("fit the ensemble before saving the run")
    models = run_dir / MODELS_DIR
    models.mkdir(parents=True, exist_ok=True)
    for name, model in run.final.items():
        with atomic_path(models / f"{name}.joblib") as tmp:
            joblib.dump(model, tmp)
    with atomic_path(models / f"{ENSEMBLE}.joblib") as tmp:
        joblib.dump(run.ensemble, tmp)
    thr = run.thresholds.get(ENSEMBLE)
    info = {
        "level": LEVEL,
        "dataset": dataset,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": json.loads(feature_cfg.model_dump_json()),
        "spec": run.fold.spec.to_dict(),
        "baselines": list(run.final),
        "deep_members": [m for m in run.external if m in run.ensemble.members],
        "ensemble": run.ensemble.describe(),
        "threshold": None if thr is None or not math.isfinite(thr.threshold) else thr.threshold,
        "settings": run.settings,
        "fold": run.fold.describe(),
        **dict(extra or {}),
    }
    return atomic_write_json(run_dir / RUN_FILE, json_safe(info))


def read_run(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run folder.

    Raises:
        InputFileError: The folder or its ``run.json`` does not exist, or it is not a level-4 run.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputFileError(f"{run_dir}: no such run folder")
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise InputFileError(f"{run_dir}: not a level-4 run folder (no {RUN_FILE}); train first")
    try:
        info: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path}: unreadable ({exc.msg})") from None
    if info.get("level") != LEVEL:
        raise InputFileError(f"{run_dir}: not a level-4 run folder")
    return info


def write_comparison(run_dir: Path, table: pd.DataFrame) -> Path:
    """``comparison.csv``: the comparison table."""
    return atomic_write_text(run_dir / COMPARISON_FILE, table.to_csv())


def write_run_metrics(
    run_dir: Path,
    table: pd.DataFrame,
    *,
    dataset: str,
    runs: Sequence[FoldRun] = (),
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """``metrics.json``: headline = the ensemble's test AP (mean over folds), per-model metrics
    under ``test``, the ensemble's validation threshold, fold periods."""
    headline_model = ENSEMBLE if ENSEMBLE in table.index else str(table[HEADLINE_METRIC].idxmax())
    test = {
        m: {k: float(v) for k, v in row.items() if isinstance(v, int | float | np.floating)}
        for m, row in table.to_dict(orient="index").items()
    }
    members = [m for m in table.index if m != ENSEMBLE]
    best_member = str(table.loc[members, HEADLINE_METRIC].idxmax()) if members else None
    thresholds = [r.thresholds[ENSEMBLE].threshold for r in runs if ENSEMBLE in r.thresholds]
    payload: dict[str, Any] = {
        "headline_model": headline_model,
        "test": test,
        "best_member": best_member,
        "ensemble_beats_members": bool(
            best_member is not None
            and table.loc[ENSEMBLE, HEADLINE_METRIC] > table.loc[best_member, HEADLINE_METRIC]
        )
        if ENSEMBLE in table.index
        else None,
        "threshold": thresholds[0] if thresholds else None,
        "folds": [r.fold.describe() for r in runs],
        "ensembles": [r.ensemble.describe() for r in runs if r.ensemble is not None],
    }
    payload.update(extra or {})
    return write_metrics(
        run_dir / METRICS_FILE,
        level=LEVEL,
        dataset=dataset,
        headline_metric=HEADLINE_METRIC,
        headline_value=float(table.loc[headline_model, HEADLINE_METRIC]),
        **payload,
    )


def spec_of(info: Mapping[str, Any]) -> FeatureSpec:
    """The feature columns a run's models read."""
    return FeatureSpec.from_dict(info["spec"])
