"""The real-time scorer (`serving.scorer`, `serving.online`, `serving.explain`, `serving.rules`) on
a small run folder: thresholds, reasons, fallbacks, and agreement with the batch ``predict``."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from level4_fraud.serving.schemas import TransactionIn
from level4_fraud.tests.serving_helpers import assert_read_matches_feast, payload, serving_config, serving_run

pytestmark = pytest.mark.slow  # the run folder takes about a minute to build (once per session)


@pytest.fixture(scope="module")
def run():
    return serving_run()


@pytest.fixture(scope="module")
def scorer(run):
    from level4_fraud.serving.scorer import FraudScorer

    return FraudScorer.from_run(run.run_dir, serving_config(run))


@pytest.fixture(scope="module")
def replay(run):
    return run.replay()


def _tx(row, **changes) -> TransactionIn:
    return TransactionIn.model_validate({**payload(row), **changes})


# ------------------------------------------------------------------------------------ thresholds
def test_decline_threshold_is_the_lowest_with_the_asked_precision():
    from level4_fraud.serving.scorer import decline_threshold

    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0])
    # precision from the top: 1, 1, 1, .75, .8, .67, .57, .63, .56, .5
    assert decline_threshold(scores, labels, review=0.2, precision=0.8, min_alerts=1) == 0.6
    assert decline_threshold(scores, labels, review=0.2, precision=0.8, min_alerts=6) is None
    assert decline_threshold(scores, labels, review=0.85, precision=0.8, min_alerts=1) == 0.9
    assert decline_threshold(scores, labels, review=0.2, precision=1.0, min_alerts=1) == 0.8


def test_decisions_follow_the_runs_validation_thresholds(run, scorer, replay):
    import json

    stored = json.loads((run.run_dir / "run.json").read_text())["threshold"]
    t = scorer.thresholds
    assert t.review == pytest.approx(stored)
    assert t.decline is None or t.decline >= t.review
    decisions = [scorer.score(_tx(row)) for _, row in replay.head(150).iterrows()]
    for d in decisions:
        expected = "decline" if t.decline is not None and d.score >= t.decline else None
        expected = expected or ("review" if d.score >= t.review else "approve")
        assert d.decision == expected, d
        assert 0.0 <= d.score <= 1.0 and d.latency_ms > 0
    assert {d.decision for d in decisions} >= {"approve"}


def test_a_huge_amount_is_declined_or_reviewed_with_the_amount_as_reason(scorer, replay):
    row = replay.iloc[0]
    d = scorer.score(_tx(row, TX_AMOUNT=5_000.0))
    assert d.decision in ("review", "decline")
    top = {r.feature: r for r in d.reasons}
    assert {"TX_AMOUNT", "AMOUNT_TO_CUSTOMER_MEAN"} & set(top), d.reasons
    assert d.reasons[0].contribution > 0


# ------------------------------------------------------------------------------------ reasons
def test_reason_codes_name_real_inputs_and_point_the_way_of_the_score(scorer, replay):
    inputs = set(scorer.fast.numeric) | {c for c, _ in scorer.fast.onehot}
    alerts, quiet = [], []
    for _, row in replay.iterrows():
        d = scorer.score(_tx(row))
        assert len(d.reasons) <= scorer.cfg.reasons
        for r in d.reasons:
            assert r.feature in inputs
            assert r.text and r.text.endswith("the fraud risk.") and math.isfinite(r.contribution)
        (alerts if d.decision != "approve" else quiet).append(d)
        if len(alerts) >= 5 and len(quiet) >= 50:
            break
    assert alerts, "the replay day should hold some alerts"
    for d in alerts:  # an alert is explained by what raised its risk
        assert d.reasons[0].contribution > 0
        assert sum(r.contribution for r in d.reasons) > 0
    # A typical approval is not explained by large pushes towards fraud.
    low = [d for d in quiet if d.score < 0.01]
    assert low and np.median([sum(r.contribution for r in d.reasons) for d in low]) < 0.5


def test_occlusion_contribution_is_the_log_odds_change_of_one_substitution(scorer, replay):
    from level4_fraud.serving.explain import logit

    tx = _tx(replay.iloc[3], TX_AMOUNT=900.0)
    values = scorer.source.features(tx).values
    x = scorer.fast.vector(values)
    c = scorer.fast.explainer.contributions(x)
    j = scorer.fast.numeric.index("TX_AMOUNT")
    y = x.copy()
    y[j] = scorer.fast.typical[j]
    expected = logit(scorer.fast.predict(x[None, :])[0]) - logit(scorer.fast.predict(y[None, :])[0])
    assert c[j] == pytest.approx(expected, abs=1e-6)
    assert c[j] > 0  # 900 is far above the typical amount


# ------------------------------------------------------------------------------------ fallbacks
def test_reasons_are_worded_with_the_runs_windows_and_label_delay(run, replay, tmp_path):
    """A run trained with a 3-day label delay: its reasons say so, and call a terminal without a
    known fraud by the run's own fill (30 + 3 days), as its features are served."""
    import json

    from level4_fraud.serving.explain import Phrasing
    from level4_fraud.serving.scorer import FraudScorer

    folder = run.copy(tmp_path / "run")
    info = json.loads((folder / "run.json").read_text())
    info["features"]["delay_days"] = 3
    (folder / "run.json").write_text(json.dumps(info))
    scorer = FraudScorer.from_run(folder, serving_config(run))
    windows = tuple(int(w) for w in info["features"]["windows"])
    expected = Phrasing(windows, 3)
    assert scorer.fast.explainer.phrasing == expected
    assert scorer.ensemble is not None and scorer.ensemble.phrasing == expected  # the grey zone's
    assert scorer.source.recency_fill == expected.no_known_fraud == max(windows) + 3
    tx = _tx(replay.iloc[0], TERMINAL_ID=10**9)  # no known fraud: the recency is the fill
    values = scorer.source.features(tx).values
    x = scorer.fast.vector(values)
    p = float(scorer.fast.predict(x[None, :])[0])
    reasons = scorer.fast.explainer.reasons(x, p, values, len(scorer.fast.explainer.groups), alert=False)
    terminal = [r.text for r in reasons if r.feature.startswith("TERMINAL_ID_")]
    assert terminal, reasons
    assert all("3 days ago" in t and "a week ago" not in t for t in terminal), terminal


def test_unknown_card_and_terminal_are_scored_and_flagged(scorer, replay):
    row = replay.iloc[0]
    d = scorer.score(_tx(row, CUSTOMER_ID=10**9))
    assert "unknown_card" in d.flags and "unknown_terminal" not in d.flags
    assert d.decision in ("approve", "review", "decline") and 0 <= d.score <= 1
    d = scorer.score(_tx(row, TERMINAL_ID=10**9))
    assert "unknown_terminal" in d.flags and "unknown_card" not in d.flags
    known = scorer.score(_tx(row))
    assert not {"unknown_card", "unknown_terminal"} & set(known.flags)


def test_online_store_outage_is_flagged_and_still_decided(run, replay, tmp_path):
    from level4_fraud.serving.scorer import FraudScorer

    folder = run.copy(tmp_path / "run")
    scorer = FraudScorer.from_run(folder, serving_config(run))
    row = replay.iloc[0]
    assert "online_store_unavailable" not in scorer.score(_tx(row)).flags
    # The database file is overwritten in place (the open connection sees it): an outage.
    db = folder / "feature_store" / "online.db"
    with open(db, "r+b") as fh:
        fh.write(b"\0" * 4096)
    d = scorer.score(_tx(row))
    assert "online_store_unavailable" in d.flags
    assert d.decision in ("approve", "review", "decline") and 0 <= d.score <= 1
    assert "model_fallback_rules" not in d.flags  # the student still decided, on what was left


def test_a_missing_model_falls_back_to_rules(run, replay, tmp_path):
    from level4_fraud.serving.scorer import FraudScorer

    folder = run.copy(tmp_path / "run")
    (folder / "deep" / "student.onnx").write_bytes(b"not an onnx graph")
    scorer = FraudScorer.from_run(folder, serving_config(run))
    assert scorer.fast is None
    row = replay.iloc[0]
    d = scorer.score(_tx(row, TX_AMOUNT=800.0))
    assert "model_fallback_rules" in d.flags
    assert d.score == pytest.approx(scorer.cfg.rules.high_amount_score)
    assert d.reasons and d.reasons[0].feature == "TX_AMOUNT"
    small = scorer.score(_tx(row, TX_AMOUNT=12.0))
    assert "model_fallback_rules" in small.flags and small.decision == "approve"


def test_a_model_failing_at_request_time_falls_back_to_rules(run, replay):
    from level4_fraud.serving.scorer import FraudScorer

    scorer = FraudScorer.from_run(run.run_dir, serving_config(run))

    def broken(x):
        raise RuntimeError("onnxruntime session lost")

    scorer.fast.predict = broken
    d = scorer.score(_tx(replay.iloc[0]))
    assert "model_fallback_rules" in d.flags and d.decision == "approve"


# ------------------------------------------------------------------------------------ batch agreement
def _online_rows(run, cfg_overrides=None):
    """Replay the last day through a fresh scorer's inputs, in time order (the card state learns
    each transaction after it is decided, as the service does)."""
    from level4_fraud.serving.scorer import FraudScorer

    scorer = FraudScorer.from_run(run.run_dir, serving_config(run, **(cfg_overrides or {})))
    replay = run.replay()
    rows, txs = [], []
    for _, row in replay.iterrows():
        tx = _tx(row)
        rows.append(scorer.source.features(tx).values)
        scorer.observe(tx)
        txs.append(tx)
    return scorer, replay, pd.DataFrame(rows)


@pytest.fixture(scope="module")
def online_rows(run):
    return _online_rows(run)


@pytest.fixture(scope="module")
def batch_features(run):
    from level4_fraud.datasets import feature_frame
    from level4_fraud.predict import load_run, scoring_frame

    loaded = load_run(run.run_dir)
    tx, test_ids, _labels, customers, terminals = scoring_frame(run.replay_day.parent, run.history)
    frame, _ = feature_frame(
        tx, loaded.feature_cfg, customers=customers, terminals=terminals, spec=loaded.spec
    )
    rows = frame[frame["TRANSACTION_ID"].isin(test_ids)]
    return rows.sort_values(["TX_DATETIME", "TRANSACTION_ID"]).reset_index(drop=True)


CARD_AND_REQUEST = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    "CUSTOMER_ID_NB_TX_1DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_7DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_7DAY_WINDOW",
    "CUSTOMER_ID_NB_TX_30DAY_WINDOW",
    "CUSTOMER_ID_AVG_AMOUNT_30DAY_WINDOW",
    "AMOUNT_TO_CUSTOMER_MEAN",
    "SECONDS_SINCE_LAST_TX",
    "TX_HOUR",
    "DISTANCE_FROM_HOME",
    "IS_ECOM",
    "IS_ATM",
    "NEW_DEVICE",
    "NEW_COUNTRY",
    "NEW_TERMINAL",
    "CUSTOMER_ID_NB_TX_1H_WINDOW",
    "SMALL_AMOUNT_BURST_1H",
    "FOREIGN_COUNTRY",
    "AMOUNT_TO_CUSTOMER_HABIT",
    "AMOUNT_ZSCORE_CUSTOMER_HABIT",
    "CUSTOMER_ID_NB_LARGE_SINCE_HABIT",
]


def test_online_card_and_request_features_equal_the_batch_ones(online_rows, batch_features):
    """The card state and the request give exactly the training features (same definitions,
    same history): tolerance 1e-6 relative (float sums in another order)."""
    _, replay, online = online_rows
    assert len(online) == len(batch_features)
    assert (replay["TRANSACTION_ID"].to_numpy() == batch_features["TRANSACTION_ID"].to_numpy()).all()
    for col in CARD_AND_REQUEST:
        np.testing.assert_allclose(
            online[col].to_numpy(dtype=float),
            batch_features[col].to_numpy(dtype=float),
            rtol=1e-6,
            err_msg=col,
        )


def test_online_terminal_windows_are_the_midnight_snapshot(online_rows, batch_features):
    """The terminal windows come from the store's midnight snapshot: the 30-day ones differ from
    the exact delayed windows by one part-day of a week ago, so they agree closely."""
    _, _, online = online_rows
    for w in (7, 30):
        a = online[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"].to_numpy(dtype=float)
        b = batch_features[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"].to_numpy(dtype=float)
        assert np.corrcoef(a, b)[0, 1] > 0.9
        assert np.mean(np.abs(a - b) <= max(2.0, 0.2 * np.median(b))) > 0.9


def test_online_terminal_fraud_recency_is_the_midnight_snapshot_measured_from_the_transaction(
    online_rows, batch_features
):
    """The store holds the times of the terminal's latest and earliest known fraud as of
    midnight; serving measures the days from the transaction itself. So the served value is the
    batch one except where a fraud entered or left the window, or a late label arrived, since
    midnight (one part-day, a week or five weeks ago): rare, and never a missing value."""
    from level4_fraud.features import TERMINAL_RECENCY_FEATURES, recency_fill

    _, _, online = online_rows
    fill = recency_fill()
    for name in TERMINAL_RECENCY_FEATURES:
        a = online[name].to_numpy(dtype=float)
        b = batch_features[name].to_numpy(dtype=float)
        assert np.isfinite(a).all() and (a <= fill).all(), name
        same = np.isclose(a, b, rtol=0, atol=1e-6)
        known = b < fill
        # measured: 95 % and 99 % agree; half the rows know a fraud, 91 % and 98 % of them agree
        assert same.mean() > 0.9, name
        assert known.mean() > 0.3 and same[known].mean() > 0.85, name  # not just "none" agreeing


def test_online_scores_agree_with_batch_predict(run, online_rows):
    """The ensemble on the online inputs against ``predict`` (the ensemble on the batch inputs).

    Tolerance: the inputs differ only in the terminal windows (midnight snapshot against the
    exact window ending a label delay before each transaction), so the scores agree to 0.03 for
    95 % of the transactions and the review decision for 98 %. The fast path (the student)
    adds its distillation error on top: it ranks the transactions as the batch score does
    (Spearman > 0.8) and agrees on the review decision for 95 %.
    """
    from scipy.stats import spearmanr

    from level4_fraud.predict import load_run, score_folder

    scorer, replay, online = online_rows
    loaded = load_run(run.run_dir)
    frame = online.copy()
    for c in loaded.spec.categorical:
        frame[c] = pd.Categorical(frame[c].astype(str))
    frame[list(loaded.spec.numeric)] = frame[list(loaded.spec.numeric)].astype(float)
    online_ensemble = loaded.score(frame)
    batch = score_folder(run.run_dir, run.replay_day.parent, run.history).set_index("TRANSACTION_ID")
    batch_scores = batch.loc[replay["TRANSACTION_ID"], "score"].to_numpy()
    diff = np.abs(online_ensemble - batch_scores)
    assert np.quantile(diff, 0.95) <= 0.03, np.quantile(diff, [0.5, 0.9, 0.95, 0.99])
    review = scorer.thresholds.review
    assert np.mean((online_ensemble >= review) == (batch_scores >= review)) >= 0.98

    student = np.array(
        [scorer.fast.predict(scorer.fast.vector(r)[None, :])[0] for r in online.to_dict("records")]
    )
    assert spearmanr(student, batch_scores).statistic > 0.8
    assert np.mean((student >= review) == (batch_scores >= review)) >= 0.95


def test_the_flows_materialisation_fills_every_online_view_profiles_included(run):
    # The coordinate profiles are stamped at the first day's midnight; a materialisation that
    # started at the first transaction left their online tables empty.
    import sqlite3

    db = run.run_dir / "feature_store" / "online.db"
    with sqlite3.connect(db) as con:
        tables = [t for (t,) in con.execute("select name from sqlite_master where type='table'")]
        counts = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in tables}
    profiles = {t: n for t, n in counts.items() if t.endswith(("card_profile", "terminal_profile"))}
    assert len(profiles) == 2, counts
    assert all(n > 0 for n in counts.values()), counts


def test_the_direct_provider_read_equals_feasts_get_online_features(scorer, replay):
    """`FeastOnlineReader.read` asks Feast's provider itself; its rows, distance and newest
    timestamp must be those of the public ``get_online_features`` for known and unknown keys."""
    cards = [*replay["CUSTOMER_ID"].drop_duplicates().head(40).astype(int), 10**9]
    terms = [*replay["TERMINAL_ID"].drop_duplicates().head(40).astype(int), 10**9 + 1]
    pairs = [*zip(cards, terms, strict=False), (cards[0], terms[-1]), (cards[-1], terms[0])]
    found = sum(assert_read_matches_feast(scorer.source.reader, card, term) for card, term in pairs)
    assert found >= 30  # the comparison covered stored rows, not only misses


def test_the_one_statement_sqlite_read_equals_the_providers_read_of_each_view(scorer, replay):
    """`feast_sqlite.SqliteViews` reads every view in one statement; per view, its timestamp and
    the asked features' values must be those of Feast's provider (one ``online_read`` per view),
    for stored and unknown cards and terminals."""
    reader = scorer.source.reader
    assert reader._sqlite is not None  # the run's store is SQLite: the one-statement path is used
    cards = [*replay["CUSTOMER_ID"].drop_duplicates().head(25).astype(int), 10**9]
    terms = [*replay["TERMINAL_ID"].drop_duplicates().head(25).astype(int), 10**9 + 1]
    stored = 0
    for card, term in zip(cards, terms, strict=True):
        keys = reader.entity_keys(card, term)
        ours = reader._sqlite.read(keys)
        theirs = reader._read_each(keys)
        for (ts, row), (want_ts, want_row), (_, _, names) in zip(ours, theirs, reader._views, strict=True):
            assert ts == want_ts
            if want_row is None:
                assert row is None
                continue
            stored += 1
            assert {n: row[n] for n in names} == {n: want_row[n] for n in names}
    assert stored >= 100  # stored rows were compared, not only misses
