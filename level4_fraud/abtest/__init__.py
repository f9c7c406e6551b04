"""Sequential A/B testing of fraud models: champion versus challenger on live traffic.

* `assignment`: deterministic arms by a keyed hash of the card id, and the sample-ratio check.
* `metrics`: per-transaction metric values and card-clustered moments look by look.
* `sequential`: the mixture SPRT's always-valid p-values and confidence sequences, and the
  naive repeated z-test they are compared with.
* `group_sequential`: O'Brien-Fleming alpha spending (Lan-DeMets) boundaries.
* `traffic`, `experiment`: the demonstration on a run's scored traffic; `calibration`: A/A
  re-splits measuring the test's false-positive rate on that traffic; `report`: the outputs.

``python -m level4_fraud abtest --run RUN`` runs it (`level4_fraud.cli_abtest`).
"""

from __future__ import annotations

from level4_fraud.abtest.assignment import assign, hash_unit, sample_ratio_pvalue
from level4_fraud.abtest.config import ABTestConfig
from level4_fraud.abtest.group_sequential import group_sequential_test, obf_boundaries, obf_spending
from level4_fraud.abtest.sequential import (
    always_valid_ci,
    always_valid_pvalue,
    msprt_log_lr,
    naive_ci,
    naive_pvalue,
)

__all__ = [
    "ABTestConfig",
    "always_valid_ci",
    "always_valid_pvalue",
    "assign",
    "group_sequential_test",
    "hash_unit",
    "msprt_log_lr",
    "naive_ci",
    "naive_pvalue",
    "obf_boundaries",
    "obf_spending",
    "sample_ratio_pvalue",
]
