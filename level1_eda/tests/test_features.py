"""The feature pipeline learns only from training rows, and handles what new data throws at it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from level1_eda.config import L1Config
from level1_eda.features import build_preprocessor, feature_names
from level1_eda.schema import infer_schema
from level1_eda.train import split_data, train

from .conftest import make_mixed_frame


def _train_test() -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.DataFrame({"num": [1.0, 2.0, np.nan, 3.0], "cat": ["a", "b", "a", None]})
    # Test rows with extreme numbers and a category the training rows never had.
    test = pd.DataFrame({"num": [1000.0, np.nan, 2000.0], "cat": ["zzz", "a", None]})
    return train, test


def test_fill_values_scaling_and_categories_come_from_training_rows_only() -> None:
    train, test = _train_test()
    prep = build_preprocessor(["num"], ["cat"]).fit(train)
    cols = prep.named_steps["columns"]
    num = cols.named_transformers_["num"]
    assert num.named_steps["impute"].statistics_.tolist() == [2.0]  # median of 1, 2, 3 (not of test)
    assert num.named_steps["scale"].mean_.tolist() == [2.0]
    onehot = cols.named_transformers_["cat"].named_steps["onehot"]
    assert [list(c) for c in onehot.categories_] == [["a", "b"]]
    assert cols.named_transformers_["cat"].named_steps["impute"].statistics_.tolist() == ["a"]
    # Fitting on train + test would have learned different values: that difference is the leakage we avoid.
    leaky = build_preprocessor(["num"], ["cat"]).fit(pd.concat([train, test]))
    assert leaky.named_steps["columns"].named_transformers_["num"].named_steps["impute"].statistics_[0] != 2.0


def test_transform_of_unseen_category_missing_values_and_absent_column() -> None:
    train, test = _train_test()
    prep = build_preprocessor(["num"], ["cat"]).fit(train)
    out = prep.transform(test)
    assert out.shape == (3, 3)
    assert feature_names_of(prep) == ["num__num", "cat__cat_a", "cat__cat_b"]
    assert out[0, 1:].tolist() == [0.0, 0.0]  # "zzz" was never seen: all zeros, no error
    assert out[2, 1:].tolist() == [1.0, 0.0]  # missing category filled with the training mode "a"
    assert out[1, 0] == 0.0  # missing number -> training median 2 -> scaled to 0
    no_cat = prep.transform(test[["num"]])  # a column absent from new data is treated as missing
    assert no_cat[:, 1:].tolist() == [[1.0, 0.0]] * 3


def feature_names_of(prep) -> list[str]:
    return [str(n) for n in prep.get_feature_names_out()]


def _fitted_state(model) -> dict[str, object]:
    """Everything the pipeline learned: fill values, scaling, categories and the model's coefficients."""
    cols = model.named_steps["features"].named_steps["columns"]
    num, cat = cols.named_transformers_["num"], cols.named_transformers_["cat"]
    return {
        "median": num.named_steps["impute"].statistics_.tolist(),
        "scale_mean": num.named_steps["scale"].mean_.tolist(),
        "scale_std": num.named_steps["scale"].scale_.tolist(),
        "mode": cat.named_steps["impute"].statistics_.tolist(),
        "categories": [list(c) for c in cat.named_steps["onehot"].categories_],
        "coef": model.named_steps["model"].coef_.tolist(),
        "intercept": model.named_steps["model"].intercept_.tolist(),
    }


def test_changing_test_rows_does_not_change_the_fitted_model() -> None:
    df = make_mixed_frame(200)
    cfg = L1Config(cv_folds=2)
    schema = infer_schema(df, "label", cfg)
    split = split_data(df, schema, cfg)
    before = train(split, schema, cfg)
    # The same file with every test row's features replaced by extreme numbers, gaps and unseen levels;
    # labels stay, so the stratified split draws the same rows.
    changed = df.copy()
    test_rows = split.X_test.index
    changed.loc[test_rows, ["x1", "x2"]] = [[1e6, np.nan]] * len(test_rows)
    changed.loc[test_rows, ["colour", "city"]] = "never-seen"
    split2 = split_data(changed, schema, cfg)
    assert split2.X_test.index.equals(test_rows) and split2.X_train.equals(split.X_train)
    assert not split2.X_test.equals(split.X_test)  # the test rows really differ
    after = train(split2, schema, cfg)
    assert _fitted_state(after.model) == _fitted_state(before.model)
    assert after.cv_model["scores"] == before.cv_model["scores"]  # CV folds see training rows only
    assert feature_names(after.model)[:2] == ["num__x1", "num__x2"]
    # The check can fail: the same change in the training rows does change what is learned.
    leaked = df.copy()
    leaked.loc[split.X_train.index[:50], "x1"] = 1e6
    split3 = split_data(leaked, schema, cfg)
    assert _fitted_state(train(split3, schema, cfg).model) != _fitted_state(before.model)


def test_booleans_and_numbers_as_text_share_one_spelling() -> None:
    train = pd.DataFrame({"flag": [True, False, True], "code": [1.0, 2.0, 1.0]})
    new = pd.DataFrame({"flag": ["TRUE", "false", "True"], "code": ["1", "2", "1"]})
    prep = build_preprocessor([], ["flag", "code"]).fit(train)
    np.testing.assert_array_equal(prep.transform(train), prep.transform(new))
