"""The causal phase of the campaign: an RL policy chooses knockouts on the hidden world.

The policy is trained (`rl.train`) on other worlds drawn with the campaign's world settings,
never on the campaign's own world, then plays that world through the same
`rl.env.DiscoveryEnv` it was trained in, starting from the literature's claims as soft edge
priors. Its action is decoded greedily among the genes knocked out least often so far (a knockout
repeated before the others were tried gives almost nothing, and SB3's PPO has no action masks),
so the policy's preferences decide the order.

Every experiment becomes one row of ``experiments.csv`` (the checkpoint: replaying the rows on
the same world and lab seed rebuilds the beliefs exactly). The causal model read from the beliefs
is the most probable graph consistent with every hard fact, and the genes known (or known not) to
be upstream of the disease phenotype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from level5_discovery.rl.env import PHENOTYPE, DiscoveryEnv, EnvConfig
from level5_discovery.stats import test_intervention

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from level5_discovery.campaign.settings import CampaignConfig
    from level5_discovery.investigate import LiteratureClaim
    from level5_discovery.simulate import World, WorldConfig

EXPERIMENT_COLUMNS = [
    "step", "action", "kind", "target", "policy_prob", "cost", "spent", "information", "info_gain",
    "reward", "descendants", "not_descendants", "phenotype_effect", "phenotype_ci_low", "phenotype_ci_high",
    "phenotype_q",
]  # fmt: skip
Chooser = Callable[[DiscoveryEnv, np.ndarray], tuple[int, float]]


def env_config(world: WorldConfig, camp: CampaignConfig, seed: int) -> EnvConfig:
    """The environment of the campaign's world size and budget; training worlds exclude ``seed``."""
    return EnvConfig(world=world, budget=camp.causal_budget, seed_range=(seed + 1, seed + 100_001))


def train_policy(
    world: WorldConfig, camp: CampaignConfig, seed: int, *, progress: bool = False
) -> tuple[BaseAlgorithm, pd.DataFrame]:
    """Train the experiment policy on other seeded worlds; returns the model and its learning curve."""
    from level5_discovery.rl.train import TrainConfig
    from level5_discovery.rl.train import train_policy as sb3_train

    cfg = TrainConfig(
        algo=camp.rl_algo,
        timesteps=camp.rl_timesteps,
        seed=seed,
        n_envs=camp.rl_n_envs,
        n_steps=camp.rl_n_steps,
        batch_size=min(128, camp.rl_n_envs * camp.rl_n_steps),
        env=env_config(world, camp, seed),
    )
    result = sb3_train(cfg, progress=progress)
    return result.model, result.curve


def greedy_untested(model: BaseAlgorithm) -> Chooser:
    """The policy's most probable action among the genes knocked out least often so far (first the
    untested ones; once each was tested, those tested once; ...)."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = model.policy
    if not isinstance(policy, ActorCriticPolicy):
        raise TypeError(f"expected an actor-critic policy (PPO, A2C), got {type(policy).__name__}")

    def choose(env: DiscoveryEnv, obs: np.ndarray) -> tuple[int, float]:
        with torch.no_grad():
            tensor, _ = policy.obs_to_tensor(obs)
            dist = policy.get_distribution(tensor).distribution
            probs = np.asarray(dist.probs.cpu().numpy()[0])  # type: ignore[union-attr]
        allowed = np.tile(env.tested == env.tested.min(), len(env.cfg.kinds))
        action = int(np.argmax(np.where(allowed, probs, -1.0)))
        return action, float(probs[action])

    return choose


def random_chooser(seed: int) -> Chooser:
    """Uniformly random knockouts (with replacement): the baseline on the campaign's own world."""
    rng = np.random.default_rng(seed)

    def choose(env: DiscoveryEnv, obs: np.ndarray) -> tuple[int, float]:
        return int(rng.integers(env.n_actions)), 1.0 / env.n_actions

    return choose


def start(env: DiscoveryEnv, world: World, claims: Sequence[LiteratureClaim]) -> np.ndarray:
    """Reset the environment on ``world`` with the literature's claims as edge priors."""
    obs, _ = env.reset(options={"world": world})
    known = set(world.genes)
    env.beliefs.prior_from_hypotheses([c for c in claims if c.cause in known and c.effect in known])
    return obs


def _phenotype_test(env: DiscoveryEnv, camp_alpha: float = 0.05) -> dict[str, float]:
    result = env.history[-1]
    tests = test_intervention(result.data, alpha=camp_alpha, variables=[*env.genes, PHENOTYPE])
    row = tests[tests["variable"] == PHENOTYPE].iloc[0]
    return {
        "phenotype_effect": float(row["effect"]),
        "phenotype_ci_low": float(row["ci_low"]),
        "phenotype_ci_high": float(row["ci_high"]),
        "phenotype_q": float(row["q"]),
    }


def step_row(
    env: DiscoveryEnv, action: int, prob: float, reward: float, info: dict[str, Any]
) -> dict[str, Any]:
    """One ``experiments.csv`` row for the step just taken."""
    req, forb = env.beliefs.required_reach, env.beliefs.forbidden_reach
    gene = info["target"]
    t = env.beliefs.genes.index(gene)
    names = env.beliefs.genes
    # What is known of the target after this step (the experiment's own calls and what they imply).
    below = [names[j] for j in np.flatnonzero(req[t]) if j != t]
    not_below = [names[j] for j in np.flatnonzero(forb[t]) if j != t]
    return {
        "step": len(env.history),
        "action": int(action),
        "kind": info["kind"],
        "target": gene,
        "policy_prob": prob,
        "cost": float(info["cost"]),
        "spent": float(info["spent"]),
        "information": float(info["information"]),
        "info_gain": float(info["info_gain"]),
        "reward": float(reward),
        "descendants": ";".join(below),
        "not_descendants": ";".join(not_below),
        **_phenotype_test(env),
    }


def play(
    env: DiscoveryEnv,
    world: World,
    claims: Sequence[LiteratureClaim],
    choose: Chooser,
    done_actions: Sequence[int] = (),
    on_step: Callable[[list[dict[str, Any]]], object] | None = None,
) -> list[dict[str, Any]]:
    """Replay ``done_actions`` (a resumed campaign), then let ``choose`` pick until the episode ends.

    Args:
        env: The environment (reset here on ``world``).
        world: The campaign's hidden world (only the lab inside the environment touches it).
        claims: Literature claims (soft priors).
        choose: The policy.
        done_actions: Actions already taken in an earlier session, in order.
        on_step: Called with all rows after every new experiment (the checkpoint writer).

    Returns:
        One row per experiment (``EXPERIMENT_COLUMNS``), replayed ones included.
    """
    obs = start(env, world, claims)
    rows: list[dict[str, Any]] = []
    done = False
    for action in done_actions:
        obs, reward, done, _, info = env.step(int(action))
        rows.append(step_row(env, int(action), float("nan"), reward, info))
    while not done:
        action, prob = choose(env, obs)
        obs, reward, done, _, info = env.step(action)
        rows.append(step_row(env, action, prob, reward, info))
        if on_step is not None:
            on_step(rows)
    return rows


def experiments_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Rows as the ``experiments.csv`` table."""
    return pd.DataFrame(list(rows), columns=EXPERIMENT_COLUMNS)


def causal_model(env: DiscoveryEnv) -> dict[str, Any]:
    """What the beliefs say after the experiments: the graph and the phenotype's known ancestry."""
    n = env.n_genes
    req, forb = env.beliefs.required_reach, env.beliefs.forbidden_reach
    genes = list(env.genes)
    return {
        "genes": genes,
        "estimated": env.beliefs.map_graph()[:n, :n].astype(int).tolist(),
        "upstream": [g for i, g in enumerate(genes) if req[i, n]],
        "not_upstream": [g for i, g in enumerate(genes) if forb[i, n]],
    }
