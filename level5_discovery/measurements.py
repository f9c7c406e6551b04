"""Read a samples x variables measurement matrix, with the intervened variable of each row.

The CSV has one numeric column per variable and one row per sample. Which variable (if any) was
intervened on in a row comes either from a column of the same CSV (default name ``intervention``)
or from a separate file: one column with as many rows as the data, or two columns ``row,variable``
(row = 0-based data row; rows not listed are observational). Empty cells, ``none`` and
``observational`` (any case) mean no intervention. Every problem raises a `shared.errors`
`UserError` whose one-line message names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import DataError, EmptyDataError, InputFileError, SchemaError

NO_INTERVENTION = frozenset({"", "none", "observational", "observe", "nan", "-1"})


@dataclass(frozen=True)
class Measurements:
    """A measurement matrix ready for `discover`.

    Attributes:
        data: Float ``(rows, vars)`` matrix.
        intervened: Int ``(rows,)``: index of the variable intervened on in each row, -1 for none.
        names: Variable names, one per column of ``data``.
    """

    data: np.ndarray
    intervened: np.ndarray
    names: list[str]


def _read_csv(path: Path, what: str, *, skip_blank_lines: bool = True) -> pd.DataFrame:
    if not path.is_file():
        raise InputFileError(f"{what} file not found: {path}")
    try:
        return pd.read_csv(path, skipinitialspace=True, skip_blank_lines=skip_blank_lines)
    except pd.errors.EmptyDataError as exc:
        raise EmptyDataError(f"{what} file is empty: {path}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFileError(
            f"{what} file is not a readable CSV: {path} ({str(exc).splitlines()[0]})"
        ) from exc


def _labels_to_index(labels: pd.Series, names: list[str], source: str) -> np.ndarray:
    """Per-row variable names (or blanks) -> variable indices (-1 for none)."""
    index = {n: i for i, n in enumerate(names)}
    text = labels.astype(str).str.strip()
    none = text.str.lower().isin(NO_INTERVENTION) | labels.isna().to_numpy()
    unknown = sorted(set(text[~none]) - set(index))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(f"{source} names unknown variable(s) {shown}; known: {', '.join(names[:10])}")
    out = np.full(len(labels), -1, dtype=int)
    out[~none.to_numpy()] = [index[t] for t in text[~none]]
    return out


def _interventions_from_file(path: Path, n_rows: int, names: list[str]) -> np.ndarray:
    # A blank line in a one-column file is an observational row, so blank lines are kept.
    frame = _read_csv(path, "interventions", skip_blank_lines=False)
    if frame.shape[1] == 2:
        frame = frame.dropna(how="all")
    source = f"interventions file {path.name}"
    if frame.shape[1] == 1:
        if len(frame) != n_rows:
            raise DataError(f"{source} has {len(frame)} rows but the data has {n_rows}")
        return _labels_to_index(frame.iloc[:, 0], names, source)
    if frame.shape[1] == 2:
        rows = pd.to_numeric(frame.iloc[:, 0], errors="coerce")
        if rows.isna().any() or (rows % 1 != 0).any():
            raise SchemaError(f"{source}: the first of two columns must hold integer row numbers")
        rows_int = rows.astype(int).to_numpy()
        bad = rows_int[(rows_int < 0) | (rows_int >= n_rows)]
        if bad.size:
            raise DataError(f"{source} names row {int(bad[0])} but the data has rows 0..{n_rows - 1}")
        if len(np.unique(rows_int)) != len(rows_int):
            raise DataError(f"{source} lists a row more than once")
        out = np.full(n_rows, -1, dtype=int)
        out[rows_int] = _labels_to_index(frame.iloc[:, 1], names, source)
        return out
    raise SchemaError(
        f"{source} must have 1 column (variable per row) or 2 (row,variable); got {frame.shape[1]}"
    )


def read_measurements(
    csv_path: str | Path,
    interventions_path: str | Path | None = None,
    *,
    intervention_column: str = "intervention",
) -> Measurements:
    """Read a samples x variables CSV and the intervened variable of each row.

    Args:
        csv_path: CSV with a header row; one numeric column per variable (plus, optionally,
            ``intervention_column``).
        interventions_path: Optional separate file naming the intervened variable per row (one
            column, same row count) or listing ``row,variable`` pairs. Takes precedence over the
            column; the column is then dropped if present.
        intervention_column: Name of the optional per-row intervention column in the CSV.

    Returns:
        The `Measurements`.

    Raises:
        InputFileError: A file is missing or not a CSV.
        EmptyDataError: The data has no rows.
        SchemaError: Non-numeric columns (named) or a malformed interventions file.
        DataError: Fewer than 2 variables, missing values (with the row count), an intervention on an
            unknown variable, or a row-count mismatch.
    """
    path = Path(csv_path)
    frame = _read_csv(path, "measurements")
    labels = frame.pop(intervention_column) if intervention_column in frame.columns else None
    if frame.empty or len(frame) == 0:
        raise EmptyDataError(f"measurements file has no data rows: {path}")
    names = [str(c).strip() for c in frame.columns]
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        shown = ", ".join(repr(str(c)) for c in non_numeric[:8]) + (" ..." if len(non_numeric) > 8 else "")
        raise SchemaError(
            f"non-numeric column(s) {shown} in {path.name}; every column but "
            f"'{intervention_column}' must be a number"
        )
    if len(names) < 2:
        raise DataError(f"{path.name} has {len(names)} variable column(s); causal discovery needs at least 2")
    data = frame.to_numpy(dtype=float)
    bad_rows = int((~np.isfinite(data)).any(axis=1).sum())
    if bad_rows:
        raise DataError(
            f"{path.name}: {bad_rows} row(s) with missing or non-finite values; drop or impute them"
        )
    if interventions_path is not None:
        intervened = _interventions_from_file(Path(interventions_path), len(data), names)
    elif labels is not None:
        intervened = _labels_to_index(labels, names, f"column '{intervention_column}'")
    else:
        intervened = np.full(len(data), -1, dtype=int)
    return Measurements(data=data, intervened=intervened, names=names)
