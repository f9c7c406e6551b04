"""predict.py: training on a Handbook-layout folder and scoring test days as the real-time system
would — every test transaction scored, no label of the test days used, nothing from the future."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level4_fraud import data, schema
from level4_fraud.predict import load_run, score_folder, train_from_folder
from level4_fraud.tests.integration_helpers import small_config, split_folder
from shared.errors import InputFileError, SchemaError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    all_dir, hist, test = split_folder(tmp)
    run_dir = tmp / "run"
    run_dir.mkdir()
    cfg = small_config()
    train_from_folder(cfg, hist, run_dir)
    scores = score_folder(run_dir, test, hist)
    return {
        "tmp": tmp,
        "all": all_dir,
        "hist": hist,
        "test": test,
        "run": run_dir,
        "scores": scores,
        "cfg": cfg,
    }


def _rewrite(src: Path, dst: Path, change) -> Path:
    """Copy a folder of daily files, passing each day's frame through `change`."""
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.parquet")):
        change(pd.read_parquet(f)).to_parquet(dst / f.name, index=False)
    for table in ("customers.parquet", "terminals.parquet"):
        if (src.parent / table).is_file():
            shutil.copy2(src.parent / table, dst.parent / table)
    return dst


def test_every_test_transaction_gets_one_score(trained):
    test_tx = data.read_fdh_folder(trained["test"])
    scores = trained["scores"]
    assert list(scores.columns) == ["TRANSACTION_ID", "score"]
    assert len(scores) == len(test_tx)
    assert set(scores["TRANSACTION_ID"]) == set(test_tx[schema.TRANSACTION_ID])
    assert scores["score"].between(0, 1).all()
    # the scores rank frauds high: better than a random ranking by a wide margin
    y = test_tx.set_index(schema.TRANSACTION_ID).loc[scores["TRANSACTION_ID"], schema.TX_FRAUD].to_numpy()
    from sklearn.metrics import average_precision_score

    assert average_precision_score(y, scores["score"]) > 5 * y.mean()


def test_shuffled_or_deleted_test_labels_change_no_score(trained):
    rng = np.random.default_rng(0)
    base = trained["tmp"] / "leak"

    def shuffle(df):
        df = df.copy()
        df[schema.TX_FRAUD] = rng.permutation(df[schema.TX_FRAUD].to_numpy())
        df[schema.TX_FRAUD_SCENARIO] = rng.permutation(df[schema.TX_FRAUD_SCENARIO].to_numpy())
        return df

    def flip(df):
        return df.assign(**{schema.TX_FRAUD: 1 - df[schema.TX_FRAUD]})

    def delete(df):
        return df.drop(columns=[schema.TX_FRAUD, schema.TX_FRAUD_SCENARIO])

    for name, change in (("shuffled", shuffle), ("flipped", flip), ("deleted", delete)):
        folder = _rewrite(trained["test"], base / name / "test", change)
        got = score_folder(trained["run"], folder, trained["hist"])
        pd.testing.assert_frame_equal(got, trained["scores"], check_exact=True, obj=name)


def test_late_labels_of_test_days_are_ignored(trained, tmp_path):
    test_tx = data.read_fdh_folder(trained["test"])
    # labels of the test days "available" right away, and all saying fraud: must not leak
    late = data.late_labels_from(test_tx.assign(**{schema.TX_FRAUD: 1}), delay_days=0.0)
    path = tmp_path / "late.csv"
    late.to_csv(path, index=False)
    got = score_folder(trained["run"], trained["test"], trained["hist"], labels_file=path)
    pd.testing.assert_frame_equal(got, trained["scores"], check_exact=True)


def test_a_later_test_day_changes_no_earlier_score(trained):
    days = sorted(trained["test"].glob("*.parquet"))
    first = trained["tmp"] / "first_day" / "test"
    first.mkdir(parents=True)
    shutil.copy2(days[0], first / days[0].name)
    got = score_folder(trained["run"], first, trained["hist"])
    ref = trained["scores"].set_index("TRANSACTION_ID").loc[got["TRANSACTION_ID"], "score"].to_numpy()
    np.testing.assert_array_equal(got["score"].to_numpy(), ref)


def test_history_overlapping_the_test_days_is_not_read_twice(trained):
    # history = every day (test days included, with labels): the test folder wins on its days
    got = score_folder(trained["run"], trained["test"], trained["all"])
    pd.testing.assert_frame_equal(got, trained["scores"], check_exact=True)


def test_history_labels_matter(trained):
    # sanity check of the leak tests: labels of the *history* do feed the terminal risk
    hidden = _rewrite(
        trained["hist"], trained["tmp"] / "nolabels" / "history",
        lambda df: df.drop(columns=[schema.TX_FRAUD, schema.TX_FRAUD_SCENARIO]),
    )  # fmt: skip
    got = score_folder(trained["run"], trained["test"], hidden)
    assert not np.allclose(got["score"], trained["scores"]["score"])


def test_run_folder_round_trip(trained):
    model = load_run(trained["run"])
    assert model.ensemble.members and set(model.ensemble.members) <= set(model.info["baselines"])
    assert model.info["training"]["labelled"] > 0
    assert model.threshold is None or 0 < model.threshold < 1


def test_missing_run_and_bad_inputs_are_user_errors(trained, tmp_path):
    with pytest.raises(InputFileError, match="no such run folder"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(InputFileError, match="not a level-4 run"):
        load_run(tmp_path / "empty_run")
    with pytest.raises(InputFileError, match="no such folder"):
        score_folder(trained["run"], tmp_path / "missing", trained["hist"])
    bad = _rewrite(trained["test"], tmp_path / "bad" / "test", lambda df: df.drop(columns=[schema.TX_AMOUNT]))
    with pytest.raises(SchemaError, match="TX_AMOUNT"):
        score_folder(trained["run"], bad, trained["hist"])


def test_training_needs_labelled_days(tmp_path):
    from shared.errors import EmptyDataError

    _, hist, _ = split_folder(tmp_path)
    unlabelled = _rewrite(
        hist,
        tmp_path / "u" / "history",
        lambda df: df.drop(columns=[schema.TX_FRAUD, schema.TX_FRAUD_SCENARIO]),
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(EmptyDataError, match="no labelled"):
        train_from_folder(small_config(), unlabelled, run_dir)
