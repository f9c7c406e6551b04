"""Simulator: determinism, churn rate, chunking, mess accounting, oracle scores."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.metrics import average_precision_score

from level2_churn.features import build_snapshots
from level2_churn.simulate import (
    MESS_KINDS,
    SimulatorConfig,
    generate,
    month_starts,
    oracle_scores,
    read_summary,
)
from level2_churn.tests.world import TINY, small_world
from shared.errors import DataError, InputFileError


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "summary.json"
    }


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = generate(TINY, tmp_path / "a", progress=False)
    b = generate(TINY, tmp_path / "b", progress=False)
    c = generate(TINY.model_copy(update={"seed": TINY.seed + 1}), tmp_path / "c", progress=False)
    da, db, dc = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert da == db
    assert a.model_dump(exclude={"out_dir"}) == b.model_dump(exclude={"out_dir"})
    assert da["customers.csv"] != dc["customers.csv"]
    assert a.rows != c.rows


def test_generate_replaces_the_folder_with_normal_permissions(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "stale.csv").write_text("from an earlier run")
    old_mask = os.umask(0o027)
    try:
        generate(TINY, out, progress=False)
    finally:
        os.umask(old_mask)
    assert not (out / "stale.csv").exists() and (out / "customers.csv").is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o750  # the umask's, not mkdtemp's 0700
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no temporary or old folder left


def test_layout_and_chunking():
    raw, _, summary, _ = small_world()
    assert (raw / "customers.csv").is_file()
    # 3,000 customers in chunks of 1,000: one part per chunk in each source.
    assert len(list((raw / "billing").glob("part-*.parquet"))) == 3
    assert len(list((raw / "support").glob("part-*.jsonl"))) == 3
    months = sorted(p.name for p in (raw / "usage").iterdir())
    assert months[0] == "month=2023-01" and len(months) == 12
    customers = pd.read_csv(raw / "customers.csv", dtype=str)
    assert len(customers) == summary.rows["customers"]
    assert summary.end == date(2024, 1, 1)
    assert read_summary(raw) == summary


def test_monthly_churn_rate_in_range_and_matches_hazard():
    raw, _, summary, _ = small_world()
    assert 0.02 <= summary.monthly_churn_rate <= 0.08
    rates = np.array(summary.churn_rate_by_month[3:])
    assert rates.min() > 0.01 and rates.max() < 0.12
    truth = pd.read_parquet(raw / "_truth" / "hazard")
    # Churn is drawn from the stored probability: realised and expected rates agree.
    assert truth["churned"].mean() == pytest.approx(truth["p"].mean(), abs=0.005)


def test_every_kind_of_mess_is_injected_and_counted():
    _, _, summary, _ = small_world()
    for source in ("billing", "usage"):
        for kind in MESS_KINDS:
            if kind == "date_format" and source == "usage":
                continue  # usage dates are typed Parquet dates
            assert summary.mess[source][kind] > 0, (source, kind)
    for kind in (
        "duplicate",
        "category_spelling",
        "date_format",
        "missing",
        "id_format",
        "orphan",
        "outlier",
    ):
        assert summary.mess["support"][kind] > 0, kind
    for kind in ("duplicate", "category_spelling", "date_format", "missing", "id_format", "unit_mistake"):
        assert summary.mess["customers"][kind] > 0, kind


def test_oracle_scores_are_aligned_probabilities():
    raw, clean, _, _ = small_world()
    snaps = build_snapshots(clean)
    p = oracle_scores(raw / "_truth", snaps)
    assert p.shape == (len(snaps),)
    assert np.all((p > 0) & (p < 1))
    # Aligned with the rows: shuffling the rows shuffles the scores the same way.
    perm = np.random.default_rng(0).permutation(len(snaps))
    assert np.array_equal(oracle_scores(raw / "_truth", snaps.iloc[perm]), p[perm])
    # Labels are draws from these probabilities: calibrated, informative but far from perfect.
    y = snaps["label"].to_numpy()
    assert p.mean() == pytest.approx(y.mean(), abs=0.01)
    pr_auc = average_precision_score(y, p)
    assert 2.5 * y.mean() < pr_auc < 0.8


def test_oracle_rejects_rows_it_never_simulated():
    raw, _, _, _ = small_world()
    bad = pd.DataFrame({"customer_id": ["C0000001"], "snapshot_date": [pd.Timestamp("1999-01-01")]})
    with pytest.raises(DataError, match="no true probability"):
        oracle_scores(raw / "_truth", bad)
    with pytest.raises(InputFileError):
        oracle_scores(raw / "nowhere", bad)


def test_config_validation_and_month_starts():
    with pytest.raises(ValidationError, match="first day of a month"):
        SimulatorConfig(start=date(2024, 1, 15))
    with pytest.raises(ValidationError):
        SimulatorConfig(customers=0)
    ms = month_starts(date(2024, 1, 1), 3)
    assert ms.tolist() == [0, 31, 60, 91]  # 2024 is a leap year


def test_snapshots_cover_exactly_the_simulated_customer_months_with_true_labels():
    raw, clean, _, _ = small_world()
    snaps = build_snapshots(clean)
    truth = pd.read_parquet(raw / "_truth" / "hazard")
    truth = truth[truth["snapshot_date"].isin(snaps["snapshot_date"].unique())]
    assert len(truth) == len(snaps)
    truth["customer_id"] = [f"C{n:07d}" for n in truth["customer_num"]]
    merged = snaps[["customer_id", "snapshot_date", "label"]].merge(
        truth, on=["customer_id", "snapshot_date"], how="inner", validate="one_to_one"
    )
    assert len(merged) == len(snaps)
    # Labels rebuilt from the messy customers.csv equal the churn the simulator drew.
    assert (merged["label"] == merged["churned"]).all()
