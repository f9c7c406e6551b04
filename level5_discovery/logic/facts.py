"""Facts of the knowledge base and what the reasoner returns about them.

A fact states one causal claim about an ordered gene pair with its provenance: where it comes
from (``"paper:P00012"``, ``"experiment:7"``, ``"hypothesis:lm"``) and how much it is trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Sign = Literal["+", "-", "0"]
Relation = Literal["edge", "reach", "no_reach"]
ContradictionKind = Literal["sign", "refuted", "refuted_path", "cycle"]

SIGNS: tuple[str, ...] = ("+", "-", "0")
RELATIONS: tuple[str, ...] = ("edge", "reach", "no_reach")
SIGN_TO_INT: dict[str, int] = {"+": 1, "-": -1, "0": 0}
INT_TO_SIGN: dict[int, str] = {1: "+", -1: "-", 0: "0"}


@dataclass(frozen=True)
class Fact:
    """One causal claim with provenance.

    Attributes:
        cause: Gene name of the cause.
        effect: Gene name of the effect.
        sign: ``"+"`` activating, ``"-"`` repressing, ``"0"`` no effect (only with ``no_reach``).
        relation: ``"edge"`` (direct regulation), ``"reach"`` (some directed path: what an
            intervention shows) or ``"no_reach"`` (an intervention on ``cause`` left ``effect`` unchanged).
        source: Provenance, e.g. ``"paper:P00012"``, ``"experiment:7"``, ``"hypothesis:lm"``.
        confidence: Trust in the claim, in ``[0, 1]``.
    """

    cause: str
    effect: str
    sign: Sign
    relation: Relation
    source: str
    confidence: float

    def __post_init__(self) -> None:
        if self.sign not in SIGNS:
            raise ValueError(f"sign must be one of {SIGNS}, got {self.sign!r}")
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
        if (self.relation == "no_reach") != (self.sign == "0"):
            raise ValueError(f"sign '0' goes with relation 'no_reach' and only with it: {self}")
        if self.cause == self.effect:
            raise ValueError(f"a fact needs two different genes, got {self.cause!r} twice")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must lie in [0, 1], got {self.confidence}")
        if not self.source:
            raise ValueError("a fact needs a source")

    def describe(self) -> str:
        """One-line text such as ``G01 -> G02 (+, edge) [paper:P00001, 0.80]``."""
        arrow = "-/->" if self.relation == "no_reach" else ("->" if self.relation == "edge" else "~>")
        where = f"[{self.source}, {self.confidence:.2f}]"
        return f"{self.cause} {arrow} {self.effect} ({self.sign}, {self.relation}) {where}"


@dataclass(frozen=True)
class Derived:
    """An implied relation ``cause ~> effect`` with the sign along its witness path.

    Attributes:
        cause: Start gene.
        effect: End gene.
        sign: Product of the step signs along the path (``"+"`` or ``"-"``).
        path: Genes along the witness path, ``cause`` first and ``effect`` last.
        facts: The facts used, one per step, in path order (the provenance trail).
        confidence: Product of the step confidences (the witness is the most confident derivation).
    """

    cause: str
    effect: str
    sign: Sign
    path: tuple[str, ...]
    facts: tuple[Fact, ...]
    confidence: float

    @property
    def sources(self) -> tuple[str, ...]:
        """Sources of the facts on the witness path, in path order."""
        return tuple(f.source for f in self.facts)

    @property
    def length(self) -> int:
        """Number of steps (1 = stated directly)."""
        return len(self.facts)


@dataclass(frozen=True)
class Contradiction:
    """Facts that cannot all hold, with a suggested resolution.

    Attributes:
        kind: ``"sign"`` (opposite signs on one pair), ``"refuted"`` (a claim on a pair that an
            experiment found without effect), ``"refuted_path"`` (a chain of claims implies the
            pair, an experiment found no effect) or ``"cycle"`` (claims that close a directed cycle).
        cause: Cause of the contested pair (for cycles: of the weakest claim on the cycle).
        effect: Effect of the contested pair (for cycles: of the weakest claim on the cycle).
        side_a: Facts on one side (``"+"`` claims; the claims or the chain; the cycle's claims).
        side_b: Facts on the other side (``"-"`` claims; the no-effect results; empty for cycles).
        drop: Facts the resolution suggests setting aside (the less supported side; empty on a tie).
        resolution: The suggestion in words, with the support of each side.
    """

    kind: ContradictionKind
    cause: str
    effect: str
    side_a: tuple[Fact, ...]
    side_b: tuple[Fact, ...]
    drop: tuple[Fact, ...]
    resolution: str

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source involved, sorted and without repeats."""
        return tuple(sorted({f.source for f in (*self.side_a, *self.side_b)}))


def support(facts: Iterable[Fact]) -> float:
    """Support of a set of facts: each source's most confident fact, summed over sources.

    Repeating a claim from the same source adds nothing; independent sources add up (the same
    rule as ``support/4`` in ``programs/support.lp``).
    """
    best: dict[str, float] = {}
    for f in facts:
        best[f.source] = max(best.get(f.source, 0.0), f.confidence)
    return float(sum(best.values()))
