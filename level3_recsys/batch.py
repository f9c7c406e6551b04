"""Nightly batch: load the registry's champion, score every active user, write top-K atomically.

`run_batch` is the plain function (used by the CLI, the pipeline and the
tests); `nightly_batch_flow` wraps it as a Prefect 3 flow and
`nightly_deployment` gives that flow its 02:00 cron schedule. Scoring goes
through the recommender's own ``recommend`` on blocks of users, which ranks a
whole block with matrix operations (no per-user loop over the catalogue).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from level3_recsys.store import BatchInfo, ColdStart, open_store
from level3_recsys.tracking import CHAMPION, Tracking, load_recommender
from shared.errors import DataError, InputFileError
from shared.progress import make_progress

NIGHTLY_CRON = "0 2 * * *"
DEPLOYMENT_NAME = "level3-nightly-batch"


def active_users(interactions: pd.DataFrame, *, days: float | None) -> np.ndarray:
    """Users with at least one interaction in the last `days` days of the data (all users when None).

    Args:
        interactions: Rows with ``user_id`` and ``timestamp`` (seconds).
        days: Look-back window measured from the latest timestamp.

    Raises:
        DataError: No interactions, so nobody is active.
    """
    if interactions.empty:
        raise DataError("no interactions: there are no active users to score")
    rows = interactions
    if days is not None:
        cutoff = int(interactions["timestamp"].max()) - int(days * 86_400)
        rows = interactions[interactions["timestamp"] >= cutoff]
    return np.sort(rows["user_id"].unique())


def score_users(
    model: Any,
    user_ids: Sequence[Any] | np.ndarray,
    *,
    k: int,
    chunk_size: int = 4096,
    show_progress: bool = True,
) -> Iterator[pd.DataFrame]:
    """Yield top-K rows (user_id, item_id, rank, score) for blocks of users, seen items excluded.

    Args:
        model: A fitted recommender.
        user_ids: Users to score.
        k: List length.
        chunk_size: Users per ``recommend`` call (bounds memory: chunk × catalogue scores).
        show_progress: Draw a progress bar on stderr.
    """
    users = np.asarray(user_ids)
    with make_progress(disable=not show_progress) as progress:
        bar = progress.add_task("scoring users", total=len(users))
        for start in range(0, len(users), chunk_size):
            block = users[start : start + chunk_size]
            recs = model.recommend(block.tolist(), k=k, exclude_seen=True)
            yield recs[["user_id", "item_id", "rank", "score"]]
            progress.advance(bar, len(block))


def cold_start_list(model: Any, k: int) -> ColdStart:
    """The model's top-`k` for a never-seen user, with every user it knows.

    Exactly what the model service answers an unknown user (the same `ModelRunner` ranking),
    so the API can serve cold users from the batch without a call to the model service.
    """
    from level3_recsys.serving.scoring import ModelRunner

    item_ids, scores = ModelRunner(model, "", "").cold_start_items(k)
    return ColdStart(item_ids=item_ids, scores=scores, known_users=model.user_ids_.tolist())


@dataclass(frozen=True)
class BatchResult:
    """What a batch run wrote."""

    batch: BatchInfo
    store_url: str
    seconds: float


def run_batch(
    *,
    tracking: Tracking,
    store_url: str,
    interactions: pd.DataFrame,
    k: int = 10,
    active_days: float | None = 30,
    alias: str = CHAMPION,
    chunk_size: int = 4096,
    show_progress: bool = True,
    model_hook: Callable[[Any], Any] | None = None,
) -> BatchResult:
    """Load ``models:/<name>@<alias>``, score active users and write one atomic batch.

    Args:
        tracking: MLflow tracking/registry location and registered model name.
        store_url: ``sqlite:///...`` or ``redis://...``.
        interactions: The interaction log that defines who is active.
        k: List length.
        active_days: Look-back window for "active" (None: every user in the log).
        alias: Registry alias to serve (``champion``).
        chunk_size: Users per scoring block.
        show_progress: Progress bar on stderr.
        model_hook: Called with the loaded recommender, returning the one to use (tests
            inject failures with it; monitoring could wrap it).

    Returns:
        The new live batch's metadata.
    """
    start = datetime.now(UTC)
    loaded = load_recommender(tracking, alias)
    model = model_hook(loaded.recommender) if model_hook else loaded.recommender
    users = active_users(interactions, days=active_days)
    store = open_store(store_url)
    try:
        info = store.write_batch(
            score_users(model, users, k=k, chunk_size=chunk_size, show_progress=show_progress),
            model_name=f"{loaded.name}/{loaded.model_name}",
            model_version=loaded.version,
            k=k,
            generated_at=start,
            # from the registry's model itself: what the model service answers never-seen users
            cold_start=cold_start_list(loaded.recommender, k),
        )
    finally:
        store.close()
    return BatchResult(info, store_url, (datetime.now(UTC) - start).total_seconds())


def read_interactions(path: str | Path) -> pd.DataFrame:
    """Read the processed interaction log (Parquet or CSV) that defines active users."""
    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"interactions file not found: {p}")
    return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)


@task(name="score-and-write", retries=0, cache_policy=NO_CACHE)
def _batch_task(
    tracking: Tracking, store_url: str, interactions_path: str, k: int, active_days: float | None, alias: str
) -> dict[str, Any]:
    result = run_batch(
        tracking=tracking,
        store_url=store_url,
        interactions=read_interactions(interactions_path),
        k=k,
        active_days=active_days,
        alias=alias,
        show_progress=False,
    )
    return {**result.batch.__dict__, "store_url": store_url, "seconds": result.seconds}


@flow(name="level3-nightly-batch", log_prints=True)
def nightly_batch_flow(
    tracking_uri: str,
    artifact_location: str | None,
    store_url: str,
    interactions_path: str,
    registered_model: str = "level3_recsys",
    k: int = 10,
    active_days: float | None = 30,
    alias: str = CHAMPION,
) -> dict[str, Any]:
    """Prefect flow: the champion's top-K for every active user, written atomically to the store.

    Parameters are plain strings and numbers so a deployment can carry them.
    """
    tracking = Tracking(tracking_uri, artifact_location, registered_model=registered_model)
    summary = _batch_task(tracking, store_url, interactions_path, k, active_days, alias)
    get_run_logger().info(
        "batch %s: %s users from %s v%s",
        summary["batch_id"],
        summary["n_users"],
        summary["model_name"],
        summary["model_version"],
    )
    return summary


def nightly_deployment(parameters: dict[str, Any], *, cron: str = NIGHTLY_CRON) -> Any:
    """The flow's deployment definition: every night at 02:00 with the given parameters.

    Building it needs no Prefect server; ``prefect.serve(nightly_deployment(...))`` or
    ``.apply()`` against a server puts it to work.
    """
    return nightly_batch_flow.to_deployment(
        name=DEPLOYMENT_NAME,
        cron=cron,
        parameters=parameters,
        description="Score every active user with the registry champion and refresh the store.",
        tags=["level3", "batch"],
    )
