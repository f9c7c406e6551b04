"""``monitor`` and ``retrain`` commands: drift per day and the drift-triggered retraining flow.

    python -m level4_fraud monitor --run RUN --data DIR [--as-of DAY] [--out drift.csv]
    python -m level4_fraud retrain --run RUN --data DIR [--as-of DAY] [--force] [--out FOLDER]

``--data`` is a `generate` folder or a folder of daily files holding the transactions up to now;
``--as-of`` moves "now" back (default: the end of its newest day). Settings come from the
config's ``monitoring`` and ``retrain`` sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shared.cli import ConfigOpt, OutOpt, ProfileOpt, RunOpt, handle_user_errors, say

if TYPE_CHECKING:
    import pandas as pd

DataOpt = Annotated[
    Path, typer.Option("--data", help="Transactions up to now: a `generate` folder or daily files.")
]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Now, as a day (YYYY-MM-DD): what is known at its midnight.")
]


def _as_of(value: str | None) -> pd.Timestamp | None:
    import pandas as pd

    from shared.errors import ConfigError

    if value is None:
        return None
    try:
        return pd.Timestamp(value)
    except ValueError:
        raise ConfigError(f"--as-of {value!r}: not a date (YYYY-MM-DD)") from None


def daily_table(summary: pd.DataFrame, performance: pd.DataFrame) -> pd.DataFrame:
    """Drift summary and delayed performance side by side, one row per day."""
    import pandas as pd

    cols = ["n_drifted", "max_psi", "max_psi_feature", "max_ks", "max_ks_feature", "score_psi", "alarm"]
    drift = summary[cols] if len(summary) else pd.DataFrame(columns=cols)
    perf = (
        performance[["status", "average_precision", "card_precision_at_k"]].rename(
            columns={"status": "labels", "average_precision": "AP", "card_precision_at_k": "CP@100"}
        )
        if len(performance)
        else pd.DataFrame(columns=["labels", "AP", "CP@100"])
    )
    table = drift.join(perf, how="outer")
    table.index = [pd.Timestamp(w).date() for w in table.index]
    table.index.name = "day"
    return table


def register(app: typer.Typer) -> None:
    """Add ``monitor`` and ``retrain`` to the level's app."""

    @app.command()
    @handle_user_errors
    def monitor(
        data: DataOpt,
        run: RunOpt = None,
        as_of: AsOfOpt = None,
        out: OutOpt = None,
        profile: ProfileOpt = "quick",
        config: ConfigOpt = None,
    ) -> None:
        """Drift (PSI, KS of every feature and of the score against the training reference) and
        label-delayed AP/CP@100, per day after the model's training period.

        Writes --out (optional): the per-day table as CSV.
        """
        from level4_fraud import retrain
        from level4_fraud.cli import _config, _resolve_run
        from level4_fraud.monitoring import MonitoringConfig
        from shared.atomic import atomic_write_text

        cfg = _config(profile, config)
        monitoring = cfg.section("monitoring", MonitoringConfig)
        history = retrain.load_history(_resolve_run(run, cfg), data, _as_of(as_of))
        _, summary = retrain.drift_report(history, monitoring)
        table = daily_table(summary, retrain.performance_report(history, monitoring))
        typer.echo(table.to_string(float_format=lambda v: f"{v:.3f}", na_rep="—"))
        alarms = [str(d) for d, a in table["alarm"].items() if a is True]
        say("as of", history.as_of.date())
        say("drift alarms", ", ".join(alarms) if alarms else "none")
        if out is not None:
            say("wrote", atomic_write_text(out, table.to_csv()))

    @app.command("retrain")
    @handle_user_errors
    def retrain_cmd(
        data: DataOpt,
        run: RunOpt = None,
        as_of: AsOfOpt = None,
        force: Annotated[bool, typer.Option("--force", help="Retrain even without a drift alarm.")] = False,
        out: OutOpt = None,
        profile: ProfileOpt = "quick",
        config: ConfigOpt = None,
    ) -> None:
        """Drift-triggered retraining (Prefect flow): detect drift on the recent days, retrain on the
        labels that have arrived, compare challenger and champion on the most recent labelled days,
        promote in the MLflow registry only if better, alert otherwise.

        Writes --out (default: a new retrain folder): retrain.json, drift.csv, challenger/, alerts.jsonl.
        """
        from level4_fraud.cli import _config, _resolve_run
        from level4_fraud.retrain import retrain_flow

        cfg = _config(profile, config)
        result = retrain_flow(cfg, _resolve_run(run, cfg), data, out=out, as_of=_as_of(as_of), force=force)
        say("as of", result.as_of.date())
        say(
            "drift alarm",
            f"yes (first {result.first_alarm.date()})" if result.first_alarm is not None else "no",
        )
        for name, s in result.scores.items():
            say(f"{name} AP", s["average_precision"])
        say("decision", result.decision)
        if result.registered:
            reg = result.registered
            say("registry", f"{reg.get('name', '')} v{reg.get('version', '')} alias {reg.get('alias', '')}")
        if result.alert:
            say("alert", result.alert.get("summary", ""))
        say("retrain", result.out)
