"""The investigation against its baselines at the same budget, scored against the hidden graph.

Three ways to spend the same budget on the same world (each with its own lab, same seed):

* **designed** — the information-gain loop of `investigate`;
* **random** — the same loop with a uniformly random knockout each step (with replacement): the
  issue's "random interventions with the same budget";
* **round_robin** — every gene once in a random order: a stronger baseline, reported honestly;
* **observational PC** — the whole budget spent on observational wells, then the PC algorithm
  (causal-learn; undirected edges of its CPDAG count half, their expectation under a coin flip).

Curves of F1 and SHD against budget come from the loop's own scorer (after each experiment) and,
for PC, from re-running it on the wells bought so far at a few budget points.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from level5_discovery.causal_baselines import expected_edge_scores, run_pc
from level5_discovery.config import LabConfig
from level5_discovery.experiments import ExperimentAPI
from level5_discovery.investigate import InvestigateConfig, InvestigationResult, LiteratureClaim, investigate
from level5_discovery.simulate import World
from level5_discovery.truth import Evaluator

STRATEGIES = ("designed", "random", "round_robin")
SCORE_KEYS = ("precision", "recall", "f1", "shd")


@dataclass
class Comparison:
    """Results of every strategy on one world.

    Attributes:
        results: The loop's result per strategy.
        summary: One row per method: final precision, recall, F1, SHD, experiments, cost.
        curves: ``method, spent, f1, shd`` rows (F1 and SHD against budget).
    """

    results: dict[str, InvestigationResult]
    summary: pd.DataFrame
    curves: pd.DataFrame


def lab(world: World, lab_cfg: LabConfig, budget: float, seed: int) -> ExperimentAPI:
    """A fresh budgeted lab on ``world``."""
    return ExperimentAPI(
        world,
        budget=budget,
        seed=seed,
        costs=lab_cfg.costs,
        n_replicates=lab_cfg.n_replicates,
        batch_sd=lab_cfg.batch_sd,
        measurement_sd=lab_cfg.measurement_sd,
    )


def scorer_for(evaluator: Evaluator) -> Callable[[np.ndarray], dict[str, float]]:
    """Scores an adjacency matrix against the truth (kept outside the loop, evaluation only)."""

    def score(adj: np.ndarray) -> dict[str, float]:
        s = evaluator.score(adj)
        return {k: float(s[k]) for k in SCORE_KEYS}

    return score


def observational_pc(
    world: World, lab_cfg: LabConfig, budget: float, seed: int, points: Sequence[float], alpha: float = 0.01
) -> tuple[dict[str, float], pd.DataFrame]:
    """PC on observational wells bought with the whole budget, and its curve at ``points``.

    Returns:
        The final scores (with ``n_wells`` and ``seconds``) and the ``spent, f1, shd`` curve.
    """
    api = lab(world, lab_cfg, budget, seed)
    per_well = api.costs.observe / (2 * api.n_replicates)
    n_wells = int(np.floor(budget / per_well + 1e-9))
    wells = api.observational(n_wells)[list(world.genes)].to_numpy(dtype=float)
    evaluator = Evaluator(world)
    truth = evaluator.true_adjacency()
    rows = []
    for b in sorted(p for p in points if 0 < p <= budget):
        n = int(np.floor(b / per_well + 1e-9))
        if n < 10:
            continue
        s = expected_edge_scores(truth, run_pc(wells[:n], alpha=alpha))
        rows.append({"method": "observational_pc", "spent": float(b), "f1": s["f1"], "shd": s["shd"]})
    final = run_pc(wells, alpha=alpha)
    scores = {k: float(v) for k, v in expected_edge_scores(truth, final).items()}
    scores.update({"n_wells": float(n_wells), "seconds": final.seconds})
    return scores, pd.DataFrame(rows, columns=["method", "spent", "f1", "shd"])


def compare(
    world: World,
    claims: Sequence[LiteratureClaim],
    cfg: InvestigateConfig,
    lab_cfg: LabConfig,
    seed: int,
    *,
    strategies: Sequence[str] = STRATEGIES,
    with_pc: bool = True,
    on_step: Callable[[str, int, float], None] | None = None,
) -> Comparison:
    """Run every strategy (and observational PC) with ``cfg.budget`` on ``world``.

    Args:
        world: The hidden world (each strategy sees it only through its own lab).
        claims: Literature claims (the same for every loop strategy).
        cfg: Loop settings (``budget`` is the shared budget).
        lab_cfg: Costs and noise.
        seed: Lab and designer seed (the same for every strategy).
        strategies: Loop strategies to run.
        with_pc: Also run the observational PC baseline.
        on_step: Progress callback ``(strategy, step, spent)``.
    """
    evaluator = Evaluator(world)
    score = scorer_for(evaluator)
    results: dict[str, InvestigationResult] = {}
    summary, curves = [], []
    for strategy in strategies:
        api = lab(world, lab_cfg, cfg.budget, seed)
        res = investigate(
            api,
            claims,
            cfg,
            strategy=strategy,  # type: ignore[arg-type]
            seed=seed,
            scorer=score,
            on_step=_named(on_step, strategy),
        )
        results[strategy] = res
        final = score(res.adjacency)
        summary.append({"method": strategy, **final, "experiments": len(res.steps), "cost": api.spent})
        if len(res.steps):
            curves.append(res.steps[["spent", "f1", "shd"]].assign(method=strategy))
    if with_pc:
        pc, pc_curve = observational_pc(world, lab_cfg, cfg.budget, seed, points=_budget_points(cfg.budget))
        summary.append(
            {
                "method": "observational_pc",
                **{k: pc[k] for k in SCORE_KEYS},
                "experiments": 0,
                "cost": cfg.budget,
            }
        )
        curves.append(pc_curve)
    curve_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return Comparison(results, pd.DataFrame(summary), curve_df[["method", "spent", "f1", "shd"]])


def _named(
    on_step: Callable[[str, int, float], None] | None, name: str
) -> Callable[[int, float], None] | None:
    """The loop's ``(step, spent)`` callback reporting under a strategy's name."""
    if on_step is None:
        return None

    def report(step: int, spent: float) -> None:
        on_step(name, step, spent)

    return report


def _budget_points(budget: float) -> list[float]:
    return [float(b) for b in np.linspace(budget / 6, budget, 6)]
