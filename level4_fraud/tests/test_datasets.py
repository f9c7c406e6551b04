"""datasets.py: feature frames and folds (prequential with validation, and the folder-training fold)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from level4_fraud import datasets, features, schema
from level4_fraud.evaluate import EvaluationConfig
from shared.errors import EmptyDataError, SchemaError

ONE_FOLD = EvaluationConfig(n_folds=1)


@pytest.fixture(scope="module")
def frame_spec(rich_sim):
    _, tx, customers, terminals = rich_sim
    return datasets.feature_frame(tx, customers=customers, terminals=terminals)


def test_feature_frame_keeps_rows_raw_columns_and_spec(rich_sim, frame_spec):
    _, tx, _, _ = rich_sim
    frame, spec = frame_spec
    assert frame.index.equals(tx.index)
    assert (frame[schema.TRANSACTION_ID].to_numpy() == tx[schema.TRANSACTION_ID].to_numpy()).all()
    assert set(spec.categorical) == set(features.CATEGORICAL_FEATURES)
    assert "NEW_DEVICE" in spec.numeric and "DISTANCE_FROM_HOME" in spec.numeric
    assert not set(spec.numeric) & set(spec.categorical)
    assert frame[schema.TX_FRAUD].dtype == np.float64 and frame[schema.LABELLED].all()
    assert datasets.FeatureSpec.from_dict(spec.to_dict()) == spec


def test_baseline_feature_set_is_the_handbooks_15(rich_sim):
    _, tx, _, _ = rich_sim
    _, spec = datasets.feature_frame(tx, datasets.FeatureConfig(feature_set="baseline"))
    assert list(spec.numeric) == features.FEATURES_BASELINE and spec.categorical == ()


def test_models_read_the_habit_only_when_the_data_can_fill_it():
    """ "auto": in on 100 days (56 % of the rows 44 days or more after the first), out on 60
    (27 %); "on" and "off" decide alone. The columns are computed either way (predict needs them
    for a run that reads them)."""
    from level4_fraud.simulate import SimulatorConfig, simulate

    tx, _, _ = simulate(SimulatorConfig(n_customers=120, n_terminals=240, nb_days=100, seed=3))
    short = tx[tx[schema.TX_DATETIME] < tx[schema.TX_DATETIME].min() + pd.Timedelta(days=60)]

    def reads(data: pd.DataFrame, **kw: str) -> bool:
        _, spec = datasets.feature_frame(data, datasets.FeatureConfig(**kw))
        return set(features.HABIT_FEATURES) <= set(spec.numeric)

    assert reads(tx) and not reads(short)
    assert reads(short, habit="on") and not reads(tx, habit="off")
    frame, _ = datasets.feature_frame(
        short, datasets.FeatureConfig(), spec=datasets.FeatureSpec(tuple(features.HABIT_FEATURES))
    )
    assert frame["AMOUNT_TO_CUSTOMER_HABIT"].notna().all()


def test_prequential_fold_layout_and_validation_is_the_training_week(frame_spec):
    frame, spec = frame_spec
    start = datasets.default_start(frame, ONE_FOLD)
    (fold,) = datasets.prequential_fold_data(frame, spec, start, ONE_FOLD)
    day = pd.Timedelta(days=1)
    assert fold.periods["train"] == (start, start + 7 * day)
    assert fold.periods["valid_train"] == (start - 14 * day, start - 7 * day)
    assert fold.periods["test"] == (start + 14 * day, start + 21 * day)
    last = frame[schema.TX_DATETIME].max().normalize()
    assert fold.periods["test"][1] == last + day
    # valid = the training week minus cards known to be compromised by then
    assert set(fold.index["valid"]) <= set(fold.index["train"])
    assert len(fold.index["valid"]) < len(fold.index["train"])
    for split in ("valid_train", "valid", "train", "test"):
        t = fold.rows(split)[schema.TX_DATETIME]
        lo, hi = fold.periods[split]
        assert t.min() >= lo and t.max() < hi
    # test keeps every test-day row; the mask marks the known cards, test_eval drops them
    t_all = frame[schema.TX_DATETIME].between(*fold.periods["test"], inclusive="left")
    assert len(fold.test) == int(t_all.sum())
    assert fold.test_known_compromised.any()
    assert len(fold.test_eval) == len(fold.test) - fold.test_known_compromised.sum()
    known_cards = set(fold.test.loc[fold.test_known_compromised, schema.CUSTOMER_ID])
    before = frame[schema.TX_DATETIME] < fold.periods["test"][0]
    earlier_fraud = frame[before & (frame[schema.TX_FRAUD] == 1)]
    assert known_cards <= set(earlier_fraud[schema.CUSTOMER_ID])
    assert fold.X("train").columns.tolist() == spec.columns
    assert fold.y("train").sum() == fold.sizes()["train_frauds"] > 0


def test_test_day_labels_change_no_test_feature(rich_sim):
    _, tx, customers, terminals = rich_sim
    frame, spec = datasets.feature_frame(tx, customers=customers, terminals=terminals)
    (fold,) = datasets.prequential_fold_data(frame, spec, datasets.default_start(frame, ONE_FOLD), ONE_FOLD)
    lo, _ = fold.periods["test"]
    flipped = tx.copy()
    test_days = flipped[schema.TX_DATETIME] >= lo
    flipped.loc[test_days, schema.TX_FRAUD] = 1 - flipped.loc[test_days, schema.TX_FRAUD]
    frame2, _ = datasets.feature_frame(flipped, customers=customers, terminals=terminals, spec=spec)
    a = frame.loc[fold.index["test"], spec.numeric]
    b = frame2.loc[fold.index["test"], spec.numeric]
    pd.testing.assert_frame_equal(a, b)


def test_no_fold_fits_is_a_user_error(frame_spec):
    frame, spec = frame_spec
    short = frame[frame[schema.TX_DATETIME] < frame[schema.TX_DATETIME].min() + pd.Timedelta(days=20)]
    with pytest.raises(EmptyDataError, match="no prequential fold"):
        datasets.prequential_fold_data(short, spec, datasets.default_start(short, ONE_FOLD), ONE_FOLD)


def test_training_fold_uses_every_labelled_row_and_a_late_validation(frame_spec):
    frame, spec = frame_spec
    sub = frame.copy()
    # the last 5 days unlabelled (the delay days of a real folder)
    late = sub[schema.TX_DATETIME] >= sub[schema.TX_DATETIME].max().normalize() - pd.Timedelta(days=4)
    sub.loc[late, schema.LABELLED] = False
    sub.loc[late, schema.TX_FRAUD] = np.nan
    fold = datasets.training_fold_data(sub, spec, ONE_FOLD)
    assert len(fold.train) == int((~late).sum())
    assert len(fold.test) == 0
    v_lo, v_hi = fold.periods["valid"]
    vt_lo, vt_hi = fold.periods["valid_train"]
    assert (v_hi - v_lo).days == 7 and (vt_hi - vt_lo).days == 7 and (v_lo - vt_hi).days == 7
    assert v_hi == sub.loc[~late, schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)
    assert not sub.loc[fold.index["valid"], schema.LABELLED].eq(False).any()


def test_training_fold_with_few_days_splits_without_gap(frame_spec):
    frame, spec = frame_spec
    first = frame[schema.TX_DATETIME].min().normalize()
    sub = frame[frame[schema.TX_DATETIME] < first + pd.Timedelta(days=9)]
    fold = datasets.training_fold_data(sub, spec, ONE_FOLD)
    assert fold.periods["valid_train"][1] == fold.periods["valid"][0]
    assert (fold.periods["valid"][1] - fold.periods["valid"][0]).days == 3


def test_training_fold_needs_labels_and_frauds(frame_spec):
    frame, spec = frame_spec
    none = frame.assign(**{schema.LABELLED: False, schema.TX_FRAUD: np.nan})
    with pytest.raises(EmptyDataError, match="no labelled"):
        datasets.training_fold_data(none, spec)
    genuine = frame.assign(**{schema.TX_FRAUD: 0.0})
    with pytest.raises(EmptyDataError, match="no fraud"):
        datasets.training_fold_data(genuine, spec)


def test_spec_the_data_cannot_give_is_a_schema_error(rich_sim, frame_spec):
    _, tx, _, _ = rich_sim
    _, spec = frame_spec
    handbook_only = tx.loc[:, list(schema.HANDBOOK_COLUMNS)]
    with pytest.raises(SchemaError, match="cannot give"):
        datasets.feature_frame(handbook_only, spec=spec)


def test_late_labels_become_training_targets_only_when_available(rich_sim):
    from level4_fraud import data

    _, tx, _, _ = rich_sim
    hidden = tx.copy()
    cut = hidden[schema.TX_DATETIME].max().normalize() - pd.Timedelta(days=9)
    last_days = hidden[schema.TX_DATETIME] >= cut
    late = data.late_labels_from(tx[last_days], delay_days=3)
    hidden[schema.TX_FRAUD] = hidden[schema.TX_FRAUD].astype("float64")
    hidden.loc[last_days, schema.TX_FRAUD] = np.nan
    hidden[schema.LABELLED] = ~last_days
    end = hidden[schema.TX_DATETIME].max().normalize() + pd.Timedelta(days=1)
    frame, _ = datasets.feature_frame(hidden, labels=late, label_as_of=end)
    got = frame.loc[last_days, schema.LABELLED]
    should = (late.set_index(schema.TRANSACTION_ID)[schema.LABEL_AVAILABLE_FROM] <= end).reindex(
        frame.loc[last_days, schema.TRANSACTION_ID]
    )
    assert got.to_numpy().tolist() == should.to_numpy().tolist()
    assert 0 < got.sum() < len(got)
