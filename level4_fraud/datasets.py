"""From transactions to model-ready folds: point-in-time features, then train/validation/test rows.

Every model of the level (baselines, ensemble, PyTorch models, distillation) reads its data from a
`FoldData`, so they all see the same rows and the same features. Two steps:

1. `feature_frame` computes `features.transaction_features` once over the whole transactions frame
   (history, training, delay and test days together). That is safe because every feature is
   point in time: a transaction's features come from it and earlier transactions only, and a label
   counts as known `delay_days` after its transaction (a label from the late-labels file only from
   its ``LABEL_AVAILABLE_FROM``). The frame keeps the raw columns a model or a metric needs next to
   the features (ids, time, amount, label, scenario, ``LABELLED``).

2. The rows are cut into folds.

   * `prequential_fold_data` follows the Handbook's prequential protocol (`evaluate.
     prequential_folds`): 7 training days, 7 delay days, 7 test days, cards already known to be
     compromised removed from each test day; fold 0 is the latest, fold k starts k weeks earlier.
   * `training_fold_data` is for a folder of daily files given to ``train``: every labelled
     transaction is training data, and there is no test period.

   Each fold also has a **validation** pair for everything chosen before testing (early stopping,
   ensemble weights and calibration, the cost-optimal alert threshold): models are fitted on
   ``valid_train`` and scored on ``valid``, then refitted on ``train`` with those choices and scored
   on ``test``. In a prequential fold the validation pair is the Handbook's model-selection fold:
   the same protocol shifted back by ``delta_delay + delta_test`` days, so ``valid`` is the
   training week itself (minus the cards known to be compromised by then) and ``valid_train`` the
   week that ends ``delta_delay`` days before it. Nothing of the test week or of the delay week
   (whose labels are not known at test time) is used to choose anything.

A sketch of one prequential fold (days; ``s`` = the fold's training start, 7-day periods)::

    s-14 ........ s-7 ....... s ........ s+7 ....... s+14 ....... s+21
    | valid_train |   delay    |  train = valid |   delay   |    test    |

Typical use::

    frame, spec = feature_frame(tx, FeatureConfig(), customers=customers, terminals=terminals)
    for fold in prequential_fold_data(frame, spec, start, EvaluationConfig()):
        model.fit(fold.X("valid_train"), fold.y("valid_train"))   # choose settings ...
        model.fit(fold.X("train"), fold.y("train"))               # ... then refit
        score = model.predict(fold.X("test"))
        metrics = evaluate.fraud_metrics(fold.test_eval, score[~fold.test_known_compromised])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from level4_fraud import data, features, schema
from level4_fraud.evaluate import EvaluationConfig, prequential_folds, train_test_split
from shared.errors import EmptyDataError

Split = Literal["valid_train", "valid", "train", "test"]
SPLITS: tuple[Split, ...] = ("valid_train", "valid", "train", "test")

# Raw columns kept next to the features: what metrics, reports and sequence models read.
META_COLUMNS: tuple[str, ...] = (
    schema.TRANSACTION_ID,
    schema.TX_DATETIME,
    schema.CUSTOMER_ID,
    schema.TERMINAL_ID,
    schema.TX_AMOUNT,
    schema.TX_FRAUD,
    schema.TX_FRAUD_SCENARIO,
    schema.LABELLED,
    schema.CHANNEL,
)


class FeatureConfig(BaseModel):
    """Which features the models read. Defaults are the quick profile's (the full profile's too).

    ``feature_set="baseline"`` keeps the Handbook's 15 features (`features.FEATURES_BASELINE`), for
    comparisons with its published figures; ``"all"`` adds the request-time, distance and richer-
    field features that exist in the data.
    """

    model_config = ConfigDict(extra="forbid")

    windows: tuple[int, ...] = Field((1, 7, 30), min_length=1, description="Window lengths in days")
    delay_days: int = Field(7, ge=0, description="Label delay of the terminal-risk windows")
    feature_set: Literal["baseline", "all"] = "all"
    categoricals: bool = Field(True, description="Keep merchant category, channel, country, currency")
    habit_lag_days: int = Field(
        features.HABIT_LAG_DAYS, ge=1, description="The card's spending habit ends this many days back"
    )
    habit_days: int = Field(features.HABIT_DAYS, ge=1, description="Days of the card's spending habit")
    # "auto": the models read the habit when the data can fill it — at least `HABIT_MIN_COVERAGE`
    # of the labelled transactions come `habit_lag_days + habit_days` days or more after the first
    # one. The Handbook's 183 days do (76 %); the quick world's 60 do not (27 %): its training
    # weeks would read a mostly empty window, and on its post-drift fold the extra trees alone
    # then beat every ensemble (AP 0.760 against 0.728).
    habit: Literal["auto", "on", "off"] = "auto"

    @property
    def habit_window(self) -> tuple[int, int] | None:
        """``(lag, days)`` of the card's spending habit; None when it is off."""
        return None if self.habit == "off" else (self.habit_lag_days, self.habit_days)


@dataclass(frozen=True)
class FeatureSpec:
    """The model inputs of a feature frame.

    Attributes:
        numeric: Numeric feature columns, in model order.
        categorical: Categorical feature columns (pandas ``category`` dtype), for embeddings or
            LightGBM's categorical splits; linear models one-hot them or leave them out.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        """Every feature column: numeric then categorical."""
        return [*self.numeric, *self.categorical]

    def to_dict(self) -> dict[str, list[str]]:
        """JSON-ready form (saved in run folders, so ``predict`` builds the same inputs)."""
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, d: dict[str, Sequence[str]]) -> FeatureSpec:
        """Inverse of `to_dict`."""
        return cls(tuple(d.get("numeric", ())), tuple(d.get("categorical", ())))


def feature_frame(
    tx: pd.DataFrame,
    cfg: FeatureConfig | None = None,
    *,
    labels: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
    spec: FeatureSpec | None = None,
    label_as_of: str | pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, FeatureSpec]:
    """Point-in-time features of every transaction, next to the raw columns models and metrics need.

    Args:
        tx: Transactions in the contract's layout (`schema`); unlabelled rows (``LABELLED`` False
            or ``TX_FRAUD`` NaN) feed the features but carry no label.
        cfg: Feature settings.
        labels: Late labels (``TRANSACTION_ID, TX_FRAUD, LABEL_AVAILABLE_FROM``). The features use
            each one only from its ``LABEL_AVAILABLE_FROM``; the frame's label columns also take
            those available at `label_as_of` (training targets "where the time allows").
        customers: Customer table (coordinates, home country) for distance and foreign features.
        terminals: Terminal table (coordinates) for the distance feature.
        spec: The inputs a trained model expects (from its run folder): the frame is checked to
            hold them and `spec` is returned unchanged. None: derived from `cfg` and the data.
        label_as_of: When late labels count as known for the label columns (default: the end of
            the last day of `tx`). Never affects the features.

    Returns:
        ``(frame, spec)``: `frame` is indexed like `tx` (same row order) with the `META_COLUMNS`
        present in `tx` plus the feature columns; `spec` names the model inputs.

    Raises:
        EmptyDataError: `tx` has no rows.
        SchemaError: `spec` asks for a feature these data cannot give (e.g. a model trained with
            the richer fields, scored on the Handbook's 9 columns).
    """
    from shared.errors import SchemaError

    cfg = cfg or FeatureConfig()
    if not tx.index.is_unique:
        raise ValueError("transactions: the frame's index must be unique (reset it)")
    if len(tx) == 0:
        raise EmptyDataError("transactions: no rows to compute features from")
    feats = features.transaction_features(
        tx,
        windows=cfg.windows,
        delay_days=cfg.delay_days,
        labels=labels,
        customers=customers,
        terminals=terminals,
        categoricals=cfg.categoricals,
        habit=cfg.habit_window,
    )
    if spec is None:
        categorical = tuple(c for c in features.CATEGORICAL_FEATURES if c in feats.columns)
        if cfg.feature_set == "baseline":
            baseline = [
                schema.TX_AMOUNT,
                "TX_DURING_WEEKEND",
                "TX_DURING_NIGHT",
                *features.customer_features(cfg.windows),
                *features.terminal_features(cfg.windows),
            ]
            numeric = tuple(baseline)
            categorical = ()
        else:
            numeric = tuple(c for c in feats.columns if c not in categorical)
            if not _reads_habit(tx, cfg):
                numeric = tuple(c for c in numeric if c not in features.HABIT_FEATURES)
        spec = FeatureSpec(numeric, categorical)
    missing = [c for c in spec.columns if c not in feats.columns]
    if missing:
        raise SchemaError(
            f"transactions: the model needs feature(s) {', '.join(missing[:4])} that these data cannot "
            "give (a column such as CHANNEL or a customers/terminals table is missing)"
        )
    meta = tx.loc[:, [c for c in META_COLUMNS if c in tx.columns and c not in feats.columns]].copy()
    if schema.LABELLED not in meta.columns:
        meta[schema.LABELLED] = tx[schema.TX_FRAUD].notna() if schema.TX_FRAUD in tx.columns else False
    if schema.TX_FRAUD not in meta.columns:
        meta[schema.TX_FRAUD] = np.nan
        meta[schema.TX_FRAUD_SCENARIO] = np.int8(schema.SCENARIO_UNKNOWN)
    if labels is not None and len(labels):
        as_of = label_as_of
        if as_of is None:
            as_of = tx[schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)
        labelled = data.apply_late_labels(meta, labels, as_of=as_of)
        meta[schema.TX_FRAUD] = labelled[schema.TX_FRAUD]
        meta[schema.TX_FRAUD_SCENARIO] = labelled[schema.TX_FRAUD_SCENARIO]
        meta[schema.LABELLED] = labelled[schema.LABELLED]
    # Labels as float (NaN = unknown) in every frame, so an unlabelled row can never pass as 0.
    meta[schema.TX_FRAUD] = meta[schema.TX_FRAUD].astype("float64")
    meta[schema.LABELLED] = meta[schema.LABELLED].astype(bool) & meta[schema.TX_FRAUD].notna()
    frame = pd.concat([meta, feats.loc[:, spec.columns]], axis=1)
    return frame, spec


HABIT_MIN_COVERAGE = 0.5


def _reads_habit(tx: pd.DataFrame, cfg: FeatureConfig) -> bool:
    """Whether models trained on `tx` read the habit features (`FeatureConfig.habit`)."""
    if cfg.habit != "auto":
        return cfg.habit == "on"
    labelled = tx[schema.TX_FRAUD].notna() if schema.TX_FRAUD in tx.columns else pd.Series(False, tx.index)
    if schema.LABELLED in tx.columns:
        labelled &= tx[schema.LABELLED].astype(bool)
    when = tx.loc[labelled, schema.TX_DATETIME]
    if when.empty:
        return False
    reach = pd.Timedelta(days=cfg.habit_lag_days + cfg.habit_days)
    return bool((when >= tx[schema.TX_DATETIME].min() + reach).mean() >= HABIT_MIN_COVERAGE)


@dataclass
class FoldData:
    """The rows of one fold, as positions into a shared feature frame.

    Attributes:
        number: The fold's number (0 = latest prequential fold).
        frame: The whole feature frame (`feature_frame`); splits are views of it by index. Sequence
            models read the card histories they need from it (every earlier row is there).
        spec: The feature columns.
        index: Row labels of `frame` per split (``valid_train``, ``valid``, ``train``, ``test``).
            Training and validation rows are labelled; ``valid`` has the cards known to be
            compromised at the time removed, as test days do. ``test`` holds every transaction of
            the test days (what a real-time system scores) — the metrics use `test_eval`.
        test_known_compromised: One flag per ``test`` row: its card was known to be compromised
            on that day (the Handbook removes these from evaluation).
        periods: First and last (exclusive) day of each split, for reports and run metadata.
    """

    number: int
    frame: pd.DataFrame
    spec: FeatureSpec
    index: dict[str, pd.Index]
    test_known_compromised: np.ndarray
    periods: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = field(default_factory=dict)

    def rows(self, split: Split) -> pd.DataFrame:
        """The rows of a split (features and raw columns), in time order."""
        if split not in self.index:
            raise KeyError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
        return self.frame.loc[self.index[split]]

    @cached_property
    def train(self) -> pd.DataFrame:
        """Training rows of the final models."""
        return self.rows("train")

    @cached_property
    def valid_train(self) -> pd.DataFrame:
        """Training rows of the validation models."""
        return self.rows("valid_train")

    @cached_property
    def valid(self) -> pd.DataFrame:
        """Validation rows: scored by models fitted on ``valid_train``."""
        return self.rows("valid")

    @cached_property
    def test(self) -> pd.DataFrame:
        """Every transaction of the test days (known-compromised cards included)."""
        return self.rows("test")

    @property
    def test_eval(self) -> pd.DataFrame:
        """The test rows the metrics use: labelled, cards known to be compromised removed."""
        t = self.test
        keep = ~self.test_known_compromised & t[schema.LABELLED].to_numpy(dtype=bool)
        return t.loc[keep]

    @property
    def test_eval_mask(self) -> np.ndarray:
        """Boolean mask over ``test`` rows selecting `test_eval`."""
        return ~self.test_known_compromised & self.test[schema.LABELLED].to_numpy(dtype=bool)

    def X(self, split: Split) -> pd.DataFrame:  # noqa: N802 - the usual name for model inputs
        """Model inputs of a split: the `spec` columns."""
        return self.rows(split).loc[:, self.spec.columns]

    def y(self, split: Split) -> np.ndarray:
        """0/1 labels of a split (int8; NaN for unlabelled test rows is not allowed here)."""
        lab = self.rows(split)[schema.TX_FRAUD].to_numpy(dtype=np.float64)
        if np.isnan(lab).any():
            raise ValueError(f"split {split!r} holds unlabelled rows; use test_eval for metrics")
        return lab.astype(np.int8)

    def sizes(self) -> dict[str, int]:
        """Rows per split and frauds per labelled split, for logs and run metadata."""
        out: dict[str, int] = {}
        for split in SPLITS:
            rows = self.rows(split)
            out[f"{split}_rows"] = len(rows)
            out[f"{split}_frauds"] = int(np.nansum(rows[schema.TX_FRAUD].to_numpy(dtype=np.float64)))
        out["test_known_compromised"] = int(self.test_known_compromised.sum())
        return out

    def describe(self) -> dict[str, object]:
        """Periods (ISO days) and sizes, JSON-ready."""
        periods = {k: [a.date().isoformat(), b.date().isoformat()] for k, (a, b) in self.periods.items()}
        return {"fold": self.number, "periods": periods, **self.sizes()}


def _labelled_index(frame: pd.DataFrame, index: pd.Index) -> pd.Index:
    lab = frame.loc[index, schema.LABELLED].to_numpy(dtype=bool)
    return index[lab]


def _require_frauds(frame: pd.DataFrame, index: pd.Index, what: str) -> None:
    y = frame.loc[index, schema.TX_FRAUD].to_numpy(dtype=np.float64)
    if len(y) == 0:
        raise EmptyDataError(f"{what}: no labelled transactions")
    if np.nansum(y) == 0:
        raise EmptyDataError(f"{what}: no fraud among {len(y)} labelled transactions; cannot train")
    if np.nansum(y) == len(y):
        raise EmptyDataError(f"{what}: every labelled transaction is a fraud; cannot train")


def prequential_fold_data(
    frame: pd.DataFrame,
    spec: FeatureSpec,
    start_date_training: date | str | pd.Timestamp,
    cfg: EvaluationConfig | None = None,
) -> list[FoldData]:
    """The Handbook's prequential folds with their validation folds (see the module docstring).

    Args:
        frame: A `feature_frame` over every day the folds need (validation included: the oldest
            fold's validation training starts ``delta_delay + delta_test`` days before its
            training). Sorted by time.
        spec: Its feature columns.
        start_date_training: Training start of fold 0 (the latest fold).
        cfg: Protocol settings (periods, number of folds, known-card rule).

    Returns:
        The folds that fit in the data, latest first.

    Raises:
        EmptyDataError: No fold (with its validation fold) fits, or a split has no fraud.
    """
    cfg = cfg or EvaluationConfig()
    try:
        folds = prequential_folds(frame, start_date_training, cfg)
    except ValueError as exc:
        raise EmptyDataError(f"transactions: {exc}") from None
    first_day = frame[schema.TX_DATETIME].min().normalize()
    shift = pd.Timedelta(days=cfg.delta_delay + cfg.delta_test)
    out: list[FoldData] = []
    for f in folds:
        v_start = f.train_start - shift
        if v_start < first_day:
            continue  # no room for the validation fold: skip, as prequential_folds skips folds
        vf = train_test_split(
            frame,
            v_start,
            delta_train=cfg.delta_train,
            delta_delay=cfg.delta_delay,
            delta_test=cfg.delta_test,
            number=f.number,
            known_cards=cfg.known_cards,
        )
        test_day = frame[schema.TX_DATETIME].dt.normalize()
        in_test = ((test_day >= f.test_start) & (test_day < f.test_end)).to_numpy()
        test_all = frame.index[in_test]
        known = ~test_all.isin(f.test_index)
        known &= frame.loc[test_all, schema.LABELLED].to_numpy(dtype=bool)  # unlabelled: not "known"
        index = {
            "valid_train": vf.train_index,
            "valid": _labelled_index(frame, vf.test_index),
            "train": f.train_index,
            "test": test_all,
        }
        for split in ("valid_train", "valid", "train"):
            _require_frauds(frame, index[split], f"fold {f.number} {split}")
        day = pd.Timedelta(days=1)
        periods = {
            "valid_train": (v_start, v_start + cfg.delta_train * day),
            "valid": (vf.test_start, vf.test_end),
            "train": (f.train_start, f.train_start + cfg.delta_train * day),
            "test": (f.test_start, f.test_end),
        }
        out.append(FoldData(f.number, frame, spec, index, known, periods))
    if not out:
        raise EmptyDataError(
            f"transactions: no prequential fold with its validation fold fits in the data "
            f"({first_day.date()} to {frame[schema.TX_DATETIME].max().date()}; a fold needs "
            f"{2 * cfg.delta_train + 2 * cfg.delta_delay + cfg.delta_test} days before its test end)"
        )
    return out


def training_fold_data(
    frame: pd.DataFrame, spec: FeatureSpec, cfg: EvaluationConfig | None = None
) -> FoldData:
    """One fold for ``train --fdh-folder``: learn from every labelled transaction, no test days.

    ``train`` is every labelled row. The validation pair copies the protocol at the end of the
    labelled days: ``valid`` is the last ``delta_test`` labelled days and ``valid_train`` the
    ``delta_train`` labelled days that end ``delta_delay`` days before it, when there are that many
    labelled days; with fewer, the labelled days are cut in two without a gap (the last third for
    ``valid``). Cards with a fraud in ``valid_train`` are removed from ``valid``, as known cards
    are from test days.

    Raises:
        EmptyDataError: Fewer than two labelled days, or a split without fraud.
    """
    cfg = cfg or EvaluationConfig()
    lab = frame[schema.LABELLED].to_numpy(dtype=bool)
    if not lab.any():
        raise EmptyDataError("transactions: no labelled transaction to train on")
    day = frame[schema.TX_DATETIME].dt.normalize()
    days = np.sort(day[lab].unique())
    if len(days) < 2:
        raise EmptyDataError(f"transactions: {len(days)} labelled day; training needs at least two")
    if len(days) >= cfg.delta_train + cfg.delta_delay + cfg.delta_test:
        n_test, gap = cfg.delta_test, cfg.delta_delay
        n_train = cfg.delta_train
    else:
        n_test = max(1, len(days) // 3)
        gap = 0
        n_train = len(days) - n_test
    v_days = days[-n_test:]
    vt_days = days[len(days) - n_test - gap - n_train : len(days) - n_test - gap]
    in_v = day.isin(v_days).to_numpy() & lab
    in_vt = day.isin(vt_days).to_numpy() & lab
    fraud = frame[schema.TX_FRAUD].to_numpy(dtype=np.float64) == 1
    known_cards = np.unique(frame[schema.CUSTOMER_ID].to_numpy()[in_vt & fraud])
    in_v &= ~np.isin(frame[schema.CUSTOMER_ID].to_numpy(), known_cards)
    index = {
        "valid_train": frame.index[in_vt],
        "valid": frame.index[in_v],
        "train": frame.index[lab],
        "test": frame.index[:0],
    }
    for split in ("valid_train", "valid", "train"):
        _require_frauds(frame, index[split], f"training data {split}")
    one = pd.Timedelta(days=1)
    periods = {
        "valid_train": (pd.Timestamp(vt_days[0]), pd.Timestamp(vt_days[-1]) + one),
        "valid": (pd.Timestamp(v_days[0]), pd.Timestamp(v_days[-1]) + one),
        "train": (pd.Timestamp(days[0]), pd.Timestamp(days[-1]) + one),
    }
    return FoldData(0, frame, spec, index, np.zeros(0, dtype=bool), periods)


def default_start(frame: pd.DataFrame, cfg: EvaluationConfig | None = None) -> pd.Timestamp:
    """Training start of fold 0 when none is given: the latest fold ends on the last day."""
    cfg = cfg or EvaluationConfig()
    last = frame[schema.TX_DATETIME].max().normalize()
    return last - pd.Timedelta(days=cfg.delta_train + cfg.delta_delay + cfg.delta_test - 1)


def build_folds(
    tx: pd.DataFrame,
    *,
    feature_cfg: FeatureConfig | None = None,
    eval_cfg: EvaluationConfig | None = None,
    start_date_training: date | str | pd.Timestamp | None = None,
    labels: pd.DataFrame | None = None,
    customers: pd.DataFrame | None = None,
    terminals: pd.DataFrame | None = None,
) -> list[FoldData]:
    """`feature_frame` then `prequential_fold_data` in one call (fold 0 ends on the last day by
    default). The folds share one feature frame."""
    frame, spec = feature_frame(tx, feature_cfg, labels=labels, customers=customers, terminals=terminals)
    start = start_date_training if start_date_training is not None else default_start(frame, eval_cfg)
    return prequential_fold_data(frame, spec, start, eval_cfg)
