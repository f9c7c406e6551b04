"""The IBM Telco Customer Churn layout: read, clean, model, predict.

The public file (7,043 rows, 21 columns, 26.5% churn) has two quirks handled here: ``TotalCharges``
is text with a blank for the 11 customers whose tenure is 0, and binary columns are ``Yes``/``No``
strings (while ``SeniorCitizen`` is 0/1). It has no time axis, so the modelling stages use a
stratified hold-out test set and stratified folds instead of walk-forward windows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from level2_churn.models import ChurnModel
from level2_churn.splits import stratified_plan
from level2_churn.train import ModelData, ModellingResult, run_modelling
from shared.atomic import atomic_path, atomic_write_with
from shared.errors import DataError, EmptyDataError, InputFileError, SchemaError

if TYPE_CHECKING:
    from level2_churn.config import ChurnConfig
    from shared.tracking import MlflowTracker

log = logging.getLogger(__name__)

ID = "customerID"
TARGET = "Churn"
COLUMNS = [
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
    "Churn",
]
YES_NO = ["Partner", "Dependents", "PhoneService", "PaperlessBilling"]
NUMERIC = ["SeniorCitizen", "tenure", "MonthlyCharges", "TotalCharges"]
CATEGORICAL = [
    "gender",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaymentMethod",
]
ADD_ON_SERVICES = [
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
]
FEATURES = [*YES_NO, *NUMERIC, *CATEGORICAL, "n_add_on_services", "charges_ratio"]


def read_telco(path: Path, *, require_target: bool) -> pd.DataFrame:
    """Read a CSV in the Telco layout, checking file, emptiness and columns.

    Raises:
        InputFileError: Missing or unreadable file.
        EmptyDataError: No rows.
        SchemaError: Columns of the layout are missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Telco CSV not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise EmptyDataError(f"{path} is empty") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputFileError(f"cannot parse {path} as CSV: {str(exc).splitlines()[0]}") from None
    needed = COLUMNS if require_target else [c for c in COLUMNS if c != TARGET]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise SchemaError(f"{path.name} is not in the Telco layout: missing columns {', '.join(missing)}")
    if df.empty:
        raise EmptyDataError(f"{path} has a header but no rows")
    return df


def _yes_no(series: pd.Series, name: str) -> pd.Series:
    text = series.str.strip().str.lower()
    mapped = text.map({"yes": 1.0, "no": 0.0, "1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0})
    bad = mapped.isna() & (text != "")
    if bad.any():
        examples = ", ".join(repr(v) for v in series[bad].unique()[:3])
        raise SchemaError(f"column {name} must be Yes/No; found {examples}")
    return mapped


def clean_telco(raw: pd.DataFrame) -> pd.DataFrame:
    """Typed features: Yes/No to 0/1, blank TotalCharges filled, categories, two derived features.

    A blank ``TotalCharges`` belongs to a customer in their first month (tenure 0): nothing billed
    yet, so it becomes 0; any other blank becomes ``tenure * MonthlyCharges``.
    """
    df = pd.DataFrame({ID: raw[ID].astype(str).str.strip()})
    for c in YES_NO:
        df[c] = _yes_no(raw[c], c)
    for c in NUMERIC:
        text = raw[c].astype(str).str.strip()
        values = pd.to_numeric(text.replace("", np.nan), errors="coerce")
        bad = values.isna() & (text != "")
        if bad.any():
            raise SchemaError(f"column {c} must be numeric; found {text[bad].iloc[0]!r}")
        df[c] = values.astype(float)
    blank_total = df["TotalCharges"].isna()
    df.loc[blank_total, "TotalCharges"] = (df["tenure"] * df["MonthlyCharges"])[blank_total]
    for c in CATEGORICAL:
        df[c] = raw[c].astype(str).str.strip().replace("", np.nan).astype("category")
    df["n_add_on_services"] = sum(
        (raw[c].str.strip().str.lower() == "yes").astype(float) for c in ADD_ON_SERVICES
    )
    expected = df["tenure"] * df["MonthlyCharges"]
    df["charges_ratio"] = np.where(expected > 0, df["TotalCharges"] / expected.where(expected > 0, 1.0), 1.0)
    if TARGET in raw.columns:
        df[TARGET] = _yes_no(raw[TARGET], TARGET)
        if df[TARGET].isna().any():
            raise SchemaError(f"column {TARGET} has blank values")
        df[TARGET] = df[TARGET].astype(int)
    return df


def load_telco(path: Path) -> ModelData:
    """Read and clean a labelled Telco CSV into a modelling table.

    Raises:
        DataError: Only one class present, or too few rows per class.
    """
    df = clean_telco(read_telco(path, require_target=True))
    dupes = int(df[ID].duplicated().sum())
    if dupes:
        log.warning("dropping %d duplicate customerID rows", dupes)
        df = df.drop_duplicates(ID).reset_index(drop=True)
    if df[TARGET].nunique() < 2:
        raise DataError(f"column {TARGET} has only one class ({df[TARGET].iloc[0]}); nothing to learn")
    return ModelData(df, features=list(FEATURES), label=TARGET, id_col=ID)


def run_telco(
    path: Path, cfg: ChurnConfig, *, tracker: MlflowTracker | None = None, show_progress: bool = True
) -> ModellingResult:
    """Run the modelling stages on a Telco CSV (stratified folds and hold-out)."""
    data = load_telco(path)
    plan = stratified_plan(
        data.frame[TARGET].to_numpy(),
        n_folds=max(cfg.splits.n_folds, 3),
        test_size=cfg.telco_test_size,
        seed=cfg.seed,
    )
    res = run_modelling(data, plan, cfg, tracker=tracker, show_progress=show_progress, source="telco")
    res.model.metadata["data_file"] = Path(path).name  # named in metrics.json and the report
    return res


def save_model(model: ChurnModel, path: Path) -> Path:
    """Write the model atomically with joblib."""
    return atomic_write_with(path, lambda p: joblib.dump(model, p))


def load_model(path: Path) -> ChurnModel:
    """Load a model saved by `save_model`.

    Raises:
        InputFileError: Missing file, or not a level-2 churn model.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"model file not found: {path}")
    try:
        model = joblib.load(path)
    except Exception as exc:  # any unpickling failure means "not our model file"
        raise InputFileError(f"cannot load a model from {path}: {type(exc).__name__}") from None
    if not isinstance(model, ChurnModel):
        raise InputFileError(f"{path} does not hold a churn model (found {type(model).__name__})")
    return model


def predict_file(model_path: Path, csv: Path, out: Path) -> pd.DataFrame:
    """Write ``customerID,churn_probability`` for a Telco-layout CSV (``Churn`` optional, ignored)."""
    model = load_model(model_path)
    raw = read_telco(csv, require_target=False)
    df = clean_telco(raw.drop(columns=[TARGET], errors="ignore"))
    preds = pd.DataFrame({ID: df[ID], "churn_probability": model.predict_proba(df)})
    with atomic_path(out) as tmp:
        preds.to_csv(tmp, index=False, float_format="%.6f")
    return preds


def synthetic_telco(n: int, *, seed: int = 0, churn: bool = True) -> pd.DataFrame:
    """A table in the exact Telco layout with a known churn mechanism (for tests and demos).

    Churn rises with month-to-month contracts, fibre, electronic checks and high charges, and falls
    with tenure and tech support, at about the real file's 26% rate; tenure-0 rows get a blank
    ``TotalCharges`` as in the real file.
    """
    rng = np.random.default_rng(seed)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.21, 0.24])
    tenure = np.where(contract == "Month-to-month", rng.integers(0, 40, n), rng.integers(0, 73, n))
    tenure[rng.random(n) < 0.01] = 0
    internet = rng.choice(["DSL", "Fiber optic", "No"], n, p=[0.34, 0.44, 0.22])
    phone = rng.random(n) < 0.9

    def addon(p: float) -> np.ndarray:
        val = np.where(rng.random(n) < p, "Yes", "No")
        return np.where(internet == "No", "No internet service", val)

    addons = {c: addon(0.35 + 0.1 * i / 6) for i, c in enumerate(ADD_ON_SERVICES)}
    payment = rng.choice(
        ["Electronic check", "Mailed check", "Bank transfer (automatic)", "Credit card (automatic)"],
        n,
        p=[0.34, 0.23, 0.22, 0.21],
    )
    monthly = np.round(
        20
        + 25 * (internet == "DSL")
        + 50 * (internet == "Fiber optic")
        + 5 * sum(addons[c] == "Yes" for c in ADD_ON_SERVICES)
        + rng.normal(0, 3, n),
        2,
    )
    total = np.round(monthly * tenure * rng.uniform(0.95, 1.05, n), 2)
    total_text = np.where(tenure == 0, " ", total.astype(str))
    logit = (
        -1.2
        + 1.3 * (contract == "Month-to-month")
        - 1.0 * (contract == "Two year")
        + 0.7 * (internet == "Fiber optic")
        + 0.6 * (payment == "Electronic check")
        - 0.035 * tenure
        - 0.5 * (addons["TechSupport"] == "Yes")
        + 0.012 * (monthly - 65)
    )
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame(
        {
            "customerID": [
                f"{rng.integers(1000, 9999)}-{''.join(rng.choice(list('ABCDEFGHIJ'), 5))}{i}"
                for i in range(n)
            ],
            "gender": rng.choice(["Female", "Male"], n),
            "SeniorCitizen": (rng.random(n) < 0.16).astype(int),
            "Partner": np.where(rng.random(n) < 0.48, "Yes", "No"),
            "Dependents": np.where(rng.random(n) < 0.3, "Yes", "No"),
            "tenure": tenure,
            "PhoneService": np.where(phone, "Yes", "No"),
            "MultipleLines": np.where(phone, np.where(rng.random(n) < 0.42, "Yes", "No"), "No phone service"),
            "InternetService": internet,
            **addons,
            "Contract": contract,
            "PaperlessBilling": np.where(rng.random(n) < 0.59, "Yes", "No"),
            "PaymentMethod": payment,
            "MonthlyCharges": monthly,
            "TotalCharges": total_text,
            "Churn": np.where(y, "Yes", "No"),
        }
    )
    return df[COLUMNS] if churn else df[[c for c in COLUMNS if c != TARGET]]


def telco_summary(res: ModellingResult) -> dict[str, Any]:
    """Headline numbers for the console."""
    return {
        "pr_auc": res.test_metrics["pr_auc"],
        "roc_auc": res.test_metrics["roc_auc"],
        "baseline_pr_auc": res.baseline_test_metrics["pr_auc"],
        "campaign_profit": res.campaign["profit"],
    }
