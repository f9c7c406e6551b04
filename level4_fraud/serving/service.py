"""`ScoringService`: decide a transaction exactly once, and acknowledge only what is audited.

``decide(tx)``:

1. the audit log already holds ``tx.TRANSACTION_ID`` -> its stored decision, ``replayed=True``
   (a retry gets the first answer, unchanged, even after a restart);
2. else the scorer decides, the decision is appended to the audit log (durable when `append`
   returns), and only then returned; a concurrent twin that lost the race gets the winner's
   record, as a replay;
3. the card state learns the transaction only once its decision is logged.

An audit log that cannot be written means the decision cannot be acknowledged:
`AuditUnavailableError` (the HTTP layer answers 503, a stream consumer does not acknowledge).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from level4_fraud.serving.audit import AuditLog, AuditRecord
from level4_fraud.serving.config import ServingConfig, ServingPaths
from level4_fraud.serving.drift_watch import DriftWatch
from level4_fraud.serving.metrics import ServiceMetrics
from level4_fraud.serving.schemas import DecisionOut, Reason, TransactionIn
from level4_fraud.serving.scorer import FraudScorer, Scored

logger = logging.getLogger(__name__)


class AuditUnavailableError(RuntimeError):
    """The audit log could not be read or written: no decision may be acknowledged."""


def decision_of(record: AuditRecord, *, replayed: bool) -> DecisionOut:
    """The decision an audit record holds."""
    return DecisionOut(
        transaction_id=record.transaction_id,
        decision=record.decision,  # type: ignore[arg-type]
        score=record.score,
        model_version=record.model_version,
        latency_ms=record.latency_ms,
        reasons=[Reason.model_validate(r) for r in record.reasons],
        flags=list(record.flags),
        replayed=replayed,
    )


class ScoringService:
    """Idempotent, audited decisions (see the module docstring). Thread-safe.

    Args:
        scorer: Decides.
        audit: Keeps every decision.
        metrics: Prometheus collectors (default: new ones).
        drift: Sets the drift gauges from recent decisions (None: they stay unset).
    """

    def __init__(
        self,
        scorer: FraudScorer,
        audit: AuditLog,
        metrics: ServiceMetrics | None = None,
        drift: DriftWatch | None = None,
    ) -> None:
        self.scorer = scorer
        self.drift = drift
        self.audit = audit
        self.metrics = metrics or ServiceMetrics()
        self.metrics.set_model(scorer.model_version)

    def decide(self, tx: TransactionIn) -> DecisionOut:
        """The decision on `tx`, durable in the audit log before it is returned.

        Raises:
            AuditUnavailableError: The audit log failed: the decision is not acknowledged.
        """
        stored = self._stored(tx)
        if stored is not None:
            return stored
        scored = self.scorer.evaluate(tx)
        try:
            kept, new = self.audit.append(self._record(tx, scored))
        except Exception as exc:
            raise AuditUnavailableError(f"audit log not writable: {_first_line(exc)}") from exc
        return self._acknowledge(tx, scored, kept, new)

    async def decide_async(self, tx: TransactionIn) -> DecisionOut:
        """`decide` on an event loop: the same steps and guarantees, the audit commit awaited.

        The scoring runs on the loop itself (about a millisecond of CPU, most of it holding the
        GIL, so a worker thread would not run it any sooner); only the wait for the audit log's
        group commit lets other requests in, and their appends join the same transaction. Use
        it where `audit.commits_in_background` (SQLite); elsewhere run `decide` in a thread.

        Raises:
            AuditUnavailableError: The audit log failed: the decision is not acknowledged.
        """
        stored = self._stored(tx)
        if stored is not None:
            return stored
        scored = self.scorer.evaluate(tx)
        try:
            kept, new = await self.audit.append_async(self._record(tx, scored))
        except Exception as exc:
            raise AuditUnavailableError(f"audit log not writable: {_first_line(exc)}") from exc
        return self._acknowledge(tx, scored, kept, new)

    def _stored(self, tx: TransactionIn) -> DecisionOut | None:
        """The logged decision of `tx` as a replay (None: not decided yet)."""
        try:
            stored = self.audit.get(tx.TRANSACTION_ID)
        except Exception as exc:
            raise AuditUnavailableError(f"audit log unreadable: {_first_line(exc)}") from exc
        return decision_of(stored, replayed=True) if stored is not None else None

    def _acknowledge(self, tx: TransactionIn, scored: Scored, kept: AuditRecord, new: bool) -> DecisionOut:
        """After the append: a twin logged first wins (a replay); else the card state, metrics
        and drift watch learn the decision."""
        if not new:
            return decision_of(kept, replayed=True)
        self.scorer.observe(tx)
        self.metrics.observe_decision(scored.decision, freshness_s=scored.features.freshness_s)
        if self.drift is not None:
            self.drift.observe(scored.features.values, scored.decision.score, self.metrics)
        return scored.decision

    def _record(self, tx: TransactionIn, scored: Scored) -> AuditRecord:
        d = scored.decision
        return AuditRecord(
            transaction_id=tx.TRANSACTION_ID,
            card_hash=self.audit.keyed_hash(tx.CUSTOMER_ID),
            terminal_hash=self.audit.keyed_hash(tx.TERMINAL_ID),
            tx_datetime=tx.TX_DATETIME,
            amount=tx.TX_AMOUNT,
            decision=d.decision,
            score=d.score,
            model_version=d.model_version,
            features_hash=scored.features_hash,
            reasons=[r.model_dump() for r in d.reasons],
            flags=list(d.flags),
            latency_ms=d.latency_ms,
            decided_at=datetime.now(UTC),
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether decisions can be acknowledged (the audit log answers), and the scorer's state."""
        body: dict[str, Any] = dict(self.scorer.describe())
        try:
            body["audit_records"] = self.audit.count()
            ready = True
        except Exception as exc:
            body["audit_error"] = _first_line(exc)
            ready = False
        body["ready"] = ready
        return ready, body

    def close(self) -> None:
        """Close the audit log."""
        self.audit.close()

    @classmethod
    def from_run(
        cls,
        run_dir: Path,
        cfg: ServingConfig,
        *,
        feature_store: Any = None,
        model_version: str | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> ScoringService:
        """The service of a run folder: its scorer and its audit log (default
        ``RUN/serving/audit.db`` with the run's hash key, see `config.ServingPaths`)."""
        from level4_fraud.serving.online import read_history
        from level4_fraud.serving.scorer import history_folder
        from level4_fraud.train import read_run

        paths = ServingPaths(run_dir)
        audit = AuditLog.open(paths.audit_url(cfg), paths.hash_key(cfg))
        # The history folder feeds both the card state and the drift reference: read it once.
        folder = history_folder(Path(run_dir), read_run(Path(run_dir)), cfg)
        history = read_history(folder) if folder is not None else None
        scorer = FraudScorer.from_run(
            run_dir, cfg, feature_store=feature_store, model_version=model_version, history=history
        )
        drift = DriftWatch.from_run(run_dir, cfg, history=history) if cfg.drift_watch else None
        return cls(scorer, audit, metrics, drift)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
