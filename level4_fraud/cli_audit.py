"""``python -m level4_fraud audit ...``: the audit log's retention job and lookups, and the model card.

* ``audit purge --db URL [--older-than-days N]``: delete the decisions past retention (default:
  ``compliance.retention_days`` of the config); run it daily (cron, a Kubernetes CronJob).
* ``audit show --db URL --transaction-id N``: one decision as JSON (card and terminal hashed).
* ``audit model-card [--run RUN] [--out FILE]``: the model card (Markdown, HTML) and fairness table.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shared.cli import ConfigOpt, OutOpt, ProfileOpt, RunOpt, handle_user_errors, new_app, say
from shared.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    from level4_fraud.compliance import ComplianceConfig
    from level4_fraud.serving.audit import AuditLog

DbOpt = Annotated[
    str, typer.Option("--db", help="Audit log URL: sqlite:///path/audit.db or postgresql://host/db.")
]
TableOpt = Annotated[str, typer.Option("--table", help="Audit table name.")]


def _compliance(profile: str, config: Path | None) -> ComplianceConfig:
    from level4_fraud.cli import _config
    from level4_fraud.compliance import ComplianceConfig

    return _config(profile, config).section("compliance", ComplianceConfig)


def _open(db: str, table: str) -> AuditLog:
    """Open an existing audit log (a SQLite path that does not exist is a mistake, not a new log)."""
    from level4_fraud.serving.audit import AuditLog

    if db.startswith("sqlite:///"):
        path = Path(db[len("sqlite:///") :])
        if not path.is_file():
            raise InputFileError(f"{path}: no audit log there")
    # purge and show never hash an id: any key opens the log for them.
    return AuditLog.open(db, os.urandom(32), table=table)


def purge(
    db: DbOpt,
    older_than_days: Annotated[
        int | None,
        typer.Option("--older-than-days", help="Delete decisions older than this (default: retention_days)."),
    ] = None,
    table: TableOpt = "audit_log",
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Retention: delete the audit records decided more than N days ago."""
    from level4_fraud.compliance import retention_cutoff

    days = older_than_days if older_than_days is not None else _compliance(profile, config).retention_days
    if days < 1:
        raise ConfigError(f"--older-than-days must be at least 1 (got {days})")
    cutoff = retention_cutoff(days)
    with _open(db, table) as log:
        deleted = log.purge(cutoff)
        remaining = log.count()
    say("retention_days", days)
    say("cutoff", cutoff.isoformat(timespec="seconds"))
    say("purged", deleted)
    say("remaining", remaining)


def show(
    db: DbOpt,
    transaction_id: Annotated[int, typer.Option("--transaction-id", help="The transaction to show.")],
    table: TableOpt = "audit_log",
) -> None:
    """Print one decision of the audit log as JSON."""
    if transaction_id < 0:
        raise ConfigError(f"--transaction-id must be >= 0 (got {transaction_id})")
    with _open(db, table) as log:
        record = log.get(transaction_id)
    if record is None:
        raise InputFileError(f"transaction {transaction_id} is not in the audit log")
    typer.echo(json.dumps(asdict(record), default=lambda v: v.isoformat(), indent=2))


def model_card(
    run: RunOpt = None,
    out: OutOpt = None,
    customers: Annotated[
        Path | None,
        typer.Option("--customers", help="Customer table (default: RUN/data/customers.parquet when there)."),
    ] = None,
    profile: ProfileOpt = "quick",
    config: ConfigOpt = None,
) -> None:
    """Write the model card (Markdown and HTML) and the fairness table of a run.

    Writes --out (default: RUN/model_card.md), with .html and _fairness.csv beside it.
    """
    from level4_fraud.cli import _config, _resolve_run
    from level4_fraud.compliance import ComplianceConfig, build_model_card, write_model_card

    cfg = _config(profile, config)
    folder = _resolve_run(run, cfg)
    card = build_model_card(folder, cfg.section("compliance", ComplianceConfig), customers)
    paths = write_model_card(card, out or folder / "model_card.md")
    for name, gap in card.fairness.gaps.items():
        say(f"fpr_gap[{name}]", f"{gap.gap:.4f} ({gap.highest} vs {gap.lowest})" if gap.highest else "n/a")
    say("fairness_check", "pass" if card.fairness.passed else "FAIL")
    for name, path in paths.items():
        say(name, path)


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to the level's app."""
    audit = new_app("audit", "Audit log retention and lookups; the model card and fairness check.")
    audit.command("purge")(handle_user_errors(purge))
    audit.command("show")(handle_user_errors(show))
    audit.command("model-card")(handle_user_errors(model_card))
    app.add_typer(audit, name="audit")
