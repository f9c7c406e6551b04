"""MLflow tracking and registry: logged runs, champion/challenger aliases, pyfunc round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level3_recsys.tracking import (
    CHALLENGER,
    CHAMPION,
    LoggedRun,
    Tracking,
    load_recommender,
    register_winner,
)
from shared.errors import ConfigError, InputFileError


def test_champion_is_the_best_run_and_challenger_the_runner_up(registry) -> None:
    table = registry["table"]
    client = registry["tracking"].client()
    name = registry["tracking"].registered_model
    champion = client.get_model_version_by_alias(name, CHAMPION)
    challenger = client.get_model_version_by_alias(name, CHALLENGER)
    ranked = table["ndcg@10"].sort_values(ascending=False).index.tolist()
    assert champion.tags["model_name"] == ranked[0]
    assert challenger.tags["model_name"] == ranked[1]
    assert float(champion.tags["ndcg_at_10"]) == pytest.approx(table.loc[ranked[0], "ndcg@10"], abs=1e-6)
    assert champion.version != challenger.version
    assert registry["aliases"] == {CHAMPION: str(champion.version), CHALLENGER: str(challenger.version)}


def test_every_run_logs_params_metrics_and_a_model_with_signature(registry) -> None:
    import mlflow

    client = registry["tracking"].client()
    for logged in registry["runs"]:
        run = client.get_run(logged.run_id)
        assert run.data.params["model"] == logged.model_name
        ndcg = registry["table"].loc[logged.model_name, "ndcg@10"]
        assert run.data.metrics["ndcg_at_10"] == pytest.approx(ndcg)
        assert "precision_at_10" in run.data.metrics and "coverage" in run.data.metrics
        with registry["tracking"].active():  # the fluent API reads the store it points at
            info = mlflow.models.get_model_info(logged.model_uri)
        assert info.signature.inputs.input_names() == ["user_id"]
        assert set(info.signature.outputs.input_names()) == {"user_id", "item_id", "rank", "score"}
        assert {p.name for p in info.signature.params} == {"k", "exclude_seen"}


def test_champion_round_trip_gives_identical_recommendations(registry) -> None:
    import mlflow

    trk: Tracking = registry["tracking"]
    champion_name = trk.client().get_model_version_by_alias(trk.registered_model, CHAMPION).tags["model_name"]
    original = registry["models"][champion_name]
    users = registry["train"].interactions["user_id"].unique()[:25]
    expected = original.recommend(users, k=7, exclude_seen=True).reset_index(drop=True)

    with trk.active():  # what a user does with mlflow.set_tracking_uri(...)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{trk.registered_model}@{CHAMPION}")
    got = pyfunc.predict(pd.DataFrame({"user_id": users}), params={"k": 7})
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_dtype=False)

    loaded = load_recommender(trk, CHAMPION)
    assert loaded.model_name == champion_name
    assert loaded.version == registry["aliases"][CHAMPION]
    again = loaded.recommender.recommend(users, k=7, exclude_seen=True).reset_index(drop=True)
    pd.testing.assert_frame_equal(again, expected)
    # seen items stay excluded after the round trip
    seen = registry["train"].interactions[["user_id", "item_id"]]
    assert again.merge(seen, on=["user_id", "item_id"]).empty


def test_missing_alias_is_a_clear_user_error(registry) -> None:
    with pytest.raises(InputFileError, match="alias 'nonexistent'"):
        load_recommender(registry["tracking"], "nonexistent")


def test_registering_without_the_selection_metric_is_refused(tracking: Tracking) -> None:
    with pytest.raises(ConfigError, match="missing"):
        register_winner([LoggedRun("r1", "models:/x", "als", {"recall@10": 0.1})], tracking=tracking)
    with pytest.raises(ConfigError, match="no training runs"):
        register_winner([], tracking=tracking)


def test_mlflow_writes_only_under_the_given_folder(registry, tmp_path: Path) -> None:
    # the session's store lives in its own temp folder; nothing appears in the working directory
    uri = registry["tracking"].tracking_uri
    assert uri.startswith("sqlite:///") and "mlflow.db" in uri
    assert not (Path.cwd() / "mlruns").exists()
    assert np.isfinite(registry["table"]["ndcg@10"]).all()


def test_logging_restores_the_previous_tracking_uri_and_skips_undefined_metrics(
    registry, tracking: Tracking, tmp_path: Path
) -> None:
    import mlflow

    from level3_recsys.tracking import log_metrics_to_run, log_training_run

    elsewhere = f"sqlite:///{tmp_path / 'someone-elses.db'}"
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(elsewhere)
    try:
        model = registry["models"]["popularity"]
        sample = registry["train"].interactions["user_id"].unique()[:3].tolist()
        logged = log_training_run(
            model,
            tracking=tracking,
            params={"model": "popularity"},
            metrics={"ndcg@10": 0.25, "cold_ndcg@10": float("nan"), "note": "text"},
            sample_users=sample,
        )
        assert mlflow.get_tracking_uri() == elsewhere  # the caller's store, not the level's
        assert logged.metrics == {"ndcg@10": 0.25}
        later = log_metrics_to_run(tracking, logged.run_id, {"recall@10": 0.5, "map": None})
        assert later == {"recall@10": 0.5}
        assert mlflow.get_tracking_uri() == elsewhere
    finally:
        mlflow.set_tracking_uri(previous or "")  # "" is MLflow's "not set"
    run = tracking.client().get_run(logged.run_id)
    assert run.data.metrics == {"ndcg_at_10": 0.25, "recall_at_10": 0.5}
    experiment = tracking.client().get_experiment_by_name(tracking.experiment)
    assert run.info.experiment_id == experiment.experiment_id
