"""JSONL corpus reading and writing, and the reader's one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from level5_discovery.corpus import Paper, read_corpus_jsonl, write_corpus_jsonl
from shared.errors import DataError, EmptyDataError, InputFileError, SchemaError

PAPERS = [
    Paper(
        "P00001",
        2011,
        "G01 activates G02",
        "We show G01 up-regulates G02.",
        "true",
        (("G01", "G02", "+"),),
        True,
    ),
    Paper("P00002", 2015, "Weather", "Rain fell on a Tuesday.", "irrelevant", (), None),
    Paper("P00003", 2019, "ünïcode", "G03 represses G04 (n=3).", "noisy", (("G03", "G04", "-"),), False),
]


def test_round_trip_with_hidden(tmp_path: Path) -> None:
    path = write_corpus_jsonl(PAPERS, tmp_path / "c.jsonl", include_hidden=True)
    assert read_corpus_jsonl(path) == PAPERS


def test_public_write_drops_hidden_labels(tmp_path: Path) -> None:
    path = write_corpus_jsonl(PAPERS, tmp_path / "c.jsonl")
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert all(set(r) == {"id", "title", "abstract", "year"} for r in recs)
    back = read_corpus_jsonl(path)
    assert [p.id for p in back] == ["P00001", "P00002", "P00003"]
    assert all(p.kind == "unknown" and p.relations == () and p.truth is None for p in back)
    assert back[2].title == "ünïcode"


def test_real_layout_extra_keys_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "real.jsonl"
    path.write_text(
        '{"id": 17, "title": "T", "abstract": "A", "year": "2020", "doi": "10.1/x"}\n\n'
        '{"id": "PMC1", "title": "U", "abstract": "B", "year": 1999}\n',
        encoding="utf-8",
    )
    papers = read_corpus_jsonl(path)
    assert papers == [Paper("17", 2020, "T", "A"), Paper("PMC1", 1999, "U", "B")]
    assert papers[0].text == "T. A"


@pytest.mark.parametrize(
    ("content", "error", "fragment"),
    [
        (
            '{"id": "a", "title": "t", "abstract": "x", "year": 2000}\n{"id": "b", oops}\n',
            DataError,
            "line 2",
        ),
        ("[1, 2]\n", DataError, "line 1"),
        ('{"id": "a", "title": "t", "year": 2000}\n', SchemaError, "abstract"),
        ('{"id": "a", "title": "t", "abstract": "x", "year": "soon"}\n', SchemaError, "year"),
        ("", EmptyDataError, "no papers"),
        ("\n  \n", EmptyDataError, "no papers"),
    ],
)
def test_reader_errors_are_one_line(
    tmp_path: Path, content: str, error: type[Exception], fragment: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(error) as exc:
        read_corpus_jsonl(path)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as exc:
        read_corpus_jsonl(tmp_path / "nope.jsonl")
    assert "not found" in str(exc.value) and "\n" not in str(exc.value)


def test_schema_error_is_a_data_error_subclass() -> None:
    # callers catching DataError get both malformed lines and missing keys
    assert issubclass(SchemaError, DataError) and issubclass(EmptyDataError, DataError)
