"""Structured hypotheses: the JSON the LM writes, its strict parser and its canonical text."""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

Sign = Literal["+", "-"]
KEYS = ("cause", "effect", "sign", "evidence")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,39}$")


@dataclass(frozen=True)
class Hypothesis:
    """A causal claim with the passages it rests on.

    Attributes:
        cause: Regulating gene.
        effect: Regulated gene.
        sign: "+" (activates) or "-" (represses).
        evidence: Ids of the cited papers.
        score: Log-probability of the hypothesis text under the LM (0 when not from a model).
    """

    cause: str
    effect: str
    sign: Sign
    evidence: tuple[str, ...]
    score: float = 0.0

    def to_json(self) -> str:
        """The canonical target text, e.g. ``{"cause": "G12", "effect": "G40", "sign": "+", ...}``."""
        return format_hypothesis(self.cause, self.effect, self.sign, self.evidence)


def format_hypothesis(cause: str, effect: str, sign: str, evidence: Collection[str]) -> str:
    """Canonical JSON of a hypothesis (the key order and spacing the LM is trained and constrained on)."""
    return json.dumps({"cause": cause, "effect": effect, "sign": sign, "evidence": list(evidence)})


def parse_hypothesis(
    text: str,
    *,
    genes: Collection[str] | None = None,
    evidence_ids: Collection[str] | None = None,
) -> Hypothesis | None:
    """Parse and validate one hypothesis; None when anything is off.

    Valid means: the whole text (surrounding whitespace aside) is one JSON object with exactly the keys
    cause, effect, sign, evidence; cause and effect are distinct gene-like names (in `genes` when given);
    sign is "+" or "-"; evidence is a non-empty list of distinct id strings (in `evidence_ids` if given).
    """
    try:
        obj = json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(obj, dict) or set(obj) != set(KEYS):
        return None
    cause, effect, sign, evidence = (obj[k] for k in KEYS)
    if not (
        isinstance(cause, str) and isinstance(effect, str) and _NAME.match(cause) and _NAME.match(effect)
    ):
        return None
    if cause == effect or (genes is not None and (cause not in genes or effect not in genes)):
        return None
    if sign not in ("+", "-"):
        return None
    if not isinstance(evidence, list) or not evidence or not all(isinstance(e, str) and e for e in evidence):
        return None
    if len(set(evidence)) != len(evidence):
        return None
    if evidence_ids is not None and not set(evidence) <= set(evidence_ids):
        return None
    return Hypothesis(cause=cause, effect=effect, sign="+" if sign == "+" else "-", evidence=tuple(evidence))
