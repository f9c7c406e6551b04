"""The level's stages as plain functions, and the Prefect flow that chains them (``run``).

1. ``generate``     a hidden world and its literature into a dataset folder (`data.py`), reused
                    when the same seed and sizes were generated before
2. ``index``        the hybrid retrieval index in ``DATA/index`` (built once, reloaded after)
3. ``train``        the hypothesis LM: pretraining on the abstracts, LoRA on instruction pairs
                    (`train.py`), saved in ``RUN/lm``
4. ``hypothesise``  per gene, retrieve -> LM proposes cited hypotheses -> weighted claims
                    (`hypothesise.py`); the retrieval-only extraction baseline beside it
5. ``investigate``  the loop (logic -> information-gain design -> knockout -> test -> update)
                    against random and round-robin knockouts and observational PC at the same
                    budget (`compare.py`)
6. ``evaluate``     everything scored against the hidden truth (retrieval, LM, claims, graph)
7. ``register``     the run in MLflow and the LM as ``level5_hypothesis_lm@champion``
8. ``report``       ``report.html`` (`report.py`) and ``metrics.json``

The agent sees the world only through the lab (`experiments.ExperimentAPI`) and the literature;
the hidden world enters stages 5 and 6 only through `truth.Evaluator` to score what it found.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from level5_discovery import data
from level5_discovery.compare import Comparison, compare
from level5_discovery.config import DiscoveryConfig
from level5_discovery.corpus import Paper
from level5_discovery.features import corpus_genes, retrieval_contexts
from level5_discovery.hypothesise import claim_precision, literature_claims
from level5_discovery.investigate import InvestigateConfig, LiteratureClaim
from level5_discovery.lm.config import LMConfig
from level5_discovery.lm.evaluation import compare_with_baseline
from level5_discovery.lm.extraction import baseline_hypotheses
from level5_discovery.lm.model import check_base_model
from level5_discovery.retrieval.evaluation import evaluate_retrieval
from level5_discovery.retrieval.index import HybridIndex, RetrievalConfig, build_or_load
from level5_discovery.retrieval.questions import generate_questions
from level5_discovery.simulate import World
from level5_discovery.train import (
    LM_DIR,
    HypothesisModel,
    TrainResult,
    save_hypothesis_model,
    train_hypothesis_model,
)
from level5_discovery.truth import Evaluator
from shared.atomic import atomic_write_json, atomic_write_text, atomic_write_with
from shared.metrics import write_metrics
from shared.progress import make_progress
from shared.seeding import seed_everything
from shared.timing import Timer

DATASET = "simulated"
HEADLINE = "edge_f1"
INDEX_DIR = "index"
RUN_META = "run.json"


@dataclass
class RunSummary:
    """What ``run`` and ``investigate`` produced (printed by the CLI)."""

    run_dir: Path
    summary: pd.DataFrame
    metrics_path: Path
    metrics: dict[str, Any]
    report: Path | None = None
    registered: dict[str, str] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def headline_value(self) -> float:
        """Edge F1 of the designed campaign."""
        return float(self.metrics["headline_value"])


# ---------------------------------------------------------------------------------- 1-2. data
def dataset_folder(cfg: DiscoveryConfig) -> Path:
    """Where ``generate`` writes a world of this seed and size by default."""
    name = f"world-seed{cfg.seed}-{cfg.world.n_genes}genes-{cfg.literature.n_papers}papers"
    return cfg.paths().raw / name


def generate(cfg: DiscoveryConfig, out: Path | None = None) -> data.Dataset:
    """Simulate a hidden world and its literature into ``out`` (default `dataset_folder`)."""
    seed_everything(cfg.seed)
    return data.generate(out or dataset_folder(cfg), cfg.world, cfg.literature, cfg.seed, cfg.profile)


def load_or_generate(cfg: DiscoveryConfig, folder: Path | None = None) -> data.Dataset:
    """The dataset at ``folder``; without one, the default folder (generated when missing or stale)."""
    if folder is not None:
        return data.load(folder)
    default = dataset_folder(cfg)
    manifest = default / data.MANIFEST
    if manifest.is_file():
        m = json.loads(manifest.read_text(encoding="utf-8"))
        wanted = {"seed": cfg.seed, "n_genes": cfg.world.n_genes, "n_papers": cfg.literature.n_papers}
        if all(m.get(k) == v for k, v in wanted.items()) and (default / data.WORLD).is_file():
            return data.load(default)
    return generate(cfg, default)


def build_index(cfg: DiscoveryConfig, papers: Sequence[Paper], folder: Path) -> HybridIndex:
    """The hybrid index of ``papers`` in ``folder`` (reloaded when the corpus has not changed)."""
    quiet_transformers()
    return build_or_load(
        papers, folder, cfg.section("retrieval", RetrievalConfig), progress=cfg.show_progress
    )


def genes_of(dataset: data.Dataset, lm_cfg: LMConfig) -> tuple[str, ...]:
    """The world's genes, or for a real corpus the names it mentions."""
    if dataset.world is not None:
        return tuple(dataset.world.genes)
    return corpus_genes(dataset.papers, lm_cfg.gene_pattern)


def investigate_budget(cfg: DiscoveryConfig, budget: float | None = None) -> float:
    """The loop's budget: `budget` when given, else the config's."""
    return float(budget if budget is not None else cfg.section("investigate", InvestigateConfig).budget)


def lm_config(cfg: DiscoveryConfig) -> LMConfig:
    """The LM settings, with the level's progress switch."""
    quiet_transformers()
    lm = cfg.section("lm", LMConfig)
    return lm.model_copy(update={"progress": cfg.show_progress and lm.progress})


def quiet_transformers() -> None:
    """Hide transformers' per-load progress bars and advice: the level draws its own progress."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    # peft (0.x) still calls this transformers method when it wraps a model; nothing to act on here.
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )


# ---------------------------------------------------------------------------------- 3. train
def train(
    cfg: DiscoveryConfig, dataset: data.Dataset, run_dir: Path, index: HybridIndex | None = None
) -> tuple[TrainResult, HybridIndex]:
    """Build (or reload) the index and train the hypothesis LM; saves it under ``RUN/lm``."""
    lm = lm_config(cfg)
    if lm.base_model:
        check_base_model(lm.base_model)  # a typo fails before the index is built
    index = index or build_index(cfg, dataset.papers, dataset.folder / INDEX_DIR)
    result = train_hypothesis_model(dataset.papers, genes_of(dataset, lm), index, lm, cfg.seed)
    save_hypothesis_model(result, run_dir / LM_DIR)
    return result, index


# ---------------------------------------------------------------------------------- 4. hypothesise
def lm_claims(
    model: HypothesisModel, index: HybridIndex, genes: Sequence[str], *, progress: bool = False
) -> list[LiteratureClaim]:
    """Claims from the LM: per gene question, retrieve, propose two cited hypotheses, aggregate."""
    return _claims(genes, index, lambda hits: model.propose(hits, n=2), "LM hypotheses", progress)


def baseline_claims(
    index: HybridIndex, genes: Sequence[str], top: int = 4, *, progress: bool = False
) -> list[LiteratureClaim]:
    """Claims of the retrieval-only baseline: relations extracted from the top passages, no LM."""
    return _claims(genes, index, lambda hits: baseline_hypotheses(hits, top=top, n=2), "extraction", progress)


def _claims(
    genes: Sequence[str], index: HybridIndex, propose: Callable[..., Any], label: str, progress: bool
) -> list[LiteratureClaim]:
    with make_progress(disable=not progress) as bar:
        tid = bar.add_task(label, total=len(genes))
        return literature_claims(
            genes, lambda q: index.search(q), propose, on_gene=lambda _: bar.advance(tid)
        )


# ---------------------------------------------------------------------------------- 5. investigate
def investigate(
    cfg: DiscoveryConfig,
    world: World,
    claims: Sequence[LiteratureClaim],
    *,
    budget: float | None = None,
    strategies: Sequence[str] = ("designed", "random", "round_robin"),
) -> Comparison:
    """The designed loop and its baselines with the same budget on the hidden world."""
    inv = cfg.section("investigate", InvestigateConfig).model_copy(
        update={"budget": investigate_budget(cfg, budget)}
    )
    with make_progress(disable=not cfg.show_progress) as bar:
        tasks = {s: bar.add_task(f"{s} experiments", total=inv.budget) for s in strategies}
        return compare(
            world,
            claims,
            inv,
            cfg.lab,
            cfg.seed,
            strategies=strategies,
            on_step=lambda s, _i, spent: bar.update(tasks[s], completed=spent),
        )


# ---------------------------------------------------------------------------------- 6. evaluate
def retrieval_metrics(index: HybridIndex, dataset: data.Dataset, seed: int) -> dict[str, dict[str, float]]:
    """Recall@5 and MRR of hybrid, BM25 and dense on questions generated from the hidden world."""
    world = dataset.require_world()
    questions = generate_questions(dataset.papers, n=60, seed=seed, evaluator=Evaluator(world))
    return evaluate_retrieval(index, questions, k=5)


def lm_metrics(model: HypothesisModel, index: HybridIndex, world: World, seed: int) -> dict[str, float]:
    """Parse rates and hypothesis precision of the LM against the retrieval-only baseline."""
    evaluator = Evaluator(world)
    signed = evaluator.true_edges()
    out = compare_with_baseline(
        model.model,
        model.tokenizer,
        retrieval_contexts(index, model.genes),
        model.genes,
        [(c, e) for c, e, _ in signed],
        signed,
        n=1,
        seed=seed,
        passage_words=model.cfg.passage_words,
        max_passages=model.cfg.context_passages,
    )
    return {
        "constrained_parse_rate": float(out["constrained_parse_rate"]),
        "free_parse_rate": float(out.get("free_parse_rate", float("nan"))),
        "lm_precision": out["lm"]["precision"],
        "lm_signed_precision": out["lm"].get("signed_precision", float("nan")),
        "baseline_precision": out["baseline"]["precision"],
        "baseline_signed_precision": out["baseline"].get("signed_precision", float("nan")),
        "n_contexts": float(out["n_contexts"]),
    }


def evaluation(
    dataset: data.Dataset,
    index: HybridIndex,
    model: HypothesisModel,
    claims: dict[str, Sequence[LiteratureClaim]],
    seed: int,
) -> dict[str, Any]:
    """Retrieval, LM and claims scored against the hidden truth (``run`` and ``evaluate``).

    Args:
        dataset: The dataset (its hidden world is required).
        index: The retrieval index of its corpus.
        model: The tuned hypothesis model.
        claims: Claims by proposer (``lm``, ``baseline``).
        seed: Seeds the evaluation questions and decoding.
    """
    world = dataset.require_world()
    signed = set(Evaluator(world).true_edges())
    return {
        "retrieval": retrieval_metrics(index, dataset, seed),
        "lm": lm_metrics(model, index, world, seed),
        "claims": {name: claim_precision(found, signed) for name, found in claims.items()},
    }


def _true_column(frame: pd.DataFrame, evaluator: Evaluator) -> pd.DataFrame:
    out = frame.copy()
    out["true_edge"] = [
        evaluator.is_true_edge(c, e) for c, e in zip(out["cause"], out["effect"], strict=True)
    ]
    return out


def claims_frame(claims: Sequence[LiteratureClaim]) -> pd.DataFrame:
    """Claims as a table: cause, effect, sign, confidence, papers."""
    return pd.DataFrame(
        [
            {"cause": c.cause, "effect": c.effect, "sign": c.sign, "confidence": c.confidence,
             "papers": ",".join(c.evidence)}
            for c in claims
        ],
        columns=["cause", "effect", "sign", "confidence", "papers"],
    )  # fmt: skip


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table atomically, without the index."""
    return atomic_write_with(path, lambda p: frame.to_csv(p, index=False))


def write_results(
    run_dir: Path, comparison: Comparison, claims: Sequence[LiteratureClaim], world: World
) -> dict[str, dict[str, float]]:
    """Write the investigation's tables (see the run-folder layout in the README); returns the
    per-method scores."""
    evaluator = Evaluator(world)
    designed = comparison.results["designed"]
    tables = {
        "summary.csv": comparison.summary,
        "curves.csv": comparison.curves,
        "steps.csv": designed.steps,
        "relations.csv": _true_column(designed.relations, evaluator),
        "rejected.csv": _true_column(designed.rejected, evaluator),
        "claims.csv": _true_column(claims_frame(claims), evaluator),
    }
    for name, frame in tables.items():
        write_csv(frame, run_dir / name)
    atomic_write_text(run_dir / "contradictions.txt", "".join(f"{c}\n" for c in designed.contradictions))
    atomic_write_json(
        run_dir / "graph.json",
        {
            "genes": list(designed.genes),
            "estimated": designed.adjacency.astype(int).tolist(),
            "truth": evaluator.true_adjacency().astype(int).tolist(),
        },
    )
    cols = ["precision", "recall", "f1", "shd"]
    return {str(row["method"]): {c: float(row[c]) for c in cols} for _, row in comparison.summary.iterrows()}


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"graph": {"designed": {"f1": ..}}}`` -> ``{"graph.designed.f1": ..}`` (numbers only).

    MLflow refuses ``@`` in metric names: ``recall@5`` becomes ``recall_at_5``.
    """
    out: dict[str, float] = {}
    for raw_key, value in metrics.items():
        key = str(raw_key).replace("@", "_at_")
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in flat_metrics(value).items()})
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def write_run_metrics(cfg: DiscoveryConfig, run_dir: Path, dataset: str, **parts: Any) -> dict[str, Any]:
    """Write ``metrics.json`` (headline: the designed campaign's edge F1) and return its content."""
    graph = parts["graph"]
    headline = float(graph["designed"]["f1"])
    path = write_metrics(
        run_dir / "metrics.json",
        level=5,
        dataset=dataset,
        headline_metric=HEADLINE,
        headline_value=headline,
        profile=cfg.profile,
        seed=cfg.seed,
        n_genes=cfg.world.n_genes,
        n_papers=cfg.literature.n_papers,
        **parts,
    )
    written: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return written


def finish_run(
    cfg: DiscoveryConfig,
    run_dir: Path,
    dataset: data.Dataset,
    comparison: Comparison,
    literature: Sequence[LiteratureClaim],
    *,
    kind: str,
    budget: float | None,
    seconds: dict[str, float],
    **scores: Any,
) -> tuple[dict[str, Any], Path]:
    """Write the tables, ``metrics.json``, the report and ``run.json`` of a finished campaign.

    ``literature`` are the claims the loop started from (``claims.csv``); ``scores`` go into
    ``metrics.json`` beside the graph scores (``claims`` there are their precision).

    Returns:
        The metrics written and the report's path.
    """
    from level5_discovery.report import build_report

    graph = write_results(run_dir, comparison, literature, dataset.require_world())
    metrics = write_run_metrics(
        cfg, run_dir, DATASET, graph=graph, budget=investigate_budget(cfg, budget), seconds=seconds, **scores
    )
    report = build_report(run_dir)
    atomic_write_json(run_dir / RUN_META, {"data": str(dataset.folder), "kind": kind, "profile": cfg.profile})
    return metrics, report


# ---------------------------------------------------------------------------------- the flow
@task(cache_policy=NO_CACHE)
def _data_task(cfg: DiscoveryConfig, folder: Path | None) -> data.Dataset:
    return load_or_generate(cfg, folder)


@task(cache_policy=NO_CACHE)
def _train_task(
    cfg: DiscoveryConfig, dataset: data.Dataset, run_dir: Path
) -> tuple[TrainResult, HybridIndex]:
    return train(cfg, dataset, run_dir)


@task(cache_policy=NO_CACHE)
def _hypothesise_task(
    cfg: DiscoveryConfig, model: HypothesisModel, index: HybridIndex
) -> tuple[list[LiteratureClaim], list[LiteratureClaim]]:
    return (
        lm_claims(model, index, model.genes, progress=cfg.show_progress),
        baseline_claims(index, model.genes, progress=cfg.show_progress),
    )


@task(cache_policy=NO_CACHE)
def _investigate_task(
    cfg: DiscoveryConfig, world: World, claims: list[LiteratureClaim], budget: float | None
) -> Comparison:
    return investigate(cfg, world, claims, budget=budget)


def run_pipeline(
    cfg: DiscoveryConfig,
    *,
    out: Path | None = None,
    data_dir: Path | None = None,
    budget: float | None = None,
    register: bool = True,
) -> RunSummary:
    """End to end (the stages of the module docstring) as Prefect tasks; returns what it made."""
    run_dir = out or cfg.paths().run_dir(f"run-{cfg.profile}")
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    with Timer() as t:
        dataset = _data_task(cfg, data_dir)
        world = dataset.require_world()
    seconds["data"] = t.seconds
    with Timer() as t:
        trained, index = _train_task(cfg, dataset, run_dir)
    seconds["train"] = t.seconds
    with Timer() as t:
        claims, base_claims = _hypothesise_task(cfg, trained.model, index)
    seconds["hypothesise"] = t.seconds
    with Timer() as t:
        comparison = _investigate_task(cfg, world, claims, budget)
    seconds["investigate"] = t.seconds
    with Timer() as t:
        scores = evaluation(dataset, index, trained.model, {"lm": claims, "baseline": base_claims}, cfg.seed)
        scores["lm"] = {**trained.metrics, **scores["lm"]}
    seconds["evaluate"] = t.seconds
    metrics, report = finish_run(
        cfg, run_dir, dataset, comparison, claims, kind="run", budget=budget, seconds=seconds, **scores
    )
    registered = None
    if register and cfg.tracking.enabled:
        from level5_discovery.tracking import log_and_register

        registered = log_and_register(cfg, run_dir, flat_metrics(metrics))
    return RunSummary(
        run_dir, comparison.summary, run_dir / "metrics.json", metrics, report, registered, seconds
    )


@flow(name="level5-discovery", log_prints=False, validate_parameters=False)
def level5_flow(
    cfg: DiscoveryConfig,
    out: Path | None = None,
    data_dir: Path | None = None,
    budget: float | None = None,
    register: bool = True,
) -> RunSummary:
    """The Prefect flow of ``python -m level5_discovery run`` (see `run_pipeline`)."""
    return run_pipeline(cfg, out=out, data_dir=data_dir, budget=budget, register=register)


def investigate_only(
    cfg: DiscoveryConfig,
    *,
    out: Path | None = None,
    data_dir: Path | None = None,
    run: Path | None = None,
    budget: float | None = None,
) -> RunSummary:
    """``investigate``: the loop on a dataset's world with claims from a trained run's LM (``run``)
    or, without one, from the retrieval-only baseline; writes the tables, metrics and report."""
    from level5_discovery.train import load_hypothesis_model

    run_dir = out or cfg.paths().run_dir("investigate")
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_or_generate(cfg, data_dir)
    world = dataset.require_world()
    index = build_index(cfg, dataset.papers, dataset.folder / INDEX_DIR)
    seconds: dict[str, float] = {}
    with Timer() as t:
        if run is not None:
            model = load_hypothesis_model(run / LM_DIR)
            claims = lm_claims(model, index, model.genes, progress=cfg.show_progress)
        else:
            claims = baseline_claims(index, world.genes, progress=cfg.show_progress)
    seconds["hypothesise"] = t.seconds
    with Timer() as t:
        comparison = investigate(cfg, world, claims, budget=budget)
    seconds["investigate"] = t.seconds
    signed = set(Evaluator(world).true_edges())
    metrics, report = finish_run(
        cfg,
        run_dir,
        dataset,
        comparison,
        claims,
        kind="investigate",
        budget=budget,
        seconds=seconds,
        claims={"lm" if run is not None else "baseline": claim_precision(claims, signed)},
    )
    return RunSummary(run_dir, comparison.summary, run_dir / "metrics.json", metrics, report, None, seconds)


def summary_table(summary: pd.DataFrame) -> str:
    """The per-method table as the CLI prints it."""
    cols = ["method", "precision", "recall", "f1", "shd", "experiments", "cost"]
    frame = summary[[c for c in cols if c in summary.columns]].copy()
    return str(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}" if not np.isnan(v) else "—"))
