"""Graph GA (Jensen 2019; the GuacaMol/PMO baseline) and a surrogate-guided variant, on a budgeted oracle.

Plain GA (PMO's loop): a random start population from the library is scored; each generation draws
a mating pool in proportion to score, makes ``offspring_size`` children by crossover and mutation,
scores them and keeps the best ``population_size`` of parents and children.

Guided GA: each generation makes ``candidate_factor`` times as many children, drops those already
scored, fits a Tanimoto GP on the oracle's history and sends only the ``offspring_size`` children
with the highest upper confidence bound (mean + beta * sd) to the oracle, so fewer calls are spent
on poor molecules. Its parents are drawn by rank, not in proportion to score: late in a run every
score in the population is close, and proportional draws become almost uniform (chosen on PMO's
tuning task, perindopril MPO, and on celecoxib and median1 with a seed the benchmark does not use).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from rdkit import Chem

from level5_discovery.chem.mutations import reproduce
from level5_discovery.chem.oracle import Oracle
from level5_discovery.chem.surrogate import FingerprintCache, TanimotoGP, training_subset

Method = Literal["ga", "guided"]
MIN_SCORE = 1e-10


class GAConfig(BaseModel):
    """Graph GA settings (PMO's Graph GA hyper-parameters) and the guided variant's."""

    model_config = ConfigDict(extra="forbid")

    population_size: int = Field(120, ge=2)
    offspring_size: int = Field(70, ge=1)
    mutation_rate: float = Field(0.067, ge=0.0, le=1.0)
    candidate_factor: int = Field(3, ge=1, description="guided: children made per child sent to the oracle")
    ucb_beta: float = Field(0.5, ge=0.0, description="guided: UCB exploration weight (in score units)")
    max_train: int = Field(800, ge=10, description="guided: most history rows the GP is fitted on")
    gp_noise: float = Field(0.05, gt=0.0)
    patience: int = Field(10, ge=1, description="stop after this many generations without a new call")
    selection: Literal["score", "rank"] = Field(
        "score",
        description="parents drawn in proportion to score (PMO), or to 1 / (rank_k * n + rank) so "
        "the best stay preferred when every score is close",
    )
    rank_k: float = Field(0.1, gt=0.0, description="rank selection: how flat the weights are")


def selection_weights(scores: Sequence[float], selection: str, rank_k: float) -> np.ndarray:
    """Mating probabilities: proportional to score (PMO's ``make_mating_pool``), or rank-based.

    Rank weights ``1 / (rank_k * n + rank)`` (rank 0 the best; Tripp et al. 2020) keep the same
    pressure whatever the scores' spread: with proportional weights a population whose scores all
    sit near 0.6 is mated almost uniformly.
    """
    s = np.asarray(scores, dtype=float)
    if selection == "rank":
        ranks = np.empty(len(s))
        ranks[np.argsort(-s, kind="stable")] = np.arange(len(s))
        p = 1.0 / (rank_k * len(s) + ranks)
    else:
        p = s + MIN_SCORE
    return np.asarray(p / p.sum())


def mating_pool(
    mols: Sequence[Chem.Mol], weights: np.ndarray, size: int, rng: np.random.Generator
) -> list[Chem.Mol]:
    """Parents drawn with replacement with the given probabilities (`selection_weights`)."""
    idx = rng.choice(len(mols), size=size, replace=True, p=weights)
    return [mols[int(i)] for i in idx]


def propose(
    mols: Sequence[Chem.Mol], scores: Sequence[float], n: int, cfg: GAConfig, rng: np.random.Generator
) -> list[tuple[str, Chem.Mol]]:
    """Up to ``n`` distinct valid children as (canonical SMILES, sanitised molecule)."""
    weights = selection_weights(scores, cfg.selection, cfg.rank_k)
    pool = mating_pool(mols, weights, cfg.offspring_size, rng)
    out: dict[str, Chem.Mol] = {}
    for _ in range(n):
        child = reproduce(pool, cfg.mutation_rate, rng)
        if child is None:
            continue
        smi = Chem.MolToSmiles(child)
        # Round-trip through SMILES: what the oracle and the output file see must parse back to itself.
        mol = Chem.MolFromSmiles(smi)
        if mol is None:
            continue
        out.setdefault(Chem.MolToSmiles(mol), mol)
    return list(out.items())


def _initial_population(
    oracle: Oracle, library: Sequence[str], cfg: GAConfig, rng: np.random.Generator
) -> None:
    take = min(cfg.population_size, len(library))
    idx = rng.choice(len(library), size=take, replace=False)
    oracle([library[int(i)] for i in idx])


def _select(
    oracle: Oracle, children: list[tuple[str, Chem.Mol]], cfg: GAConfig, fps: FingerprintCache
) -> list[tuple[str, Chem.Mol]]:
    new = [(s, m) for s, m in children if s not in oracle]
    if len(new) <= cfg.offspring_size:
        return new
    train = training_subset(oracle.scores, cfg.max_train)
    hist = [oracle.smiles[int(i)] for i in train]
    gp = TanimotoGP(cfg.gp_noise).fit(fps.matrix(hist), np.asarray(oracle.scores)[train])
    mean, sd = gp.predict(fps.matrix([s for s, _ in new], [m for _, m in new]))
    order = np.argsort(-(mean + cfg.ucb_beta * sd), kind="stable")[: cfg.offspring_size]
    return [new[int(i)] for i in order]


def default_config(method: Method) -> GAConfig:
    """PMO's Graph GA settings; the guided variant draws its parents by rank."""
    return GAConfig(selection="rank") if method == "guided" else GAConfig()


def run_ga(
    oracle: Oracle, library: Sequence[str], seed: int, method: Method = "ga", cfg: GAConfig | None = None
) -> None:
    """Run the GA until the oracle's budget is spent (or no new molecule comes for ``patience`` generations).

    Every scored molecule is recorded by the oracle, in call order.

    Args:
        oracle: the budgeted oracle.
        library: canonical SMILES to draw the start population from.
        seed: seeds every random choice.
        method: ``"ga"`` (plain Graph GA) or ``"guided"`` (GP-screened offspring).
        cfg: GA settings (default: `default_config` of the method).
    """
    cfg = cfg or default_config(method)
    rng = np.random.default_rng(seed)
    fps = FingerprintCache()
    _initial_population(oracle, library, cfg, rng)
    pop: dict[str, float] = {s: oracle.scores[i] for i, s in enumerate(oracle.smiles)}
    pop_mols: dict[str, Chem.Mol] = {s: Chem.MolFromSmiles(s) for s in pop}
    stale = 0
    while not oracle.exhausted and stale < cfg.patience:
        names = list(pop)
        n = cfg.offspring_size * (cfg.candidate_factor if method == "guided" else 1)
        children = propose([pop_mols[s] for s in names], [pop[s] for s in names], n, cfg, rng)
        if method == "guided":
            children = _select(oracle, children, cfg, fps)
        before = oracle.n_calls
        if children:
            scores = oracle.score_mols([m for _, m in children])
            for (s, m), sc in zip(children, scores, strict=True):
                if not np.isnan(sc):
                    pop[s] = float(sc)
                    pop_mols[s] = m
        stale = stale + 1 if oracle.n_calls == before else 0
        keep = sorted(pop, key=lambda s: -pop[s])[: cfg.population_size]
        pop = {s: pop[s] for s in keep}
        pop_mols = {s: pop_mols[s] for s in keep}


def best_of(oracle: Oracle) -> tuple[str, float]:
    """The best (SMILES, score) the oracle has seen (first one on ties)."""
    if not oracle.scores:
        return "", 0.0
    i = int(np.argmax(oracle.scores))
    return oracle.smiles[i], oracle.scores[i]
