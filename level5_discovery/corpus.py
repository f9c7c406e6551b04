"""Papers and the JSONL corpus format (generated or real).

A real corpus is one JSON object per line with at least ``id``, ``title``, ``abstract`` and
``year``; other keys are ignored. Corpora written with ``include_hidden=True`` also carry the
evaluation-only labels (``kind``, ``relations``, ``truth``), which the reader restores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.atomic import atomic_open
from shared.errors import DataError, EmptyDataError, InputFileError, SchemaError

REQUIRED_KEYS: tuple[str, ...] = ("id", "title", "abstract", "year")
PAPER_KINDS: tuple[str, ...] = ("true", "noisy", "contradicting", "review", "irrelevant", "unknown")


@dataclass(frozen=True)
class Paper:
    """One abstract.

    Attributes:
        id: ``P00001`` for generated papers; any string for real corpora.
        year: Publication year.
        title: Title.
        abstract: Abstract text.
        kind: Hidden label (evaluation only): true, noisy, contradicting, review, irrelevant, unknown.
        relations: Hidden: the ``(cause, effect, "+"/"-")`` relations the text states.
        truth: Hidden: whether every stated relation is a true edge with that sign (None: unknown).
    """

    id: str
    year: int
    title: str
    abstract: str
    kind: str = "unknown"
    relations: tuple[tuple[str, str, str], ...] = ()
    truth: bool | None = None

    @property
    def text(self) -> str:
        """Title and abstract, the text retrieval indexes."""
        return f"{self.title}. {self.abstract}"


def _paper_from_record(rec: dict[str, Any], lineno: int, path: Path) -> Paper:
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise SchemaError(
            f"{path}: line {lineno} lacks key(s) {', '.join(missing)} (need {', '.join(REQUIRED_KEYS)})"
        )
    try:
        year = int(rec["year"])
    except (TypeError, ValueError):
        raise SchemaError(f"{path}: line {lineno}: year {rec['year']!r} is not an integer") from None
    relations: tuple[tuple[str, str, str], ...] = ()
    if isinstance(rec.get("relations"), list):
        try:
            relations = tuple((str(c), str(e), str(s)) for c, e, s in rec["relations"])
        except (TypeError, ValueError):
            raise SchemaError(
                f"{path}: line {lineno}: relations must be [cause, effect, sign] triples"
            ) from None
    truth = rec.get("truth")
    return Paper(
        id=str(rec["id"]),
        year=year,
        title=str(rec["title"] or ""),
        abstract=str(rec["abstract"] or ""),
        kind=str(rec.get("kind", "unknown")),
        relations=relations,
        truth=bool(truth) if isinstance(truth, bool) else None,
    )


def read_corpus_jsonl(path: str | os.PathLike[str]) -> list[Paper]:
    """Read a JSONL corpus.

    Args:
        path: File with one JSON object per line (blank lines skipped).

    Returns:
        The papers in file order.

    Raises:
        InputFileError: The file is missing or unreadable.
        DataError: A line is not a JSON object (the message names the line).
        SchemaError: A line lacks a required key or has a non-integer year.
        EmptyDataError: The file holds no paper.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"corpus file not found: {p}")
    papers: list[Paper] = []
    try:
        with p.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{p}: line {lineno} is not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{p}: line {lineno} is not a JSON object")
                papers.append(_paper_from_record(rec, lineno, p))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"cannot read corpus {p}: {type(exc).__name__}") from None
    if not papers:
        raise EmptyDataError(f"corpus {p} holds no papers")
    return papers


def paper_record(paper: Paper, *, include_hidden: bool = False) -> dict[str, Any]:
    """The JSON record of a paper (public keys, plus the hidden labels when asked)."""
    rec: dict[str, Any] = {
        "id": paper.id,
        "title": paper.title,
        "abstract": paper.abstract,
        "year": paper.year,
    }
    if include_hidden:
        rec["kind"] = paper.kind
        rec["relations"] = [list(r) for r in paper.relations]
        rec["truth"] = paper.truth
    return rec


def write_corpus_jsonl(
    papers: Iterable[Paper], path: str | os.PathLike[str], *, include_hidden: bool = False
) -> Path:
    """Write papers as JSONL atomically.

    Args:
        papers: The papers.
        path: Destination.
        include_hidden: Also write ``kind``, ``relations`` and ``truth`` (evaluation only).

    Returns:
        The path written.
    """
    with atomic_open(path, "w") as fh:
        for paper in papers:
            fh.write(
                json.dumps(paper_record(paper, include_hidden=include_hidden), ensure_ascii=False) + "\n"
            )
    return Path(path)
