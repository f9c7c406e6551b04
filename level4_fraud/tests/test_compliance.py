"""Compliance: the fairness check's FPR gap on constructed segments with known rates, segments
from the customer table (or keyed-hash synthetic ones), the model card built from a run folder
carrying the run's own metrics, and ``audit model-card``."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from level4_fraud import schema
from level4_fraud.cli import app
from level4_fraud.compliance import (
    AGE_BAND,
    ALERT,
    REGION,
    SYNTHETIC,
    ComplianceConfig,
    age_bands,
    build_model_card,
    card_markdown,
    customer_segments,
    fairness_check,
    retention_cutoff,
    wilson_interval,
    write_model_card,
)
from level4_fraud.evaluate import average_precision

runner = CliRunner()


def constructed(groups: dict[str, tuple[int, int, int, int]]) -> pd.DataFrame:
    """Rows per segment from ``(genuine, false positives, frauds, frauds caught)``."""
    parts = []
    for seg, (genuine, fp, frauds, caught) in groups.items():
        y = np.r_[np.zeros(genuine, bool), np.ones(frauds, bool)]
        a = np.r_[np.arange(genuine) < fp, np.arange(frauds) < caught]
        parts.append(pd.DataFrame({"seg": seg, schema.TX_FRAUD: y.astype(int), ALERT: a}))
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=0)  # order must not matter


# FPRs: A 50/1000 = 0.05, B 20/2000 = 0.01, C 40/400 = 0.10 (too small to compare at 500).
GROUPS = {"A": (1000, 50, 10, 7), "B": (2000, 20, 4, 4), "C": (400, 40, 2, 0)}


def test_fpr_gap_on_segments_with_known_false_positive_rates() -> None:
    result = fairness_check(constructed(GROUPS), ["seg"], min_genuine=500, max_fpr_gap=0.03)
    table = result.table.set_index("segment")
    assert table["fpr"].to_dict() == pytest.approx({"A": 0.05, "B": 0.01, "C": 0.10})
    assert table["recall"].to_dict() == pytest.approx({"A": 0.7, "B": 1.0, "C": 0.0})
    assert table["compared"].to_dict() == {"A": True, "B": True, "C": False}
    gap = result.gaps["seg"]
    assert gap.gap == pytest.approx(0.04) and gap.ratio == pytest.approx(5.0)
    assert (gap.highest, gap.lowest) == ("A", "B") and gap.p_value < 1e-6
    assert not result.passed  # 0.04 > 0.03
    # Every segment compared: C's 0.10 against B's 0.01.
    everyone = fairness_check(constructed(GROUPS), ["seg"], min_genuine=1, max_fpr_gap=0.1)
    assert everyone.gaps["seg"].gap == pytest.approx(0.09) and everyone.gaps["seg"].highest == "C"
    assert everyone.passed


def test_equal_rates_give_no_gap_and_a_lone_segment_no_comparison() -> None:
    same = fairness_check(constructed({"A": (1000, 10, 1, 1), "B": (3000, 30, 1, 0)}), ["seg"])
    assert same.gaps["seg"].gap == pytest.approx(0.0) and same.gaps["seg"].p_value == pytest.approx(1.0)
    alone = fairness_check(constructed(GROUPS), ["seg"], min_genuine=1500)
    assert math.isnan(alone.gaps["seg"].gap) and alone.gaps["seg"].compared == ("B",) and alone.passed


def test_wilson_interval_matches_the_closed_form() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1.96**2 / (10 + 1.96**2))
    low, high = wilson_interval(50, 1000)
    assert low < 0.05 < high and high - low == pytest.approx(0.0272, abs=5e-4)


def test_retention_cutoff_is_n_days_before_now() -> None:
    now = pd.Timestamp("2026-12-05T12:00:00Z").to_pydatetime()
    assert retention_cutoff(30, now) == pd.Timestamp("2026-11-05T12:00:00Z").to_pydatetime()
    with pytest.raises(ValueError):
        retention_cutoff(0, now)


def test_segments_come_from_the_customer_table_or_a_keyed_hash() -> None:
    cfg = ComplianceConfig()
    bands = age_bands([18, 24, 25, 49, 50, 64, 65, 90], cfg.age_bands)
    assert list(bands) == ["18-24", "18-24", "25-34", "35-49", "50-64", "50-64", "65+", "65+"]
    customers = pd.DataFrame(
        {
            schema.CUSTOMER_ID: [0, 1, 2],
            "age": [30, 70, 19],
            "home_country": ["FR", "DE", "FR"],
            schema.X_CUSTOMER: [10.0, 50.0, 90.0],
            schema.Y_CUSTOMER: [90.0, 50.0, 10.0],
        }
    )
    segs, sources = customer_segments(customers, [2, 0, 1, 0], cfg)
    assert segs[AGE_BAND].astype(str).tolist() == ["25-34", "65+", "18-24"]
    assert segs[REGION].tolist() == ["FR", "DE", "FR"] and SYNTHETIC not in sources.values()
    by_cell, sources = customer_segments(customers.drop(columns=["age", "home_country"]), [0, 1, 2], cfg)
    assert by_cell[REGION].tolist() == ["cell 02", "cell 11", "cell 20"] and sources[AGE_BAND] == SYNTHETIC
    ids = list(range(2000))
    a, src = customer_segments(None, ids, cfg)
    b, _ = customer_segments(None, ids, cfg)
    c, _ = customer_segments(None, ids, cfg.model_copy(update={"segment_key": "other"}))
    assert set(src.values()) == {SYNTHETIC} and a.equals(b) and not a[AGE_BAND].equals(c[AGE_BAND])
    assert a[AGE_BAND].nunique() == 5 and a[REGION].nunique() == 9  # every band and cell is used


# ---------------------------------------------------------------------------------- model card
def _write_run(folder, scores: pd.DataFrame, threshold: float) -> None:
    """A minimal run folder: the files the card reads, with numbers this test knows."""
    (folder / "scores").mkdir(parents=True)
    scores.to_parquet(folder / "scores" / "fold0.parquet", index=False)
    (folder / "run.json").write_text(
        json.dumps({"level": 4, "threshold": threshold, "created": "2026-12-01"})
    )
    metrics = {
        "level": 4,
        "dataset": "simulated",
        "headline_metric": "average_precision",
        "headline_value": 0.6543,
        "threshold": threshold,
        "test": {
            "ensemble": {"average_precision": 0.6543, "average_precision_std": 0.0123, "roc_auc": 0.9321},
            "random_forest": {"average_precision": 0.6111, "roc_auc": 0.9123},
        },
        "folds": [
            {"fold": 0, "periods": {"test": ["2018-05-24", "2018-05-31"]}, "test_rows": 4, "test_frauds": 1}
        ],
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_model_card_of_a_constructed_run_shows_its_metrics_and_exact_segment_rates(tmp_path) -> None:
    n = 4000
    rng = np.random.default_rng(0)
    cust = np.arange(n) % 40
    y = (np.arange(n) % 50 == 0).astype(int)
    score = np.where(y == 1, 0.9, 0.1)
    score[(cust < 20) & (y == 0) & (np.arange(n) % 10 == 1)] = 0.8  # customers 0-19: FPR 10 %
    scores = pd.DataFrame(
        {
            schema.TRANSACTION_ID: np.arange(n),
            schema.TX_DATETIME: pd.Timestamp("2018-05-24"),
            schema.CUSTOMER_ID: cust,
            schema.TX_AMOUNT: rng.uniform(1, 300, n),
            schema.TX_FRAUD: y,
            schema.TX_FRAUD_SCENARIO: y,
            "split": "test",
            "evaluated": True,
            "score_ensemble": score,
        }
    )
    customers = pd.DataFrame(
        {schema.CUSTOMER_ID: np.arange(40), "age": np.where(np.arange(40) < 20, 30, 70), "home_country": "FR"}
    )
    _write_run(tmp_path / "run", scores, threshold=0.5)
    card = build_model_card(tmp_path / "run", ComplianceConfig(min_genuine=100), customers)
    fpr = card.fairness.table.set_index(["segment_type", "segment"])["fpr"]
    genuine_young = ((cust < 20) & (y == 0)).sum()
    flagged_young = ((cust < 20) & (y == 0) & (np.arange(n) % 10 == 1)).sum()
    assert fpr[(AGE_BAND, "25-34")] == pytest.approx(flagged_young / genuine_young)
    assert fpr[(AGE_BAND, "65+")] == 0.0 and fpr[(REGION, "FR")] == pytest.approx(
        flagged_young / (y == 0).sum()
    )
    assert card.fairness.gaps[AGE_BAND].gap == pytest.approx(flagged_young / genuine_young)
    assert not card.fairness.passed  # a 10 % gap is far above 0.005
    md = card_markdown(card)
    for text in (
        "| ensemble | 0.6543 |",
        "0.654 ± 0.012",
        "0.9321",
        "| random_forest | 0.6111 |",
        "Fairness check FAILED",
    ):
        assert text in md, text
    paths = write_model_card(card, tmp_path / "card" / "model_card.md")
    assert "0.6543" in paths["html"].read_text() and "Model card" in paths["html"].read_text()
    assert pd.read_csv(paths["fairness"])["fpr"].max() == pytest.approx(flagged_young / genuine_young)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A run folder trained by the level's own stages on the small simulation (customers beside)."""
    from level4_fraud import pipeline
    from level4_fraud.tests.integration_helpers import small_config, small_folder

    run = tmp_path_factory.mktemp("compliance") / "run"
    run.mkdir()
    cfg = small_config()
    tx, customers, terminals = pipeline.read_simulation(small_folder())
    runs = [pipeline.train_fold(cfg, f) for f in pipeline.features(cfg, tx, customers, terminals)]
    pipeline.finish_run(cfg, runs, run)
    (run / "data").mkdir(exist_ok=True)
    shutil.copy2(small_folder() / "customers.parquet", run / "data" / "customers.parquet")
    return run


def test_model_card_of_a_real_run_carries_its_metrics_and_segment_figures(real_run) -> None:
    from level4_fraud.train import read_run, read_scores

    metrics = json.loads((real_run / "metrics.json").read_text())
    card = build_model_card(real_run, ComplianceConfig(min_genuine=50))
    md = card_markdown(card)
    for model, values in metrics["test"].items():
        assert f"| {model} | {values['average_precision']:.4g} |" in md, model
    assert f"{metrics['headline_value']:.4g}" in md
    # Segment figures are the run's test rows at its validation threshold, recomputed here.
    scores = read_scores(real_run)
    test = scores[(scores["split"] == "test") & scores["evaluated"]]
    alert = test["score_ensemble"] >= read_run(real_run)["threshold"]
    channels = card.by_segment[card.by_segment["segment_type"] == schema.CHANNEL].set_index("segment")
    assert (
        channels["transactions"].sum() == len(test)
        and channels["frauds"].sum() == test[schema.TX_FRAUD].sum()
    )
    ecom = (test[schema.CHANNEL] == "ecom").to_numpy()
    assert channels.loc["ecom", "average_precision"] == pytest.approx(
        average_precision(test[schema.TX_FRAUD][ecom], test["score_ensemble"][ecom])
    )
    genuine = test[schema.TX_FRAUD] == 0
    regions = card.fairness.table[card.fairness.table["segment_type"] == REGION]
    assert (
        regions["false_positives"].sum() == (alert & genuine).sum()
        and regions["genuine"].sum() == genuine.sum()
    )
    assert card.fairness.sources == {
        AGE_BAND: "customer table (age)",
        REGION: "customer table (home country)",
    }


def test_audit_model_card_command_writes_the_card_and_reports_the_gap(real_run, tmp_path) -> None:
    out = tmp_path / "card.md"
    result = runner.invoke(app, ["audit", "model-card", "--run", str(real_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "fpr_gap[age_band]" in result.output and "fpr_gap[region]" in result.output
    headline = json.loads((real_run / "metrics.json").read_text())["headline_value"]
    assert f"{headline:.4g}" in out.read_text() and out.with_suffix(".html").is_file()
    fairness = pd.read_csv(tmp_path / "card_fairness.csv")
    assert set(fairness["segment_type"]) == {AGE_BAND, REGION}


def test_audit_model_card_of_a_missing_run_is_one_line_exit_2(tmp_path) -> None:
    result = runner.invoke(app, ["audit", "model-card", "--run", str(tmp_path / "none")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output
