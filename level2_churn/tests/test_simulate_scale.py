"""Scale (slow): chunked simulation, file-by-file ingest and bucketed features agree with the truth."""

from __future__ import annotations

import pandas as pd
import pytest

from level2_churn.features import FeatureConfig, write_snapshots
from level2_churn.ingest import load_and_clean
from level2_churn.simulate import SimulatorConfig, generate


@pytest.mark.slow
def test_200k_customers_in_chunks_and_buckets(tmp_path):
    cfg = SimulatorConfig(customers=200_000, months=8, seed=3, chunk_size=50_000)
    summary = generate(cfg, tmp_path / "raw", progress=False)
    assert len(list((tmp_path / "raw" / "billing").glob("*.parquet"))) == 4
    assert 0.02 <= summary.monthly_churn_rate <= 0.08
    res = load_and_clean(tmp_path / "raw", tmp_path / "clean", bucket_customers=60_000)
    assert res.rows_out["customers"] == 200_000
    assert len(list((tmp_path / "clean" / "usage").glob("bucket=*"))) == 4
    n = write_snapshots(tmp_path / "clean", tmp_path / "snapshots.parquet", FeatureConfig())
    snaps = pd.read_parquet(tmp_path / "snapshots.parquet", columns=["customer_id", "snapshot_date", "label"])
    assert n == len(snaps)
    truth = pd.read_parquet(tmp_path / "raw" / "_truth" / "hazard")
    truth = truth[truth["snapshot_date"].isin(snaps["snapshot_date"].unique())]
    assert len(truth) == len(snaps)
    assert int(truth["churned"].sum()) == int(snaps["label"].sum())
    assert not snaps.duplicated(["customer_id", "snapshot_date"]).any()
