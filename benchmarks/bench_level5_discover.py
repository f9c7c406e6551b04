"""Level 5 benchmark: `discover` against PC and GES (causal-learn) on simulated gene worlds.

For each size (20, 50, 100 genes) and seed a world is drawn from `level5_discovery.simulate`
(saturating, softplus-floored responses: a nonlinear world). Every method gets the same number of
samples:

* **PC** (Fisher z, alpha 0.01) and **GES** (linear BIC) get observational samples only, as they are
  built for; their CPDAGs are scored with undirected edges at half credit
  (`causal_baselines.expected_edge_scores`). GES runs in a child process under a time limit and is
  reported as skipped when it does not finish.
* **discover (interventions)** gets the same total with ``ko_share`` of it spent on single-gene
  knockouts spread evenly over all genes (the rest observational).
* **discover (observational)** gets exactly PC's data, for a like-for-like comparison.

Metrics are `evaluate.edge_scores` on directed edges (SHD, precision, recall, F1) and wall seconds.
``python benchmarks/bench_level5_discover.py [--profile quick|full]`` writes
``benchmarks/sections/level5_discover.md`` (``run(profile)`` returns the table and the markdown).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from level5_discovery.causal_baselines import (  # noqa: E402
    expected_edge_scores,
    run_ges,
    run_pc,
    run_with_timeout,
)
from level5_discovery.discover import DiscoverConfig, discover  # noqa: E402
from level5_discovery.evaluate import edge_scores  # noqa: E402
from level5_discovery.simulate import World, WorldConfig, generate_world  # noqa: E402
from shared.atomic import atomic_write_text  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402

SECTION = HERE / "sections" / "level5_discover.md"
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"sizes": (20, 50, 100), "n_samples": 2000, "seeds": (0, 1), "ges_timeout_s": 120.0},
    "full": {"sizes": (20, 50, 100), "n_samples": 2000, "seeds": (0, 1, 2, 3, 4), "ges_timeout_s": 600.0},
}
METRICS = ["shd", "precision", "recall", "f1", "seconds"]


def knockout_data(
    world: World, n_samples: int, ko_share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n_samples`` rows: a ``ko_share`` of knockouts spread evenly over all genes, the rest observational.

    Returns:
        ``(data, intervened)``: expression ``(rows, genes)`` and the per-row knocked-out gene or -1.
    """
    n = world.n_genes
    per_gene = max(2, int(n_samples * ko_share) // n)
    n_obs = max(n_samples - per_gene * n, 0)
    parts = [world.sample(n_obs, rng)[:, :n]]
    targets = [np.full(n_obs, -1)]
    for gene in range(n):
        parts.append(world.sample(per_gene, rng, do={gene: 0.0})[:, :n])
        targets.append(np.full(per_gene, gene))
    return np.vstack(parts), np.concatenate(targets)


def _row(
    method: str, n: int, seed: int, scores: dict[str, float], seconds: float, note: str = ""
) -> dict[str, Any]:
    return {"method": method, "n_vars": n, "seed": seed, **{k: scores[k] for k in METRICS[:-1]},
            "seconds": seconds, "note": note}  # fmt: skip


def compare_methods(
    sizes: Sequence[int] = (20, 50, 100),
    n_samples: int = 2000,
    seeds: Sequence[int] = (0,),
    with_interventions: bool = True,
    *,
    ko_share: float = 0.5,
    ges_timeout_s: float = 120.0,
    cfg: DiscoverConfig | None = None,
) -> pd.DataFrame:
    """Score discover, PC and GES on simulated worlds.

    Args:
        sizes: Numbers of genes.
        n_samples: Samples every method gets per world.
        seeds: World (and sampling) seeds.
        with_interventions: Also run discover on knockout data (same total samples).
        ko_share: Share of the interventional run's samples that are knockouts.
        ges_timeout_s: GES's time limit per world; a run that hits it is reported with NaN metrics.
        cfg: discover's settings (default `DiscoverConfig()`).

    Returns:
        One row per (method, n_vars, seed): ``method, n_vars, seed, shd, precision, recall, f1,
        seconds, note``.
    """
    cfg = cfg or DiscoverConfig()
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for seed in seeds:
            world = generate_world(WorldConfig(n_genes=n), seed)
            true = world.weights != 0
            rng = np.random.default_rng(seed)
            obs = world.sample(n_samples, rng)[:, :n]
            if with_interventions:
                x, iv = knockout_data(world, n_samples, ko_share, rng)
                res = discover(x, iv, cfg=cfg)
                rows.append(
                    _row("discover (interventions)", n, seed, edge_scores(true, res.adj), res.seconds)
                )
            res = discover(obs, None, cfg=cfg)
            rows.append(_row("discover (observational)", n, seed, edge_scores(true, res.adj), res.seconds))
            pc = run_pc(obs, alpha=0.01)
            rows.append(_row("PC (observational)", n, seed, expected_edge_scores(true, pc), pc.seconds))
            ges = run_with_timeout(run_ges, obs, timeout_s=ges_timeout_s)
            if ges is None:
                nan = {k: float("nan") for k in METRICS}
                rows.append(
                    _row("GES (observational)", n, seed, nan, ges_timeout_s, f"> {ges_timeout_s:.0f} s")
                )
            else:
                rows.append(
                    _row("GES (observational)", n, seed, expected_edge_scores(true, ges), ges.seconds)
                )
    return pd.DataFrame(rows)


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (method, n_vars); runs that timed out are counted in ``timeouts``."""
    grouped = table.groupby(["n_vars", "method"], sort=True)
    out = grouped[METRICS].mean()
    out["timeouts"] = grouped["note"].apply(lambda s: int((s != "").sum()))
    out["runs"] = grouped.size()
    return out.reset_index()


def markdown(summary: pd.DataFrame, profile: str, params: dict[str, Any]) -> str:
    """The results section."""
    lines = [
        "## Level 5: causal discovery (`discover` vs PC and GES)",
        "",
        f"Simulated gene worlds (`level5_discovery.simulate`, nonlinear saturating responses), "
        f"{params['n_samples']} samples per world, seeds {list(params['seeds'])}, profile `{profile}`, "
        f"{os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}. PC and GES (causal-learn 0.1.4.8) see "
        "observational samples; undirected CPDAG edges count half (expected score under a coin-flip "
        "orientation). `discover (interventions)` spends half of the same sample count on single-gene "
        "knockouts spread over all genes. Means over seeds; GES runs past "
        f"{params['ges_timeout_s']:.0f} s are stopped and counted as timeouts (metrics over finished runs).",
        "",
        "| genes | method | SHD | precision | recall | F1 | seconds | timeouts |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in summary.itertuples(index=False):
        cells = [f"{r.shd:.1f}", f"{r.precision:.2f}", f"{r.recall:.2f}", f"{r.f1:.2f}", f"{r.seconds:.2f}"]
        cells = ["-" if c == "nan" else c for c in cells]
        lines.append(f"| {r.n_vars} | {r.method} | " + " | ".join(cells) + f" | {r.timeouts}/{r.runs} |")
    return "\n".join(lines) + "\n"


def run(profile: str = "quick") -> dict[str, Any]:
    """Run the comparison for a profile.

    Returns:
        ``{"profile", "params", "table" (per-run records), "summary" (records), "markdown"}``.
    """
    params = PROFILES[profile]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = compare_methods(
            params["sizes"], params["n_samples"], params["seeds"], ges_timeout_s=params["ges_timeout_s"]
        )
    summary = summarise(table)
    return {
        "profile": profile,
        "params": params,
        "table": table.to_dict(orient="records"),
        "summary": summary.to_dict(orient="records"),
        "markdown": markdown(summary, profile, params),
    }


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
