"""``campaign``: literature -> hypotheses -> logic -> RL-chosen experiments -> causal model -> target
-> compound design -> assays and cell tests -> evaluation -> report, checkpointed after every step.

Killed at any point and started again with the same folder and settings, the campaign skips the
steps already done (their files are read back), continues the step it was in (the knockouts and
the design rounds pick up from their last written row), and ends with the same result as an
uninterrupted run: every random choice is seeded per step, and the lab's and the assay's noise
depend only on the seed and the call's index.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from level5_discovery.campaign import evaluation, steps
from level5_discovery.campaign.checkpoint import Checkpoint
from level5_discovery.campaign.settings import CampaignConfig
from level5_discovery.compounds import CompoundConfig, build_library
from level5_discovery.config import DiscoveryConfig
from level5_discovery.pipeline import load_or_generate, write_csv
from shared.atomic import atomic_write_json
from shared.metrics import write_metrics
from shared.seeding import seed_everything

RESULT = "result.json"
COMPOUNDS = "compounds.csv"
HEADLINE = "designed_minus_library_pic50"


@dataclass
class CampaignResult:
    """What the CLI prints: the folder, the result, the report, whether it resumed."""

    folder: Path
    result: dict[str, Any]
    report: Path
    resumed: bool
    seconds: dict[str, float]


def campaign_config(cfg: DiscoveryConfig, budget: float | None = None) -> CampaignConfig:
    """The campaign section, with ``--budget`` applied."""
    if budget is not None:
        cfg = cfg.model_copy(update={"campaign": {**cfg.campaign, "budget": budget}})
    return cfg.section("campaign", CampaignConfig)


# Settings added after campaigns were first run: left out of the fingerprint at their defaults,
# so a folder started before them still resumes.
LATER_SETTINGS = ("activity_features", "encoder_dir", "encoder_molecules", "encoder")


def campaign_fingerprint(camp: CampaignConfig) -> dict[str, Any]:
    """The campaign settings a folder is bound to (`checkpoint.Checkpoint` refuses others)."""
    values = camp.model_dump()
    defaults = CampaignConfig().model_dump()
    return {k: v for k, v in values.items() if k not in LATER_SETTINGS or v != defaults[k]}


def _context(
    cfg: DiscoveryConfig, camp: CampaignConfig, folder: Path, data_dir: Path | None, lm_run: Path | None
) -> steps.Context:
    dataset = load_or_generate(cfg, data_dir)
    world = dataset.require_world()
    library = build_library(world, CompoundConfig.model_validate(camp.compounds), cfg.seed)
    return steps.Context(cfg, camp, folder, dataset, world, library, lm_run)


def run_campaign(
    cfg: DiscoveryConfig,
    *,
    out: Path | None = None,
    data_dir: Path | None = None,
    lm_run: Path | None = None,
    budget: float | None = None,
    fresh: bool = False,
) -> CampaignResult:
    """Run (or resume) a campaign in ``out`` (default: ``artifacts/campaign-<profile>-seed<seed>``).

    Args:
        cfg: The level's config (its ``campaign`` section, world, lab, LM).
        out: The campaign folder; an unfinished campaign there with the same settings resumes.
        data_dir: A `generate` folder (default: the profile's world).
        lm_run: A run folder whose tuned LM reads the literature (default: train one here).
        budget: Total budget (overrides the config).
        fresh: Start over even if ``out`` holds progress.

    Raises:
        ConfigError: ``out`` holds a campaign with other settings (and not ``fresh``).
        StepFailedError: A step failed on every attempt.
    """
    camp = campaign_config(cfg, budget)
    steps.check_encoder_settings(camp)  # before hours of work, not when the design starts
    folder = out or cfg.paths().run_dir(f"campaign-{cfg.profile}-seed{cfg.seed}")
    settings = {
        "seed": cfg.seed,
        "campaign": campaign_fingerprint(camp),
        "world": cfg.world.model_dump(),
        "literature": cfg.literature.model_dump(),
        "lm": cfg.lm,
        "lab": cfg.lab.model_dump(),
        "lm_run": str(lm_run) if lm_run else None,
        "data": str(data_dir) if data_dir else None,
    }
    outputs = (*steps.OUTPUTS, RESULT, COMPOUNDS, "metrics.json", "report.html")
    ck = Checkpoint(folder, settings, fresh=fresh, outputs=outputs)
    seed_everything(cfg.seed)
    ctx = _context(cfg, camp, folder, data_dir, lm_run)
    ck.note("data", str(ctx.dataset.folder))
    _causal_phase(ck, ctx)
    _compound_phase(ck, ctx)
    result = ck.run("evaluate", lambda: _evaluate(ctx), lambda: steps.load_json(ctx, RESULT), camp.retries)
    report = ck.run("report", lambda: _report(ctx), lambda: folder / "report.html", camp.retries)
    return CampaignResult(folder, result, report, ck.resumed, step_seconds(ck.seconds()))


def step_seconds(seconds: dict[str, float]) -> dict[str, float]:
    """Seconds per step, the design rounds summed into one ``design (N rounds)`` entry."""
    rounds = {k: v for k, v in seconds.items() if k.startswith("design_round_")}
    out: dict[str, float] = {}
    for step, value in seconds.items():
        if step not in rounds:
            out[step] = value
        elif step == next(iter(rounds)):
            out[f"design ({len(rounds)} rounds)"] = sum(rounds.values())
    return out


def _causal_phase(ck: Checkpoint, ctx: steps.Context) -> None:
    r = ctx.camp.retries
    claims = ck.run("hypotheses", lambda: steps.do_hypotheses(ctx), lambda: steps.load_hypotheses(ctx), r)
    ck.run("logic", lambda: steps.do_logic(ctx, claims), lambda: steps.load_logic(ctx), r)
    model = ck.run("policy", lambda: steps.do_policy(ctx), lambda: steps.load_policy(ctx), r)
    env = ck.run(
        "experiments",
        lambda: steps.do_experiments(ctx, claims, model),
        lambda: steps.load_experiments(ctx, claims),
        r,
    )
    graph = ck.run(
        "causal_model", lambda: steps.do_causal_model(ctx, env), lambda: steps.load_json(ctx, steps.GRAPH), r
    )
    targets = ck.run(
        "targets", lambda: steps.do_targets(ctx, graph, claims), lambda: steps.load_targets(ctx), r
    )
    ctx.values.update(claims=claims, env=env, graph=graph, targets=targets)


def _compound_phase(ck: Checkpoint, ctx: steps.Context) -> None:
    r = ctx.camp.retries
    chosen = ck.run(
        "screen",
        lambda: steps.do_screen(ctx, ctx.values["targets"]),
        lambda: steps.load_json(ctx, steps.CHOSEN),
        r,
    )
    target = chosen["target"]
    ctx.values["target"] = target
    if target is None:
        return
    if ctx.camp.activity_features == "morgan+encoder":
        ctx.values["encoder"] = ck.run(
            "encoder", lambda: steps.do_encoder(ctx), lambda: steps.load_encoder_folder(ctx), r
        )
    # Rounds go on while they find better compounds and the budget pays (a fixed count either wastes
    # rounds on a converged design or stops a hard one early). Whether to go on is decided from the
    # files, so a resumed campaign stops after the same round as an uninterrupted one.
    rounds = 0
    while True:  # design_stop ends it by design_rounds at the latest
        step = f"design_round_{rounds + 1}"
        reason = None if ck.is_done(step) else steps.design_stop(ctx, target, rounds)
        if reason:
            break
        rounds += 1
        ck.run(
            step,
            lambda k=rounds: steps.do_design_round(ctx, target, k),  # type: ignore[misc]
            lambda k=rounds: steps.count_round(ctx, k),  # type: ignore[misc]
            r,
        )
    own = steps.target_readings(ctx, target)
    designed = own[own["source"] == "designed"]
    kernels = designed["model"] if "model" in designed else pd.Series(pd.NA, index=designed.index)
    # None: some rounds were designed before the kernel was recorded (a folder of older code)
    known = bool(kernels.notna().all())
    used = designed.loc[kernels == "tanimoto+rbf", "round"] if known else None
    ctx.values["design"] = {
        "rounds": rounds,
        "stopped": reason,
        "features": ctx.camp.activity_features,
        "rounds_with_embeddings": int(used.nunique()) if used is not None else None,
    }
    ck.run("validate", lambda: steps.do_validate(ctx, target), lambda: steps.load_validation(ctx), r)


def _evaluate(ctx: steps.Context) -> dict[str, Any]:
    """Hidden-truth scores, ``compounds.csv``, ``result.json`` and ``metrics.json``."""
    from level5_discovery.campaign.chemistry import compound_table

    claims, target = ctx.values["claims"], ctx.values.get("target")
    result: dict[str, Any] = {
        "causal": evaluation.causal_scores(ctx, ctx.values["env"], claims),
        "target": evaluation.target_scores(ctx, target, ctx.values["targets"]),
        "budget": {"total": ctx.camp.budget, **steps.spent(ctx)},
        "claims": len(claims),
    }
    if target is not None:
        table = compound_table(steps.readings(ctx), ctx.library, ctx.library_fps, target)
        write_csv(table, ctx.path(COMPOUNDS))
        result["compounds"] = evaluation.compound_scores(table, ctx, target)
        result["design"] = ctx.values["design"]
    atomic_write_json(ctx.path(RESULT), result)
    comp = result.get("compounds", {})
    write_metrics(
        ctx.path("metrics.json"),
        level=5,
        dataset="simulated",
        headline_metric=HEADLINE,
        headline_value=float(comp.get("margin_over_library", float("nan"))),
        profile=ctx.cfg.profile,
        seed=ctx.seed,
        **{k: v for k, v in result.items() if isinstance(v, dict)},
    )
    return result


def _report(ctx: steps.Context) -> Path:
    from level5_discovery.campaign.report import build_campaign_report

    return build_campaign_report(ctx.folder)
