"""Command line of level 5: ``python -m level5_discovery --help``.

The verbs every level shares — `generate` (a hidden world and its literature), `train` (the
retrieval index and the LoRA-tuned hypothesis LM), `evaluate`, `report`, `predict` (cited
hypotheses for a corpus or a question), `register` and `run` (everything) — and the level's own:

    python -m level5_discovery investigate --budget 30       the discovery loop and its baselines
    python -m level5_discovery discover --csv FILE [--interventions FILE] --out edges.csv
    python -m level5_discovery optimize --task celecoxib --budget 1000 --library SMILES --out calls.csv

Options mean the same in every command: ``--out`` is where a command writes, ``--run`` the run
folder it reads (default: the newest one), ``--profile``, ``--seed``, ``--config``. User mistakes
(a missing or malformed corpus, a CSV with non-numeric columns or one variable, an unknown base
model or task) end with one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shared.cli import (
    ConfigOpt,
    OutOpt,
    ProfileOpt,
    RunOpt,
    SeedOpt,
    handle_user_errors,
    load_level_config,
    new_app,
    say,
)
from shared.errors import DataError, InputFileError

if TYPE_CHECKING:
    from level5_discovery.config import DiscoveryConfig
    from level5_discovery.pipeline import RunSummary

app = new_app(
    "level5_discovery",
    "Level 5: autonomous discovery — read, hypothesise, design experiments, find the causal graph.",
)

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="A `generate` folder (default: the profile's world, generated once)."),
]
CorpusOpt = Annotated[
    Path | None,
    typer.Option("--corpus", help='A real corpus: JSONL lines {"id","title","abstract","year"}.'),
]
BudgetOpt = Annotated[
    float | None, typer.Option("--budget", help="Experiment budget (a knockout costs 1; default: config).")
]


def _config(profile: str = "quick", config: Path | None = None, **overrides: Any) -> DiscoveryConfig:
    from level5_discovery.config import DiscoveryConfig

    return load_level_config(DiscoveryConfig, profile, config, overrides)


def _resolve_run(run: Path | None, cfg: DiscoveryConfig, needs: str = "lm/lm.json") -> Path:
    """`run`, or the newest run folder under the artifacts holding `needs`."""
    if run is not None:
        if not (run / needs).is_file():
            raise InputFileError(f"{run}: not a level-5 run folder with a trained model ({needs} missing)")
        return run
    artifacts = cfg.paths().artifacts
    found = list(artifacts.glob(f"*/{needs}")) if artifacts.is_dir() else []
    if not found:
        raise InputFileError(f"no trained run under {artifacts}; pass --run FOLDER (or `train` first)")
    newest = max(found, key=lambda p: p.stat().st_mtime)
    return newest.parents[len(Path(needs).parts) - 1]


def _corpus_dataset(corpus: Path) -> Any:
    """A dataset for a real JSONL corpus (no hidden truth), read through the one corpus reader."""
    from level5_discovery.corpus import read_corpus_jsonl
    from level5_discovery.data import Dataset

    papers = read_corpus_jsonl(corpus)
    return Dataset(corpus.parent / f"{corpus.stem}-index", papers, None)


def _dataset(cfg: DiscoveryConfig, data: Path | None, corpus: Path | None) -> Any:
    """The dataset of ``--data`` (default: the profile's world) or of a real ``--corpus``."""
    from level5_discovery.pipeline import load_or_generate

    if data is not None and corpus is not None:
        raise DataError("pass --data or --corpus, not both")
    return _corpus_dataset(corpus) if corpus is not None else load_or_generate(cfg, data)


def _print_summary(summary: RunSummary) -> None:
    from level5_discovery.pipeline import summary_table

    typer.echo(summary_table(summary.summary))
    graph = summary.metrics["graph"]
    d = graph["designed"]
    for method in ("random", "round_robin", "observational_pc"):
        if method in graph:
            say(f"vs {method}", f"edge F1 {d['f1']:.3f} vs {graph[method]['f1']:.3f}")


# ---------------------------------------------------------------------------------- data
@app.command()
@handle_user_errors
def generate(
    profile: ProfileOpt = "quick", config: ConfigOpt = None, seed: SeedOpt = None, out: OutOpt = None
) -> None:
    """Simulate a hidden gene-regulatory world and the literature written about it.

    Writes --out (default: data/raw/world-...): corpus.jsonl (the real-corpus layout) and truth/
    (the hidden world and the papers' hidden labels, for evaluation only).
    """
    from level5_discovery.pipeline import generate as generate_dataset

    cfg = _config(profile, config, seed=seed)
    dataset = generate_dataset(cfg, out)
    world = dataset.require_world()
    say("wrote", dataset.folder)
    say("world", f"{world.n_genes} genes, {int((world.weights != 0).sum())} causal edges (hidden)")
    say("literature", f"{len(dataset.papers):,} abstracts")


# ---------------------------------------------------------------------------------- train / predict
@app.command()
@handle_user_errors
def train(
    data: DataOpt = None,
    corpus: CorpusOpt = None,
    base_model: Annotated[
        str | None,
        typer.Option("--base-model", help="Any Hugging Face causal LM (local folder or cached name)."),
    ] = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Build the retrieval index and train the hypothesis LM (pretraining, then LoRA).

    Writes the run folder --out (default: a new one under artifacts/): lm/base, lm/adapter, lm.json.
    """
    from level5_discovery import pipeline

    cfg = _config(profile, config, seed=seed, lm={"base_model": base_model})
    dataset = _dataset(cfg, data, corpus)
    folder = out or cfg.paths().run_dir("train")
    folder.mkdir(parents=True, exist_ok=True)
    result, _ = pipeline.train(cfg, dataset, folder)
    m = result.metrics
    say("abstracts", f"{len(dataset.papers):,} ({len(result.model.genes)} genes)")
    say("pretrain perplexity", f"{m['pretrain_ppl_before']:,.1f} -> {m['pretrain_ppl_after']:,.2f}")
    say(
        "target perplexity", f"{m['target_ppl_before_lora']:,.1f} -> {m['target_ppl_after_lora']:,.2f} (LoRA)"
    )
    say("seconds", f"pretrain {m['pretrain_seconds']:.0f}, LoRA {m['lora_seconds']:.0f}")
    say("run", folder)


@app.command()
@handle_user_errors
def predict(
    run: RunOpt = None,
    data: DataOpt = None,
    corpus: CorpusOpt = None,
    question: Annotated[
        str | None, typer.Option("--question", help="Answer one question with citations instead.")
    ] = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Hypotheses with citations from a trained run's LM over a corpus (every gene it names), or
    a cited answer and hypotheses for one question.

    Writes --out (default: hypotheses.csv): cause,effect,sign,confidence,papers.
    """
    from level5_discovery import pipeline
    from level5_discovery.train import LM_DIR, load_hypothesis_model
    from shared.atomic import atomic_write_with

    cfg = _config(profile, config)
    folder = _resolve_run(run, cfg)
    dataset = _dataset(cfg, data, corpus)
    index = pipeline.build_index(cfg, dataset.papers, dataset.folder / pipeline.INDEX_DIR)
    model = load_hypothesis_model(folder / LM_DIR)
    if question is not None:
        from level5_discovery.retrieval.answer import answer

        reply = answer(index, question)
        typer.echo(reply.text)
        for h in model.propose(index.search(question), n=3):
            say("hypothesis", h.to_json())
        return
    genes = [g for g in pipeline.genes_of(dataset, model.cfg) if g in set(model.genes)]
    claims = pipeline.lm_claims(model, index, genes, progress=cfg.show_progress)
    frame = pipeline.claims_frame(claims)
    target = atomic_write_with(out or Path("hypotheses.csv"), lambda p: frame.to_csv(p, index=False))
    say("hypotheses", f"{len(frame):,} about {len(genes)} genes")
    say("wrote", target)


# ---------------------------------------------------------------------------------- the loop
@app.command()
@handle_user_errors
def investigate(
    budget: BudgetOpt = None,
    data: DataOpt = None,
    run: Annotated[
        Path | None,
        typer.Option(
            "--run", help="Trained run whose LM proposes the claims (default: extraction baseline)."
        ),
    ] = None,
    out: OutOpt = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
) -> None:
    """The discovery loop: retrieve -> hypothesise -> check (clingo) -> design -> knock out ->
    test -> update, against random and round-robin knockouts and observational PC, same budget.

    Writes --out (default: a new run folder): relations.csv (evidence trails), rejected.csv
    (reasons), curves.csv (F1 against budget), metrics.json, report.html.
    """
    from level5_discovery.pipeline import investigate_only

    cfg = _config(profile, config, seed=seed)
    if run is not None:
        run = _resolve_run(run, cfg)
    summary = investigate_only(cfg, out=out, data_dir=data, run=run, budget=budget)
    _print_summary(summary)
    say("report", summary.report)
    say("run", summary.run_dir)


@app.command()
@handle_user_errors
def discover(
    csv: Annotated[Path, typer.Option("--csv", help="Samples x variables CSV (numeric columns).")],
    interventions: Annotated[
        Path | None,
        typer.Option("--interventions", help="Per-row intervened variable (or row,variable pairs)."),
    ] = None,
    column: Annotated[
        str, typer.Option("--intervention-column", help="CSV column naming each row's intervention.")
    ] = "intervention",
    out: Annotated[Path, typer.Option("--out", help="Where the learned edges go.")] = Path("edges.csv"),
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Learn a causal graph from measurements (knockout rows make edges identifiable).

    Writes --out: cause,effect,confidence (most confident first).
    """
    from level5_discovery.discover import DiscoverConfig
    from level5_discovery.discover import discover as learn
    from level5_discovery.measurements import read_measurements
    from shared.atomic import atomic_write_with

    cfg = _config(profile, config)
    m = read_measurements(csv, interventions, intervention_column=column)
    try:
        result = learn(m.data, m.intervened, m.names, cfg.section("discover", DiscoverConfig))
    except ValueError as exc:
        raise DataError(f"{csv}: {exc}") from None
    target = atomic_write_with(out, lambda p: result.edges.to_csv(p, index=False, float_format="%.4g"))
    n_iv = int((m.intervened >= 0).sum())
    say("samples", f"{len(m.data):,} ({n_iv:,} intervened) x {len(m.names)} variables")
    say("edges", len(result.edges))
    say("seconds", result.seconds)
    say("wrote", target)


@app.command()
@handle_user_errors
def optimize(
    task: Annotated[str, typer.Option("--task", help="Objective (e.g. celecoxib, qed, osimertinib_mpo).")],
    library: Annotated[Path, typer.Option("--library", help="Starting molecules: SMILES file (.smi/.csv).")],
    budget: Annotated[int, typer.Option("--budget", help="Oracle calls.")] = 1000,
    method: Annotated[str, typer.Option("--method", help="ga or guided (surrogate-guided GA).")] = "guided",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path, typer.Option("--out", help="Every oracle call: call,smiles,score.")] = Path(
        "calls.csv"
    ),
) -> None:
    """Design new compounds for an objective with a budget of oracle calls (RDKit)."""
    from level5_discovery.chem.optimize import optimize_to_csv
    from shared.runtime import configure_environment

    configure_environment()
    result = optimize_to_csv(task, budget, library, seed, out, method=method)  # type: ignore[arg-type]
    say("task", f"{result.task} ({result.method}, seed {result.seed})")
    say("top-10 AUC", result.top10_auc)
    say("best", result.best)
    say("wrote", out)


# ---------------------------------------------------------------------------------- evaluate / report
@app.command()
@handle_user_errors
def evaluate(
    run: RunOpt = None, data: DataOpt = None, profile: ProfileOpt = "quick", config: ConfigOpt = None
) -> None:
    """Score a trained run against a dataset's hidden truth: retrieval (recall@5, MRR per mode),
    the LM (parse rates, hypothesis precision vs the extraction baseline) and its claims.

    Writes RUN/evaluation.json.
    """
    from level5_discovery import pipeline
    from level5_discovery.train import LM_DIR, load_hypothesis_model
    from shared.atomic import atomic_write_json

    cfg = _config(profile, config)
    folder = _resolve_run(run, cfg)
    dataset = pipeline.load_or_generate(cfg, data)
    dataset.require_world()  # a real corpus has nothing to score against: say so before any work
    index = pipeline.build_index(cfg, dataset.papers, dataset.folder / pipeline.INDEX_DIR)
    model = load_hypothesis_model(folder / LM_DIR)
    claims = pipeline.lm_claims(model, index, model.genes, progress=cfg.show_progress)
    scores = pipeline.evaluation(dataset, index, model, {"lm": claims}, cfg.seed)
    atomic_write_json(folder / "evaluation.json", scores)
    retrieval, lm, precision = scores["retrieval"], scores["lm"], scores["claims"]["lm"]
    for mode, scores in retrieval.items():
        say(f"retrieval {mode}", f"recall@5 {scores['recall@5']:.3f}, MRR {scores['mrr']:.3f}")
    say("parse rate", f"constrained {lm['constrained_parse_rate']:.0%}, free {lm['free_parse_rate']:.0%}")
    say("precision", f"LM {lm['lm_precision']:.3f} vs extraction baseline {lm['baseline_precision']:.3f}")
    say("claims", f"precision {precision['precision']:.3f}, recall {precision['recall']:.3f}")
    say("wrote", folder / "evaluation.json")


@app.command()
@handle_user_errors
def report(run: RunOpt = None, out: OutOpt = None) -> None:
    """Rebuild report.html from a run folder's files.

    Writes --out (default: RUN/report.html).
    """
    from level5_discovery.report import build_report

    folder = _resolve_run(run, _config(), needs="metrics.json")
    say("report", build_report(folder, out=out))


@app.command()
@handle_user_errors
def register(run: RunOpt = None, profile: ProfileOpt = "quick", config: ConfigOpt = None) -> None:
    """Log a run folder to MLflow and register its LM (a pyfunc) with alias `champion`."""
    import json

    from level5_discovery.pipeline import flat_metrics
    from level5_discovery.tracking import log_and_register

    cfg = _config(profile, config)
    folder = _resolve_run(run, cfg)
    metrics_path = folder / "metrics.json"
    metrics = json.loads(metrics_path.read_text(encoding="utf-8")) if metrics_path.is_file() else {}
    reg = log_and_register(cfg, folder, flat_metrics(metrics))
    assert reg is not None  # _resolve_run checked lm/lm.json
    say("registry", cfg.mlflow_store()[0])
    say(reg["alias"], f"{reg['name']} v{reg['version']} ({reg['uri']})")


@app.command()
@handle_user_errors
def campaign(
    budget: Annotated[
        float | None, typer.Option("--budget", help="Total budget of the campaign (default: config).")
    ] = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    data: DataOpt = None,
    run: Annotated[
        Path | None,
        typer.Option("--run", help="Read the literature with this run's tuned LM (default: train one)."),
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start over: delete the campaign in --out instead of resuming it.")
    ] = False,
    activity_features: Annotated[
        str | None,
        typer.Option(
            "--activity-features",
            help="morgan, or morgan+encoder: the design rounds' activity model also reads a "
            "self-supervised SMILES encoder's embeddings (default: config).",
        ),
    ] = None,
    encoder: Annotated[
        Path | None,
        typer.Option("--encoder", help="A saved SMILES encoder for morgan+encoder (default: pretrain one)."),
    ] = None,
) -> None:
    """The autonomous campaign: literature -> hypotheses -> logic -> RL-chosen knockouts -> causal
    model -> target -> screening and compound design -> cell tests -> report.

    Checkpointed after every step: run the same command again after a kill and it resumes.
    Writes the campaign folder --out (default: artifacts/campaign-<profile>-seed<seed>).
    """
    cfg = _config(profile, config, seed=seed)
    # resolved: a campaign resumed from another directory names the same folder
    chosen = {
        "activity_features": activity_features,
        "encoder_dir": str(encoder.resolve()) if encoder else None,
    }
    chosen = {k: v for k, v in chosen.items() if v is not None}
    if encoder is not None and "activity_features" not in chosen:
        chosen["activity_features"] = "morgan+encoder"  # an encoder given is an encoder to use
    if chosen:
        cfg = cfg.model_copy(update={"campaign": {**cfg.campaign, **chosen}})
    lm_run = _resolve_run(run, cfg) if run is not None else None
    _campaign(cfg, out=out, data_dir=data, lm_run=lm_run, budget=budget, fresh=fresh)


def _campaign(cfg: DiscoveryConfig, **kwargs: Any) -> None:
    """Run or resume a campaign and print its figures; a step that failed every attempt is one
    ``error:`` line (exit code 1) naming it, and the next run resumes there."""
    from level5_discovery.campaign.checkpoint import StepFailedError
    from level5_discovery.campaign.run import run_campaign

    try:
        res = run_campaign(cfg, **kwargs)
    except StepFailedError as exc:
        typer.echo(
            f"error: {exc} (its outputs so far are kept; run the same command again to resume)", err=True
        )
        raise typer.Exit(code=1) from None
    _print_campaign(res.result)
    if res.resumed:
        say("resumed", "steps already done were read back from the checkpoint")
    say("seconds", ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()))
    say("campaign report", res.report)


def _print_campaign(result: dict[str, Any]) -> None:
    rl, rnd = result["causal"]["rl"], result["causal"]["random"]
    say(
        "causal model",
        f"edge F1 {rl['f1']:.3f}, SHD {rl['shd']:.0f} "
        f"(random knockouts: F1 {rnd['f1']:.3f}, SHD {rnd['shd']:.0f})",
    )
    say(
        "phenotype links",
        f"{rl['correct_share']:.0%} of genes decided right by the RL policy, "
        f"{rnd['correct_share']:.0%} by random knockouts",
    )
    t = result["target"]
    if t.get("target") is None:
        say("target", "no target with a screening hit: no compound designed")
        return
    say("target", f"{t['target']} (true driver: {t['is_driver']}; true knockout rank {t['true_rank']})")
    c = result.get("compounds", {})
    if "designed_best_true_pic50" in c:
        say(
            "best compound",
            f"designed pIC50 {c['designed_best_true_pic50']:.2f} (true) "
            f"vs library best {c['library_best_true_pic50']:.2f}"
            f" -> beats the library: {c['beats_library']}",
        )
    d = result.get("design")
    if d:
        say("design", f"{d['rounds']} rounds; stopped: {d['stopped']}")
    b = result["budget"]
    say("budget", f"{b['experiments'] + b['assays'] + b['validation']:.1f} of {b['total']:g} spent")


# ---------------------------------------------------------------------------------- everything
@app.command("run")
@handle_user_errors
def run_all(
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    data: DataOpt = None,
    budget: BudgetOpt = None,
    with_campaign: Annotated[
        bool,
        typer.Option("--campaign/--no-campaign", help="Then run the autonomous campaign with this run's LM."),
    ] = True,
) -> None:
    """End to end: world -> index -> LM (pretrain, LoRA) -> hypotheses -> designed experiments vs
    baselines -> evaluate -> register -> report; then the autonomous campaign (RL-chosen
    experiments, target, compound design) reading the literature with the LM just trained.

    Writes the run folder --out (default: a new one under artifacts/), the campaign in RUN/campaign.
    """
    from level5_discovery.pipeline import level5_flow

    cfg = _config(profile, config, seed=seed)
    summary = level5_flow(cfg, out=out, data_dir=data, budget=budget)
    _print_summary(summary)
    lm = summary.metrics.get("lm", {})
    if lm:
        say("LM parse rate", f"{lm['constrained_parse_rate']:.0%} (constrained)")
        say("LM precision", f"{lm['lm_precision']:.3f} vs extraction {lm['baseline_precision']:.3f}")
    retrieval = summary.metrics.get("retrieval", {})
    if retrieval:
        say("retrieval MRR", ", ".join(f"{m} {v['mrr']:.3f}" for m, v in retrieval.items()))
    if summary.registered:
        r = summary.registered
        say("registry", f"{r.get('name', '')} v{r.get('version', '')} alias {r.get('alias', '')}")
    say("seconds", ", ".join(f"{k} {v:.0f}" for k, v in summary.seconds.items()))
    say("metrics", summary.metrics_path)
    if summary.report:
        say("report", summary.report)
    say("headline", f"edge_f1 = {summary.headline_value:.4f} (designed experiments)")
    if with_campaign:
        say("campaign", "literature -> RL experiments -> target -> compounds (checkpointed)")
        _campaign(cfg, out=summary.run_dir / "campaign", data_dir=data, lm_run=summary.run_dir)
