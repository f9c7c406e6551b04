"""`read_measurements`: per-row interventions from a column or a file, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from level5_discovery.measurements import read_measurements
from shared.errors import DataError, EmptyDataError, InputFileError, SchemaError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_values_and_the_intervention_column(tmp_path: Path) -> None:
    csv = write(
        tmp_path, "m.csv", "A,B,intervention,C\n1,2,,3\n4,5,B,6\n7,8,none,9\n1.5,2.5,Observational,3.5\n"
    )
    m = read_measurements(csv)
    assert m.names == ["A", "B", "C"]
    np.testing.assert_array_equal(m.data, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1.5, 2.5, 3.5]])
    np.testing.assert_array_equal(m.intervened, [-1, 1, -1, -1])
    assert m.data.dtype == float and m.intervened.dtype.kind == "i"


def test_no_intervention_information_means_all_observational(tmp_path: Path) -> None:
    m = read_measurements(write(tmp_path, "m.csv", "x,y\n1,2\n3,4\n"))
    np.testing.assert_array_equal(m.intervened, [-1, -1])


def test_custom_column_name(tmp_path: Path) -> None:
    m = read_measurements(write(tmp_path, "m.csv", "x,y,target\n1,2,y\n3,4,\n"), intervention_column="target")
    assert m.names == ["x", "y"]
    np.testing.assert_array_equal(m.intervened, [1, -1])


def test_separate_file_one_column_per_row(tmp_path: Path) -> None:
    csv = write(tmp_path, "m.csv", "x,y,z\n1,2,3\n4,5,6\n7,8,9\n")
    iv = write(tmp_path, "iv.csv", "target\nz\n\nx\n")
    np.testing.assert_array_equal(read_measurements(csv, iv).intervened, [2, -1, 0])


def test_separate_file_row_variable_pairs(tmp_path: Path) -> None:
    csv = write(tmp_path, "m.csv", "x,y,z\n1,2,3\n4,5,6\n7,8,9\n")
    iv = write(tmp_path, "iv.csv", "row,variable\n2,y\n0,z\n")
    np.testing.assert_array_equal(read_measurements(csv, iv).intervened, [2, -1, 1])


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_measurements(tmp_path / "nope.csv")
    csv = write(tmp_path, "m.csv", "x,y\n1,2\n")
    with pytest.raises(InputFileError, match="interventions file not found"):
        read_measurements(csv, tmp_path / "nope_iv.csv")


def test_non_numeric_columns_are_named(tmp_path: Path) -> None:
    csv = write(tmp_path, "m.csv", "x,label,y,kind\n1,a,2,u\n3,b,4,v\n")
    with pytest.raises(SchemaError, match="'label', 'kind'") as err:
        read_measurements(csv)
    assert "\n" not in str(err.value)


def test_one_variable_is_too_few(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least 2"):
        read_measurements(write(tmp_path, "m.csv", "x,intervention\n1,\n2,x\n"))


def test_empty_data(tmp_path: Path) -> None:
    with pytest.raises(EmptyDataError, match="no data rows"):
        read_measurements(write(tmp_path, "m.csv", "x,y\n"))
    with pytest.raises(EmptyDataError, match="empty"):
        read_measurements(write(tmp_path, "e.csv", ""))


def test_missing_values_report_the_row_count(tmp_path: Path) -> None:
    csv = write(tmp_path, "m.csv", "x,y\n1,\n2,3\nNA,4\n5,6\n")
    with pytest.raises(DataError, match="2 row"):
        read_measurements(csv)


def test_unknown_intervened_variable(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown variable.*'Q'"):
        read_measurements(write(tmp_path, "m.csv", "x,y,intervention\n1,2,Q\n3,4,\n"))
    csv = write(tmp_path, "n.csv", "x,y\n1,2\n3,4\n")
    with pytest.raises(DataError, match=r"unknown variable.*'W'"):
        read_measurements(csv, write(tmp_path, "iv.csv", "row,variable\n0,W\n"))


def test_row_count_mismatch(tmp_path: Path) -> None:
    csv = write(tmp_path, "m.csv", "x,y\n1,2\n3,4\n5,6\n")
    with pytest.raises(DataError, match="2 rows but the data has 3"):
        read_measurements(csv, write(tmp_path, "iv.csv", "t\nx\ny\n"))
    with pytest.raises(DataError, match="row 7"):
        read_measurements(csv, write(tmp_path, "iv2.csv", "row,variable\n7,x\n"))
