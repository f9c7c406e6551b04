"""Point-in-time features: no leakage, labels and feature values on hand-made data, output contract."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from level2_churn.features import (
    CATEGORICAL_FEATURES,
    LABEL,
    FeatureConfig,
    build_scoring_snapshot,
    build_snapshots,
    compute_features,
    feature_columns,
    snapshot_dates,
    write_snapshots,
)
from level2_churn.tests.world import small_world
from shared.errors import EmptyDataError

T = pd.Timestamp("2024-04-01")

# ---------------------------------------------------------------------------------------------
# hand-made clean tables


def _customers(rows: list[dict]) -> pd.DataFrame:
    base = {
        "signup_date": pd.Timestamp("2023-01-10"),
        "cancel_date": pd.NaT,
        "plan": "basic",
        "region": "north",
        "age_band": "25-34",
        "channel": "organic",
        "contract": "monthly",
        "monthly_price": 9.99,
        "price_change_date": pd.NaT,
        "price_change_pct": np.nan,
    }
    df = pd.DataFrame([{**base, **r} for r in rows])
    df["customer_id"] = [f"C{n:07d}" for n in df["customer_num"]]
    for c in ("signup_date", "cancel_date", "price_change_date"):
        df[c] = pd.to_datetime(df[c]).astype("datetime64[ns]")
    return df


def _events(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(columns)


USAGE = {
    "customer_num": "int32",
    "date": "datetime64[ns]",
    "loaded_at": "datetime64[ns]",
    "sessions": "int32",
    "minutes": "float64",
    "features_used": "int16",
    "device": "object",
}
BILLING = {
    "customer_num": "int32",
    "ts": "datetime64[ns]",
    "loaded_at": "datetime64[ns]",
    "type": "object",
    "amount": "float64",
    "discount": "float64",
    "plan": "object",
}
SUPPORT = {
    "customer_num": "int32",
    "created_at": "datetime64[ns]",
    "resolved_at": "datetime64[ns]",
    "escalated_at": "datetime64[ns]",
    "category": "object",
    "satisfaction": "float64",
}


def _use(day: str, minutes: float, loaded: str | None = None) -> dict:
    d = pd.Timestamp(day)
    return {
        "customer_num": 1,
        "date": d,
        "loaded_at": pd.Timestamp(loaded) if loaded else d + pd.Timedelta(hours=23),
        "sessions": 1,
        "minutes": minutes,
        "features_used": 3,
        "device": "mobile",
    }


def _txn(ts: str, kind: str, amount: float, loaded: str | None = None) -> dict:
    t = pd.Timestamp(ts)
    return {
        "customer_num": 1,
        "ts": t,
        "loaded_at": pd.Timestamp(loaded) if loaded else t + pd.Timedelta(minutes=5),
        "type": kind,
        "amount": amount,
        "discount": 0.0,
        "plan": "basic",
    }


def test_labels_on_hand_made_customers():
    customers = _customers(
        [
            {"customer_num": 1},  # active, never cancels
            {"customer_num": 2, "cancel_date": "2024-03-31"},  # gone before t
            {"customer_num": 3, "cancel_date": "2024-04-01"},  # cancels on t
            {"customer_num": 4, "cancel_date": "2024-04-30"},  # t + 29 days
            {"customer_num": 5, "cancel_date": "2024-05-01"},  # t + 30 days: outside the window
            {"customer_num": 6, "signup_date": "2024-04-01"},  # not yet a customer at t
            {"customer_num": 7, "signup_date": "2024-03-31", "cancel_date": "2024-04-10"},
        ]
    )
    out = compute_features(customers, _events([], BILLING), _events([], SUPPORT), _events([], USAGE), [T])
    labels = dict(zip(out["customer_id"], out[LABEL], strict=True))
    assert labels == {"C0000001": 0, "C0000003": 1, "C0000004": 1, "C0000005": 0, "C0000007": 1}
    unlabelled = compute_features(
        customers, _events([], BILLING), _events([], SUPPORT), _events([], USAGE), [T], label_days=None
    )
    assert LABEL not in unlabelled and len(unlabelled) == 5


def test_feature_values_on_a_hand_computed_example():
    customers = _customers(
        [
            {
                "customer_num": 1,
                "contract": "annual",
                "price_change_date": "2024-02-01",
                "price_change_pct": 10.0,
            }
        ]
    )
    usage = _events(
        [
            _use("2024-03-31", 10),  # x = -1
            _use("2024-03-25", 20),  # x = -7
            _use("2024-03-24", 30),  # x = -8: in 30 days, not 7
            _use("2024-02-15", 40),  # x = -46: in 90 days, not 30
            _use("2023-12-01", 50),  # more than 90 days back
            _use("2024-03-30", 100, loaded="2024-04-05"),  # late: not known at t
            _use("2024-04-01", 1000),  # at t
        ],
        USAGE,
    )
    billing = _events(
        [
            _txn("2024-01-10", "invoice", 9.99),
            _txn("2024-01-10 01:00", "payment", 9.99),
            _txn("2024-02-10", "invoice", 9.99),
            _txn("2024-02-10 01:00", "payment", 9.99),
            _txn("2024-03-10", "invoice", 10.99),
            _txn("2024-03-10 10:00", "payment_failed", 10.99),
            _txn("2024-03-15", "payment", 10.99),
            _txn("2024-03-20", "payment_failed", 10.99, loaded="2024-04-10"),  # late
            _txn("2024-04-02", "payment_failed", 10.99),  # after t
        ],
        BILLING,
    )
    support = _events(
        [
            {
                "customer_num": 1,
                "created_at": pd.Timestamp("2024-03-01"),
                "resolved_at": pd.Timestamp("2024-03-02"),
                "escalated_at": pd.NaT,
                "category": "billing",
                "satisfaction": 2.0,
            },
            {  # open at t: resolution and score are in the future
                "customer_num": 1,
                "created_at": pd.Timestamp("2024-03-20"),
                "resolved_at": pd.Timestamp("2024-04-03"),
                "escalated_at": pd.Timestamp("2024-04-02"),
                "category": "technical",
                "satisfaction": 5.0,
            },
            {
                "customer_num": 1,
                "created_at": pd.Timestamp("2024-04-05"),
                "resolved_at": pd.NaT,
                "escalated_at": pd.NaT,
                "category": "cancellation",
                "satisfaction": np.nan,
            },
        ],
        SUPPORT,
    )
    row = compute_features(customers, billing, support, usage, [T]).iloc[0]
    expected = {
        "minutes_7d": 30,
        "minutes_30d": 60,
        "minutes_90d": 100,
        "active_days_7d": 2,
        "active_days_30d": 3,
        "active_days_90d": 4,
        "sessions_30d": 3,
        # least squares over x = -7..-1 of (x - mean) * minutes / sum (x - mean)^2 = -30 / 28
        "minutes_slope_7d": -30 / 28,
        "usage_trend_30_90": math.log1p(60) - math.log1p(20),
        "days_since_last_use": 1,
        "features_used_30d": 3,
        "devices_90d": 1,
        "failed_payments_30d": 1,
        "failed_payments_90d": 1,
        "failed_payments_ever": 1,
        "days_since_failed_payment": 21 + 14 / 24,
        "days_since_payment": 17,
        "payments_90d": 3,
        "paid_amount_90d": 9.99 + 9.99 + 10.99,
        "invoices_ever": 3,
        "last_invoice_amount": 10.99,
        "invoice_change_90d": 10.99 / 9.99 - 1,
        "plan_changed_90d": 0,
        "tickets_30d": 1,
        "tickets_90d": 2,
        "tickets_ever": 2,
        "open_tickets": 1,
        "days_since_ticket": 12,
        "billing_tickets_90d": 1,
        "cancellation_tickets_90d": 0,
        "resolution_hours_90d": 24,
        "satisfaction_90d": 2,
        "low_satisfaction_90d": 1,
        "unrated_tickets_90d": 0,
        "escalations_90d": 0,
        "tenure_days": 447,
        "days_to_contract_end": 365 - 447 % 365,
        "price_rise_90d": 1,
        "price_change_pct": 0.10,
        "days_since_price_change": 60,
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, rel=1e-5, abs=1e-5), name
    assert row["plan"] == "basic" and row["contract"] == "annual"


# ---------------------------------------------------------------------------------------------
# leakage: nothing at or after t changes a feature at t


def _clean_tables():
    _, clean, _, _ = small_world()
    tables = {}
    for source in ("billing", "support", "usage"):
        df = pd.read_parquet(clean / source)
        tables[source] = df.drop(columns=[c for c in df.columns if c == "bucket"]).reset_index(drop=True)
    tables["customers"] = pd.read_parquet(clean / "customers.parquet")
    return tables


def _features(tables, t):
    out = compute_features(tables["customers"], tables["billing"], tables["support"], tables["usage"], [t])
    return out.drop(columns=[LABEL]).set_index("customer_id").sort_index()


def test_no_feature_at_t_depends_on_anything_at_or_after_t():
    t = pd.Timestamp("2023-08-01")
    tables = _clean_tables()
    before = _features(tables, t)
    rng = np.random.default_rng(0)
    tb = {k: v.copy() for k, v in tables.items()}

    u = tb["usage"]
    future = (u["date"] >= t) | (u["loaded_at"] >= t)
    late = (u["date"] < t) & (u["loaded_at"] >= t)
    assert future.sum() > 1000 and late.sum() > 20
    u.loc[future, "minutes"] = u.loc[future, "minutes"] * 7 + 3
    u.loc[future, "sessions"] = u.loc[future, "sessions"] + 3
    u.loc[future, "features_used"] = 9
    u.loc[future, "device"] = "tv"
    u.loc[future, "date"] = u.loc[future, "date"] - pd.Timedelta(days=1) * (u.loc[future, "date"] > t)
    extra = u[u["date"] < t].sample(200, random_state=1).assign(date=t, loaded_at=t, minutes=500.0)
    tb["usage"] = pd.concat([u, extra], ignore_index=True)

    b = tb["billing"]
    future = (b["ts"] >= t) | (b["loaded_at"] >= t)
    assert ((b["ts"] < t) & (b["loaded_at"] >= t)).sum() > 5
    b.loc[future, "type"] = "payment_failed"
    b.loc[future, "amount"] = b.loc[future, "amount"] * 3
    b.loc[future, "plan"] = "premium"
    extra = b[b["ts"] < t].sample(200, random_state=2).assign(ts=t, loaded_at=t, type="refund")
    tb["billing"] = pd.concat([b, extra], ignore_index=True)

    s = tb["support"]
    new = s["created_at"] >= t
    resolved_later = (s["created_at"] < t) & ~(s["resolved_at"] < t)
    assert resolved_later.sum() > 3
    s.loc[new, "category"] = "cancellation"
    s.loc[new, "created_at"] = t
    s.loc[resolved_later, "resolved_at"] = t + pd.Timedelta(hours=1)
    s.loc[resolved_later, "satisfaction"] = 1.0
    esc_later = s["escalated_at"] >= t
    s.loc[esc_later, "escalated_at"] = t
    s.loc[s["resolved_at"] >= t, "satisfaction"] = rng.integers(1, 6, (s["resolved_at"] >= t).sum())
    extra = s[s["created_at"] < t].sample(100, random_state=3).assign(created_at=t, resolved_at=pd.NaT)
    tb["support"] = pd.concat([s, extra], ignore_index=True)

    c = tb["customers"]
    later_change = c["price_change_date"] >= t
    c.loc[later_change, "price_change_date"] = t
    c.loc[later_change, "price_change_pct"] = 50.0
    later_cancel = c["cancel_date"] >= t
    c.loc[later_cancel, "cancel_date"] = t + pd.Timedelta(days=400)

    after = _features(tb, t)
    pd.testing.assert_frame_equal(before, after)


def test_changing_a_record_before_t_does_change_features():
    t = pd.Timestamp("2023-08-01")
    tables = _clean_tables()
    before = _features(tables, t)
    for source, time_col, change in (
        ("usage", "date", {"minutes": 777.0}),
        ("billing", "ts", {"type": "payment_failed"}),
        ("support", "created_at", {"category": "cancellation"}),
    ):
        tb = {k: v.copy() for k, v in tables.items()}
        df = tb[source]
        known = (df[time_col] < t) & (df[time_col] >= t - pd.Timedelta(days=20))
        if "loaded_at" in df:
            known &= df["loaded_at"] < t
        for col, value in change.items():
            known &= df[col] != value
        i = df.index[known][0]
        for col, value in change.items():
            df.loc[i, col] = value
        after = _features(tb, t)
        who = tables["customers"].set_index("customer_num").loc[df.loc[i, "customer_num"], "customer_id"]
        assert not before.loc[who].equals(after.loc[who]), source
        others = before.index != who
        pd.testing.assert_frame_equal(before[others], after[others])


# ---------------------------------------------------------------------------------------------
# output contract on the simulated world


def test_build_snapshots_contract(tmp_path):
    _, clean, _, result = small_world()
    df = build_snapshots(clean)
    assert list(df.columns[:3]) == ["customer_id", "snapshot_date", "label"]
    assert df["customer_id"].map(type).eq(str).all()
    assert df["snapshot_date"].dtype == "datetime64[ns]"
    assert set(df[LABEL].unique()) <= {0, 1} and df[LABEL].notna().all()
    assert 0.02 < df[LABEL].mean() < 0.08
    dates = sorted(df["snapshot_date"].unique())
    # 12 months from 2023-01-01: 90 days of history first, a full 30-day label window last.
    assert pd.Timestamp(dates[0]) == pd.Timestamp("2023-04-01")
    assert pd.Timestamp(dates[-1]) == pd.Timestamp("2023-12-01")
    assert len(dates) == 9
    assert not df.duplicated(["customer_id", "snapshot_date"]).any()
    feats = feature_columns(df)
    assert "label" not in feats and "customer_id" not in feats and len(feats) > 40
    for c in CATEGORICAL_FEATURES:
        assert isinstance(df[c].dtype, pd.CategoricalDtype), c
    numeric = [c for c in feats if c not in CATEGORICAL_FEATURES]
    assert all(pd.api.types.is_numeric_dtype(df[c]) for c in numeric)
    # Bucketed (3 buckets) and in-memory computation agree.
    tables = _clean_tables()
    whole = compute_features(
        tables["customers"],
        tables["billing"],
        tables["support"],
        tables["usage"],
        [pd.Timestamp(d) for d in dates],
    ).sort_values(["snapshot_date", "customer_id"], kind="stable")
    pd.testing.assert_frame_equal(df, whole.reset_index(drop=True))
    # Streaming writer: same rows.
    n = write_snapshots(clean, tmp_path / "snap.parquet")
    assert n == len(df)
    assert pd.read_parquet(tmp_path / "snap.parquet")[LABEL].sum() == df[LABEL].sum()
    scoring = build_scoring_snapshot(clean)
    assert LABEL not in scoring
    assert (scoring["snapshot_date"] == result.data_end).all()
    assert list(scoring.columns) == [c for c in df.columns if c != LABEL]


def test_snapshot_dates_and_too_short_data():
    start, end = pd.Timestamp("2023-01-01"), pd.Timestamp("2024-01-01")
    dates = snapshot_dates(start, end, FeatureConfig(first_snapshot="2023-06-01", last_snapshot="2023-09-15"))
    assert [d.strftime("%Y-%m") for d in dates] == ["2023-06", "2023-07", "2023-08", "2023-09"]
    assert snapshot_dates(start, pd.Timestamp("2023-04-15"), FeatureConfig()) == []
    _, clean, _, _ = small_world()
    with pytest.raises(EmptyDataError, match="no labelled snapshot"):
        build_snapshots(clean, FeatureConfig(min_history_days=400))
