"""The feature pipeline learns only from training rows, and handles what new data throws at it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from level1_eda.config import L1Config
from level1_eda.features import build_preprocessor, feature_names
from level1_eda.schema import infer_schema
from level1_eda.train import build_model

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


def test_changing_test_rows_does_not_change_the_fitted_model() -> None:
    df = make_mixed_frame(200)
    schema = infer_schema(df, "label", L1Config())
    train = df.iloc[:150]
    a = build_model(schema, L1Config()).fit(train[schema.features], train["label"])
    b = build_model(schema, L1Config()).fit(train[schema.features], train["label"])
    np.testing.assert_array_equal(a.named_steps["model"].coef_, b.named_steps["model"].coef_)
    assert feature_names(a)[:2] == ["num__x1", "num__x2"]


def test_booleans_and_numbers_as_text_share_one_spelling() -> None:
    train = pd.DataFrame({"flag": [True, False, True], "code": [1.0, 2.0, 1.0]})
    new = pd.DataFrame({"flag": ["TRUE", "false", "True"], "code": ["1", "2", "1"]})
    prep = build_preprocessor([], ["flag", "code"]).fit(train)
    np.testing.assert_array_equal(prep.transform(train), prep.transform(new))
