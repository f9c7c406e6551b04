"""Level 5 benchmark: retrieval at scale, retrieval quality, the hypothesis LM, F1/SHD against budget.

Part ``retrieval`` — the hybrid index (`retrieval.evaluation.bench_retrieval`: BM25 + MiniLM
sentence embeddings + FAISS over generated abstracts of a 200-gene world): build seconds and
single-query hybrid latency p50/p99 (query embedding included), each size in a fresh process
(its own peak RSS). A small probe runs first; a size whose build, extrapolated from the probe's
per-document rate, would exceed ``--max-build-min`` is not run and is reported as such.

Part ``quality`` — recall@5 and MRR of hybrid, BM25 alone and dense alone on questions generated
from the hidden world (`retrieval.questions.generate_questions`, 60 per seed, as the pipeline
scores it) for the quick profile's world and corpus at several seeds.

Part ``lm`` — the quick profile's hypothesis LM on each seed (`train.train_hypothesis_model`:
tokenizer, pretraining, LoRA on a deep copy of the base; one child process per seed): wall
seconds, held-out abstract perplexity before and after pretraining, target perplexity before and
after LoRA, then constrained and free-decoding parse rates and hypothesis precision against the
retrieval-only extraction baseline on the agent's own retrieval contexts
(`lm.evaluation.compare_with_baseline`; LoRA trained on other questions' contexts, never on those).

Part ``budget`` — `compare.compare` on the quick 20-gene world at budget 30 for several seeds: the
designed campaign, random and round-robin knockouts and observational PC, with the retrieval-only
baseline's literature claims; final F1/SHD per method and seed, the curves at six budget points,
the goal "SHD <= 2 within the quick budget", and a PNG of F1 and SHD against budget.

Part ``goal`` — the designed campaign alone on more quick worlds (``--goal-seeds``, 0-29 by
default): final SHD per world and how many reach the goal, the worlds that chose the loop's
settings (`TUNING_WORLDS`) counted apart from the others.

Each part writes ``benchmarks/work/level5/<part>.json``; the section
``benchmarks/sections/level5.md`` is rebuilt from every part's latest result, so parts can be
rerun separately (``--parts lm,budget``); ``--section-only`` rebuilds it without measuring.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.children import in_child, json_default  # noqa: E402
from shared.atomic import atomic_write_text  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402
from shared.timing import Timer, peak_rss_mib  # noqa: E402

WORK = HERE / "work" / "level5"
SECTION = HERE / "sections" / "level5.md"
FIGURE = HERE / "figures" / "level5_budget.png"
PARTS = ("retrieval", "quality", "lm", "budget", "goal")
SHD_GOAL = 2.0
METHODS = ("designed", "random", "round_robin", "observational_pc")
LABELS = {
    "designed": "designed",
    "random": "random",
    "round_robin": "round robin",
    "observational_pc": "observational PC",
}


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def _quick() -> Any:
    """The quick profile's settings (`DiscoveryConfig` defaults are the quick profile)."""
    from level5_discovery.config import DiscoveryConfig

    return DiscoveryConfig(profile="quick", show_progress=False)


def _world_and_papers(seed: int) -> tuple[Any, list[Any]]:
    from level5_discovery.literature import generate_corpus
    from level5_discovery.simulate import generate_world

    cfg = _quick()
    world = generate_world(cfg.world, seed)
    return world, generate_corpus(world, cfg.literature, seed)


# ------------------------------------------------------------------------------------ retrieval
def retrieval_child(n_docs: str, n_queries: str) -> dict[str, Any]:
    """`bench_retrieval` at ``n_docs`` in this (fresh) process, with its peak RSS and wall seconds."""
    configure_environment()
    from level5_discovery.retrieval.evaluation import bench_retrieval

    with Timer() as t:
        res = bench_retrieval(int(n_docs), n_queries=int(n_queries), seed=0, progress=False)
    return {**res, "wall_s": t.seconds, "peak_rss_mib": peak_rss_mib()}


def bench_retrieval_sizes(
    sizes: list[int], probe: int, n_queries: int, max_build_min: float
) -> dict[str, Any]:
    """The probe, then every size whose extrapolated build fits ``max_build_min``."""
    print(f"  probe: {probe:,} documents", flush=True)
    first = in_child("bench_level5", "retrieval_child", str(probe), str(n_queries))
    per_doc = first["build_s"] / first["n_docs"]
    wall_per_doc = first["wall_s"] / first["n_docs"]
    runs, skipped = [], []
    for n in sizes:
        est_min = per_doc * n / 60
        if est_min > max_build_min:
            skipped.append({"n_docs": n, "est_build_min": est_min, "est_wall_min": wall_per_doc * n / 60})
            print(f"  {n:,}: skipped (build extrapolated to {est_min:.0f} min)", flush=True)
            continue
        print(f"  {n:,} documents (build extrapolated to {est_min:.1f} min)", flush=True)
        runs.append(in_child("bench_level5", "retrieval_child", str(n), str(n_queries)))
    return {
        "probe": first,
        "runs": runs,
        "skipped": skipped,
        "max_build_min": max_build_min,
        "probe_ms_per_doc": per_doc * 1000,
    }


# ------------------------------------------------------------------------------------ quality
def quality_child(seeds: str) -> dict[str, Any]:
    """Recall@5 and MRR per mode on the quick profile's world and corpus, per seed."""
    configure_environment()
    from level5_discovery.retrieval.dense import load_encoder
    from level5_discovery.retrieval.evaluation import evaluate_retrieval
    from level5_discovery.retrieval.index import HybridIndex, RetrievalConfig
    from level5_discovery.retrieval.questions import generate_questions
    from level5_discovery.truth import Evaluator

    cfg = _quick()
    rcfg = cfg.section("retrieval", RetrievalConfig)
    encoder = load_encoder(rcfg.model_device)
    rows = []
    for seed in _seeds(seeds):
        world, papers = _world_and_papers(seed)
        index = HybridIndex.build(papers, rcfg, encoder=encoder, progress=False)
        # The pipeline's evaluation: 60 questions whose answers state a true edge of the world.
        questions = generate_questions(papers, n=60, seed=seed, evaluator=Evaluator(world))
        scores = evaluate_retrieval(index, questions, k=5)
        rows.append({"seed": seed, "n_papers": len(papers), "n_questions": len(questions), "scores": scores})
    return {
        "rows": rows,
        "n_genes": cfg.world.n_genes,
        "n_papers": cfg.literature.n_papers,
        "rrf_k": rcfg.rrf_k,
        "bm25_weight": rcfg.bm25_weight,
    }


# ------------------------------------------------------------------------------------ lm
def lm_child(seed: str) -> dict[str, Any]:
    """Train the quick profile's hypothesis LM and score it against the extraction baseline."""
    configure_environment()
    from level5_discovery.features import retrieval_contexts
    from level5_discovery.lm.config import LMConfig
    from level5_discovery.lm.evaluation import compare_with_baseline
    from level5_discovery.retrieval.index import RetrievalConfig, build_or_load
    from level5_discovery.train import train_hypothesis_model
    from level5_discovery.truth import Evaluator

    s = int(seed)
    cfg = _quick()
    lm_cfg = LMConfig(**cfg.lm).model_copy(update={"progress": False})
    world, papers = _world_and_papers(s)
    with tempfile.TemporaryDirectory() as tmp:
        with Timer() as t_index:
            index = build_or_load(
                papers, Path(tmp) / "index", cfg.section("retrieval", RetrievalConfig), progress=False
            )
        # Pretraining and LoRA (LoRA tunes a deep copy of the pretrained base).
        trained = train_hypothesis_model(papers, world.genes, index, lm_cfg, s)
        signed = Evaluator(world).true_edges()
        contexts = retrieval_contexts(index, trained.model.genes)
        with Timer() as t_eval:
            cmp = compare_with_baseline(
                trained.model.model,
                trained.model.tokenizer,
                contexts,
                trained.model.genes,
                [(c, e) for c, e, _ in signed],
                signed,
                n=1,
                seed=s,
                passage_words=lm_cfg.passage_words,
                max_passages=lm_cfg.context_passages,
            )
    return {
        "seed": s,
        "device": str(next(trained.model.model.parameters()).device),
        "config": lm_cfg.model_dump(),
        "metrics": trained.metrics,
        "compare": cmp,
        "index_s": t_index.seconds,
        "eval_s": t_eval.seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


# ------------------------------------------------------------------------------------ budget
def _baseline_claims(world: Any, papers: list[Any], cfg: Any) -> tuple[list[Any], float]:
    """The retrieval-only extraction baseline's literature claims, and the seconds they took."""
    from level5_discovery.hypothesise import literature_claims
    from level5_discovery.lm.extraction import baseline_hypotheses
    from level5_discovery.retrieval.index import RetrievalConfig, build_or_load

    with tempfile.TemporaryDirectory() as tmp:
        index = build_or_load(
            papers, Path(tmp) / "index", cfg.section("retrieval", RetrievalConfig), progress=False
        )
        with Timer() as t_claims:
            claims = literature_claims(
                world.genes,
                search=index.search,
                propose=lambda hits: baseline_hypotheses(hits, top=4, n=2),
            )
    return claims, t_claims.seconds


def _worlds_with_claims(seeds: str) -> Iterator[tuple[int, Any, list[Any], float]]:
    """Per seed: the quick profile's world and the baseline's claims on its literature (and their seconds)."""
    cfg = _quick()
    for seed in _seeds(seeds):
        world, papers = _world_and_papers(seed)
        claims, claims_s = _baseline_claims(world, papers, cfg)
        yield seed, world, claims, claims_s


def budget_child(seeds: str, budget: str) -> dict[str, Any]:
    """`compare.compare` per seed on the quick world with the retrieval-only baseline's claims."""
    configure_environment()
    from level5_discovery.compare import compare
    from level5_discovery.config import LabConfig
    from level5_discovery.hypothesise import claim_precision
    from level5_discovery.investigate import InvestigateConfig
    from level5_discovery.truth import Evaluator

    b = float(budget)
    seeds_out = []
    for seed, world, claims, claims_s in _worlds_with_claims(seeds):
        with Timer() as t_cmp:
            comparison = compare(world, claims, InvestigateConfig(budget=b), LabConfig(), seed)
        true_edges = Evaluator(world).true_edges()
        seeds_out.append(
            {
                "seed": seed,
                "n_true_edges": len(true_edges),
                "claims": claim_precision(claims, set(true_edges)),
                "claims_s": claims_s,
                "compare_s": t_cmp.seconds,
                "summary": comparison.summary.to_dict(orient="records"),
                "curves": comparison.curves.to_dict(orient="records"),
            }
        )
        print(f"  seed {seed}: compare {t_cmp.seconds:.0f} s", file=sys.stderr, flush=True)
    return {"budget": b, "n_genes": _quick().world.n_genes, "seeds": seeds_out}


def goal_child(seeds: str, budget: str) -> dict[str, Any]:
    """The designed campaign alone on many quick worlds: its final SHD and F1 per world."""
    configure_environment()
    from level5_discovery.compare import compare
    from level5_discovery.config import LabConfig
    from level5_discovery.investigate import InvestigateConfig

    b = float(budget)
    worlds = []
    for seed, world, claims, _ in _worlds_with_claims(seeds):
        comparison = compare(
            world,
            claims,
            InvestigateConfig(budget=b),
            LabConfig(),
            seed,
            strategies=("designed",),
            with_pc=False,
        )
        row = comparison.summary.iloc[0]
        worlds.append({"seed": seed, "shd": float(row["shd"]), "f1": float(row["f1"])})
        print(f"  world {seed}: SHD {row['shd']:.0f}", file=sys.stderr, flush=True)
    return {"budget": b, "n_genes": _quick().world.n_genes, "worlds": worlds}


def curve_at(curve: list[dict[str, Any]], method: str, spent: float) -> tuple[float, float]:
    """F1 and SHD of ``method`` after the last step that had spent at most ``spent`` (NaN before any)."""
    pts = [r for r in curve if r["method"] == method and r["spent"] <= spent + 1e-9]
    if not pts:
        return math.nan, math.nan
    last = max(pts, key=lambda r: r["spent"])
    return float(last["f1"]), float(last["shd"])


def first_reaching(curve: list[dict[str, Any]], method: str, shd: float) -> float | None:
    """The budget spent when ``method`` first had SHD <= ``shd`` (None if never)."""
    pts = sorted((r for r in curve if r["method"] == method), key=lambda r: r["spent"])
    return next((float(r["spent"]) for r in pts if r["shd"] <= shd), None)


def plot_budget(res: dict[str, Any], path: Path) -> Path:
    """F1 (top) and SHD (bottom) against budget spent, one column per seed, one line per method."""
    import matplotlib.pyplot as plt

    from shared.plotting import save_png, set_theme

    set_theme()
    seeds = res["seeds"]
    fig, axes = plt.subplots(2, len(seeds), figsize=(4.2 * len(seeds), 6.4), sharex=True, squeeze=False)
    for j, s in enumerate(seeds):
        for method in METHODS:
            pts = sorted((r for r in s["curves"] if r["method"] == method), key=lambda r: r["spent"])
            if not pts:
                continue
            x = [r["spent"] for r in pts]
            style = {"marker": "o", "linestyle": "--"} if method == "observational_pc" else {}
            axes[0, j].plot(x, [r["f1"] for r in pts], label=LABELS[method], **style)
            axes[1, j].plot(x, [r["shd"] for r in pts], label=LABELS[method], **style)
        axes[1, j].axhline(SHD_GOAL, color="grey", linewidth=0.8, linestyle=":")
        axes[0, j].set_title(f"seed {s['seed']}")
        axes[1, j].set_xlabel("budget spent (knockout = 1)")
    axes[0, 0].set_ylabel("edge F1")
    axes[1, 0].set_ylabel("SHD (dotted: goal 2)")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Level 5: {res['n_genes']}-gene world, budget {res['budget']:g} (quick profile)")
    return save_png(fig, path)


# ------------------------------------------------------------------------------------ section
def _load(part: str) -> dict[str, Any] | None:
    path = WORK / f"{part}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _load_line(res: dict[str, Any]) -> str:
    before, after = res["load"]
    return (
        f"Measured {res['when']} in {res['seconds']:.0f} s; load average (1 min) {before:.1f} before and "
        f"{after:.1f} after on {res['cores']} cores"
        + (
            " (another user's tests shared the machine: times are noisy upper bounds)."
            # Our own part keeps about one core busy, so only the load before it says someone else ran.
            if before >= 1.0
            else "."
        )
    )


def _retrieval_md(res: dict[str, Any]) -> list[str]:
    lines = [
        "**Retrieval at scale** (`retrieval.evaluation.bench_retrieval`: generated abstracts of a 200-gene "
        "world; build = tokenise + BM25 (bm25s) + MiniLM embedding of every sentence + FAISS flat index, on "
        "CPU; latency = one hybrid query at a time, query embedding included, "
        f"{res['probe']['n_queries']} generated questions; fresh process per size):",
        "",
        "| documents | build s | ms / document | save s | load s | query p50 ms | query p99 ms "
        "| peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [res["probe"], *res["runs"]]:
        lines.append(
            f"| {r['n_docs']:,} | {r['build_s']:.1f} | {1000 * r['build_s'] / r['n_docs']:.1f} | "
            f"{r['save_s']:.2f} | {r['load_s']:.2f} | {r['query_ms_p50']:.1f} | {r['query_ms_p99']:.1f} | "
            f"{r['peak_rss_mib']:,.0f} |"
        )
    lines.append("")
    lines.append(
        f"The first row is the probe ({res['probe']['n_docs']:,} documents, "
        f"{res['probe_ms_per_doc']:.1f} ms per document to build)."
    )
    big = max(res["runs"], key=lambda r: r["n_docs"], default=None)
    for s in res["skipped"]:
        text = (
            f"**{s['n_docs']:,} documents: not run.** At the probe's rate its build alone extrapolates to "
            f"{s['est_build_min']:.0f} min (the whole run, corpus generation included, to "
            f"{s['est_wall_min']:.0f} min), over this run's {res['max_build_min']:g}-minute limit per size. "
        )
        if big is not None:
            rate = big["build_s"] / big["n_docs"]
            text += (
                f"At the largest measured size's rate ({1000 * rate:.1f} ms per document at "
                f"{big['n_docs']:,}) the build would take {rate * s['n_docs'] / 60:.0f} min. "
            )
        lines += ["", text + "No measured figure is given for it."]
    lines += ["", _load_line(res)]
    return lines


def _fusion_note(res: dict[str, Any]) -> str:
    # Results saved before the fusion settings were recorded carry neither key.
    if "rrf_k" not in res:
        return ""
    return f"; hybrid = weighted RRF, k = {res['rrf_k']}, BM25 weight {res['bm25_weight']:g}, dense the rest"


def _quality_md(res: dict[str, Any]) -> list[str]:
    rows = res["rows"]
    modes = ("hybrid", "bm25", "dense")
    lines = [
        f"**Retrieval quality** (quick profile: {res['n_genes']}-gene world, {res['n_papers']} abstracts per "
        "seed; questions generated from the hidden world, paraphrasing the abstracts' verbs, a paper "
        "relevant when it states the asked relation of a true edge; every mode ranks 50 deep"
        + _fusion_note(res)
        + "):",
        "",
        "| seed | questions | hybrid recall@5 | BM25 recall@5 | dense recall@5 | hybrid MRR | BM25 MRR "
        "| dense MRR |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cells(scores: dict[str, dict[str, float]]) -> str:
        return (
            " | ".join(f"{scores[m]['recall@5']:.3f}" for m in modes)
            + " | "
            + " | ".join(f"{scores[m]['mrr']:.3f}" for m in modes)
        )

    for r in rows:
        lines.append(f"| {r['seed']} | {r['n_questions']} | " + cells(r["scores"]) + " |")
    mean = {
        m: {k: sum(r["scores"][m][k] for r in rows) / len(rows) for k in ("recall@5", "mrr")} for m in modes
    }
    lines.append("| **mean** | | " + cells(mean) + " |")
    verdicts = []
    for other in ("bm25", "dense"):
        for key, name in (("recall@5", "recall@5"), ("mrr", "MRR")):
            wins = [r["scores"]["hybrid"][key] > r["scores"][other][key] for r in rows]
            ties = [r["scores"]["hybrid"][key] == r["scores"][other][key] for r in rows]
            label = "BM25" if other == "bm25" else "dense"
            if all(wins):
                verdicts.append(f"hybrid beats {label} on {name} on every seed")
            else:
                bad = [str(r["seed"]) for r, w, t in zip(rows, wins, ties, strict=True) if not w]
                kind = "ties or loses" if any(ties) else "loses"
                seeds = ", ".join(bad)
                verdicts.append(
                    f"hybrid does **not** beat {label} on {name} on every seed ({kind} on seed {seeds})"
                )
    text = "; ".join(verdicts)
    lines += ["", text[:1].upper() + text[1:] + ". " + _load_line(res)]
    return lines


def _lm_md(res: dict[str, Any]) -> list[str]:
    runs = res["runs"]
    first = runs[0]
    m, c, cfg = first["metrics"], first["compare"], first["config"]
    lm, base = c["lm"], c["baseline"]
    lines = [
        f"**Hypothesis LM** (quick profile, seed {first['seed']}, {first['device']}): a byte-level BPE "
        f"tokenizer ({cfg['vocab_size']:,} tokens, gene names single tokens) and a GPT-2 of {cfg['n_layer']} "
        f"layers x {cfg['n_embd']} ({m['n_params'] / 1e6:.2f} M parameters) pretrained "
        f"{cfg['pretrain_steps']} steps on 90 % of the abstracts, then LoRA (r = {cfg['lora_r']}, "
        f"{m['n_trainable']:,.0f} trainable parameters) for {cfg['lora_steps']} steps on {m['n_pairs']:.0f} "
        f"instruction pairs from the retrieval contexts of {m['n_train_questions']:.0f} training questions "
        f"about gene pairs ({m['n_train_contexts_dropped']:.0f} contexts dropped as repeats or as showing an "
        f"evaluation prompt's passages); target perplexity on {m['n_heldout_pairs']:.0f} pairs from the "
        "agent's own (held-out) retrieval contexts:",
        "",
        "| measurement | value |",
        "|---|---:|",
        f"| pretraining wall s | {m['pretrain_seconds']:.1f} |",
        f"| LoRA wall s | {m['lora_seconds']:.1f} |",
        f"| held-out abstract perplexity, before pretraining | {m['pretrain_ppl_before']:,.1f} |",
        f"| held-out abstract perplexity, after pretraining | {m['pretrain_ppl_after']:,.2f} |",
        f"| target perplexity, before LoRA | {m['target_ppl_before_lora']:,.2f} |",
        f"| target perplexity, after LoRA | {m['target_ppl_after_lora']:,.3f} |",
        f"| constrained-decoding parse rate | {c['constrained_parse_rate']:.3f} |",
        f"| free-decoding (greedy) parse rate | {c['free_parse_rate']:.3f} |",
        f"| LM hypothesis precision (directed edge; signed) | {lm['precision']:.3f}; "
        f"{lm.get('signed_precision', math.nan):.3f} ({lm['n']:.0f} distinct) |",
        f"| extraction baseline precision (directed edge; signed) | {base['precision']:.3f}; "
        f"{base.get('signed_precision', math.nan):.3f} ({base['n']:.0f} distinct) |",
        "",
        "Precision on every seed (a fresh world, corpus, index and LM each):",
        "",
        "| seed | LM directed | LM signed | LM distinct | baseline directed | baseline signed "
        "| baseline distinct |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        a, b = r["compare"]["lm"], r["compare"]["baseline"]
        lines.append(
            f"| {r['seed']} | {a['precision']:.3f} | {a['signed_precision']:.3f} | {a['n']:.0f} | "
            f"{b['precision']:.3f} | {b['signed_precision']:.3f} | {b['n']:.0f} |"
        )

    def mean(who: str, key: str) -> float:
        return float(sum(r["compare"][who][key] for r in runs) / len(runs))

    lines.append(
        f"| mean | {mean('lm', 'precision'):.3f} | {mean('lm', 'signed_precision'):.3f} | | "
        f"{mean('baseline', 'precision'):.3f} | {mean('baseline', 'signed_precision'):.3f} | |"
    )
    diff = mean("lm", "precision") - mean("baseline", "precision")
    verdict = "above" if diff > 0 else ("equal to" if diff == 0 else "below")
    lines += [
        "",
        f"Precision is over the top hypothesis per context on {c['n_contexts']} retrieval contexts (two "
        "questions per gene, the hybrid index's top passages), scored against the hidden true edges; the "
        "baseline reads the same visible passages. Over the seeds the LM is "
        f"{verdict} the baseline by {abs(diff):.3f} (mean directed-edge precision). Free greedy decoding (no "
        f"grammar) parsed on {c['free_parse_rate']:.0%} of seed {first['seed']}'s contexts; constrained "
        f"decoding parses by construction. Scoring seed {first['seed']}'s contexts (constrained + free "
        f"decoding) took {first['eval_s']:.0f} s; peak RSS {first['peak_rss_mib']:,.0f} MiB. "
        + _load_line(res),
    ]
    return lines


def _budget_md(res: dict[str, Any], figure: Path | None) -> list[str]:
    seeds = res["seeds"]
    b = res["budget"]
    final = {(r["method"], s["seed"]): r for s in seeds for r in s["summary"]}
    lines = [
        f"**F1 and SHD against budget** (`compare.compare` on the quick {res['n_genes']}-gene world, budget "
        f"{b:g}, `InvestigateConfig(budget={b:g})`, `LabConfig()`; literature claims from the retrieval-only "
        "extraction baseline (`baseline_hypotheses(top=4, n=2)` over the hybrid index's passages, the same "
        "for every strategy); observational PC spends the whole budget on observational wells). Final "
        "scores, F1 / SHD:",
        "",
        "| method | " + " | ".join(f"seed {s['seed']}" for s in seeds) + " | mean F1 | mean SHD |",
        "|---|" + "---:|" * (len(seeds) + 2),
    ]
    for method in METHODS:
        rows = [final.get((method, s["seed"])) for s in seeds]
        if not any(rows):
            continue
        f1 = [r["f1"] for r in rows if r]
        shd = [r["shd"] for r in rows if r]
        cells = [f"{r['f1']:.3f} / {r['shd']:.1f}" if r else "–" for r in rows]
        lines.append(
            f"| {LABELS[method]} | " + " | ".join(cells) + f" | {sum(f1) / len(f1):.3f} | "
            f"{sum(shd) / len(shd):.2f} |"
        )
    points = [b * i / 6 for i in range(1, 7)]
    lines += [
        "",
        "Curve points (mean over seeds of F1 / SHD after the last experiment within each budget; the loop "
        "scores itself after every experiment, PC is re-run on the wells bought so far):",
        "",
        "| method | " + " | ".join(f"{p:g}" for p in points) + " |",
        "|---|" + "---:|" * len(points),
    ]
    for method in METHODS:
        cells = []
        for p in points:
            vals = [curve_at(s["curves"], method, p) for s in seeds]
            vals = [v for v in vals if not math.isnan(v[0])]
            cells.append(
                f"{sum(v[0] for v in vals) / len(vals):.2f} / {sum(v[1] for v in vals) / len(vals):.1f}"
                if vals
                else "–"
            )
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    goal = []
    for s in seeds:
        d = final[("designed", s["seed"])]
        first = first_reaching(s["curves"], "designed", SHD_GOAL)
        status = "met" if d["shd"] <= SHD_GOAL else "not met"
        extra = f", first at {first:g} spent" if first is not None else ", not reached at any step"
        goal.append(
            f"seed {s['seed']}: final SHD {d['shd']:.0f} ({s['n_true_edges']} true edges) — {status}{extra}"
        )
    n_met = sum(final[("designed", s["seed"])]["shd"] <= SHD_GOAL for s in seeds)

    def mean_final(method: str, key: str) -> float:
        vals = [final[(method, s["seed"])][key] for s in seeds if (method, s["seed"]) in final]
        return sum(vals) / len(vals) if vals else math.nan

    ranking = sorted(
        (m for m in METHODS if not math.isnan(mean_final(m, "f1"))), key=lambda m: -mean_final(m, "f1")
    )
    beats = {
        other: sum(
            final[("designed", s["seed"])]["f1"] > final[(other, s["seed"])]["f1"]
            for s in seeds
            if (other, s["seed"]) in final
        )
        for other in METHODS[1:]
    }
    claims = "; ".join(
        f"seed {s['seed']}: {s['claims']['n_claims']:.0f} claims, precision {s['claims']['precision']:.2f}, "
        f"recall {s['claims']['recall']:.2f}"
        for s in seeds
    )
    secs = ", ".join(f"seed {s['seed']} {s['compare_s']:.0f} s" for s in seeds)
    lines += [
        "",
        f'Goal: "on a 20-gene world the designed campaign reaches SHD <= {SHD_GOAL:g} within the quick '
        f'budget" — met on {n_met} of {len(seeds)} seeds ({"; ".join(goal)}).',
        "",
        "Ranking by mean final F1: "
        + " > ".join(f"{LABELS[m]} {mean_final(m, 'f1'):.3f}" for m in ranking)
        + ". The designed campaign has a higher final F1 than "
        + ", ".join(f"{LABELS[o]} on {n} of {len(seeds)} seeds" for o, n in beats.items())
        + ".",
        "",
        f"Claims (baseline extraction, scored against the signed true edges): {claims}. "
        f"`compare` wall time (three loop strategies and PC): {secs}. " + _load_line(res),
    ]
    if figure is not None:
        lines += ["", f"![F1 and SHD against budget](figures/{figure.name})"]
    return lines


def _goal_md(res: dict[str, Any]) -> list[str]:
    worlds = res["worlds"]

    def met(group: list[dict[str, Any]]) -> str:
        n = sum(w["shd"] <= SHD_GOAL for w in group)
        mean = sum(w["shd"] for w in group) / len(group) if group else math.nan
        return f"{n} of {len(group)} (mean SHD {mean:.2f})"

    held_out = [w for w in worlds if w["seed"] not in TUNING_WORLDS]
    tuning = [w for w in worlds if w["seed"] in TUNING_WORLDS]
    cells = " | ".join(f"{w['shd']:.0f}" for w in worlds)
    return [
        f"**The SHD goal over more worlds** (the designed campaign alone, as in the table above: quick "
        f"{res['n_genes']}-gene worlds, budget {res['budget']:g}, the baseline's literature claims). "
        "Final SHD per world:",
        "",
        "| world | " + " | ".join(str(w["seed"]) for w in worlds) + " |",
        "|---|" + "---:|" * len(worlds),
        f"| SHD | {cells} |",
        "",
        f"SHD <= {SHD_GOAL:g} on {met(worlds)} of all worlds; on the worlds outside "
        f"{min(TUNING_WORLDS)}-{max(TUNING_WORLDS)}: {met(held_out)}; on the worlds "
        f"{min(TUNING_WORLDS)}-{max(TUNING_WORLDS)} that chose the estimator's basis and the untested-gene "
        f"rule: {met(tuning)}. The pooled and undecided-gene repeat rules were checked on all 30 worlds "
        "alike, so no world here is untouched by them. " + _load_line(res),
    ]


# The opening words of each part's block in the section (see the ``_*_md`` renderers).
PART_MARKERS = {
    "retrieval": "**Retrieval at scale**",
    "quality": "**Retrieval quality**",
    "lm": "**Hypothesis LM**",
    "budget": "**F1 and SHD against budget**",
    "goal": "**The SHD goal over more worlds**",
}
# Worlds used to choose the loop's settings (`InvestigateConfig.untested_ratio` on 3-7, the
# estimator's hinge basis on 3-13): the goal part reports them apart from the untouched ones.
# (Pooling repeated experiments and the undecided-repeat rule, `InvestigateConfig.repeat_rule`,
# were checked on 0-29 alike and adopted for the mean over all.)
TUNING_WORLDS = frozenset(range(3, 14))


def previous_blocks(section: str) -> dict[str, str]:
    """Each part's block of an existing section, so re-measuring one part keeps the others' text
    when their saved results are absent (a fresh checkout has none under ``benchmarks/work``)."""
    starts = sorted((i, part) for part, marker in PART_MARKERS.items() if (i := section.find(marker)) >= 0)
    blocks: dict[str, str] = {}
    for k, (i, part) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(section)
        block = section[i:end].split("\nNot measured yet:")[0]
        blocks[part] = block.strip()
    return blocks


def markdown() -> str:
    lines = [
        "## Level 5 — discovery: retrieval at scale, retrieval quality, hypothesis LM, F1/SHD against budget",
        "",
        f"All on this machine ({os.cpu_count()} cores, CPU only). Another person's test runs shared the "
        "machine during these measurements, so wall times are noisy (each part states the load average).",
        "",
    ]
    renders: list[tuple[str, Callable[[dict[str, Any]], list[str]]]] = [
        ("retrieval", _retrieval_md),
        ("quality", _quality_md),
        ("lm", _lm_md),
        ("budget", lambda r: _budget_md(r, FIGURE if FIGURE.is_file() else None)),
        ("goal", _goal_md),
    ]
    kept = previous_blocks(SECTION.read_text(encoding="utf-8") if SECTION.is_file() else "")
    for name, render in renders:
        res = _load(name)
        if res is not None:
            lines += [*render(res), ""]
        elif name in kept:
            lines += [kept[name], ""]
    missing = [p for p in PARTS if _load(p) is None and p not in kept]
    if missing:
        lines.append(
            f"Not measured yet: {', '.join(missing)} (`python benchmarks/bench_level5.py --parts ...`)."
        )
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------ main
def run_part(part: str, args: argparse.Namespace) -> dict[str, Any]:
    if part == "retrieval":
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        return bench_retrieval_sizes(sizes, args.probe, args.queries, args.max_build_min)
    if part == "quality":
        return in_child("bench_level5", "quality_child", args.seeds)
    if part == "lm":
        # One child per seed (each trains its own LM); the load line spans them all.
        return {"runs": [in_child("bench_level5", "lm_child", str(seed)) for seed in _seeds(args.seeds)]}
    if part == "budget":
        res = in_child("bench_level5", "budget_child", args.seeds, str(args.budget))
        plot_budget(res, FIGURE)
        return res
    if part == "goal":
        return in_child("bench_level5", "goal_child", args.goal_seeds, str(args.budget))
    raise ValueError(part)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--sizes", default="10000,30000,100000", help="retrieval corpus sizes")
    parser.add_argument("--probe", type=int, default=2000, help="documents of the retrieval probe")
    parser.add_argument("--queries", type=int, default=100, help="single queries timed per size")
    parser.add_argument(
        "--max-build-min", type=float, default=25.0, help="skip a size whose extrapolated build is longer"
    )
    parser.add_argument("--seeds", default="0,1,2", help="seeds of quality, lm and budget")
    parser.add_argument("--budget", type=float, default=30.0, help="budget of the F1/SHD comparison and goal")
    parser.add_argument(
        "--goal-seeds", default=",".join(str(i) for i in range(30)), help="worlds of the SHD goal part"
    )
    parser.add_argument("--section-only", action="store_true", help="rebuild the section from saved results")
    args = parser.parse_args()
    configure_environment()
    WORK.mkdir(parents=True, exist_ok=True)
    parts = [] if args.section_only else [p.strip() for p in args.parts.split(",") if p.strip()]
    budget = _load("budget")
    if args.section_only and budget is not None:
        plot_budget(budget, FIGURE)  # the figure follows the saved result, like the section
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    for part in parts:
        print(f"level 5: {part}", flush=True)
        load_before = os.getloadavg()[0]
        with Timer() as t:
            res = run_part(part, args)
        res.update(
            when=f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            seconds=t.seconds,
            load=[load_before, os.getloadavg()[0]],
            cores=os.cpu_count() or 1,
        )
        atomic_write_text(WORK / f"{part}.json", json.dumps(res, indent=2, default=json_default) + "\n")
        # Rebuilt after every part, so a later part's failure keeps the earlier ones in the section.
        atomic_write_text(SECTION, markdown())
    text = markdown()
    SECTION.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(SECTION, text)
    print(text)
    print(f"wrote {SECTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
