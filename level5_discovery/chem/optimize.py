"""Goal-directed optimisation of one named objective under a PMO oracle budget, and its CSV output."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from level5_discovery.chem.ga import GAConfig, Method, best_of, run_ga
from level5_discovery.chem.library import read_smiles_file
from level5_discovery.chem.objectives import get_objective
from level5_discovery.chem.oracle import Oracle
from shared.atomic import atomic_write_text
from shared.errors import ConfigError, EmptyDataError

METHODS: tuple[Method, ...] = ("ga", "guided")


@dataclass(frozen=True)
class OptimizeResult:
    """Every oracle call in order (``call, smiles, score``), PMO's top-10 AUC and the best molecule."""

    calls: pd.DataFrame
    top10_auc: float
    best: tuple[str, float]
    budget: int
    task: str
    method: str
    seed: int
    library_size: int = 0
    library_invalid: int = 0


def optimize(
    task: str,
    budget: int,
    library_smiles: Sequence[str],
    seed: int,
    method: Method = "ga",
    cfg: GAConfig | None = None,
) -> OptimizeResult:
    """Run the generator against a named objective until ``budget`` oracle calls are spent.

    Only new valid canonical SMILES count as calls; the start population (drawn from the library)
    counts too, as in PMO.

    Raises:
        ConfigError: unknown task or method, or a budget below 1.
        EmptyDataError: an empty library.
    """
    objective = get_objective(task)
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if budget < 1:
        raise ConfigError(f"budget must be at least 1, got {budget}")
    if not library_smiles:
        raise EmptyDataError("the starting library has no molecules")
    oracle = Oracle(objective, budget)
    run_ga(oracle, list(library_smiles), seed, method, cfg)
    return OptimizeResult(
        calls=oracle.calls_frame(),
        top10_auc=oracle.top_k_auc(k=10, freq=100, finish=True),
        best=best_of(oracle),
        budget=budget,
        task=task,
        method=method,
        seed=seed,
    )


def write_calls_csv(calls: pd.DataFrame, out: str | Path) -> Path:
    """Write ``call,smiles,score`` atomically (full float precision, so anyone can recompute the AUC)."""
    return atomic_write_text(
        out, calls[["call", "smiles", "score"]].to_csv(index=False, float_format="%.10g")
    )


def optimize_to_csv(
    task: str,
    budget: int,
    library: str | Path,
    seed: int,
    out: str | Path,
    method: Method = "ga",
) -> OptimizeResult:
    """The ``optimize`` CLI command: read the library file, optimise, write every call to ``out``.

    Raises:
        InputFileError / SchemaError / EmptyDataError: a bad library file.
        ConfigError: unknown task or method, bad budget.
    """
    get_objective(task)  # fail on a bad task name before reading a large library
    lib = read_smiles_file(library)
    result = optimize(task, budget, lib.smiles, seed, method)
    write_calls_csv(result.calls, out)
    return replace(result, library_size=len(lib.smiles), library_invalid=lib.n_invalid)
