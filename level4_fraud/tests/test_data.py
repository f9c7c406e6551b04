"""The Handbook-layout reader: round trips, unlabelled days, late labels and one-line input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level4_fraud import schema
from level4_fraud.data import (
    apply_late_labels,
    late_labels_from,
    list_day_files,
    read_day,
    read_fdh_folder,
    read_late_labels,
    write_fdh_folder,
)
from level4_fraud.simulate import TRANSACTIONS_DIR, SimulatorConfig, simulate_to_folder
from shared.errors import EmptyDataError, InputFileError, SchemaError, UserError


@pytest.fixture(scope="module")
def small_tx(rich_sim) -> pd.DataFrame:
    """The first 10 days of the session's rich simulation."""
    _, tx, _, _ = rich_sim
    return tx[tx[schema.TX_TIME_DAYS] < 10].reset_index(drop=True)


def _handbook_pickle_frame() -> pd.DataFrame:
    # As in the Handbook's published pickles: ids held as object, a TX_TIME_DAYS of floats.
    return pd.DataFrame(
        {
            "TRANSACTION_ID": [0, 1, 2],
            "TX_DATETIME": pd.to_datetime(
                ["2018-04-01 00:00:31", "2018-04-01 00:02:10", "2018-04-01 00:07:56"]
            ),
            "CUSTOMER_ID": np.array([596, 4961, 2], dtype=object),
            "TERMINAL_ID": np.array([3156, 3412, 1365], dtype=object),
            "TX_AMOUNT": [57.16, 81.51, 146.00],
            "TX_TIME_SECONDS": np.array([31, 130, 476], dtype=object),
            "TX_TIME_DAYS": [0.0, 0.0, 0.0],
            "TX_FRAUD": [0, 0, 1],
            "TX_FRAUD_SCENARIO": [0, 0, 2],
        }
    )


@pytest.mark.parametrize("fmt", ["pkl", "parquet"])
def test_round_trip_through_daily_files(tmp_path, small_tx, fmt) -> None:
    files = write_fdh_folder(small_tx, tmp_path / "fdh", fmt=fmt)
    assert [f.name for f in files][:2] == [f"2018-04-01.{fmt}", f"2018-04-02.{fmt}"] and len(files) == 10
    back = read_fdh_folder(tmp_path / "fdh")
    assert back[schema.LABELLED].all()
    expected = small_tx.assign(**{schema.LABELLED: True})
    for col in schema.CATEGORY_COLUMNS:
        back[col], expected[col] = back[col].astype(str), expected[col].astype(str)
    pd.testing.assert_frame_equal(back, expected)
    assert str(read_fdh_folder(tmp_path / "fdh")[schema.TX_FRAUD].dtype) == "int8"


def test_reads_the_simulators_folder_and_ignores_other_files(tmp_path) -> None:
    summary = simulate_to_folder(
        SimulatorConfig(n_customers=50, n_terminals=100, nb_days=3), tmp_path / "sim"
    )
    folder = tmp_path / "sim" / TRANSACTIONS_DIR
    (folder / "README.txt").write_text("not a day")
    (folder / "2018-04-01.csv").write_text("x")
    tx = read_fdh_folder(folder)
    assert len(tx) == summary.n_transactions
    assert tx[schema.TX_DATETIME].is_monotonic_increasing
    assert (tx[schema.TRANSACTION_ID].to_numpy() == np.arange(len(tx))).all()


def test_unlabelled_days_feed_history_but_carry_no_label(tmp_path, small_tx) -> None:
    write_fdh_folder(small_tx, tmp_path / "fdh", fmt="pkl", unlabelled_days=["2018-04-09", "2018-04-10"])
    assert "TX_FRAUD" not in pd.read_pickle(tmp_path / "fdh" / "2018-04-10.pkl").columns
    tx = read_fdh_folder(tmp_path / "fdh")
    assert len(tx) == len(small_tx)
    late = tx[schema.TX_DATETIME] >= pd.Timestamp("2018-04-09")
    assert (~tx.loc[late, schema.LABELLED]).all() and tx.loc[~late, schema.LABELLED].all()
    assert tx.loc[late, schema.TX_FRAUD].isna().all()
    assert (tx.loc[late, schema.TX_FRAUD_SCENARIO] == schema.SCENARIO_UNKNOWN).all()
    assert (
        tx.loc[~late, schema.TX_FRAUD].to_numpy() == small_tx.loc[~late, schema.TX_FRAUD].to_numpy()
    ).all()
    assert tx[schema.TX_FRAUD].dtype == np.float64
    # a folder of unlabelled days only
    write_fdh_folder(
        small_tx, tmp_path / "test", unlabelled_days=small_tx[schema.TX_DATETIME].dt.date.unique()
    )
    only = read_fdh_folder(tmp_path / "test")
    assert not only[schema.LABELLED].any() and only[schema.TX_FRAUD].isna().all()


def test_reads_the_handbooks_pickle_types_and_a_date_range(tmp_path, small_tx) -> None:
    folder = tmp_path / "fdh"
    folder.mkdir()
    _handbook_pickle_frame().to_pickle(folder / "2018-04-01.pkl")
    day = read_day(folder / "2018-04-01.pkl")
    assert str(day[schema.CUSTOMER_ID].dtype) == "int64" and day[schema.CUSTOMER_ID].tolist() == [
        596,
        4961,
        2,
    ]
    assert day[schema.TX_TIME_DAYS].tolist() == [0, 0, 0] and day[schema.TX_FRAUD].tolist() == [0, 0, 1]
    write_fdh_folder(small_tx, tmp_path / "range")
    part = read_fdh_folder(tmp_path / "range", start="2018-04-03", end="2018-04-05")
    assert part[schema.TX_TIME_DAYS].unique().tolist() == [2, 3, 4]
    with pytest.raises(InputFileError, match="no daily files between"):
        read_fdh_folder(tmp_path / "range", start="2019-01-01")


def _one_line(exc: UserError) -> str:
    assert "\n" not in str(exc)
    return str(exc)


def test_missing_folder_not_a_folder_and_no_daily_files(tmp_path) -> None:
    with pytest.raises(InputFileError, match="no such folder") as e:
        read_fdh_folder(tmp_path / "nope")
    _one_line(e.value)
    (tmp_path / "file.pkl").write_text("x")
    with pytest.raises(InputFileError, match="not a folder"):
        read_fdh_folder(tmp_path / "file.pkl")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(InputFileError, match="no daily files"):
        read_fdh_folder(tmp_path / "empty")


def _folder_with(tmp_path, frame, name="2018-04-01.pkl"):
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    if name.endswith(".pkl"):
        frame.to_pickle(folder / name)
    else:
        frame.to_parquet(folder / name)
    return folder


def test_wrong_schema_names_the_file_and_column(tmp_path) -> None:
    folder = _folder_with(tmp_path, _handbook_pickle_frame().drop(columns=["TERMINAL_ID"]))
    with pytest.raises(SchemaError, match=r"2018-04-01.pkl: missing column\(s\) TERMINAL_ID") as e:
        read_fdh_folder(folder)
    _one_line(e.value)


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("TX_AMOUNT", ["12.5", "lots", "3"], "TX_AMOUNT must be numeric, got 'lots'"),
        ("CUSTOMER_ID", [1.5, 2.0, 3.0], "CUSTOMER_ID must be integer, got fractional values"),
        (
            "TX_DATETIME",
            ["2018-04-01", "yesterday", "2018-04-01"],
            "TX_DATETIME must be a datetime, got 'yesterday'",
        ),
        ("TX_FRAUD", [0, 2, 1], "TX_FRAUD must be 0 or 1, got 2"),
        ("TX_FRAUD", [0, None, 1], "TX_FRAUD has missing values"),
        ("TERMINAL_ID", [1, None, 3], "TERMINAL_ID has missing values"),
    ],
)
def test_wrong_types_are_one_line_schema_errors(tmp_path, column, values, message) -> None:
    frame = _handbook_pickle_frame()
    frame[column] = values
    with pytest.raises(SchemaError) as e:
        read_fdh_folder(_folder_with(tmp_path, frame))
    assert _one_line(e.value) == f"2018-04-01.pkl: column {message}"


def test_an_empty_day_is_an_error(tmp_path, small_tx) -> None:
    folder = tmp_path / "fdh"
    write_fdh_folder(small_tx, folder)
    small_tx.iloc[:0].to_parquet(folder / "2018-04-11.parquet")
    with pytest.raises(EmptyDataError, match=r"^2018-04-11.parquet: no transactions$"):
        read_fdh_folder(folder)


def test_unreadable_files_duplicates_and_non_tables(tmp_path, small_tx) -> None:
    folder = _folder_with(tmp_path, _handbook_pickle_frame())
    (folder / "2018-04-02.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputFileError, match=r"2018-04-02.parquet: unreadable") as e:
        read_fdh_folder(folder)
    _one_line(e.value)
    _handbook_pickle_frame().to_parquet(folder / "2018-04-01.parquet")
    with pytest.raises(InputFileError, match="day 2018-04-01 appears twice"):
        list_day_files(folder)

    other = tmp_path / "dup"
    other.mkdir()
    _handbook_pickle_frame().to_pickle(other / "2018-04-01.pkl")
    _handbook_pickle_frame().to_pickle(other / "2018-04-02.pkl")  # same TRANSACTION_IDs again
    with pytest.raises(SchemaError, match="transaction 0 appears more than once"):
        read_fdh_folder(other)

    lst = tmp_path / "list"
    lst.mkdir()
    pd.to_pickle([1, 2, 3], lst / "2018-04-01.pkl")
    with pytest.raises(SchemaError, match="expected a table of transactions, got list"):
        read_fdh_folder(lst)


def test_late_labels_file_round_trip_and_errors(tmp_path, small_tx) -> None:
    labels = late_labels_from(small_tx, delay_days=7)
    assert list(labels.columns) == list(schema.LATE_LABEL_COLUMNS)
    assert (labels[schema.LABEL_AVAILABLE_FROM] - labels[schema.TX_DATETIME] == pd.Timedelta(days=7)).all()
    for suffix in (".csv", ".parquet", ".pkl"):
        path = tmp_path / f"labels{suffix}"
        {
            ".csv": lambda p: labels.to_csv(p, index=False),
            ".parquet": labels.to_parquet,
            ".pkl": labels.to_pickle,
        }[suffix](path)
        back = read_late_labels(path)
        pd.testing.assert_frame_equal(back, labels)
    with pytest.raises(InputFileError, match="no such file"):
        read_late_labels(tmp_path / "missing.csv")
    labels.drop(columns=[schema.LABEL_AVAILABLE_FROM]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(SchemaError, match=r"bad.csv: missing column\(s\) LABEL_AVAILABLE_FROM"):
        read_late_labels(tmp_path / "bad.csv")
    early = labels.copy()
    early.loc[3, schema.LABEL_AVAILABLE_FROM] = early.loc[3, schema.TX_DATETIME] - pd.Timedelta(hours=1)
    early.to_csv(tmp_path / "early.csv", index=False)
    with pytest.raises(
        SchemaError, match=f"label of transaction {labels.loc[3, 'TRANSACTION_ID']} is available"
    ):
        read_late_labels(tmp_path / "early.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(EmptyDataError, match=r"^empty\.csv: no labels$"):
        read_late_labels(tmp_path / "empty.csv")
    labels.iloc[:0].to_csv(tmp_path / "header.csv", index=False)
    with pytest.raises(EmptyDataError, match=r"^header\.csv: no labels$"):
        read_late_labels(tmp_path / "header.csv")
    (tmp_path / "labels.json").write_text("{}")
    with pytest.raises(InputFileError, match="unknown label file type"):
        read_late_labels(tmp_path / "labels.json")


def test_apply_late_labels_uses_only_labels_available_at_the_date(tmp_path, small_tx) -> None:
    write_fdh_folder(small_tx, tmp_path / "fdh", unlabelled_days=["2018-04-09", "2018-04-10"])
    tx = read_fdh_folder(tmp_path / "fdh")
    labels = late_labels_from(small_tx, delay_days=2)
    as_of = pd.Timestamp("2018-04-11 12:00")
    out = apply_late_labels(tx, labels, as_of=as_of)
    available = small_tx[schema.TX_DATETIME] + pd.Timedelta(days=2) <= as_of
    day9 = small_tx[schema.TX_DATETIME].dt.day.isin([9, 10])
    assert out[schema.LABELLED].to_numpy().tolist() == (~day9 | available).to_numpy().tolist()
    got = out.loc[day9 & available, schema.TX_FRAUD].to_numpy()
    assert (got == small_tx.loc[day9 & available, schema.TX_FRAUD].to_numpy()).all()
    assert out.loc[day9 & ~available, schema.TX_FRAUD].isna().all()
    # labels already in the folder are kept even if the late file disagrees
    flipped = labels.assign(**{schema.TX_FRAUD: 1 - labels[schema.TX_FRAUD]})
    kept = apply_late_labels(tx, flipped)
    assert (
        kept.loc[~day9, schema.TX_FRAUD].to_numpy() == small_tx.loc[~day9, schema.TX_FRAUD].to_numpy()
    ).all()
    assert str(kept[schema.TX_FRAUD].dtype) == "int8"  # every row labelled now
