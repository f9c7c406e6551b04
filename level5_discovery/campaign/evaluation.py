"""Scoring a finished campaign against the hidden truth (never read by the campaign's decisions).

* the causal model: edge precision, recall, F1 and SHD of the graph; how many genes' links to the
  phenotype were decided, and rightly; the same for random knockouts on the same world and budget;
* the target: is it a true driver (or upstream of one), what its knockout truly does to the
  phenotype, and where it ranks among all genes by that true effect; is it druggable;
* the compounds: the hidden pIC50 of every compound assayed, and whether the best designed
  compound (picked by its *measured* potency, all filters passing) beats the best compound of the
  whole library on the hidden activity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from level5_discovery.campaign import causal
from level5_discovery.rl.env import DiscoveryEnv
from level5_discovery.truth import Evaluator

if TYPE_CHECKING:
    from level5_discovery.campaign.steps import Context
    from level5_discovery.investigate import LiteratureClaim
    from level5_discovery.simulate import World


def knockout_effects(world: World, n: int = 4000, seed: int = 0) -> dict[str, float]:
    """Hidden truth: mean phenotype change of knocking out each gene (common random numbers)."""
    base = world.sample(n, np.random.default_rng(seed))[:, -1].mean()
    return {
        g: float(world.sample(n, np.random.default_rng(seed), do={i: 0.0})[:, -1].mean() - base)
        for i, g in enumerate(world.genes)
    }


def _graph_and_ancestry(env: DiscoveryEnv, world: World) -> dict[str, Any]:
    model = causal.causal_model(env)
    ancestry = env.truth_summary()  # decided, right and wrong calls on the genes' phenotype links
    return {
        **Evaluator(world).score(np.asarray(model["estimated"], dtype=bool)),
        **{k: ancestry[k] for k in ("decided_share", "correct_share", "wrong")},
        "cost": float(env.total_cost),
        "experiments": len(env.history),
    }


def causal_scores(
    ctx: Context, env: DiscoveryEnv, claims: list[LiteratureClaim]
) -> dict[str, dict[str, Any]]:
    """The RL campaign's causal model and random knockouts' on the same world, budget and priors."""
    rl = _graph_and_ancestry(env, ctx.world)
    rand_env = DiscoveryEnv(causal.env_config(ctx.world.config, ctx.camp, ctx.seed))
    causal.play(rand_env, ctx.world, claims, causal.random_chooser(ctx.seed))
    return {"rl": rl, "random": _graph_and_ancestry(rand_env, ctx.world)}


def target_scores(ctx: Context, target: str | None, ranked: pd.DataFrame) -> dict[str, Any]:
    """Was the chosen target a good one (hidden truth)?"""
    effects = knockout_effects(ctx.world)
    best_gene = min(effects, key=lambda g: effects[g])
    out: dict[str, Any] = {
        "best_true_target": best_gene,
        "best_true_effect": effects[best_gene],
        "candidates": len(ranked),
    }
    if target is None:
        return {**out, "target": None}
    order = sorted(effects, key=lambda g: effects[g])
    return {
        **out,
        "target": target,
        "is_upstream": target in Evaluator(ctx.world).phenotype_ancestors(),
        "is_driver": target in set(Evaluator(ctx.world).drivers()),
        "true_knockout_effect": effects[target],
        "true_rank": order.index(target) + 1,
        "druggable": bool(ctx.library.druggable[ctx.library.genes.index(target)]),
    }


def compound_scores(compounds: pd.DataFrame, ctx: Context, target: str) -> dict[str, Any]:
    """Best designed compound (by measured potency, filters passing) against the library's best (truth)."""
    lib_true = ctx.library.library_pic50()[:, ctx.library.genes.index(target)]
    designed = compounds[(compounds["source"] == "designed") & compounds["passes"].astype(bool)]
    screened = compounds[compounds["source"] == "library"]
    out: dict[str, Any] = {
        "assayed": len(compounds),
        "designed_assayed": int((compounds["source"] == "designed").sum()),
        "designed_passing": len(designed),
        "library_best_true_pic50": float(lib_true.max()),
        "screen_best_true_pic50": float(screened["true_pic50"].max()) if len(screened) else float("nan"),
    }
    if designed.empty:
        return {**out, "beats_library": False}
    pick = designed.iloc[0]  # sorted by measured pIC50, best first
    return {
        **out,
        "designed_best_smiles": str(pick["smiles"]),
        "designed_best_measured_pic50": float(pick["measured_pic50"]),
        "designed_best_true_pic50": float(pick["true_pic50"]),
        "designed_max_true_pic50": float(designed["true_pic50"].max()),
        "beats_library": bool(pick["true_pic50"] > lib_true.max()),
        "margin_over_library": float(pick["true_pic50"] - lib_true.max()),
    }
