"""Train on, and score, folders in the Fraud Detection Handbook's layout, as a real-time system would.

`train_from_folder` learns from every labelled transaction of a folder of daily files (labels
that arrive late, from a labels file, count where the time allows), `score_folder` scores every
transaction of a folder of test days. Both are what the two commands run::

    python -m level4_fraud train --fdh-folder DIR [--labels-available FILE] [--out RUN]
    python -m level4_fraud predict --run RUN --fdh-folder TEST_DIR --history DIR \\
        [--labels-available FILE] --out scores.csv

Scoring computes each test transaction's features from the history and the test days in time
order (`features.transaction_features` is point in time), and **no label from the test days**:
their files' ``TX_FRAUD``/``TX_FRAUD_SCENARIO`` are dropped before the features, and late labels
of test-day transactions are ignored. So shuffling or deleting the test days' labels changes no
score (the leak test in ``tests/test_predict.py``). History labels count as the features say: a
label in a daily file is known ``delay_days`` after its transaction (the Handbook's convention);
one from the labels file only from its ``LABEL_AVAILABLE_FROM``.

Side tables: when the folder sits next to (or holds) the simulator's ``customers.parquet`` and
``terminals.parquet``, they are read too (distance from home, foreign country). A model trained
with them needs them to score; a model trained on the Handbook's published files never does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from level4_fraud import data, schema
from level4_fraud.baselines import BaselineModel
from level4_fraud.datasets import FeatureConfig, FeatureSpec, feature_frame, training_fold_data
from level4_fraud.ensemble import Ensemble
from level4_fraud.simulate import CUSTOMERS_FILE, TERMINALS_FILE
from level4_fraud.train import (
    DEEP_MODELS_DIR,
    ENSEMBLE,
    MODELS_DIR,
    FoldRun,
    choose_thresholds,
    fit_baselines,
    fit_fold_ensemble,
    read_run,
    save_run,
)
from shared.atomic import atomic_write_with
from shared.errors import EmptyDataError, InputFileError

if TYPE_CHECKING:
    from level4_fraud.config import FraudConfig

SCORE_COLUMNS = (schema.TRANSACTION_ID, "score")


def side_tables(folder: str | os.PathLike[str]) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The simulator's customer and terminal tables in `folder` or its parent (None when absent)."""
    base = Path(folder)
    for where in (base, base.parent):
        c, t = where / CUSTOMERS_FILE, where / TERMINALS_FILE
        if c.is_file() and t.is_file():
            try:
                return pd.read_parquet(c), pd.read_parquet(t)
            except Exception as exc:  # an unreadable table is the user's input problem
                raise InputFileError(f"{where}: unreadable customers/terminals table ({exc})") from None
    return None, None


def _read_labels(path: str | os.PathLike[str] | None) -> pd.DataFrame | None:
    return None if path is None else data.read_late_labels(path)


def _unlabel(tx: pd.DataFrame) -> pd.DataFrame:
    """The same transactions with every label removed (the test days: nothing known yet)."""
    out = tx.copy()
    out[schema.TX_FRAUD] = np.nan
    out[schema.TX_FRAUD_SCENARIO] = np.int8(schema.SCENARIO_UNKNOWN)
    out[schema.LABELLED] = False
    return out


# ---------------------------------------------------------------------------------- training
def train_from_folder(
    cfg: FraudConfig,
    folder: str | os.PathLike[str],
    run_dir: Path,
    *,
    labels_file: str | os.PathLike[str] | None = None,
) -> tuple[FoldRun, dict[str, Any]]:
    """Learn from every labelled transaction of a Handbook-layout folder; write the run folder.

    The last labelled days make the validation pair (`datasets.training_fold_data`); each
    baseline is fitted on the earlier validation-training days and scored on them, the ensemble
    and the cost-optimal threshold are chosen there, then the baselines are refitted on every
    labelled transaction.

    Args:
        cfg: The level's config (features, models, ensemble).
        folder: Daily files (days without ``TX_FRAUD`` are history only).
        run_dir: Where to write the run.
        labels_file: Late labels: used for features from ``LABEL_AVAILABLE_FROM``, and for
            training when available by the end of the folder's last day.

    Returns:
        The fold's run and a summary (rows, frauds, periods).

    Raises:
        InputFileError, SchemaError, EmptyDataError: Bad input (one-line messages).
    """
    tx = data.read_fdh_folder(folder)
    labels = _read_labels(labels_file)
    customers, terminals = side_tables(folder)
    frame, spec = feature_frame(tx, cfg.features, labels=labels, customers=customers, terminals=terminals)
    fold = training_fold_data(frame, spec, cfg.evaluation)
    run = fit_baselines(fold, cfg.models, cfg.baselines, seed=cfg.seed, final_only=True)
    fit_fold_ensemble(run, cfg.ensemble)
    choose_thresholds(run, cfg.evaluation)
    summary = {
        "source": str(Path(folder).resolve()),
        "labels_file": None if labels_file is None else str(Path(labels_file).resolve()),
        "transactions": len(tx),
        "labelled": int(frame[schema.LABELLED].sum()),
        "frauds": int(np.nansum(frame[schema.TX_FRAUD].to_numpy(dtype=np.float64))),
        "side_tables": customers is not None,
    }
    save_run(run_dir, run, feature_cfg=cfg.features, dataset="fdh-folder", extra={"training": summary})
    return run, summary


# ---------------------------------------------------------------------------------- scoring
@dataclass
class LoadedRun:
    """A run folder's deployable model: feature settings, members, ensemble, threshold."""

    folder: Path
    info: dict[str, Any]
    feature_cfg: FeatureConfig
    spec: FeatureSpec
    baselines: dict[str, BaselineModel]
    ensemble: Ensemble

    @property
    def threshold(self) -> float | None:
        """The cost-optimal alert threshold chosen on validation (None: never worth alerting)."""
        return self.info.get("threshold")

    def member_scores(self, frame: pd.DataFrame, labels: pd.Index) -> dict[str, np.ndarray]:
        """Scores of the ensemble's members for rows `labels` of a feature frame."""
        x = frame.loc[labels, self.spec.columns]
        out = {m: model.predict_proba(x) for m, model in self.baselines.items() if m in self.ensemble.members}
        deep = [m for m in self.ensemble.members if m not in out]
        if deep:
            from level4_fraud.deep_models import predict_saved_models

            got = predict_saved_models(self.folder / DEEP_MODELS_DIR, frame, labels)
            missing = [m for m in deep if m not in got]
            if missing:
                raise InputFileError(f"{self.folder}: saved models missing for ensemble members {missing}")
            out.update({m: got[m] for m in deep})
        return out

    def score(self, frame: pd.DataFrame, labels: pd.Index | None = None) -> np.ndarray:
        """The ensemble's calibrated fraud probability for rows of a feature frame."""
        labels = frame.index if labels is None else labels
        if len(labels) == 0:
            return np.zeros(0)
        return self.ensemble.predict_proba(self.member_scores(frame, labels))


def load_run(run_dir: str | os.PathLike[str]) -> LoadedRun:
    """Load a run folder written by ``train`` or ``run``.

    Raises:
        InputFileError: The folder does not exist, is not a level-4 run, or misses a model file.
    """
    folder = Path(run_dir)
    info = read_run(folder)
    models: dict[str, BaselineModel] = {}
    for name in info.get("baselines", []):
        path = folder / MODELS_DIR / f"{name}.joblib"
        if not path.is_file():
            raise InputFileError(f"{path}: model file missing from the run folder")
        models[name] = joblib.load(path)
    ens_path = folder / MODELS_DIR / f"{ENSEMBLE}.joblib"
    if not ens_path.is_file():
        raise InputFileError(f"{ens_path}: ensemble file missing from the run folder")
    return LoadedRun(
        folder,
        info,
        FeatureConfig.model_validate(info["features"]),
        FeatureSpec.from_dict(info["spec"]),
        models,
        joblib.load(ens_path),
    )


def scoring_frame(
    test_dir: str | os.PathLike[str],
    history_dir: str | os.PathLike[str],
    *,
    labels_file: str | os.PathLike[str] | None = None,
) -> tuple[pd.DataFrame, pd.Index, pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None]:
    """History plus unlabelled test days, in time order, ready for `feature_frame`.

    History rows on or after the first test day are dropped (the test folder is the authority
    on its days; anything later is the future), and so are late labels of test-day transactions.

    Returns:
        ``(transactions, test_ids, late_labels, customers, terminals)``.
    """
    test = data.read_fdh_folder(test_dir)
    history = data.read_fdh_folder(history_dir)
    first_test_day = test[schema.TX_DATETIME].min().normalize()
    history = history[history[schema.TX_DATETIME] < first_test_day]
    history = history[~history[schema.TRANSACTION_ID].isin(test[schema.TRANSACTION_ID])]
    labels = _read_labels(labels_file)
    if labels is not None:
        labels = labels[~labels[schema.TRANSACTION_ID].isin(test[schema.TRANSACTION_ID])]
    frames = [_unlabel(test)] if history.empty else [history, _unlabel(test)]
    tx = data.concat_days(frames, source=f"{history_dir} + {test_dir}")
    customers, terminals = side_tables(test_dir)
    if customers is None:
        customers, terminals = side_tables(history_dir)
    return tx, pd.Index(test[schema.TRANSACTION_ID]), labels, customers, terminals


def score_folder(
    run_dir: str | os.PathLike[str],
    test_dir: str | os.PathLike[str],
    history_dir: str | os.PathLike[str],
    *,
    labels_file: str | os.PathLike[str] | None = None,
    model: LoadedRun | None = None,
) -> pd.DataFrame:
    """``TRANSACTION_ID, score`` for every transaction of the test folder, in time order.

    Raises:
        InputFileError, SchemaError, EmptyDataError: Bad input (one-line messages).
    """
    loaded = model or load_run(run_dir)
    tx, test_ids, labels, customers, terminals = scoring_frame(test_dir, history_dir, labels_file=labels_file)
    frame, _ = feature_frame(
        tx, loaded.feature_cfg, labels=labels, customers=customers, terminals=terminals, spec=loaded.spec
    )
    rows = frame.index[frame[schema.TRANSACTION_ID].isin(test_ids).to_numpy()]
    if len(rows) == 0:
        raise EmptyDataError(f"{test_dir}: no transaction to score")
    scores = loaded.score(frame, rows)
    ids = frame.loc[rows, schema.TRANSACTION_ID].to_numpy()
    return pd.DataFrame({schema.TRANSACTION_ID: ids, "score": scores})


def write_scores_csv(scores: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``TRANSACTION_ID,score`` atomically."""
    return atomic_write_with(Path(path), lambda p: scores.to_csv(p, index=False, float_format="%.8g"))


# ---------------------------------------------------------------------------------- MLflow model
try:  # MLflow is installed with the level; keep the module importable without it
    # From its module: mypy sees `mlflow.pyfunc` as a lazy loader that exports nothing.
    from mlflow.pyfunc.model import PythonModel as _PythonModel
except ImportError:  # pragma: no cover - mlflow is part of the lock
    _PythonModel = object  # type: ignore[assignment,misc]

RUN_ARTIFACT = "run"


class FraudEnsembleModel(_PythonModel):  # type: ignore[misc,valid-type]
    """The run's ensemble as an MLflow pyfunc: input a feature frame (`datasets.feature_frame`
    rows, the ``spec`` columns at least), output the calibrated fraud probability per row.

    The run folder's models travel as the ``run`` artefact and are loaded with `load_run`.
    Sequence members (deep stage) read card histories from the frame given, so pass the history
    rows too when the ensemble uses them.
    """

    def load_context(self, context: Any) -> None:
        self.run = load_run(context.artifacts[RUN_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return self.run.score(model_input)


def log_pyfunc(run_dir: str | os.PathLike[str], example: pd.DataFrame | None = None) -> str:
    """Log a run folder's deployable model as a pyfunc in the active MLflow run; its model URI.

    Only what scoring needs is logged (``run.json``, ``models/``, ``deep/models``), in a temporary
    copy. `example`: a few feature-frame rows (the signature is inferred from them); default: one
    row of zeros over the model's feature columns.
    """
    import shutil
    import tempfile

    import mlflow

    run_dir = Path(run_dir)
    loaded = load_run(run_dir)
    with tempfile.TemporaryDirectory(prefix="l4-pyfunc-") as tmp:
        copy = Path(tmp) / RUN_ARTIFACT
        copy.mkdir()
        shutil.copy2(run_dir / "run.json", copy / "run.json")
        shutil.copytree(run_dir / MODELS_DIR, copy / MODELS_DIR)
        if (run_dir / DEEP_MODELS_DIR).is_dir():
            shutil.copytree(run_dir / DEEP_MODELS_DIR, copy / DEEP_MODELS_DIR)
        # a small, typed input example: MLflow infers the signature from it
        if example is None:
            example = pd.DataFrame({c: [0.0] for c in loaded.spec.numeric})
            for c in loaded.spec.categorical:
                example[c] = ["unknown"]
        elif not loaded.info.get("deep_members"):
            example = example.loc[:, loaded.spec.columns]  # only the deep sequence models read more
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=FraudEnsembleModel(),
            artifacts={RUN_ARTIFACT: str(copy)},
            pip_requirements=["mlflow", "pandas", "numpy", "scikit-learn", "lightgbm", "joblib"],
            input_example=example,
        )
    return str(info.model_uri)
