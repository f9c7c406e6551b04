"""``python -m level4_fraud abtest --run RUN``: a sequential champion-versus-challenger A/B test.

Replays a run's scored test week (and bootstrap weeks of its cards) as live traffic, splits the
cards between the champion and the challenger by a keyed hash of the card id, looks at the
metrics every ``look_every`` and stops when the mSPRT's always-valid p-value reaches alpha.
With ``--aa-runs N`` it also re-splits the traffic N times with the champion in both arms and
reports how often each test stops on noise. Writes ``abtest.json`` (the decision),
``abtest.html`` (report section), the looks and arms tables and
``figures/abtest_sequential.png`` to --out (default: RUN/abtest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import ConfigOpt, OutOpt, ProfileOpt, RunOpt, SeedOpt, handle_user_errors, say


def abtest(
    run: RunOpt = None,
    out: OutOpt = None,
    split: Annotated[
        float | None,
        typer.Option("--split", help="Share of cards routed to the challenger (default: config)."),
    ] = None,
    seed: SeedOpt = None,
    champion: Annotated[
        str | None, typer.Option("--champion", help="Model of arm A (default: config).")
    ] = None,
    challenger: Annotated[
        str | None, typer.Option("--challenger", help="Model of arm B (default: config).")
    ] = None,
    aa_runs: Annotated[
        int | None,
        typer.Option(
            "--aa-runs", help="A/A re-splits measuring the test's false-positive rate (default: config)."
        ),
    ] = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Sequential A/B test of two models of a run on replayed traffic (mSPRT, always-valid CIs)."""
    from level4_fraud.abtest.calibration import aa_calibration
    from level4_fraud.abtest.config import ABTestConfig
    from level4_fraud.abtest.experiment import run_experiment
    from level4_fraud.abtest.report import write_outputs
    from level4_fraud.abtest.traffic import traffic_from_scores
    from level4_fraud.cli import _config, _resolve_run
    from level4_fraud.train import read_scores

    cfg = _config(profile, config, seed=seed)
    overrides = {"split": split, "champion": champion, "challenger": challenger, "aa_runs": aa_runs}
    section = {**cfg.abtest, **{k: v for k, v in overrides.items() if v is not None}}
    ab = cfg.model_copy(update={"abtest": section}).section("abtest", ABTestConfig)
    folder = _resolve_run(run, cfg)
    review_cost = ab.review_cost if ab.review_cost is not None else cfg.evaluation.review_cost
    scores = read_scores(folder, ab.fold)
    traffic = traffic_from_scores(
        scores, ab.champion, ab.challenger, review_cost=review_cost, replicas=ab.replicas, seed=cfg.seed
    )
    result = run_experiment(traffic, ab, review_cost)
    calibration = aa_calibration(traffic, ab, review_cost, ab.aa_runs) if ab.aa_runs else None
    paths = write_outputs(result, out or Path(folder) / "abtest", calibration)
    s = result.summary
    say("champion", f"{s['champion']} (threshold {s['thresholds']['champion']:.4g})")
    say("challenger", f"{s['challenger']} (threshold {s['thresholds']['challenger']:.4g})")
    say("traffic", f"{s['transactions']:,} transactions, {s['cards']:,} cards, {s['n_looks']} looks")
    say(
        "challenger share",
        f"{s['cards_challenger_share']:.3f} of cards (sample-ratio p {s['sample_ratio_p']:.3g})",
    )
    d = s["decision"]
    say("verdict", s["verdict"])
    say("decided", f"look {s['stop_look']} ({d['time']})" if s["stopped"] else "not stopped (end of traffic)")
    say(
        f"difference [{s['metric']}]",
        f"{d['delta']:.4g}, always-valid CI [{d['ci'][0]:.4g}, {d['ci'][1]:.4g}]",
    )
    say("naive significant looks", s["naive_significant_looks"])
    if calibration is not None:
        say(
            "A/A false positives",
            f"mSPRT {calibration.msprt_rate:.3f}, naive {calibration.naive_rate:.3f} "
            f"({calibration.runs} splits)",
        )
    for name, path in paths.items():
        say(name, path)


def register(app: typer.Typer) -> None:
    """Add the ``abtest`` command to the level's app."""
    app.command("abtest")(handle_user_errors(abtest))
