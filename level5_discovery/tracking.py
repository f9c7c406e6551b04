"""MLflow for level 5: a run's settings, metrics and files, and the hypothesis model in the registry.

The registered model is an MLflow ``pyfunc`` wrapping the run's ``lm/`` folder (the pretrained
base, the LoRA adapter and the gene vocabulary): ``mlflow.pyfunc.load_model(
"models:/level5_hypothesis_lm@champion").predict(passages)`` takes a frame of retrieved passages
(``context``, ``paper_id``, ``text``) and returns each context's hypotheses with their citations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd

from level5_discovery.config import DiscoveryConfig
from shared.errors import SchemaError
from shared.tracking import MlflowTracker

PASSAGE_COLUMNS = ("context", "paper_id", "text")
HYPOTHESIS_COLUMNS = ("context", "cause", "effect", "sign", "evidence", "score")


def propose_frame(model: Any, passages: pd.DataFrame, n: int = 2) -> pd.DataFrame:
    """Hypotheses for every context of a passages frame (rows in rank order within a context).

    Args:
        model: A `train.HypothesisModel`.
        passages: Columns ``context`` (any id), ``paper_id``, ``text``.
        n: Hypotheses per context.

    Raises:
        SchemaError: A column is missing.
    """
    missing = [c for c in PASSAGE_COLUMNS if c not in passages.columns]
    if missing:
        raise SchemaError(f"passages need columns {', '.join(PASSAGE_COLUMNS)}; missing {', '.join(missing)}")
    rows = []
    for context, group in passages.groupby("context", sort=False):
        hits = list(zip(group["paper_id"].astype(str), group["text"].astype(str), strict=True))
        for h in model.propose(hits, n=n):
            rows.append(
                {
                    "context": context,
                    "cause": h.cause,
                    "effect": h.effect,
                    "sign": h.sign,
                    "evidence": ",".join(h.evidence),
                    "score": h.score,
                }
            )
    return pd.DataFrame(rows, columns=list(HYPOTHESIS_COLUMNS))


class HypothesisPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """The tuned LM as an MLflow model: passages in, cited hypotheses out."""

    def load_context(self, context: Any) -> None:
        """Load the run's ``lm/`` folder (logged as the ``lm`` artifact) on CPU."""
        from level5_discovery.train import load_hypothesis_model

        self.model = load_hypothesis_model(Path(context.artifacts["lm"]), device="cpu")

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """`propose_frame` of the passages; ``params={"n": k}`` sets hypotheses per context."""
        return propose_frame(self.model, model_input, n=int((params or {}).get("n", 2)))


def log_and_register(
    cfg: DiscoveryConfig, run_dir: Path, metrics: dict[str, Any], *, register: bool = True
) -> dict[str, str] | None:
    """Log the run (settings, flat metrics, result files) and register its LM with alias ``champion``.

    Args:
        cfg: The level config (MLflow store, names).
        run_dir: The run folder (``lm/`` is registered when present).
        metrics: Flat numeric metrics to log.
        register: Register the model (else only log the run).

    Returns:
        The registry entry (``name``, ``version``, ``alias``, ``uri``, ``run_id``), or None when the
        run has no model to register.
    """
    uri, root = cfg.mlflow_store()
    tracker = MlflowTracker(uri, cfg.tracking.experiment, root or None)
    with (
        tracker.active(),
        tracker.start_run(run_dir.name, tags={"level": "5", "profile": cfg.profile}) as active,
    ):
        tracker.log_params(
            {
                "profile": cfg.profile,
                "seed": cfg.seed,
                "n_genes": cfg.world.n_genes,
                "n_papers": cfg.literature.n_papers,
                **{f"investigate.{k}": v for k, v in cfg.investigate.items()},
                **{f"lm.{k}": v for k, v in cfg.lm.items()},
            }
        )
        tracker.log_metrics(metrics)
        for name in ("summary.csv", "relations.csv", "rejected.csv", "claims.csv", "report.html"):
            if (run_dir / name).is_file():
                mlflow.log_text((run_dir / name).read_text(encoding="utf-8"), name)
        if not (run_dir / "lm" / "lm.json").is_file():
            return None
        info = mlflow.pyfunc.log_model(
            name="hypothesis_lm", python_model=HypothesisPyfunc(), artifacts={"lm": str(run_dir / "lm")}
        )
        if not register:
            return {"run_id": active.info.run_id, "uri": info.model_uri}
        return tracker.register(info.model_uri, name=cfg.tracking.registered_model, alias=cfg.tracking.alias)
