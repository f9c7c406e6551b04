"""Level 5 benchmark: reinforcement-learned experiment choice vs the EIG designer vs random choice.

PPO and A2C (stable-baselines3, small MLP, CPU) are trained on `level5_discovery.rl.env.DiscoveryEnv`
campaigns, a fresh simulated world every episode (seeds from the training range), then every
strategy plays the same held-out worlds (seeds above the training range): PPO, A2C, uniformly random
knockouts, and 5a's expected-information-gain designer over DAGs sampled from the same beliefs.
Reported per strategy: mean episode return (information gained about which genes drive the
phenotype, minus ``reward_lambda`` x cost), information per unit cost, the final share of genes
whose phenotype ancestry is decided and the share decided *correctly* (hidden truth, evaluation
only), plus training wall time and the learning curves (episode return against timesteps).
``python benchmarks/bench_level5_rl.py [--profile quick|full]`` writes
``benchmarks/sections/level5_rl.md`` (``run(profile)`` returns the tables and the markdown).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from level5_discovery.rl.env import EnvConfig  # noqa: E402
from level5_discovery.rl.evaluate import compare_policies, paired_margin, summarise  # noqa: E402
from level5_discovery.rl.train import TrainConfig, train_policy  # noqa: E402
from shared.atomic import atomic_write_text  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402

SECTION = HERE / "sections" / "level5_rl.md"
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"n_genes": 10, "timesteps": 40_000, "n_worlds": 20, "seed": 0, "eval_seed": 2024},
    "full": {"n_genes": 12, "timesteps": 200_000, "n_worlds": 50, "seed": 0, "eval_seed": 2024},
}
CURVE_POINTS = 8


def curve_table(curves: pd.DataFrame, total: int, points: int = CURVE_POINTS) -> pd.DataFrame:
    """Mean episode return per algorithm in ``points`` equal slices of training (the learning curve)."""
    out = []
    for algo, c in curves.groupby("algo", sort=False):
        edges = np.linspace(0, total, points + 1)
        slot = np.clip(np.searchsorted(edges, c["timesteps"], side="left") - 1, 0, points - 1)
        means = c.groupby(slot)["episode_return"].mean()
        for s, v in means.items():
            out.append({"algo": algo, "until_timesteps": int(edges[int(s) + 1]), "mean_return": float(v)})
    return pd.DataFrame(out)


def markdown(result: dict[str, Any]) -> str:
    """The results section."""
    p = result["params"]
    summary = pd.DataFrame(result["summary"])
    lines = [
        "## Level 5: reinforcement-learned experiment choice (RL vs designer vs random)",
        "",
        f"`DiscoveryEnv`: {p['n_genes']} genes per world, budget = {p['n_genes']} knockouts, reward = "
        "share of genes whose phenotype ancestry became decided - 0.02 x cost. PPO and A2C trained "
        f"{p['timesteps']:,} steps each on worlds from the training range, then every strategy plays the "
        f"same {p['n_worlds']} held-out worlds. Profile `{result['profile']}`, {os.cpu_count()} cores, "
        f"{datetime.now(UTC):%Y-%m-%d}. `correct` = decided and right (hidden truth, evaluation only).",
        "",
        "| strategy | mean return (± se) | info gained | cost | info / cost | decided | correct | wrong |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary.itertuples(index=False):
        lines.append(
            f"| {r.policy} | {r.episode_return:.3f} ± {r.return_se:.3f} | {r.info_gain:.3f} | {r.cost:.2f} | "
            f"{r.info_per_cost:.3f} | {r.decided_share:.3f} | {r.correct_share:.3f} | {r.wrong:.2f} |"
        )
    lines += ["", "Paired margins over random choice (same worlds):"]
    for name, m in result["margins"].items():
        lines.append(f"- {name}: {m['margin']:+.3f} ± {m['se']:.3f} (wins on {m['win_share']:.0%} of worlds)")
    lines += [
        "",
        "Training wall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in result["train_seconds"].items())
        + f"; evaluation of every strategy {result['eval_seconds']:.0f} s.",
    ]
    lines += ["", "Learning curves (mean training-episode return per slice of training):", ""]
    curve = pd.DataFrame(result["curve_table"])
    algos = list(dict.fromkeys(curve["algo"]))
    lines.append("| until step | " + " | ".join(algos) + " |")
    lines.append("|---:|" + "---:|" * len(algos))
    wide = curve.pivot(index="until_timesteps", columns="algo", values="mean_return")
    for t, row in wide.iterrows():
        lines.append(f"| {int(t):,} | " + " | ".join(f"{row[a]:.3f}" for a in algos) + " |")
    return "\n".join(lines) + "\n"


def run(profile: str = "quick") -> dict[str, Any]:
    """Train PPO and A2C, compare every strategy on held-out worlds.

    Returns:
        ``{"profile", "params", "episodes", "summary", "margins", "curves", "curve_table",
        "train_seconds", "eval_seconds", "markdown"}`` (frames as records).
    """
    from level5_discovery.simulate import WorldConfig

    p = PROFILES[profile]
    env_cfg = EnvConfig(world=WorldConfig(n_genes=p["n_genes"]))
    models, curves, seconds = {}, [], {}
    for algo in ("ppo", "a2c"):
        res = train_policy(TrainConfig(algo=algo, timesteps=p["timesteps"], seed=p["seed"], env=env_cfg))
        models[algo.upper()], seconds[algo.upper()] = res.model, res.seconds
        curves.append(res.curve)
    start = time.perf_counter()
    episodes = compare_policies(models, p["n_worlds"], p["eval_seed"], env_cfg=env_cfg)
    eval_seconds = time.perf_counter() - start
    summary = summarise(episodes)
    margins = {name: paired_margin(episodes, name, "random") for name in [*models, "designer"]}
    curve = pd.concat(curves, ignore_index=True)
    result: dict[str, Any] = {
        "profile": profile,
        "params": p,
        "episodes": episodes.to_dict(orient="records"),
        "summary": summary.to_dict(orient="records"),
        "margins": margins,
        "curves": curve.to_dict(orient="records"),
        "curve_table": curve_table(curve, p["timesteps"]).to_dict(orient="records"),
        "train_seconds": seconds,
        "eval_seconds": eval_seconds,
    }
    result["markdown"] = markdown(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    args = parser.parse_args()
    configure_environment()
    result = run(args.profile)
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(SECTION, result["markdown"])
    print(result["markdown"])
    print(f"wrote {SECTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
