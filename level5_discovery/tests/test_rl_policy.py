"""Policy training, saving/loading and the held-out comparison of experiment strategies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from level5_discovery.rl.env import DiscoveryEnv, EnvConfig
from level5_discovery.rl.evaluate import (
    EPISODE_COLUMNS,
    compare_policies,
    held_out_seeds,
    paired_margin,
    random_policy,
    summarise,
)
from level5_discovery.rl.train import CURVE_COLUMNS, TrainConfig, load_policy, save_policy, train_policy
from level5_discovery.simulate import WorldConfig

SMALL = EnvConfig(world=WorldConfig(n_genes=6))


def _tiny(algo: str = "ppo") -> TrainConfig:
    return TrainConfig(algo=algo, timesteps=256, n_envs=2, n_steps=64, batch_size=64, n_epochs=2, env=SMALL)


@pytest.mark.parametrize("algo", ["ppo", "a2c"])
def test_tiny_training_records_a_curve_and_round_trips(algo: str, tmp_path: Path) -> None:
    result = train_policy(_tiny(algo))
    curve = result.curve
    assert list(curve.columns) == ["algo", *CURVE_COLUMNS] and (curve["algo"] == algo).all()
    assert len(curve) >= 256 // 6 // 2  # episodes last at most 6 steps (budget = 6 knockouts)
    assert (
        curve["timesteps"].is_monotonic_increasing and curve["timesteps"].max() <= result.model.num_timesteps
    )
    lam = SMALL.reward_lambda
    assert np.allclose(curve["episode_return"], curve["info_gain"] - lam * curve["cost"])
    assert curve["world_seed"].nunique() > len(curve) // 2  # a new world (almost) every episode

    path = save_policy(result.model, tmp_path / f"{algo}.zip")
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    loaded = load_policy(path, algo)  # type: ignore[arg-type]
    env = DiscoveryEnv(SMALL)
    obs = np.stack([env.reset(seed=s)[0] for s in range(20)])
    a1, _ = result.model.predict(obs, deterministic=True)
    a2, _ = loaded.predict(obs, deterministic=True)
    assert np.array_equal(a1, a2)


def test_same_config_same_model() -> None:
    env = DiscoveryEnv(SMALL)
    obs = np.stack([env.reset(seed=s)[0] for s in range(10)])
    m1, m2 = train_policy(_tiny()).model, train_policy(_tiny()).model
    p1 = m1.policy.get_distribution(m1.policy.obs_to_tensor(obs)[0]).distribution.probs.detach().numpy()
    p2 = m2.policy.get_distribution(m2.policy.obs_to_tensor(obs)[0]).distribution.probs.detach().numpy()
    assert np.allclose(p1, p2)


def test_load_missing_policy_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "none.zip", "ppo")


def test_held_out_seeds_avoid_the_training_range() -> None:
    seeds = held_out_seeds(50, 0, SMALL)
    assert len(set(seeds)) == 50 and min(seeds) >= SMALL.seed_range[1]
    assert seeds == held_out_seeds(50, 0, SMALL) and seeds != held_out_seeds(50, 1, SMALL)


def test_compare_policies_plays_the_same_worlds() -> None:
    def first_untested(env: DiscoveryEnv, obs: np.ndarray) -> int:
        return int(np.argmin(env.tested))  # every gene once: a round-robin strategy

    df = compare_policies({"round_robin": first_untested}, 5, 3, env_cfg=SMALL)
    assert list(df.columns) == EPISODE_COLUMNS
    assert sorted(df["policy"].unique()) == ["designer", "random", "round_robin"]
    worlds = df.groupby("policy")["world_seed"].apply(sorted)
    assert worlds["random"] == worlds["designer"] == worlds["round_robin"]
    assert np.allclose(df["episode_return"], df["info_gain"] - SMALL.reward_lambda * df["cost"])
    assert (df["cost"] <= 6 + 1e-9).all() and (df["correct_share"] <= df["decided_share"] + 1e-12).all()
    table = summarise(df)
    assert set(table["policy"]) == {"designer", "random", "round_robin"} and (table["worlds"] == 5).all()
    m = paired_margin(df, "round_robin", "random")
    assert -1.5 <= m["margin"] <= 1.5 and 0.0 <= m["win_share"] <= 1.0


def test_designer_beats_random_choice() -> None:
    # The designer baseline must be a real opponent: better than random on held-out worlds.
    df = compare_policies({}, 12, 5, env_cfg=EnvConfig())
    m = paired_margin(df, "designer", "random")
    assert m["margin"] > 0.05


def test_random_policy_is_seeded() -> None:
    env = DiscoveryEnv(SMALL)
    env.reset(seed=0)
    p1, p2 = random_policy(4), random_policy(4)
    assert [p1(env, np.zeros(1)) for _ in range(10)] == [p2(env, np.zeros(1)) for _ in range(10)]


@pytest.mark.slow
def test_trained_ppo_beats_random_choice_on_held_out_worlds() -> None:
    result = train_policy(TrainConfig(algo="ppo", timesteps=20_000, seed=0))
    df = compare_policies({"ppo": result.model}, 30, 7, baselines=("random",))
    m = paired_margin(df, "ppo", "random")
    assert m["margin"] > 0.05 and m["margin"] > 1.5 * m["se"], m
    assert m["win_share"] >= 0.5
