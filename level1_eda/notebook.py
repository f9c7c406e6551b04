# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Level 1 — EDA and first models, step by step
#
# This notebook walks through what `python -m level1_eda run` does, one step per
# cell, on the Palmer penguins data. Open it with Jupyter (`jupytext --to ipynb
# level1_eda/notebook.py`) or run it as a script. Every function it calls lives in
# the `level1_eda` package, so the notebook and the command line can never disagree.

# %%
import warnings

import matplotlib

matplotlib.use("Agg")
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from level1_eda.config import L1Config
from level1_eda.data import load_csv, penguins_csv
from level1_eda.pipeline import PATHS

warnings.simplefilter("ignore", ConvergenceWarning)
pd.set_option("display.width", 120)
cfg = L1Config()

# %% [markdown]
# ## 1. Load the CSV
# The raw data is written once to `data/raw/penguins.csv` and never modified; we read it
# back exactly as we would read any CSV. `load_csv` detects the encoding and delimiter.

# %%
path = penguins_csv(PATHS.raw)
loaded = load_csv(path)
df = loaded.frame
print(path.name, df.shape, loaded.encoding, repr(loaded.delimiter))
df.head()

# %% [markdown]
# ## 2. Schema: what is each column?
# A role decides how a column is used: numbers are scaled, categories one-hot encoded,
# identifiers and free text left out.

# %%
from level1_eda.schema import clean_target, coerce_types, infer_schema

typed, type_warnings = coerce_types(df, target="species")
schema = infer_schema(typed, "species", cfg)
schema.table()[["dtype", "role", "missing", "unique", "use"]]

# %% [markdown]
# ## 3. Data quality: gaps, duplicates, outliers, class balance

# %%
from level1_eda.profile import profile_frame

prof = profile_frame(typed, schema)
print({k: prof.overview[k] for k in ("rows", "missing_cells", "rows_with_missing", "duplicate_rows")})
prof.missing

# %%
prof.outliers[["lower fence", "upper fence", "outliers"]]

# %%
prof.target_balance

# %% [markdown]
# ## 4. Exploration: which columns separate the species?
# The ANOVA F score compares the spread between species with the spread within them.

# %%
from level1_eda import explore

explore.rank_features(typed, schema.numeric, "species", "classification")

# %%
fig = explore.numeric_distributions(typed, schema.numeric[:4], "species", "classification")

# %%
explore.cramers_v_matrix(typed, ["species", "island", "sex"]).round(2)

# %% [markdown]
# ## 5. Split, then compare missing-value strategies on the training rows only

# %%
from level1_eda.missing import compare_strategies
from level1_eda.train import split_data

modelling, _ = clean_target(df, schema)
split = split_data(modelling, schema, cfg)
comparison = compare_strategies(split, schema, cfg)
comparison.scores.round(4)

# %%
comparison.numeric_shift.round(2)

# %% [markdown]
# ## 6-7. One-hot pipeline, model and baseline
# The pipeline is fitted on the training rows only; cross-validation refits it per fold.

# %%
from level1_eda.train import train

trained = train(split, schema, cfg)
for name, cv in (("model", trained.cv_model), ("baseline", trained.cv_baseline)):
    print(f"cv accuracy {name:>8}: {cv['mean']:.3f} ± {cv['std']:.3f}")
trained.model

# %% [markdown]
# ## 8. Evaluate on the held-out test rows

# %%
from level1_eda.evaluate import evaluate_test

ev = evaluate_test(trained, split, schema.task)
print("test accuracy:", round(ev.test["accuracy"], 4), "| baseline:", round(ev.baseline_test["accuracy"], 4))
ev.confusion

# %%
ev.per_class.round(3)

# %%
ev.coefficients.round(2).head(10)

# %% [markdown]
# ## 9. Apply the model to new rows
# A new penguin from an island never seen in training, with its sex unknown: the pipeline
# fills the gap and ignores the unknown island instead of failing.

# %%
from level1_eda.predict import predict_frame

bundle = {"pipeline": trained.model, "task": schema.task, "features": schema.features}
new = pd.DataFrame(
    {
        "island": ["Atlantis"],
        "bill_length_mm": [47.0],
        "bill_depth_mm": [14.5],
        "flipper_length_mm": [215.0],
        "body_mass_g": [5100.0],
        "sex": [None],
        "year": [2009],
    }
)
predictions, notes = predict_frame(bundle, new)
predictions
