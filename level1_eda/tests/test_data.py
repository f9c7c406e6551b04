"""Loading: encodings, delimiters, and every unreadable-file case raises a clear UserError."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from level1_eda.data import detect_delimiter, detect_encoding, load_csv, penguins_csv
from shared.errors import EmptyDataError, InputFileError


def test_penguins_written_once_and_loaded_as_any_csv(penguins_path: Path) -> None:
    loaded = load_csv(penguins_path)
    assert loaded.frame.shape == (344, 8)
    assert loaded.frame["species"].value_counts().to_dict() == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}
    assert int(loaded.frame["sex"].isna().sum()) == 11  # "NA" in the file is a missing value
    assert loaded.warnings == []
    before = penguins_path.stat().st_mtime_ns
    penguins_csv(penguins_path.parent)  # raw data is immutable: not rewritten
    assert penguins_path.stat().st_mtime_ns == before


def test_latin1_semicolon_file_is_decoded_with_warnings(tmp_path: Path) -> None:
    path = tmp_path / "fr.csv"
    text = "ville;température;catégorie\n" + "".join(f"Île-{i};{20 + i % 7},5;élevé\n" for i in range(50))
    path.write_bytes(text.encode("cp1252"))
    loaded = load_csv(path)
    assert list(loaded.frame.columns) == ["ville", "température", "catégorie"]
    assert loaded.frame["ville"].iloc[0] == "Île-0"
    assert loaded.delimiter == ";"
    assert any("not UTF-8" in w for w in loaded.warnings)
    assert any("delimiter is ';'" in w for w in loaded.warnings)


def test_utf8_bom_and_tab_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_bytes("\ufeffa\tb\n1\tx\n2\ty\n".encode())
    loaded = load_csv(path)
    assert list(loaded.frame.columns) == ["a", "b"]
    assert loaded.encoding == "utf-8-sig"


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", EmptyDataError, "empty"),
        (b"a,b,c\n", EmptyDataError, "no data rows"),
        (b"   \n\n", EmptyDataError, "blank"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", InputFileError, "binary"),
        (b"a,a,b\n1,2,3\n", InputFileError, "duplicate column"),
    ],
)
def test_bad_files_raise_user_errors(tmp_path: Path, content: bytes, error: type, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(error, match=message):
        load_csv(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(InputFileError, match="directory"):
        load_csv(tmp_path)


def test_detectors_known_answers() -> None:
    assert detect_encoding(b"a,b\n1,2\n") == "utf-8"
    assert detect_encoding("é".encode()[:1]) == "utf-8"  # cut inside a character is still UTF-8
    assert detect_delimiter("a;b;c\n1;2;3\n4;5;6\n") == ";"
    assert detect_delimiter("a|b\n1|2\n") == "|"
    assert detect_delimiter("single\n1\n2\n") == ","


def test_quoted_fields_with_commas_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame({"name": ["Smith, J.", 'He said "hi"'], "n": [1, 2]})
    path = tmp_path / "q.csv"
    df.to_csv(path, index=False)
    loaded = load_csv(path)
    assert loaded.frame["name"].astype(str).tolist() == ["Smith, J.", 'He said "hi"']


def test_short_rows_fall_back_to_the_forgiving_parser(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")  # pyarrow refuses a short row; pandas fills it with NaN
    frame = load_csv(path).frame
    assert frame.shape == (2, 3) and pd.isna(frame.loc[1, "c"])


def test_unparsable_rows_raise_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(InputFileError, match="cannot parse"):
        load_csv(path)
