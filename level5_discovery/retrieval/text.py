"""Text handling shared by the retrieval modules: tokenising for BM25, sentences, gene names.

The tokenizer keeps identifier-like words (anything with a digit: ``G07``, ``TP53``, ``IL6``)
whole and upper-cased, so a gene name is one exact token whatever its case in the query; other
words are lower-cased, stop words dropped and a light suffix stemmer folds inflections
("regulates", "regulated", "regulation" -> "regul"). No stemming library is installed
(PyStemmer, NLTK), hence the small rule list below; it only has to be consistent between
documents and queries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bm25s.stopwords import STOPWORDS_EN

_WORD = re.compile(r"[A-Za-z0-9]+")
_GENE = re.compile(r"\b(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z][A-Za-z0-9]*\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_STOP = frozenset(STOPWORDS_EN) | frozenset({"does", "do", "did", "which", "what", "how", "whether", "s"})
# Longest first: the first matching suffix is stripped, with a replacement where one is needed.
_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("ational", ""),
    ("ations", ""),
    ("ation", ""),
    ("ators", ""),
    ("ator", ""),
    ("ities", ""),
    ("ity", ""),
    ("ates", ""),
    ("ated", ""),
    ("ating", ""),
    ("ate", ""),
    ("ions", ""),
    ("ion", ""),
    ("ings", ""),
    ("ing", ""),
    ("ies", "y"),
    ("ied", "y"),
    ("ed", ""),
    ("ers", ""),
    ("er", ""),
    ("es", ""),
    ("ly", ""),
    ("s", ""),
)
_MIN_STEM = 3


def stem(word: str) -> str:
    """A light suffix-stripping stem of a lower-case word (stems keep at least 3 letters)."""
    if word.endswith("ss") or len(word) <= _MIN_STEM + 1:
        return word
    for suffix, repl in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
            return word[: len(word) - len(suffix)] + repl
    return word


def tokenize(text: str) -> list[str]:
    """BM25 tokens of ``text``: gene-like identifiers upper-cased whole, other words stemmed.

    Example:
        ``tokenize("G03 up-regulates g07 expression")`` -> ``["G03", "up", "regul", "G07", "express"]``.
    """
    tokens = []
    for word in _WORD.findall(text):
        if any(ch.isdigit() for ch in word):
            tokens.append(word.upper())
            continue
        low = word.lower()
        if low in _STOP or len(low) < 2:
            continue
        tokens.append(stem(low))
    return tokens


def tokenize_many(texts: Sequence[str]) -> list[list[str]]:
    """`tokenize` over a list of texts."""
    return [tokenize(t) for t in texts]


def gene_mentions(text: str) -> list[str]:
    """Identifier-like words (letters and digits, e.g. ``G07``) in order of first mention, upper-cased."""
    seen: dict[str, None] = {}
    for match in _GENE.findall(text):
        seen.setdefault(match.upper(), None)
    return list(seen)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (split after ``.``, ``!`` or ``?`` followed by a capital or digit)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
