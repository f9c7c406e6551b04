"""A literature generated from a hidden world: true, noisy, contradicting, review and irrelevant papers.

Each paper is a short abstract in varied wording with gene names verbatim (``G07``). True papers
state real edges with their real sign, but only a ``coverage`` share of the true edges is ever
reported (by true papers or reviews), so experiments are still needed. Noisy papers state a wrong
sign or a non-edge, usually with weak evidence ("a trend", "n = 3"). Contradicting papers come in
pairs stating opposite signs for the same pair of genes. Reviews chain two or three reported
findings along a path. Irrelevant papers are about other topics and name no gene.

Generation draws all random numbers up front as one matrix of uniforms and only formats strings
per paper, so 100,000 abstracts take a few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from level5_discovery.corpus import Paper
from level5_discovery.simulate import World

Relation = tuple[str, str, str]
KINDS: tuple[str, ...] = ("true", "noisy", "contradicting", "review", "irrelevant")


class LiteratureConfig(BaseModel):
    """Settings of a generated corpus; the shares must sum to 1."""

    model_config = ConfigDict(extra="forbid")

    n_papers: int = Field(400, ge=1)
    true_share: float = Field(0.45, ge=0.0, le=1.0)
    noisy_share: float = Field(0.15, ge=0.0, le=1.0)
    contradicting_share: float = Field(0.10, ge=0.0, le=1.0)
    review_share: float = Field(0.10, ge=0.0, le=1.0)
    irrelevant_share: float = Field(0.20, ge=0.0, le=1.0)
    # Share of the true edges that any true paper or review reports.
    coverage: float = Field(0.65, ge=0.0, le=1.0)
    # Share of true papers that report a second (covered) finding.
    two_finding_share: float = Field(0.3, ge=0.0, le=1.0)
    # Noisy papers: share stating a true edge with the wrong sign (the rest state a non-edge).
    wrong_sign_share: float = Field(0.5, ge=0.0, le=1.0)
    # Share of noisy papers whose text carries weak-evidence markers.
    weak_evidence_share: float = Field(0.8, ge=0.0, le=1.0)
    year_low: int = 1995
    year_high: int = 2024

    @model_validator(mode="after")
    def _check(self) -> LiteratureConfig:
        total = self.true_share + self.noisy_share + self.contradicting_share
        total += self.review_share + self.irrelevant_share
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"paper kind shares must sum to 1, got {total:.4f}")
        if self.year_high < self.year_low:
            raise ValueError("year_high must be >= year_low")
        return self


# --- phrase banks -------------------------------------------------------------------------------

_UP = (
    "activates",
    "up-regulates",
    "induces expression of",
    "enhances transcription of",
    "promotes",
    "stimulates",
)
_DOWN = ("represses", "inhibits", "silences", "down-regulates", "suppresses transcription of", "attenuates")
_UP_NOUN = ("activation", "induction", "up-regulation", "positive regulation")
_DOWN_NOUN = ("repression", "inhibition", "silencing", "negative regulation")
_CONTEXT = (
    "HEK293 cells",
    "primary human fibroblasts",
    "hepatocytes",
    "a murine model",
    "intestinal organoids",
    "iPSC-derived neurons",
    "T lymphocytes",
    "breast epithelial cells",
    "zebrafish embryos",
    "patient-derived xenografts",
)
_METHOD = (
    "CRISPR knockout",
    "siRNA knockdown",
    "RNA-seq",
    "quantitative PCR",
    "ChIP-seq",
    "luciferase reporter assays",
    "single-cell RNA-seq",
    "Perturb-seq",
)
_STRONG = (
    "with n = 24 and p < 0.001",
    "across three independent cohorts",
    "with the effect replicated in two cell lines",
    "with an effect size of 1.8 (95% CI 1.2-2.4)",
    "in a pre-registered study of 40 samples",
)
_WEAK = (
    "though only as a non-significant trend (n = 3)",
    "in a small pilot experiment (n = 3, p = 0.08)",
    "although preliminary data only suggest this",
    "in a single unreplicated assay",
    "as a weak trend that did not reach significance",
)
_BACKGROUND = (
    "Transcriptional networks control cellular identity and disease.",
    "Gene regulatory circuits remain incompletely mapped.",
    "How regulatory hubs shape disease progression is poorly understood.",
    "Perturbation studies can reveal causal regulation.",
    "The architecture of stress-response signalling is debated.",
)
_CONCLUSION = (
    "These results place {c} upstream of {e}.",
    "Our findings identify {c} as a regulator of {e}.",
    "This suggests a direct regulatory link from {c} to {e}.",
    "Targeting {c} may therefore modulate {e}.",
)
_IRR_TOPIC = (
    "soil microbiome diversity",
    "protein folding kinetics of lysozyme",
    "deep learning for histopathology slides",
    "mitochondrial imaging methods",
    "sleep duration in adolescents",
    "antibiotic stewardship in hospitals",
    "crystal structures of ion channels",
    "wastewater surveillance of viruses",
    "bone density in astronauts",
    "coral reef bleaching",
)
_IRR_FINDING = (
    "varied strongly with season",
    "improved with the proposed protocol",
    "was lower in the intervention arm",
    "depended on temperature",
    "showed no association with age",
    "was reproducible across sites",
)
_IRR_METHOD = (
    "a retrospective cohort",
    "cryo-electron microscopy",
    "a randomized controlled trial",
    "a convolutional network",
    "long-read sequencing",
    "field sampling over two years",
)


def _pick(bank: Sequence[str], u: float) -> str:
    return bank[min(int(u * len(bank)), len(bank) - 1)]


def _claim(c: str, e: str, sign: str, u: np.ndarray) -> str:
    """One sentence stating ``c -> e`` with ``sign``, in one of several styles."""
    up = sign == "+"
    style = int(u[0] * 5)
    if style == 0:
        return f"We show that {c} {_pick(_UP if up else _DOWN, u[1])} {e}."
    if style == 1:
        change = "reduced" if up else "increased"
        how = _pick(("loss of", "knockout of", "knockdown of", "deletion of"), u[1])
        return f"{how.capitalize()} {c} {change} {e} transcript levels."
    if style == 2:
        change = "elevated" if up else "lowered"
        return f"Overexpression of {c} {change} {e} expression."
    if style == 3:
        return f"{c} directly {_pick(_UP if up else _DOWN, u[1])} {e} by binding its promoter."
    noun = _pick(_UP_NOUN if up else _DOWN_NOUN, u[1])
    return f"We report {noun} of {e} by {c}."


def _finding_paper(
    rels: Sequence[Relation], u: np.ndarray, weak: bool, contra_prefix: str = ""
) -> tuple[str, str]:
    """Title and abstract of a paper reporting ``rels`` (with weak or strong evidence)."""
    c, e, sign = rels[0]
    ctx, method = _pick(_CONTEXT, u[2]), _pick(_METHOD, u[3])
    title_style = int(u[4] * 3)
    if title_style == 0:
        title = f"{c} {_pick(_UP if sign == '+' else _DOWN, u[5])} {e} in {ctx}"
    elif title_style == 1:
        title = f"Regulation of {e} by {c} in {ctx}"
    else:
        title = f"A {c}-{e} axis revealed by {method}"
    evidence = _pick(_WEAK if weak else _STRONG, u[6])
    parts = [
        _pick(_BACKGROUND, u[7]),
        contra_prefix + f"{'u' if contra_prefix else 'U'}sing {method} in {ctx}, we studied {e}.",
    ]
    parts.append(_claim(c, e, sign, u[8:10]).rstrip(".") + f", {evidence}.")
    for k, (c2, e2, s2) in enumerate(rels[1:]):
        claim = _claim(c2, e2, s2, u[10 + 2 * k : 12 + 2 * k])
        parts.append("In addition, " + (claim if claim.startswith("G") else claim[0].lower() + claim[1:]))
    parts.append(_pick(_CONCLUSION, u[14]).format(c=c, e=e))
    return title, " ".join(parts)


def _review_paper(chain: Sequence[Relation], u: np.ndarray) -> tuple[str, str]:
    first, last = chain[0][0], chain[-1][1]
    title = (
        f"{_pick(('Review', 'Perspective', 'Minireview'), u[0])}: the {first}-to-{last} regulatory cascade"
    )
    parts = [f"We review {len(chain)} findings on a regulatory cascade in {_pick(_CONTEXT, u[1])}."]
    for k, (c, e, s) in enumerate(chain):
        parts.append(_claim(c, e, s, u[2 + 2 * k : 4 + 2 * k]).replace("We show that ", "Studies show that "))
    via = ", ".join(r[1] for r in chain[:-1])
    parts.append(f"Together these place {first} upstream of {last} through {via}.")
    return title, " ".join(parts)


def _irrelevant_paper(u: np.ndarray) -> tuple[str, str]:
    topic, finding, method = _pick(_IRR_TOPIC, u[0]), _pick(_IRR_FINDING, u[1]), _pick(_IRR_METHOD, u[2])
    title = f"{topic.capitalize()}: evidence from {method}"
    abstract = (
        f"We studied {topic} using {method}. The primary outcome {finding}. "
        f"The finding was observed {_pick(_STRONG + _WEAK, u[3])}. Implications for practice are discussed."
    )
    return title, abstract


def _kind_counts(cfg: LiteratureConfig) -> dict[str, int]:
    """Papers per kind by largest remainder (contradicting rounded to pairs)."""
    shares = np.array([getattr(cfg, f"{k}_share") for k in KINDS])
    raw = shares * cfg.n_papers
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: cfg.n_papers - counts.sum()]:
        counts[i] += 1
    out = dict(zip(KINDS, (int(c) for c in counts), strict=True))
    if out["contradicting"] % 2:  # pairs: move the odd one to true papers
        out["contradicting"] -= 1
        out["true"] += 1
    return out


def _chains(edges: Sequence[Relation]) -> list[tuple[Relation, ...]]:
    """All directed paths of 2 and 3 edges among ``edges``."""
    out_by_cause: dict[str, list[Relation]] = {}
    for r in edges:
        out_by_cause.setdefault(r[0], []).append(r)
    paths: list[tuple[Relation, ...]] = []
    for r1 in edges:
        for r2 in out_by_cause.get(r1[1], []):
            paths.append((r1, r2))
            paths.extend((r1, r2, r3) for r3 in out_by_cause.get(r2[1], []))
    return paths


def _world_edges(world: World) -> tuple[list[Relation], list[tuple[str, str]]]:
    w = world.weights
    g = world.genes
    edges = [(g[i], g[j], "+" if w[i, j] > 0 else "-") for i, j in zip(*np.nonzero(w), strict=True)]
    non_edges = [
        (g[i], g[j]) for i, j in zip(*np.nonzero((w == 0) & ~np.eye(len(g), dtype=bool)), strict=True)
    ]
    return edges, non_edges


def _flip(sign: str) -> str:
    return "-" if sign == "+" else "+"


def generate_corpus(world: World, cfg: LiteratureConfig, seed: int) -> list[Paper]:
    """Generate a literature about ``world``.

    Args:
        world: The hidden world the papers are (mostly) about.
        cfg: Corpus settings.
        seed: Same seed, world and config -> the same corpus.

    Returns:
        Papers with ids ``P00001``..., in a shuffled order of kinds; hidden labels filled in.
    """
    rng = np.random.default_rng(seed)
    edges, non_edges = _world_edges(world)
    edge_set = set(edges)
    counts = _kind_counts(cfg)
    if not edges:
        # A world without edges has nothing to report: everything becomes irrelevant or noisy.
        counts = {"true": 0, "noisy": counts["noisy"], "contradicting": 0, "review": 0}
        counts["irrelevant"] = cfg.n_papers - counts["noisy"]
    n_cov = max(1, round(cfg.coverage * len(edges))) if edges and cfg.coverage > 0 else 0
    covered = [edges[i] for i in sorted(rng.choice(len(edges), size=n_cov, replace=False))] if n_cov else []
    if not covered:
        counts["irrelevant"] += counts["true"] + counts["review"]
        counts["true"] = counts["review"] = 0
    chains = _chains(covered) or [(e,) for e in covered]
    kinds = np.array([k for k in KINDS for _ in range(counts[k])])
    u = rng.random((cfg.n_papers, 24))  # columns 0-15 pick wording, 16-23 pick content
    years = rng.integers(cfg.year_low, cfg.year_high + 1, size=cfg.n_papers)
    width = max(5, len(str(cfg.n_papers)))
    papers: list[Paper] = []
    pending: tuple[str, str, str] | None = None  # first half of a contradicting pair
    pending_year = 0
    for idx, kind in enumerate(kinds):
        ui = u[idx]
        rels: tuple[Relation, ...]
        truth: bool | None
        if kind == "true":
            rels = (covered[int(ui[16] * len(covered))],)
            if ui[17] < cfg.two_finding_share and len(covered) > 1:
                second = covered[int(ui[18] * len(covered))]
                rels = rels if second == rels[0] else (*rels, second)
            title, abstract = _finding_paper(rels, ui, weak=False)
            truth = True
        elif kind == "noisy":
            if (ui[16] < cfg.wrong_sign_share and edges) or not non_edges:
                c, e, s = edges[int(ui[17] * len(edges))]
                rels = ((c, e, _flip(s)),)
            else:
                c, e = non_edges[int(ui[17] * len(non_edges))]
                rels = ((c, e, "+" if ui[18] < 0.5 else "-"),)
            title, abstract = _finding_paper(rels, ui, weak=ui[20] < cfg.weak_evidence_share)
            truth = False
        elif kind == "contradicting":
            if pending is None:
                if ui[16] < 0.75 or not non_edges:
                    pending = edges[int(ui[17] * len(edges))]
                else:
                    c, e = non_edges[int(ui[17] * len(non_edges))]
                    pending = (c, e, "+" if ui[18] < 0.5 else "-")
                rels, prefix, pending_year = (pending,), "", int(years[idx])
            else:
                rels, prefix = ((pending[0], pending[1], _flip(pending[2])),), "Contrary to earlier reports, "
                # the rebuttal comes after the report it contradicts
                years[idx] = min(max(int(years[idx]), pending_year + 1), cfg.year_high)
                pending = None
            title, abstract = _finding_paper(rels, ui, weak=False, contra_prefix=prefix)
            truth = rels[0] in edge_set
        elif kind == "review":
            rels = chains[int(ui[19] * len(chains))]
            title, abstract = _review_paper(rels, ui)
            truth = True
        else:
            rels, truth = (), None
            title, abstract = _irrelevant_paper(ui)
        papers.append(Paper("", int(years[idx]), title, abstract, str(kind), rels, truth))
    # Interleave the kinds; ids follow the shuffled order.
    return [
        Paper(f"P{new + 1:0{width}d}", p.year, p.title, p.abstract, p.kind, p.relations, p.truth)
        for new, p in enumerate(papers[i] for i in rng.permutation(len(papers)))
    ]
