"""Level 3 benchmark: our models on the real MovieLens 100k with the Microsoft Recommenders protocol.

Workload: MovieLens 100k (943 users, 1,682 films, 100,000 ratings) exported from the copy
inside the ``recbole==1.2.1`` wheel (`level3_recsys.movielens.export_bundled_ml100k`);
``python_stratified_split(ratio=0.75, min_rating=1, filter_by="item", seed=42)``, every
rating relevant, top-10 with seen items removed, Recommenders' metric definitions
(`level3_recsys.benchmark.run_benchmark`). Every model's settings were chosen before looking
at the test split (the two-stage ranker learns on an inner split of the training ratings
only). The published figures are the brief's table (its sources in the row names).

Writes `benchmarks/sections/level3_movielens.md`. Options: ``--models a,b`` (default: all),
``--out PATH``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from shared.atomic import atomic_write_text  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402

SOURCES = {
    "BiVAE (Recommenders README)": "recommenders-team/recommenders README, MovieLens 100k table",
    "BPR, Cornac (README)": "recommenders-team/recommenders README, MovieLens 100k table",
    "SAR, Jaccard (benchmark run)": "examples/06_benchmarks/movielens.ipynb run, item-stratified split",
    "EASE λ=500 (approx.)": "Steck 2019 (WWW), closed-form EASE; approx. figure on this protocol",
}


def markdown(
    table: pd.DataFrame,
    published: pd.DataFrame,
    seconds: float,
    cores: int,
    tuning: pd.DataFrame | None = None,
) -> str:
    """The section: our table next to the published one."""
    ours = table[["ndcg@10", "precision@10", "recall@10", "map", "map@10", "coverage", "train_seconds"]]
    best = str(ours["ndcg@10"].idxmax())
    best_pub = str(published["ndcg@10"].idxmax())
    exact = published["ndcg@10"][[("approx" not in str(n)) for n in published.index]]
    lines = [
        "## Level 3 — MovieLens 100k, Microsoft Recommenders protocol",
        "",
        "Real MovieLens 100k (943 users, 1,682 films, 100,000 ratings; exported from the `recbole==1.2.1`"
        " wheel with `python -m level3_recsys benchmark --bundled`). Protocol of the Recommenders"
        ' benchmark notebook: `python_stratified_split(ratio=0.75, min_rating=1, filter_by="item",'
        " seed=42)`, every rating relevant, top-10 with the user's training items removed, all 943 test"
        " users, Recommenders' metric definitions (its `map` divides by all of a user's test items;"
        " `map@10` divides by min(|test|, 10)). Settings were fixed without the test split (EASE's λ"
        " on inner splits of the training part, table below); the two-stage ranker learns its labels"
        " on inner splits of the training ratings only (a random quarter of each user's ratings).",
        "",
        f"Machine: {cores} cores; one run (the metrics are deterministic for the seed), whole"
        f" benchmark {seconds:.0f} s. `train_seconds` is the fit time of each model on the 75% split.",
        "",
        "| model | NDCG@10 | Precision@10 | Recall@10 | MAP | MAP@10 | coverage | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in ours.iterrows():
        lines.append(
            f"| ours: {name} | {r['ndcg@10']:.4f} | {r['precision@10']:.4f} | {r['recall@10']:.4f} "
            f"| {r['map']:.4f} | {r['map@10']:.4f} | {r['coverage']:.3f} | {r['train_seconds']:.1f} |"
        )
    for name, r in published.iterrows():
        approx = "≈ " if "approx" in str(name) else ""
        lines.append(
            f"| published: {name} | {approx}{r['ndcg@10']:.4f} | {approx}{r['precision@10']:.4f} "
            f"| {approx}{r['recall@10']:.4f} | {approx}{r['map']:.4f} | – | – | – |"
        )
    margin = ours.loc[best, "ndcg@10"] - published["ndcg@10"].max()
    lines += [
        "",
        "Sources of the published rows: "
        + "; ".join(f"{name}: {src}" for name, src in SOURCES.items() if name in published.index)
        + ".",
        "",
        f"Best: **{best}**, NDCG@10 {ours.loc[best, 'ndcg@10']:.4f}, {margin:+.4f} against the best"
        f" published row ({best_pub}, {published['ndcg@10'].max():.4f});"
        f" {ours.loc[best, 'ndcg@10'] - exact.max():+.4f} against the best exact published figure"
        f" ({exact.idxmax()}, {exact.max():.4f}).",
    ]
    if "ease" in ours.index:
        lines += [
            "",
            f"The ≈ 0.48 row is the same model as our `ease` (Steck's EASE, λ = 500): our"
            f" {ours.loc['ease', 'ndcg@10']:.4f} reproduces it rather than beats it.",
        ]
    if {"ease", "two_stage"} <= set(ours.index):
        gap = ours.loc["two_stage", "ndcg@10"] - ours.loc["ease", "ndcg@10"]
        lines += [
            "",
            f"The two-stage LightGBM re-ranker (settings fixed before looking at the test split) reads"
            f" {gap:+.4f} against EASE here. Treat that as noise: the ranker's test figure moves by about"
            " ±0.005 with small perturbations (a change in how top-k breaks ties between equal"
            " popularity scores, i.e. slightly different candidate lists, moved it from 0.4793 to"
            " 0.4845), and on the inner validation splits it did not beat EASE. Also tried on those"
            " splits, none better than EASE beyond ±0.001: EASE variants (λ grid below, user-degree"
            " weighting, popularity re-weighting, EDLAE's popularity-scaled penalty), score blends of"
            " EASE with ALS or item-kNN, and three other re-ranker variants (see"
            " `level3_recsys/README.md`).",
        ]
    if tuning is not None:
        seeds = [c for c in tuning.columns if c.startswith("seed")]
        lines += [
            "",
            "EASE's λ chosen on inner splits of the 75% training part (items stratified 75/25 again,"
            f" {', '.join(seeds)}; outer test untouched; these NDCG@10 read lower because the outer"
            " test pairs count as misses there):",
            "",
            "| setting | inner NDCG@10 (mean) | " + " | ".join(seeds) + " |",
            "|---|---|" + "---|" * len(seeds),
        ]
        for name, r in tuning.iterrows():
            lines.append(
                f"| {name} | {r['ndcg@10']:.4f} | " + " | ".join(f"{r[c]:.4f}" for c in seeds) + " |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated models (default: all)")
    parser.add_argument("--skip-tuning", action="store_true", help="skip the inner-split λ table")
    parser.add_argument("--out", type=Path, default=HERE / "sections" / "level3_movielens.md")
    args = parser.parse_args()
    configure_environment()
    from level3_recsys.benchmark import (
        BENCHMARK_MODELS,
        EASE_L2_GRID,
        PUBLISHED,
        inner_validation,
        run_benchmark,
    )
    from level3_recsys.movielens import export_bundled_ml100k

    models = args.models.split(",") if args.models else list(BENCHMARK_MODELS)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_bundled_ml100k(Path(tmp) / "ml-100k")
        table = run_benchmark(folder, models, show_progress=False)
        seconds = time.perf_counter() - start
        tuning = None
        if not args.skip_tuning:
            grid = {f"EASE λ={lam:g}": ("ease", {"l2": lam}) for lam in EASE_L2_GRID}
            tuning = inner_validation(folder, grid)
    pd.set_option("display.width", 160)
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    if tuning is not None:
        print(tuning.to_string(float_format=lambda v: f"{v:.4f}"))
    text = markdown(table, PUBLISHED, seconds, os.cpu_count() or 1, tuning)
    atomic_write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
