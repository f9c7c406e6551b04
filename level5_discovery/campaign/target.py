"""Choosing the drug target from the causal model, with the reasons written down.

A good target is upstream of the disease phenotype *and* lowers it when inhibited. Genes known to
be upstream whose own knockout lowered the phenotype significantly rank first (largest drop
first); genes known upstream only by inference (a chain through another gene) follow, ordered by
literature support; a gene whose knockout *raised* the phenotype is excluded (inhibiting it would
worsen the disease). Each row carries its evidence: the experiments, the effect with its
confidence interval and q-value, and the papers that make claims about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from level5_discovery.investigate import LiteratureClaim

TARGET_COLUMNS = [
    "rank", "gene", "upstream", "tested", "experiments", "phenotype_effect", "ci_low", "ci_high", "q",
    "papers", "eligible", "reason",
]  # fmt: skip


def _papers(gene: str, claims: Sequence[LiteratureClaim]) -> list[str]:
    found: dict[str, None] = {}
    for c in claims:
        if gene in (c.cause, c.effect):
            found.update(dict.fromkeys(c.evidence))
    return list(found)


def _evidence(gene: str, experiments: pd.DataFrame) -> dict[str, Any]:
    own = experiments[experiments["target"] == gene]
    if own.empty:
        return {"tested": False, "experiments": "", "phenotype_effect": np.nan, "ci_low": np.nan,
                "ci_high": np.nan, "q": np.nan}  # fmt: skip
    best = own.loc[own["phenotype_q"].idxmin()]
    return {
        "tested": True,
        "experiments": ";".join(str(int(s)) for s in own["step"]),
        "phenotype_effect": float(own["phenotype_effect"].mean()),
        "ci_low": float(best["phenotype_ci_low"]),
        "ci_high": float(best["phenotype_ci_high"]),
        "q": float(best["phenotype_q"]),
    }


def _reason(row: dict[str, Any], alpha: float) -> tuple[bool, str, float]:
    """(eligible, why, sort key) of one candidate."""
    cites = f"cited by {len(row['papers'])} paper(s)"
    if row["tested"]:
        effect = (
            f"knockout changed the phenotype by {row['phenotype_effect']:+.3f} "
            f"(95% CI {row['ci_low']:+.3f}..{row['ci_high']:+.3f}, q={row['q']:.2g}, "
            f"experiment {row['experiments']})"
        )
        if row["q"] < alpha and row["phenotype_effect"] < 0:
            return True, f"upstream of the phenotype; {effect}; {cites}", row["phenotype_effect"]
        if row["q"] < alpha:
            return False, f"excluded: inhibiting it would raise the phenotype; {effect}", np.inf
        return False, f"excluded: {effect}, not significant", np.inf
    return True, f"upstream of the phenotype by inference (a chain through a tested gene); {cites}", 1.0


def rank_targets(
    upstream: Sequence[str],
    experiments: pd.DataFrame,
    claims: Sequence[LiteratureClaim],
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Candidate targets, best first, with their evidence (``TARGET_COLUMNS``).

    Args:
        upstream: Genes known to be ancestors of the phenotype.
        experiments: The causal phase's ``experiments.csv`` rows.
        claims: The literature claims (for the papers column).
        alpha: Significance level of the phenotype effect.
    """
    rows = []
    for gene in upstream:
        row: dict[str, Any] = {"gene": gene, "upstream": True, **_evidence(gene, experiments)}
        row["papers"] = _papers(gene, claims)
        row["eligible"], row["reason"], row["_key"] = _reason(row, alpha)
        row["_support"] = -len(row["papers"])
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[*TARGET_COLUMNS, "_key", "_support"])
    if frame.empty:
        return frame[TARGET_COLUMNS]
    frame = frame.sort_values(["eligible", "_key", "_support", "gene"], ascending=[False, True, True, True])
    frame["rank"] = np.arange(1, len(frame) + 1)
    frame["papers"] = [",".join(p) for p in frame["papers"]]
    return frame[TARGET_COLUMNS].reset_index(drop=True)
