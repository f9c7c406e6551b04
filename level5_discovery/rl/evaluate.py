"""Comparing experiment strategies on held-out worlds: RL policies, random choice, the EIG designer.

Every strategy plays the same worlds through the same :class:`~level5_discovery.rl.env.DiscoveryEnv`
(world ``w`` and its lab are fixed by ``reset(options={"world_seed": w})``), so the only difference
between rows of one world is the sequence of experiments chosen. Held-out world seeds are drawn
above the training range (``EnvConfig.seed_range``), never inside it.

Strategies are callables ``policy(env, obs) -> action``:

* :func:`sb3_policy` — a trained stable-baselines3 model, deterministic (its most likely action);
* :func:`random_policy` — a uniformly random action (with replacement, the issue's baseline);
* :func:`designer_policy` — 5a's :class:`~level5_discovery.design.ExperimentDesigner`, reading the
  environment's current beliefs: candidate DAGs drawn by ``EdgeBeliefs.sample_graphs`` (the
  phenotype as a node) and the action of highest expected information per cost, focused on the
  ancestry of the phenotype; when no action is informative it takes the least-tested undecided gene.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from stable_baselines3.common.base_class import BaseAlgorithm

from level5_discovery.design import Action, DesignConfig, ExperimentDesigner
from level5_discovery.rl.env import PHENOTYPE, DiscoveryEnv, EnvConfig
from level5_discovery.rl.features import decided_mask

Policy = Callable[[DiscoveryEnv, np.ndarray], int]
EPISODE_COLUMNS = [
    "policy", "world_seed", "episode_return", "info_gain", "cost", "info_per_cost", "steps",
    "decided_share", "correct_share", "wrong",
]  # fmt: skip


class DesignerPolicyConfig(BaseModel):
    """Settings of the designer baseline."""

    model_config = ConfigDict(extra="forbid")

    candidates: int = Field(64, ge=2, description="DAGs sampled from the beliefs per step")
    focus_weight: float = Field(0.9, ge=0.0, le=1.0, description="Share of the score on phenotype ancestry")
    seed: int = 0


def sb3_policy(model: BaseAlgorithm) -> Policy:
    """A trained SB3 model as a policy (deterministic)."""

    def act(env: DiscoveryEnv, obs: np.ndarray) -> int:
        action, _ = model.predict(obs, deterministic=True)
        return int(np.asarray(action).item())

    return act


def random_policy(seed: int) -> Policy:
    """Uniformly random actions, with replacement."""
    rng = np.random.default_rng(seed)

    def act(env: DiscoveryEnv, obs: np.ndarray) -> int:
        return int(rng.integers(env.n_actions))

    return act


def designer_policy(cfg: DesignerPolicyConfig | None = None) -> Policy:
    """5a's expected-information-gain designer over DAGs sampled from the environment's beliefs."""
    cfg = cfg or DesignerPolicyConfig()
    calls = [0]

    def act(env: DiscoveryEnv, obs: np.ndarray) -> int:
        genes = env.beliefs.genes  # the genes, then the phenotype node
        designer = ExperimentDesigner(
            genes, DesignConfig(focus_weight=cfg.focus_weight, seed=cfg.seed), focus=[PHENOTYPE]
        )
        n = env.n_genes
        actions: list[tuple[str, str]] = [env.decode(a) for a in range(env.n_actions)]
        costs: dict[str, float] = {kind: env.action_cost(a) for a, (kind, _) in enumerate(actions)}
        rng = np.random.default_rng([cfg.seed, env.world_seed, calls[0]])
        calls[0] += 1
        candidates = env.beliefs.sample_graphs(cfg.candidates, rng)
        choice = designer.choose(candidates, None, [Action(k, g) for k, g in actions], costs)
        if choice.action is not None:
            return actions.index((choice.action.kind, str(choice.action.target)))
        undecided = ~decided_mask(env.beliefs.required_reach, env.beliefs.forbidden_reach)
        pool = np.flatnonzero(undecided) if undecided.any() else np.arange(n)
        return int(pool[np.argmin(env.tested[pool])])

    return act


def held_out_seeds(n_worlds: int, seed: int, cfg: EnvConfig | None = None) -> list[int]:
    """``n_worlds`` distinct world seeds above the training range (a fixed draw per ``seed``)."""
    high = (cfg or EnvConfig()).seed_range[1]
    rng = np.random.default_rng(seed)
    return [int(s) + high for s in rng.choice(1_000_000, size=n_worlds, replace=False)]


def run_episode(env: DiscoveryEnv, policy: Policy, world_seed: int) -> dict[str, Any]:
    """Play one episode on world ``world_seed``; the episode's return, gain, cost and accuracy."""
    obs, info = env.reset(options={"world_seed": world_seed})
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, done, truncated, info = env.step(policy(env, obs))
        total += reward
        steps += 1
        done = done or truncated
    gain = float(info["information"] - info["initial_information"])
    return {
        "world_seed": world_seed,
        "episode_return": total,
        "info_gain": gain,
        "cost": float(info["spent"]),
        "info_per_cost": gain / max(float(info["spent"]), 1e-12),
        "steps": steps,
        **{k: v for k, v in env.truth_summary().items() if k in EPISODE_COLUMNS},
    }


def compare_policies(
    models: Mapping[str, BaseAlgorithm | Policy],
    n_worlds: int,
    seed: int,
    *,
    env_cfg: EnvConfig | None = None,
    baselines: Sequence[str] = ("random", "designer"),
    designer_cfg: DesignerPolicyConfig | None = None,
) -> pd.DataFrame:
    """Every strategy on the same ``n_worlds`` held-out worlds.

    Args:
        models: Name -> trained SB3 model (or any policy callable).
        n_worlds: Worlds to play (seeds from :func:`held_out_seeds`).
        seed: Seed of the world draw and of the random baseline.
        env_cfg: Environment settings (must match the models' training environment).
        baselines: Any of ``random`` and ``designer``, added under those names.
        designer_cfg: Settings of the designer baseline.

    Returns:
        One row per (policy, world) with ``EPISODE_COLUMNS``.
    """
    cfg = env_cfg or EnvConfig()
    policies: dict[str, Policy] = {
        name: sb3_policy(m) if isinstance(m, BaseAlgorithm) else m for name, m in models.items()
    }
    unknown = sorted(set(baselines) - {"random", "designer"})
    if unknown:
        raise ValueError(f"unknown baselines {unknown}: random, designer")
    if "random" in baselines:
        policies["random"] = random_policy(seed)
    if "designer" in baselines:
        policies["designer"] = designer_policy(designer_cfg)
    worlds = held_out_seeds(n_worlds, seed, cfg)
    env = DiscoveryEnv(cfg)
    rows = [{"policy": name, **run_episode(env, pol, w)} for name, pol in policies.items() for w in worlds]
    return pd.DataFrame(rows, columns=EPISODE_COLUMNS)


def summarise(episodes: pd.DataFrame) -> pd.DataFrame:
    """Per policy: means over worlds (and the standard error of the return), best return first."""
    metrics = [
        "episode_return",
        "info_gain",
        "cost",
        "info_per_cost",
        "decided_share",
        "correct_share",
        "wrong",
    ]
    grouped = episodes.groupby("policy", sort=False)
    out = grouped[metrics].mean()
    out["return_se"] = grouped["episode_return"].std(ddof=1) / np.sqrt(grouped.size())
    out["worlds"] = grouped.size()
    return out.sort_values("episode_return", ascending=False).reset_index()


def paired_margin(episodes: pd.DataFrame, policy: str, baseline: str) -> dict[str, float]:
    """Mean per-world return difference ``policy - baseline`` with its standard error and win share."""
    wide = episodes.pivot(index="world_seed", columns="policy", values="episode_return")
    diff = wide[policy] - wide[baseline]
    return {
        "margin": float(diff.mean()),
        "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan"),
        "win_share": float((diff > 0).mean()),
    }
