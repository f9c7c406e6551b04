"""``python -m level4_fraud audit``: the retention job enforces the configured rule (old records
gone, recent ones kept), ``show`` prints a decision, bad input is one ``error:`` line, exit 2."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from typer.testing import CliRunner

from level4_fraud.cli import app
from level4_fraud.serving.audit import AuditLog, AuditRecord

runner = CliRunner()
KEY = b"cli-audit-key"
CARD = 987654321
AGES = {1: 4000, 2: 1900, 3: 1800, 4: 400, 5: 40, 6: 20, 7: 0}  # transaction id: days since decided


def _record(log: AuditLog, tid: int, decided_at: datetime) -> AuditRecord:
    return AuditRecord(
        tid, log.keyed_hash(CARD), log.keyed_hash(tid), datetime(2018, 5, 24, 12), 42.0, "decline", 0.97,
        "level4_fraud/2", "0" * 64, [{"feature": "TX_AMOUNT", "contribution": 0.5, "text": "amount"}],
        ["unknown_terminal"], 4.5, decided_at,
    )  # fmt: skip


@pytest.fixture
def db(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    now = datetime.now(UTC)
    with AuditLog.open(url, KEY) as log:
        for tid, days in AGES.items():
            log.append(_record(log, tid, now - timedelta(days=days, hours=1)))
    return url


def _ids(url: str) -> list[int]:
    with AuditLog.open(url, KEY) as log:
        return log.transaction_ids()


def _user_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_purge_enforces_the_configured_retention_rule(db, tmp_path) -> None:
    cfg = tmp_path / "retention.yaml"
    cfg.write_text(yaml.safe_dump({"compliance": {"retention_days": 30}}))
    result = runner.invoke(app, ["audit", "purge", "--db", db, "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert _ids(db) == [6, 7]  # decided 20 days ago and today: within 30 days
    assert re.search(r"^purged\s+5$", result.output, re.M) and re.search(
        r"^remaining\s+2$", result.output, re.M
    )


def test_purge_default_rule_keeps_five_years(db) -> None:
    result = runner.invoke(app, ["audit", "purge", "--db", db])
    assert result.exit_code == 0, result.output
    assert _ids(db) == [3, 4, 5, 6, 7]  # 4000 and 1900 days are past 1825


def test_purge_older_than_days_overrides_the_config(db, tmp_path) -> None:
    cfg = tmp_path / "retention.yaml"
    cfg.write_text(yaml.safe_dump({"compliance": {"retention_days": 30}}))
    result = runner.invoke(
        app, ["audit", "purge", "--db", db, "--older-than-days", "500", "--config", str(cfg)]
    )
    assert result.exit_code == 0, result.output
    assert _ids(db) == [4, 5, 6, 7]


def test_show_prints_the_decision_with_hashed_ids(db) -> None:
    result = runner.invoke(app, ["audit", "show", "--db", db, "--transaction-id", "5"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["transaction_id"] == 5 and shown["decision"] == "decline" and shown["score"] == 0.97
    assert shown["flags"] == ["unknown_terminal"] and len(shown["card_hash"]) == 64
    assert str(CARD) not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["purge", "--db", "mysql://host/db"], "unsupported audit log URL"),
        (["purge", "--db", "sqlite:///{tmp}/missing.db"], "no audit log there"),
        (["purge", "--db", "{db}", "--older-than-days", "0"], "at least 1"),
        (["purge", "--db", "{db}", "--config", "{tmp}/bad.yaml"], "invalid compliance settings"),
        (["show", "--db", "{db}", "--transaction-id", "99"], "not in the audit log"),
        (["show", "--db", "{db}", "--transaction-id", "-1"], ">= 0"),
        (["purge", "--db", "postgresql://127.0.0.1:1/none"], "cannot connect"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db, tmp_path, args, message) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"compliance": {"retention_days": 0}}))
    argv = ["audit", *(a.format(db=db, tmp=tmp_path) for a in args)]
    assert message in _user_error(runner.invoke(app, argv))
    assert _ids(db) == sorted(AGES)  # nothing was purged
