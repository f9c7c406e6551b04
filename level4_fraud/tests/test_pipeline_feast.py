"""The flow's Feast stage writes the sources the run's own features were computed with."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level4_fraud import features, pipeline
from level4_fraud.feature_store import SOURCE_COLUMNS, FraudFeatureStore
from shared.errors import ConfigError

from .integration_helpers import small_config, small_simulation


def test_the_feast_stage_writes_terminal_risk_with_the_runs_label_delay(tmp_path: Path) -> None:
    tx, customers, terminals = small_simulation()
    cfg = small_config(features={"delay_days": 3}, artifacts_dir=str(tmp_path / "artifacts"))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline.feature_store_stage(cfg, tx, customers, terminals, tmp_path)
    store = FraudFeatureStore(tmp_path, cfg.feature_store_config())
    written = pd.read_parquet(store.layout.source(SOURCE_COLUMNS["terminal_windows"][0]))
    _, delay_3 = features.daily_snapshots(tx, windows=(1, 7, 30), delay_days=3)
    _, delay_7 = features.daily_snapshots(tx, windows=(1, 7, 30), delay_days=7)
    risk = "TERMINAL_ID_RISK_7DAY_WINDOW"
    keys = ["TERMINAL_ID", "event_timestamp"]
    got = written.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        got[[*keys, risk]], delay_3.sort_values(keys).reset_index(drop=True)[[*keys, risk]], check_dtype=False
    )
    # ... which the delay does change: the default 7 days would give other values.
    both = delay_3.merge(delay_7, on=keys, suffixes=("", "_7"))
    assert len(both) > 100 and not np.allclose(both[risk], both[f"{risk}_7"])


def test_the_feast_stage_refuses_windows_the_repository_does_not_serve(tmp_path: Path) -> None:
    tx, customers, terminals = small_simulation()
    cfg = small_config(features={"windows": (1, 7, 14)}, artifacts_dir=str(tmp_path / "artifacts"))
    with pytest.raises(ConfigError, match=r"features.windows=\[1, 7, 14\].*serves windows \[1, 7, 30\]"):
        pipeline.feature_store_stage(cfg, tx, customers, terminals, tmp_path)
    assert not (tmp_path / "feature_store").exists()


def test_the_flow_refuses_unservable_windows_before_simulating(tmp_path: Path) -> None:
    cfg = small_config(
        features={"windows": (1, 7, 14)},
        stages={"feature_store": True},
        artifacts_dir=str(tmp_path / "artifacts"),
    )
    with pytest.raises(ConfigError, match=r"features\.windows"):
        pipeline.level4_flow.fn(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    # The same windows in another order are the same features.
    pipeline.check_servable_windows(small_config(features={"windows": (30, 1, 7)}))
