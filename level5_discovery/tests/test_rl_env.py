"""The discovery environment: gymnasium API, reward bookkeeping, termination, determinism, decisions."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from level5_discovery.experiments import ExperimentAPI, Intervention
from level5_discovery.rl.env import DiscoveryEnv, EnvConfig, intervention_calls
from level5_discovery.rl.features import belief_features, decided_mask, observation_size
from level5_discovery.simulate import WorldConfig, generate_world
from level5_discovery.stats import test_intervention


def _small(**kw: object) -> EnvConfig:
    return EnvConfig(world=WorldConfig(n_genes=6), **kw)  # type: ignore[arg-type]


def test_check_env_passes() -> None:
    env = DiscoveryEnv(_small())
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (observation_size(6),)
    assert env.action_space.n == 6


@pytest.mark.parametrize("reward_lambda", [0.0, 0.05, 0.3])
def test_rewards_sum_to_information_gain_minus_cost(reward_lambda: float) -> None:
    env = DiscoveryEnv(_small(reward_lambda=reward_lambda, kinds=("knockout", "knockdown"), budget=7.0))
    rng = np.random.default_rng(1)
    for ep in range(4):
        _, info = env.reset(seed=ep)
        initial = float(decided_mask(env.beliefs.required_reach, env.beliefs.forbidden_reach).mean())
        total, cost, done = 0.0, 0.0, False
        while not done:
            _, r, done, _, info = env.step(int(rng.integers(env.action_space.n)))
            total += r
            cost += info["cost"]
        final = float(decided_mask(env.beliefs.required_reach, env.beliefs.forbidden_reach).mean())
        assert initial == info["initial_information"] == 0.0
        assert final == info["information"]
        assert total == pytest.approx((final - initial) - reward_lambda * cost, abs=1e-12)
        assert cost == pytest.approx(env.total_cost) and cost <= 7.0 + 1e-9


def test_invalid_actions_raise() -> None:
    env = DiscoveryEnv(_small())
    env.reset(seed=0)
    for bad in (-1, 6, 2.5, "G01", None):
        with pytest.raises(ValueError, match="action must be an integer"):
            env.step(bad)
    env.step(np.int64(2))  # numpy integers are fine


def test_episode_terminates_when_the_budget_is_spent() -> None:
    # The same gene over and over never decides every gene, so only the budget can end it.
    env = DiscoveryEnv(_small(budget=4.0))
    env.reset(seed=3)
    flags = [env.step(0)[2] for _ in range(4)]
    assert flags == [False, False, False, True]
    assert env.remaining == pytest.approx(0.0)
    with pytest.raises(RuntimeError, match="episode has ended"):
        env.step(1)


def test_same_seed_same_trajectory() -> None:
    def play(seed: int) -> tuple[list[float], np.ndarray, int]:
        env = DiscoveryEnv(_small())
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        rewards, done = [], False
        while not done:
            obs, r, done, _, info = env.step(int(rng.integers(6)))
            rewards.append(r)
        return rewards, obs, info["world_seed"]

    a, b, c = play(11), play(11), play(12)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert a[2] != c[2]


def test_world_seed_option_fixes_the_world() -> None:
    env = DiscoveryEnv(_small(seed_range=(0, 10)))
    _, info = env.reset(options={"world_seed": 123_456})
    assert info["world_seed"] == 123_456
    for s in range(5):
        assert 0 <= env.reset(seed=s)[1]["world_seed"] < 10


def test_fast_calls_match_stats_and_investigate() -> None:
    world = generate_world(WorldConfig(n_genes=8), 4)
    api = ExperimentAPI(world, budget=20, seed=4)
    names = (*world.genes, "phenotype")
    for g in world.genes:
        result = api.run(Intervention("knockout", g))
        shifted, null = intervention_calls(result.data, names, g, alpha=0.05, min_effects=(0.8,) * 9)
        t = test_intervention(result, alpha=0.05, min_effect=0.8)
        rows = t[~t["is_target"]]
        assert shifted == list(rows.loc[rows["significant"], "variable"])
        assert null == list(rows.loc[~rows["significant"] & rows["power_ok"], "variable"])


def test_phenotype_ancestry_is_inferred_through_reach() -> None:
    # Hand-made beliefs: G0 -> G1 known, G1 upstream of the phenotype known => G0 decided upstream;
    # G2 not upstream and G2 -> G3 known => G3 decided not upstream.
    env = DiscoveryEnv(_small())
    env.reset(seed=0)
    b = env.beliefs
    b.observe_intervention("G00", ["G01"], [])
    b.observe_intervention("G01", ["phenotype"], [])
    b.observe_intervention("G02", ["G03"], ["phenotype"])
    decided = decided_mask(b.required_reach, b.forbidden_reach)
    assert decided.tolist() == [True, True, True, True, False, False]
    assert b.required_reach[0, 6] and b.forbidden_reach[3, 6]
    obs = belief_features(b.required_reach, b.forbidden_reach, np.zeros(6, int), 1.0)
    assert obs[1] == 1.0 and obs[3 * 8 + 2] == 1.0 and obs[-1] == pytest.approx(4 / 6)
    assert obs.min() >= 0.0 and obs.max() <= 1.0


def test_decisions_are_mostly_right_after_testing_every_gene() -> None:
    env = DiscoveryEnv(EnvConfig())
    correct, decided = [], []
    for w in range(8):
        env.reset(options={"world_seed": w})
        for a in range(env.n_genes):
            if env.step(a)[2]:
                break
        s = env.truth_summary()
        correct.append(s["correct_share"])
        decided.append(s["decided_share"])
    assert np.mean(decided) >= 0.8
    assert np.mean(correct) / np.mean(decided) >= 0.85
