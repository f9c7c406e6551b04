"""Section 4's LoRA experiment: adapt the sequence transformer to another bank with few labels.

Population A is the level's own simulated bank: the sequence transformer trained on the fold's
training week (section 3's final model, or one pretrained here when section 3 did not train it).
Population B is a second bank simulated with other habits (`PopulationB`): another seed, a
smaller customer base, amounts ~1.8x higher with a large-amount rule at 400 instead of 220, more
transactions a day, more of them online and at ATMs, cards used further from home, a different
fraud mix (more card testing and account takeovers, fewer compromised terminals) and, from its
first day, the crypto-exchange pattern that A only meets after its drift day.

B's transactions get the same features as A's (`datasets.feature_frame` with A's feature spec)
and the same inputs as the pretrained model (A's fitted standardisation and sequence length).
Its days are cut in time order: ``history_days`` that only feed the features, ``train_days``
whose labels are B's few labelled examples, ``val_days`` for early stopping of every arm, and
``test_days`` held out. `lora.compare_adaptation` then trains LoRA (frozen base, adapters on the
attention projections and a copy of the head), full fine-tuning and a model from scratch on the
same labels, and scores them on B's test days with the pretrained model as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from level4_fraud import schema
from level4_fraud.datasets import FeatureConfig, FeatureSpec, feature_frame
from level4_fraud.deep_models import sequence_arrays
from level4_fraud.lora import (
    AdaptationConfig,
    LoraSettings,
    SequenceSet,
    compare_adaptation,
    save_adapter,
)
from level4_fraud.models.sequence import SequenceTransformer
from level4_fraud.models.torch_models import TabularPreprocessor
from level4_fraud.models.training import TrainConfig
from level4_fraud.simulate import SimulatorConfig, simulate

ADAPTER_DIR = "lora_adapter"


def _population_b() -> dict[str, Any]:
    return {
        "seed": 2024,
        "n_customers": 500,
        "n_terminals": 1000,
        "nb_days": 28,
        # Another bank's customers: larger amounts (and its own large-amount rule), more and
        # more online transactions, cards used further from home.
        "drift_day": 1,
        "drift_amount_factor": 1.8,
        "drift_rate_factor": 1.3,
        "drift_ecom_shift": 0.15,
        "amount_threshold": 400.0,
        "ecom_share": 0.35,
        "atm_share": 0.1,
        "max_devices": 3,
        "radius": 8.0,
        # Another fraud mix (per-day counts are per 5,000 customers in the richer mode).
        "compromised_terminals_per_day": 0.5,
        "card_testing_per_day": 2.0,
        "takeover_per_day": 1.5,
        "drift_cards_per_day": 3.0,
    }


def _adaptation() -> AdaptationConfig:
    # Rank 2 keeps the adapter under 5 % of the quick transformer (d_model=32); rank 4 at 64.
    # Short arms with mid-size batches: a few thousand rows, early stopping on B's validation days.
    short = {"epochs": 10, "patience": 3, "batch_size": 128}
    base = AdaptationConfig()
    return AdaptationConfig(
        lora=LoraSettings(r=2, alpha=4),
        # Adapters start at zero: a larger step than full fine-tuning, smaller than lora.py's
        # default, which overshoots a transformer pretrained on tens of thousands of rows.
        lora_train=base.lora_train.model_copy(update={**short, "learning_rate": 3e-3}),
        finetune=base.finetune.model_copy(update=short),
        scratch=base.scratch.model_copy(update=short),
    )


class LoraStageConfig(BaseModel):
    """The LoRA experiment (quick profile; full: ``population_b`` with ``n_customers=2000,
    nb_days=50``, ``history_days=30``, ``adaptation.lora.r=4, alpha=8`` (``d_model=64``) and 60
    epochs, patience 8 per arm).

    Args:
        enabled: Run this part of the stage.
        population_b: `SimulatorConfig` fields of bank B (the others keep their defaults).
        history_days: B's first days: features only (windows filling up).
        train_days: Days whose labels B's arms train on (the few labels).
        val_days: Days that early-stop every arm.
        test_days: B's held-out last days.
        adaptation: LoRA rank and targets, each arm's training settings.
        pretrain: Training of the transformer on A when section 3 did not provide one.
        save_adapter: Write the trained adapter under ``<run>/deep/lora_adapter``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    population_b: dict[str, Any] = Field(default_factory=_population_b)
    history_days: int = Field(10, ge=0)
    train_days: int = Field(5, ge=1)
    val_days: int = Field(4, ge=1)
    test_days: int = Field(9, ge=1)
    adaptation: AdaptationConfig = Field(default_factory=_adaptation)
    pretrain: TrainConfig = Field(default_factory=lambda: TrainConfig(epochs=8, batch_size=256, patience=3))
    save_adapter: bool = True


@dataclass
class LoraOutcome:
    """The adaptation comparison.

    Attributes:
        table: One row per method (``pretrained_only``, ``lora``, ``full_finetune``,
            ``scratch``): ``ap`` on B's test days, ``trainable_params``, ``total_params``,
            ``trainable_share``, ``seconds``, ``epochs``.
        population: Rows and frauds of B's splits (``train_rows``, ``train_frauds``, ...).
        adapter_path: The saved adapter folder (None when not saved).
        seconds: Wall time (simulation, features, sequences and the three arms).
        adapted: The LoRA-adapted model (peft), for inspection and tests (not saved as a whole).
        test_b: B's held-out sequences.
    """

    table: pd.DataFrame
    population: dict[str, int]
    adapter_path: Path | None
    seconds: float
    adapted: Any = None
    test_b: SequenceSet | None = None


def population_b_config(cfg: LoraStageConfig) -> SimulatorConfig:
    """Bank B's simulator settings; its days must hold the four periods."""
    sim = SimulatorConfig(**cfg.population_b)
    need = cfg.history_days + cfg.train_days + cfg.val_days + cfg.test_days
    if sim.nb_days < need:
        raise ValueError(f"population B has {sim.nb_days} days; the periods need {need}")
    return sim


def population_b_sets(
    cfg: LoraStageConfig,
    spec: FeatureSpec,
    prep: TabularPreprocessor,
    max_len: int,
    feature_cfg: FeatureConfig | None = None,
) -> tuple[SequenceSet, SequenceSet, SequenceSet, dict[str, int]]:
    """Simulate bank B and cut its labelled card sequences into train, validation and test.

    Args:
        cfg: Population and periods.
        spec: A's feature columns (B's frame must provide them).
        prep: The pretrained model's fitted standardisation (A's).
        max_len: The pretrained model's sequence length.
        feature_cfg: A's feature settings (windows, label delay).

    Returns:
        ``(train, val, test, sizes)``.
    """
    sim = population_b_config(cfg)
    tx, customers, terminals = simulate(sim)
    frame, _ = feature_frame(tx, feature_cfg, customers=customers, terminals=terminals, spec=spec)
    day = tx[schema.TX_TIME_DAYS].to_numpy()  # the frame is indexed like tx, row for row
    last = int(day.max()) + 1
    t0 = cfg.history_days
    bounds = {
        "train": (t0, t0 + cfg.train_days),
        "val": (t0 + cfg.train_days, t0 + cfg.train_days + cfg.val_days),
        "test": (last - cfg.test_days, last),
    }
    sets: dict[str, SequenceSet] = {}
    sizes: dict[str, int] = {}
    for name, (lo, hi) in bounds.items():
        labels = frame.index[(day >= lo) & (day < hi)]
        x, mask = sequence_arrays(frame, prep, labels, max_len)
        y = frame.loc[labels, schema.TX_FRAUD].to_numpy(dtype=np.float32)
        if not 0 < y.sum() < len(y):
            raise ValueError(f"population B's {name} days hold {int(y.sum())} frauds in {len(y)} rows")
        sets[name] = SequenceSet(x, mask, y)
        sizes[f"{name}_rows"] = len(y)
        sizes[f"{name}_frauds"] = int(y.sum())
    return sets["train"], sets["val"], sets["test"], sizes


def run_lora(
    pretrained: SequenceTransformer,
    prep: TabularPreprocessor,
    spec: FeatureSpec,
    cfg: LoraStageConfig,
    folder: str | Path | None,
    *,
    feature_cfg: FeatureConfig | None = None,
    device: str = "auto",
    threads: int | None = None,
    seed: int = 42,
) -> LoraOutcome:
    """Adapt the transformer pretrained on A to bank B three ways (see the module docstring).

    Args:
        pretrained: The transformer trained on population A (left unchanged).
        prep: Its fitted input standardisation.
        spec: A's feature columns.
        cfg: Population B, periods, arms.
        folder: Where the adapter is saved (``<folder>/lora_adapter``); None: not saved.
        feature_cfg: A's feature settings.
        device: Where the arms train (``auto``: CUDA when present).
        threads: torch CPU threads (None: each arm's own setting).
        seed: Seed of every arm.

    Returns:
        The comparison table, B's split sizes and the adapter's path.
    """
    start = time.perf_counter()
    train_b, val_b, test_b, sizes = population_b_sets(cfg, spec, prep, pretrained.config.max_len, feature_cfg)
    update: dict[str, Any] = {"device": device}
    if threads is not None:
        update["threads"] = threads
    ad = cfg.adaptation
    ad = ad.model_copy(
        update={
            "seed": seed,
            "lora_train": ad.lora_train.model_copy(update=update),
            "finetune": ad.finetune.model_copy(update=update),
            "scratch": ad.scratch.model_copy(update=update),
        }
    )
    result = compare_adaptation(pretrained, train_b, val_b, test_b, ad)
    path = None
    if folder is not None and cfg.save_adapter:
        path = save_adapter(result.models["lora"], Path(folder) / ADAPTER_DIR)
    return LoraOutcome(
        table=result.table,
        population=sizes,
        adapter_path=path,
        seconds=time.perf_counter() - start,
        adapted=result.models["lora"],
        test_b=test_b,
    )
