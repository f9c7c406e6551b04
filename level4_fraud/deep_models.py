"""The level's PyTorch models trained on one fold: tabular MLP, mixture of experts, sequence models.

Each model follows the fold protocol of `level4_fraud.datasets` (the one the baselines follow):

1. a **validation model** is fitted on ``valid_train`` with early stopping on ``valid`` (Average
   Precision per epoch, the best epoch kept) and scores the ``valid`` rows: those scores are what
   the ensemble learns its weights and calibration from;
2. the **final model** is fitted on ``train`` for the number of epochs validation chose (no
   validation set, as LightGBM's refit uses ``best_iteration_``) and scores every ``test`` row.

Inputs. The tabular models (`TabularMLP`, `MixtureOfExperts`) read the fold's numeric features,
standardised, and its categorical fields, embedded (`TabularPreprocessor`, fitted on the rows the
model trains on). The sequence models (`SequenceTransformer`, `SequenceGRU`) read, for each
transaction, the card's last ``max_len`` transactions up to and including it, each step being the
standardised numeric feature vector; the sequences are built only for the rows a split needs,
their history taken from the whole feature frame (every earlier transaction is there, nothing
later: `build_card_sequences`).

The final models are saved under ``<run>/deep/models/<name>/`` (weights, architecture, the
fitted preprocessing) so `predict_saved_models` scores new transactions with them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import average_precision_score
from torch import nn

from level4_fraud import schema
from level4_fraud.datasets import FoldData
from level4_fraud.models.moe import MixtureOfExperts, MoEConfig, predict_routing, routing_summary
from level4_fraud.models.sequence import (
    SequenceGRU,
    SequenceGRUConfig,
    SequenceTransformer,
    SequenceTransformerConfig,
    build_card_sequences,
)
from level4_fraud.models.torch_models import TabularMLP, TabularMLPConfig, TabularPreprocessor
from level4_fraud.models.training import (
    FitResult,
    TrainConfig,
    count_parameters,
    fit,
    load_model,
    predict_proba,
    read_model_meta,
    save_model,
)
from shared.atomic import atomic_dir

MODEL_NAMES: tuple[str, ...] = ("torch_mlp", "moe", "seq_transformer", "seq_gru")
"""Names of the stage's models, as they appear in the score and metric tables."""

PREPROCESSOR_FILE = "preprocessor.json"


def _seq_train() -> TrainConfig:
    # An epoch over tens of thousands of sequences costs seconds on one core: few epochs, large
    # batches with a larger step, stop after two epochs without progress.
    return TrainConfig(epochs=6, batch_size=512, learning_rate=5e-3, patience=2)


def _tab_train() -> TrainConfig:
    # A few dozen frauds a week on the quick profile: a larger step and small batches find the
    # rare class within a handful of epochs; early stopping picks the epoch.
    return TrainConfig(epochs=20, batch_size=256, learning_rate=5e-3, patience=5)


class MLPSettings(BaseModel):
    """Tabular MLP (quick profile; full: ``hidden=[128, 64]``, ``embedding_dim=16``,
    ``train.epochs=40, train.patience=6, train.batch_size=1024, train.learning_rate=2e-3``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    hidden: list[int] = Field(default_factory=lambda: [64, 32])
    embedding_dim: int = Field(8, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    train: TrainConfig = Field(default_factory=_tab_train)


class MoESettings(BaseModel):
    """Mixture of experts (quick profile; full: ``n_experts=8, expert_hidden=[64, 32]``,
    ``train.epochs=40, train.patience=6, train.batch_size=1024, train.learning_rate=2e-3``)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    n_experts: int = Field(4, ge=1)
    top_k: int = Field(2, ge=1)
    expert_hidden: list[int] = Field(default_factory=lambda: [32])
    gate_hidden: int | None = Field(None, ge=1)
    embedding_dim: int = Field(8, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    balance_coef: float = Field(0.01, ge=0)
    amount_bands: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0, 220.0],
        description="Inner edges of the amount bands of the routing table (220: the Handbook's rule)",
    )
    train: TrainConfig = Field(default_factory=_tab_train)


class SequenceSettings(BaseModel):
    """Sequence transformer and its GRU baseline (quick profile; full: ``max_len=32, d_model=64,
    ff_dim=128, transformer_layers=3, gru_hidden=64, gru_layers=2``, ``train.epochs=30,
    train.patience=5, train.batch_size=1024, train.learning_rate=2e-3``).

    The quick profile halves the width and the history (a transformer step costs ~16x less on
    one CPU core). LoRA's share of trainable parameters depends on the width: rank 2 on
    ``q_proj``/``v_proj`` plus the head is about 3 % at ``d_model=32``, rank 4 about 3 % at 64.
    """

    model_config = ConfigDict(extra="forbid")

    transformer: bool = True
    gru: bool = True
    max_len: int = Field(8, ge=1)
    d_model: int = Field(32, ge=2)
    n_heads: int = Field(4, ge=1)
    transformer_layers: int = Field(2, ge=1)
    ff_dim: int = Field(64, ge=1)
    gru_hidden: int = Field(32, ge=1)
    gru_layers: int = Field(1, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    train: TrainConfig = Field(default_factory=_seq_train)


class ModelsConfig(BaseModel):
    """The four PyTorch models of section 3 (each switchable)."""

    model_config = ConfigDict(extra="forbid")

    mlp: MLPSettings = Field(default_factory=MLPSettings)
    moe: MoESettings = Field(default_factory=MoESettings)
    sequence: SequenceSettings = Field(default_factory=SequenceSettings)


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


def _positions(frame: pd.DataFrame, labels: pd.Index) -> np.ndarray:
    pos = frame.index.get_indexer(labels)
    if (pos < 0).any():
        raise KeyError("rows not in the feature frame")
    return pos


def sequence_arrays(
    frame: pd.DataFrame, prep: TabularPreprocessor, labels: pd.Index, max_len: int
) -> list[np.ndarray]:
    """``[x (n, max_len, F), mask (n, max_len)]`` for the rows `labels` of a feature frame.

    Each step is `prep`'s standardised numeric vector of one of the card's transactions. Only the
    history the rows can reach is transformed: the transactions of their cards up to the latest
    of them (the sequence builder orders by time, then id, so no later transaction enters).
    """
    n_feat = len(prep.numeric_cols)
    if len(labels) == 0:
        return [np.zeros((0, max_len, n_feat), np.float32), np.zeros((0, max_len), bool)]
    pos = _positions(frame, labels)
    cards = frame[schema.CUSTOMER_ID].to_numpy()
    times = frame[schema.TX_DATETIME].to_numpy()
    keep = np.isin(cards, np.unique(cards[pos])) & (times <= times[pos].max())
    sub = frame.loc[keep]
    rows = (np.cumsum(keep) - 1)[pos]
    values = prep.transform(sub)[0]
    seq = build_card_sequences(sub, (), max_len, values=values, rows=rows)
    return [seq.x, seq.mask]


@dataclass
class _Inputs:
    """How a model family turns feature-frame rows into arrays (fitted preprocessing inside)."""

    kind: Literal["tabular", "sequence"]
    prep: TabularPreprocessor
    max_len: int = 0

    def arrays(self, frame: pd.DataFrame, labels: pd.Index) -> list[np.ndarray]:
        if self.kind == "tabular":
            return list(self.prep.transform(frame.loc[labels]))
        return sequence_arrays(frame, self.prep, labels, self.max_len)


def _fit_inputs(fold: FoldData, split: str, kind: Literal["tabular", "sequence"], max_len: int) -> _Inputs:
    categorical = fold.spec.categorical if kind == "tabular" else ()
    prep = TabularPreprocessor(fold.spec.numeric, categorical).fit(fold.rows(split))  # type: ignore[arg-type]
    return _Inputs(kind, prep, max_len)


_Builder = tuple[Literal["tabular", "sequence"], Callable[[_Inputs], nn.Module], TrainConfig]
"""A model family's input kind, how to build the model from its fitted inputs, its training."""


def _builders(cfg: ModelsConfig) -> dict[str, _Builder]:
    m, e, s = cfg.mlp, cfg.moe, cfg.sequence
    out: dict[str, _Builder] = {}
    if m.enabled:
        out["torch_mlp"] = (
            "tabular",
            lambda i: TabularMLP(
                TabularMLPConfig(
                    n_numeric=len(i.prep.numeric_cols),
                    cardinalities=i.prep.cardinalities,
                    embedding_dim=m.embedding_dim,
                    hidden=m.hidden,
                    dropout=m.dropout,
                )
            ),
            m.train,
        )
    if e.enabled:
        out["moe"] = (
            "tabular",
            lambda i: MixtureOfExperts(
                MoEConfig(
                    n_numeric=len(i.prep.numeric_cols),
                    cardinalities=i.prep.cardinalities,
                    embedding_dim=e.embedding_dim,
                    n_experts=e.n_experts,
                    top_k=e.top_k,
                    expert_hidden=e.expert_hidden,
                    gate_hidden=e.gate_hidden,
                    dropout=e.dropout,
                    balance_coef=e.balance_coef,
                )
            ),
            e.train,
        )
    if s.transformer:
        out["seq_transformer"] = (
            "sequence",
            lambda i: SequenceTransformer(
                SequenceTransformerConfig(
                    n_features=len(i.prep.numeric_cols),
                    max_len=s.max_len,
                    d_model=s.d_model,
                    n_heads=s.n_heads,
                    n_layers=s.transformer_layers,
                    ff_dim=s.ff_dim,
                    dropout=s.dropout,
                )
            ),
            s.train,
        )
    if s.gru:
        out["seq_gru"] = (
            "sequence",
            lambda i: SequenceGRU(
                SequenceGRUConfig(
                    n_features=len(i.prep.numeric_cols),
                    max_len=s.max_len,
                    hidden=s.gru_hidden,
                    n_layers=s.gru_layers,
                    dropout=s.dropout,
                )
            ),
            s.train,
        )
    return out


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


@dataclass
class TrainedModel:
    """One model of the stage after both phases.

    Attributes:
        name: One of `MODEL_NAMES`.
        model: The final model (fitted on ``train``), eval mode.
        inputs: Its fitted preprocessing and input kind (``tabular`` or ``sequence``).
        valid_scores: The validation model's scores of the ``valid`` rows (fold order).
        test_scores: The final model's scores of every ``test`` row (fold order).
        valid_fit: The validation model's training record (history, best epoch).
        final_fit: The final model's training record.
        valid_ap: AP on ``valid``.
        test_ap: AP on the evaluated test rows (`FoldData.test_eval`); NaN without test rows.
    """

    name: str
    model: nn.Module
    inputs: _Inputs
    valid_scores: np.ndarray
    test_scores: np.ndarray
    valid_fit: FitResult
    final_fit: FitResult
    valid_ap: float
    test_ap: float

    @property
    def max_len(self) -> int:
        """Sequence length of a sequence model (0 for a tabular one)."""
        return self.inputs.max_len

    def predict_rows(self, frame: pd.DataFrame, labels: pd.Index) -> np.ndarray:
        """Scores of the rows `labels` of a feature frame by the final model (a sequence model
        takes each card's history from `frame`)."""
        if len(labels) == 0:
            return np.zeros(0)
        return predict_proba(self.model, self.inputs.arrays(frame, labels))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores of a frame's rows by the final model (tabular models only: a sequence model
        needs each card's history, see `predict_saved_models`)."""
        if self.inputs.kind != "tabular":
            raise TypeError(f"{self.name} reads card histories, not single rows")
        return predict_proba(self.model, list(self.inputs.prep.transform(frame)))


@dataclass
class ModelsOutcome:
    """Section 3's models on a fold: trained models, the routing table, the metric table."""

    models: dict[str, TrainedModel] = field(default_factory=dict)
    routing: pd.DataFrame = field(default_factory=pd.DataFrame)
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: dict[str, float] = field(default_factory=dict)


def fold_test_ap(fold: FoldData, scores: np.ndarray) -> float:
    """AP of test scores (one per ``fold.test`` row) on the evaluated rows; NaN if one class."""
    if len(fold.test) == 0:
        return math.nan
    mask = fold.test_eval_mask
    y = fold.test[schema.TX_FRAUD].to_numpy(dtype=np.float64)[mask]
    if not 0 < y.sum() < len(y):
        return math.nan
    return float(average_precision_score(y, np.asarray(scores)[mask]))


def _ap(y: np.ndarray, scores: np.ndarray) -> float:
    y = np.asarray(y)
    return float(average_precision_score(y, scores)) if 0 < y.sum() < len(y) else math.nan


def _with(train: TrainConfig, device: str, threads: int | None, seed: int, **extra: Any) -> TrainConfig:
    update: dict[str, Any] = {"device": device, "seed": seed, **extra}
    if threads is not None:
        update["threads"] = threads
    return train.model_copy(update=update)


def train_one(
    fold: FoldData,
    name: str,
    kind: Literal["tabular", "sequence"],
    build: Callable[[_Inputs], nn.Module],
    train: TrainConfig,
    *,
    max_len: int = 0,
) -> TrainedModel:
    """Both phases of one model (see the module docstring)."""
    inputs_v = _fit_inputs(fold, "valid_train", kind, max_len)
    xs_vt = inputs_v.arrays(fold.frame, fold.index["valid_train"])
    xs_v = inputs_v.arrays(fold.frame, fold.index["valid"])
    y_v = fold.y("valid")
    torch.manual_seed(train.seed)
    model_v = build(inputs_v)
    fit_v = fit(model_v, xs_vt, fold.y("valid_train"), train, val=(xs_v, y_v))
    valid_scores = predict_proba(model_v, xs_v)

    inputs_f = _fit_inputs(fold, "train", kind, max_len)
    xs_t = inputs_f.arrays(fold.frame, fold.index["train"])
    torch.manual_seed(train.seed)
    model_f = build(inputs_f)
    # The epochs validation chose; no validation set here (the test week must not choose).
    fit_f = fit(model_f, xs_t, fold.y("train"), train.model_copy(update={"epochs": max(1, fit_v.best_epoch)}))
    if len(fold.test):
        test_scores = predict_proba(model_f, inputs_f.arrays(fold.frame, fold.index["test"]))
    else:
        test_scores = np.zeros(0)
    return TrainedModel(
        name=name,
        model=model_f.eval(),
        inputs=inputs_f,
        valid_scores=valid_scores,
        test_scores=test_scores,
        valid_fit=fit_v,
        final_fit=fit_f,
        valid_ap=_ap(y_v, valid_scores),
        test_ap=fold_test_ap(fold, test_scores),
    )


def amount_band_labels(amounts: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """``"<10"``, ``"10-50"``, ..., ``">=220"`` for each amount (inner edges `edges`)."""
    edges = sorted(float(e) for e in edges)

    def fmt(v: float) -> str:
        return f"{v:g}"

    names = [f"<{fmt(edges[0])}"] if edges else ["all"]
    names += [f"{fmt(a)}-{fmt(b)}" for a, b in itertools.pairwise(edges)]
    if edges:
        names.append(f">={fmt(edges[-1])}")
    idx = np.searchsorted(np.asarray(edges), np.asarray(amounts, dtype=np.float64), side="right")
    return np.asarray(names, dtype=object)[idx]


def moe_routing_table(
    model: MixtureOfExperts, inputs: list[np.ndarray], rows: pd.DataFrame, amount_edges: Sequence[float]
) -> pd.DataFrame:
    """What each expert specialises in on `rows`: `routing_summary` by channel, fraud scenario
    and amount band, stacked (columns ``grouping, group, n, expert_0.., top_expert``)."""
    routing = predict_routing(model, inputs)
    groupings: dict[str, np.ndarray] = {}
    if schema.CHANNEL in rows.columns:
        groupings["channel"] = rows[schema.CHANNEL].astype(object).to_numpy()
    scen = rows[schema.TX_FRAUD_SCENARIO].to_numpy(dtype=np.int64)
    names = [schema.SCENARIO_NAMES.get(int(s), "unlabelled") for s in scen]
    groupings["scenario"] = np.array(names, dtype=object)
    groupings["amount_band"] = amount_band_labels(rows[schema.TX_AMOUNT].to_numpy(), amount_edges)
    band_order = list(dict.fromkeys(amount_band_labels(np.sort([0.0, *amount_edges]), amount_edges)))
    parts = []
    for grouping, labels in groupings.items():
        table = routing_summary(routing, labels).reset_index()
        table["group"] = table["group"].astype(str)
        if grouping == "amount_band":  # bands in amount order, not alphabetical; "all" last
            rank = {b: i for i, b in enumerate([*band_order, "all"])}
            table = table.sort_values("group", key=lambda g: g.map(rank)).reset_index(drop=True)
        table.insert(0, "grouping", grouping)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def train_models(
    fold: FoldData,
    cfg: ModelsConfig,
    *,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 42,
) -> ModelsOutcome:
    """Train every enabled model of section 3 on `fold` (validation then final phase).

    Args:
        fold: The fold (its ``valid_train``, ``valid`` and ``train`` rows need both classes).
        cfg: Which models, their architectures and training settings.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda`` for every model.
        threads: torch CPU threads while training (None: each `TrainConfig`'s own).
        seed: Seed of every model's initialisation and batch order.

    Returns:
        The trained models, the MoE's routing table on the test rows (the ``valid`` rows when the
        fold has no test days), and one metric row per model (``model, valid_ap, test_ap,
        best_epoch, trainable_params, seconds``).
    """
    out = ModelsOutcome()
    rows = []
    for name, (kind, build, train) in _builders(cfg).items():
        start = time.perf_counter()
        tcfg = _with(train, device, threads, seed)
        trained = train_one(fold, name, kind, build, tcfg, max_len=cfg.sequence.max_len)
        out.seconds[name] = time.perf_counter() - start
        out.models[name] = trained
        rows.append(
            {
                "model": name,
                "valid_ap": trained.valid_ap,
                "test_ap": trained.test_ap,
                "best_epoch": trained.valid_fit.best_epoch,
                "trainable_params": count_parameters(trained.model)[0],
                "seconds": out.seconds[name],
                "device": trained.final_fit.device,
            }
        )
    out.table = pd.DataFrame(
        rows, columns=["model", "valid_ap", "test_ap", "best_epoch", "trainable_params", "seconds", "device"]
    )
    moe = out.models.get("moe")
    if moe is not None:
        split = "test" if len(fold.test) else "valid"
        frame_rows = fold.rows(split)  # type: ignore[arg-type]
        inputs = moe.inputs.arrays(fold.frame, fold.index[split])
        out.routing = moe_routing_table(moe.model, inputs, frame_rows, cfg.moe.amount_bands)  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------------------------------
# Saving and scoring new data
# ------------------------------------------------------------------------------------------------


def save_models(outcome: ModelsOutcome, folder: str | Path) -> dict[str, Path]:
    """Write each final model to ``folder/<name>/`` (weights, architecture, preprocessing)."""
    paths: dict[str, Path] = {}
    for name, trained in outcome.models.items():
        target = Path(folder) / name
        with atomic_dir(target) as tmp:
            save_model(trained.model, tmp, extra={"inputs": trained.inputs.kind, "max_len": trained.max_len})
            trained.inputs.prep.save(tmp / PREPROCESSOR_FILE)
        paths[name] = target
    return paths


def predict_saved_models(
    folder: str | Path, frame: pd.DataFrame, labels: pd.Index | None = None
) -> dict[str, np.ndarray]:
    """Score rows of a feature frame with every model `save_models` wrote into `folder`.

    Args:
        folder: ``<run>/deep/models``.
        frame: A `datasets.feature_frame` holding the rows and, for the sequence models, every
            earlier transaction of their cards (history).
        labels: The rows to score (default: all), in the order wanted.

    Returns:
        ``{model name: scores}`` aligned with `labels`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no saved models")
    labels = frame.index if labels is None else labels
    out: dict[str, np.ndarray] = {}
    for sub in sorted(p for p in folder.iterdir() if (p / PREPROCESSOR_FILE).is_file()):
        meta = read_model_meta(sub)["extra"]
        prep = TabularPreprocessor.load(sub / PREPROCESSOR_FILE)
        model = load_model(sub)
        inputs = _Inputs(meta["inputs"], prep, int(meta.get("max_len", 0)))
        out[sub.name] = predict_proba(model, inputs.arrays(frame, labels)) if len(labels) else np.zeros(0)
    return out
