"""Library reading, the budgeted oracle, PMO's top-k AUC and the optimize entry point."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level5_discovery.chem.library import read_smiles_file
from level5_discovery.chem.objectives import get_objective
from level5_discovery.chem.optimize import optimize, optimize_to_csv
from level5_discovery.chem.oracle import BudgetExhaustedError, Oracle, top_k_auc
from shared.errors import ConfigError, EmptyDataError, InputFileError, SchemaError

LIB = [
    "CC(=O)Oc1ccccc1C(=O)O",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "CN1CCN(c2ccc(NC(=O)c3ccccc3F)cc2)CC1",
    "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1",
    "COc1ccc2[nH]cc(CCN(C)C)c2c1",
    "O=C(O)c1ccccc1Nc1cccc(C(F)(F)F)c1",
    "Cc1ccc(S(=O)(=O)N)cc1",
    "c1ccc(-c2ccncc2)cc1",
    "CCOC(=O)c1ccc(N)cc1",
    "CC(C)NCC(O)c1ccc(O)c(O)c1",
]


def test_reader_csv_counts_invalid_rows(tmp_path: Path) -> None:
    p = tmp_path / "lib.csv"
    p.write_text("id,SMILES\n1,OCC\n2,not_a_smiles\n3,CCO\n4,C1CC\n5,c1ccccc1\n")
    lib = read_smiles_file(p)
    assert lib.smiles == ["CCO", "c1ccccc1"]  # canonical, OCC == CCO kept once
    assert lib.n_invalid == 2 and lib.n_rows == 5


def test_reader_smi_first_token(tmp_path: Path) -> None:
    p = tmp_path / "lib.smi"
    p.write_text("CCO ethanol\n\nC(=O)O\tformic\nXX bad\n")
    lib = read_smiles_file(p)
    assert lib.smiles == ["CCO", "O=CO"] and lib.n_invalid == 1


def test_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="not found"):
        read_smiles_file(tmp_path / "missing.csv")
    (tmp_path / "nocol.csv").write_text("id,mol\n1,CCO\n")
    with pytest.raises(SchemaError, match="no 'smiles' column"):
        read_smiles_file(tmp_path / "nocol.csv")
    (tmp_path / "empty.smi").write_text("")
    with pytest.raises(EmptyDataError):
        read_smiles_file(tmp_path / "empty.smi")
    (tmp_path / "bad.csv").write_text("smiles\nfoo\nC1CC\n")
    with pytest.raises(EmptyDataError, match="none of its 2"):
        read_smiles_file(tmp_path / "bad.csv")
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputFileError):
        read_smiles_file(tmp_path / "bin.csv")


def test_oracle_counts_only_new_valid_canonical_molecules() -> None:
    oracle = Oracle(get_objective("celecoxib_rediscovery"), budget=3)
    s = oracle(["CCO", "OCC", "garbage", "c1ccccc1"])
    assert oracle.n_calls == 2 and oracle.smiles == ["CCO", "c1ccccc1"]
    assert s[0] == s[1] and s[2] == 0.0
    oracle(["CCO"])  # cached: free
    assert oracle.n_calls == 2
    s = oracle(["CCN", "CCC", "CCO"])  # one call left: CCC is beyond the budget
    assert oracle.n_calls == 3 and oracle.exhausted and np.isnan(s[1]) and not np.isnan(s[2])
    with pytest.raises(BudgetExhaustedError):
        oracle(["CCCC"])
    assert oracle(["CCN", "bad("]).tolist()[1] == 0.0  # cached and invalid still answered
    frame = oracle.calls_frame()
    assert frame["call"].tolist() == [1, 2, 3] and frame["smiles"].tolist() == ["CCO", "c1ccccc1", "CCN"]


def test_top_k_auc_on_a_hand_made_sequence() -> None:
    # k=1, freq=2, budget 6, scores 0.2, 0.4, 0.1, 0.8: checkpoints at 2 (top 0.4) and the end (0.8, at 4);
    # area = 2*(0+0.4)/2 + 2*(0.4+0.8)/2 + carried 2*0.8 = 0.4 + 1.2 + 1.6 = 3.2, over 6.
    assert top_k_auc([0.2, 0.4, 0.1, 0.8], budget=6, k=1, freq=2) == pytest.approx(3.2 / 6)
    assert top_k_auc([0.2, 0.4, 0.1, 0.8], budget=6, k=1, freq=2, finish=False) == pytest.approx(1.6 / 6)
    # k=2: top-2 means 0.3 at 2 calls and 0.6 at 4.
    assert top_k_auc([0.2, 0.4, 0.1, 0.8], budget=4, k=2, freq=2) == pytest.approx(
        (0.3 + 2 * (0.3 + 0.6) / 2) / 4
    )
    # PMO's curve starts at 0 calls with value 0: a constant 1 loses half of the first interval.
    assert top_k_auc([1.0] * 1000, budget=1000) == pytest.approx((50 + 900) / 1000)
    assert top_k_auc([], budget=10) == 0.0


def test_optimize_writes_every_call_and_the_auc_recomputes(tmp_path: Path) -> None:
    lib = tmp_path / "lib.csv"
    lib.write_text("smiles\n" + "\n".join(LIB) + "\nnot_valid\n")
    out = tmp_path / "candidates.csv"
    res = optimize_to_csv("median1", budget=60, library=lib, seed=1, out=out)
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["call", "smiles", "score"]
    assert frame["call"].tolist() == list(range(1, len(frame) + 1)) and frame["smiles"].is_unique
    assert len(frame) == 60
    rescored = get_objective("median1")(frame["smiles"].tolist())
    np.testing.assert_allclose(frame["score"], rescored, rtol=1e-8)
    assert top_k_auc(frame["score"].tolist(), 60) == pytest.approx(res.top10_auc, rel=1e-8)
    assert res.best[1] == pytest.approx(frame["score"].max())
    assert res.library_size == len(LIB) and res.library_invalid == 1


def test_optimize_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid tasks"):
        optimize_to_csv("no_such_task", 10, tmp_path / "missing.csv", 0, tmp_path / "o.csv")
    with pytest.raises(InputFileError):
        optimize_to_csv("qed", 10, tmp_path / "missing.csv", 0, tmp_path / "o.csv")
    with pytest.raises(ConfigError, match="method"):
        optimize("qed", 10, LIB, 0, method="bogus")  # type: ignore[arg-type]
    assert not (tmp_path / "o.csv").exists()
