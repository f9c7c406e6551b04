"""A small servable run folder for the scoring-service tests, built once per test session.

The small simulation (40 days, 300 cards; `integration_helpers`) is cut before its last day:
the run is trained, its Feast store written and materialised, and its student distilled on
the days before (``history``); the last day (``replay``) is what the service is asked to score,
as new transactions arriving after the nightly materialisation. The deep stage runs only its
fast path (no PyTorch comparison models, LoRA or Ray), which is all serving needs.
"""

from __future__ import annotations

import contextlib
import functools
import io
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from level4_fraud.tests.integration_helpers import small_config, small_folder

FAST_DEEP: dict[str, Any] = {
    "device": "cpu",
    "models": {
        "mlp": {"enabled": False},
        "moe": {"enabled": False},
        "sequence": {"transformer": False, "gru": False},
    },
    "lora": {"enabled": False},
    "ray": {"enabled": False},
    "fast_path": {"epochs": 8, "latency": {"n_single": 20, "warmup": 2}, "teacher_n_single": 2},
}


@dataclass(frozen=True)
class ServingRun:
    """The test run: folder, history folder (daily files + side tables) and the day to replay."""

    run_dir: Path
    history: Path
    replay_day: Path
    root: Path

    def replay(self) -> pd.DataFrame:
        """The replay day's transactions, in time order."""
        from level4_fraud import data

        return (
            data.read_day(self.replay_day)
            .sort_values(["TX_DATETIME", "TRANSACTION_ID"])
            .reset_index(drop=True)
        )

    def copy(self, dest: Path) -> Path:
        """A private copy of the run folder (tests that break something work on one)."""
        shutil.copytree(self.run_dir, dest, ignore=shutil.ignore_patterns("serving"))
        return dest


@functools.lru_cache(maxsize=1)
def serving_run() -> ServingRun:
    """Build the run (about a minute on two busy cores; once per session)."""
    from level4_fraud import pipeline

    src = small_folder()
    root = Path(tempfile.mkdtemp(prefix="l4-serving-"))
    hist = root / "history" / "transactions"
    hist.mkdir(parents=True)
    days = sorted((src / "transactions").glob("*.parquet"))
    for f in days[:-1]:
        shutil.copy2(f, hist / f.name)
    for table in ("customers.parquet", "terminals.parquet"):
        shutil.copy2(src / table, root / "history" / table)
    replay_day = root / "replay" / days[-1].name
    replay_day.parent.mkdir()
    shutil.copy2(days[-1], replay_day)

    # The served run reads the card's habit too ("auto" leaves it out on so few days), so the
    # ledger's habit path is tested.
    cfg = small_config(
        stages={"feature_store": True, "deep": True, "report": False},
        features={"habit": "on"},
        deep=FAST_DEEP,
        artifacts_dir=str(root / "artifacts"),
    )
    run_dir = root / "run"
    run_dir.mkdir()
    tx, customers, terminals = pipeline.read_simulation(root / "history")
    folds = pipeline.features(cfg, tx, customers, terminals)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.feature_store_stage(cfg, tx, customers, terminals, run_dir)
        runs = [pipeline.train_fold(cfg, f) for f in folds]
        pipeline.deep_stage(cfg, runs, run_dir)
    pipeline.finish_run(cfg, runs, run_dir)
    return ServingRun(run_dir, hist, replay_day, root)


def serving_config(run: ServingRun, **overrides: Any) -> Any:
    """`ServingConfig` of the test run: its history folder, a fixed key and hash key."""
    from level4_fraud.serving.config import ServingConfig

    values: dict[str, Any] = {"history": str(run.history), "api_key": "test-key", "audit_hash_key": "k" * 32}
    values.update(overrides)
    return ServingConfig.model_validate(values)


def payload(row: Any) -> dict[str, Any]:
    """A ``POST /v1/score`` body from a transactions-frame row (as the stream sends them)."""
    out: dict[str, Any] = {
        "TRANSACTION_ID": int(row["TRANSACTION_ID"]),
        "TX_DATETIME": pd.Timestamp(row["TX_DATETIME"]).isoformat(),
        "CUSTOMER_ID": int(row["CUSTOMER_ID"]),
        "TERMINAL_ID": int(row["TERMINAL_ID"]),
        "TX_AMOUNT": float(row["TX_AMOUNT"]),
    }
    for col in ("MERCHANT_CATEGORY", "CHANNEL", "COUNTRY", "CURRENCY"):
        if col in row and pd.notna(row[col]):
            out[col] = str(row[col])
    if "DEVICE_ID" in row and pd.notna(row["DEVICE_ID"]) and int(row["DEVICE_ID"]) != -1:
        out["DEVICE_ID"] = str(int(row["DEVICE_ID"]))
    return out


def assert_read_matches_feast(reader: Any, card: int, terminal: int) -> bool:
    """Check that `FeastOnlineReader.read` gives what Feast's public ``get_online_features``
    gives for one card and terminal (rows, newest timestamp, distance); True when both rows
    were found."""
    import math

    from level4_fraud.serving.online import _row

    got = reader.read(card, terminal)
    public = reader.store.store.get_online_features(
        features=reader.refs, entity_rows=[{"CUSTOMER_ID": card, "TERMINAL_ID": terminal}]
    ).to_dict(include_event_timestamps=True)
    values = {k: (v[0] if v else None) for k, v in public.items()}
    assert got.card == _row(values, reader.card_features, required=reader.card_features[0])
    assert got.terminal == _row(values, reader.terminal_features, required=reader.terminal_features[0])
    stamps = [float(v) for k, v in values.items() if k.endswith("__ts") and v]
    assert got.newest_event == (max(stamps) if stamps else None)
    expected = reader._distance(values)
    assert got.distance == expected or (math.isnan(got.distance) and math.isnan(expected))
    return got.card is not None and got.terminal is not None
