"""Ingest: the mess the simulator injected is found and counted, bad rows are quarantined, broken
sources stop the run with one clear message, and the normalisers give known answers."""

from __future__ import annotations

import json
import os
import shutil
import stat

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from level2_churn.clean import normalise_category, normalise_ids, parse_dates, parse_timestamps
from level2_churn.ingest import load_and_clean, read_dq_report, read_meta
from level2_churn.tests.world import small_world, tiny_raw
from level2_churn.validate import CLEAN_SCHEMAS
from shared.errors import InputFileError, SchemaError

# ---------------------------------------------------------------------------------------------
# on a simulated world


def test_detected_mess_matches_what_the_simulator_injected():
    _, _, summary, result = small_world()
    found = result.dq.groupby(["source", "rule"])["count"].sum()
    for source, kinds in summary.mess.items():
        for kind, injected in kinds.items():
            detected = int(found.get((source, kind), 0))
            if kind == "unit_mistake" and source == "usage":
                # Minutes logged in seconds are only detectable when they exceed a plausible length.
                assert 0.85 * injected <= detected <= injected, (source, kind, injected, detected)
            else:
                assert detected == pytest.approx(injected, rel=0.02, abs=2), (
                    source,
                    kind,
                    injected,
                    detected,
                )


def test_every_raw_row_is_kept_dropped_or_quarantined():
    _, clean, _, result = small_world()
    dq = result.dq
    for source in ("customers", "billing", "support", "usage"):
        dropped = dq[(dq.source == source) & (dq.action == "dropped")]["count"].sum()
        quarantined = dq[(dq.source == source) & (dq.action == "quarantined")]["count"].sum()
        assert result.rows_in[source] == result.rows_out[source] + dropped + quarantined, source
        q = pd.read_parquet(clean / "quarantine" / f"{source}.parquet")
        assert len(q) == quarantined == result.quarantined[source]
    billing_q = pd.read_parquet(clean / "quarantine" / "billing.parquet")
    orphans = billing_q[billing_q["_rule"] == "orphan"]
    assert len(orphans) > 0
    # Quarantine keeps the raw values: an orphan's customer is really unknown.
    known = set(pd.read_parquet(clean / "customers.parquet")["customer_num"])
    nums, _, _ = normalise_ids(orphans["customer_id"])
    assert not set(nums) & known
    assert set(billing_q["_rule"]) >= {"orphan", "outlier"}
    usage_q = pd.read_parquet(clean / "quarantine" / "usage.parquet")
    assert set(usage_q["_rule"]) >= {"orphan", "outlier"}


def test_clean_tables_meet_their_contract():
    _, clean, _, result = small_world()
    customers = pd.read_parquet(clean / "customers.parquet")
    CLEAN_SCHEMAS["customers"].validate(customers)
    assert customers["customer_id"].str.fullmatch(r"C\d{7}").all()
    for source in ("billing", "support", "usage"):
        df = pd.read_parquet(clean / source)
        df = df.drop(columns=[c for c in df.columns if c == "bucket"])
        CLEAN_SCHEMAS[source].validate(df)
        assert df["customer_num"].isin(customers["customer_num"]).all()
        assert len(df) == result.rows_out[source]
    usage = pd.read_parquet(clean / "usage")
    assert not usage.duplicated(["customer_num", "date"]).any()
    meta = read_meta(clean)
    assert meta["data_start"] == "2023-01-01" and meta["data_end"] == "2024-01-01"
    report = json.loads((clean / "dq_report.json").read_text())
    assert set(report["sources"]) == {"customers", "billing", "support", "usage"}
    assert read_dq_report(clean).equals(result.dq)


# ---------------------------------------------------------------------------------------------
# broken sources


@pytest.fixture
def raw_copy(tmp_path):
    dst = tmp_path / "raw"
    shutil.copytree(tiny_raw(), dst)
    return dst


def _rewrite_parquet(path, fn):
    table = pq.read_table(path)
    pq.write_table(fn(table), path)


def _break_and_expect(raw, tmp_path, error, *words):
    out = tmp_path / "clean"
    with pytest.raises(error) as exc:
        load_and_clean(raw, out)
    message = str(exc.value)
    assert "\n" not in message
    for w in words:
        assert w in message, message
    assert not out.exists()  # nothing half-written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clean")]


def test_tiny_raw_ingests(raw_copy, tmp_path):
    res = load_and_clean(raw_copy, tmp_path / "clean")
    assert res.rows_out["customers"] == 300


def test_clean_folder_replaces_the_old_one_with_normal_permissions(raw_copy, tmp_path):
    out = tmp_path / "out" / "clean"
    out.mkdir(parents=True)
    (out / "stale.parquet").write_text("from an earlier run")
    old_mask = os.umask(0o022)
    try:
        load_and_clean(raw_copy, out)
    finally:
        os.umask(old_mask)
    assert not (out / "stale.parquet").exists() and (out / "dq_report.json").is_file()
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # not mkdtemp's 0700: other users can read it
    assert [p.name for p in out.parent.iterdir()] == ["clean"]  # no temporary or old folder left


def test_missing_file(raw_copy, tmp_path):
    (raw_copy / "customers.csv").unlink()
    _break_and_expect(raw_copy, tmp_path, InputFileError, "customers", "not found")


def test_missing_folder(raw_copy, tmp_path):
    shutil.rmtree(raw_copy / "usage")
    _break_and_expect(raw_copy, tmp_path, InputFileError, "usage", "not found")


def test_missing_column(raw_copy, tmp_path):
    part = next((raw_copy / "billing").glob("*.parquet"))
    _rewrite_parquet(part, lambda t: t.drop_columns(["amount"]))
    _break_and_expect(raw_copy, tmp_path, SchemaError, "billing", "'amount'", "missing")


def test_missing_csv_column(raw_copy, tmp_path):
    df = pd.read_csv(raw_copy / "customers.csv", dtype=str).drop(columns=["contract"])
    df.to_csv(raw_copy / "customers.csv", index=False)
    _break_and_expect(raw_copy, tmp_path, SchemaError, "customers", "'contract'")


def test_wrong_type_parquet(raw_copy, tmp_path):
    part = next((raw_copy / "usage").rglob("*.parquet"))

    def as_text(t):
        i = t.column_names.index("minutes")
        return t.set_column(i, "minutes", pa.array(["lots"] * t.num_rows))

    _rewrite_parquet(part, as_text)
    _break_and_expect(raw_copy, tmp_path, SchemaError, "usage", "'minutes'", "numbers")


def test_wrong_type_csv(raw_copy, tmp_path):
    df = pd.read_csv(raw_copy / "customers.csv", dtype=str)
    df["monthly_price"] = "cheap"
    df.to_csv(raw_copy / "customers.csv", index=False)
    _break_and_expect(raw_copy, tmp_path, SchemaError, "customers", "'monthly_price'")


def test_wrong_type_time(raw_copy, tmp_path):
    part = next((raw_copy / "billing").glob("*.parquet"))

    def as_float(t):
        i = t.column_names.index("loaded_at")
        return t.set_column(i, "loaded_at", pa.array(np.ones(t.num_rows)))

    _rewrite_parquet(part, as_float)
    _break_and_expect(raw_copy, tmp_path, SchemaError, "billing", "'loaded_at'")


def test_unreadable_jsonl(raw_copy, tmp_path):
    part = next((raw_copy / "support").glob("*.jsonl"))
    part.write_bytes(b"\x00\x01{not json at all\n")
    _break_and_expect(raw_copy, tmp_path, InputFileError, "support", "cannot read", part.name)


def test_unreadable_parquet(raw_copy, tmp_path):
    part = next((raw_copy / "billing").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    _break_and_expect(raw_copy, tmp_path, InputFileError, "billing", "cannot read", part.name)


def test_a_few_bad_cells_are_quarantined_not_fatal(raw_copy, tmp_path):
    df = pd.read_csv(raw_copy / "customers.csv", dtype=str)
    df.loc[0, "monthly_price"] = "n/a"
    df.loc[1, "signup_date"] = "yesterday"
    df.loc[2, "customer_id"] = "???"
    df.loc[3, "contract"] = "lifetime"
    df.to_csv(raw_copy / "customers.csv", index=False)
    res = load_and_clean(raw_copy, tmp_path / "clean")
    q = pd.read_parquet(tmp_path / "clean" / "quarantine" / "customers.parquet")
    assert sorted(q["_rule"]) == ["bad_date", "bad_id", "bad_value", "unknown_category"]
    assert q.loc[q["_rule"] == "bad_date", "signup_date"].tolist() == ["yesterday"]
    assert res.rows_out["customers"] == res.rows_in["customers"] - 4 - int(
        res.dq.query("source == 'customers' and action == 'dropped'")["count"].sum()
    )


# ---------------------------------------------------------------------------------------------
# normalisers: known answers


def test_normalise_ids():
    num, fixed, bad = normalise_ids(
        pd.Series(["C0000123", "c-123", "123", "cust_0000123", "C0000123 ", "N/A", None])
    )
    assert num.tolist() == [123, 123, 123, 123, 123, -1, -1]
    assert fixed.tolist() == [False, True, True, True, True, False, False]
    assert bad.tolist() == [False, False, False, False, False, True, True]


def test_normalise_category():
    clean, fixed, missing, unknown = normalise_category(
        pd.Series(["monthly", "Month-to-month", " MONTHLY", "2-year", None, "forever"]), "contract"
    )
    assert clean.tolist() == ["monthly", "monthly", "monthly", "two_year", None, None]
    assert fixed.tolist() == [False, True, True, True, False, False]
    assert missing.tolist() == [False, False, False, False, True, False]
    assert unknown.tolist() == [False, False, False, False, False, True]


def test_parse_timestamps_to_utc():
    ts, fixed, bad = parse_timestamps(
        pd.Series(
            [
                "2024-01-05T10:00:00Z",
                "2024-01-05T12:00:00+02:00",
                "2024-01-05 05:00:00-05:00",
                1704448800000,
                "soon",
                None,
            ],
            dtype=object,
        )
    )
    expected = pd.Timestamp("2024-01-05 10:00:00")
    assert (ts.iloc[:4] == expected).all()
    assert fixed.tolist() == [False, True, True, True, False, False]
    assert bad.tolist() == [False, False, False, False, True, False]
    assert ts.iloc[4:].isna().all()


def test_parse_dates_formats():
    d, fixed, bad = parse_dates(
        pd.Series(["2024-03-07", "2024/03/07", "07 Mar 2024", "20240307", "Mar 07, 2024", "?", None])
    )
    assert (d.iloc[:5] == pd.Timestamp("2024-03-07")).all()
    assert fixed.tolist() == [False, True, True, True, True, False, False]
    assert bad.tolist() == [False, False, False, False, False, True, False]
