"""Level 4: real-time card-fraud detection.

Importing the package keeps Prometheus metrics in process, whatever Feast does on import:
``feast.metrics`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a temporary folder of its own when it is
unset, which switches ``prometheus_client`` into multiprocess mode for every metric created
afterwards. In that mode values live in one memory-mapped file per process, keyed by metric
name, so two services in one process (tests, the API beside a stream consumer) count each
other's requests, and child processes inherit a folder Feast deletes when its owner exits.
``prometheus_client`` picks its value class once, on import: importing it here, before any
Feast import, fixes the in-process one. A folder inherited from a parent's Feast (its
``feast_metrics_`` prefix) is dropped for the same reason; one the operator set is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

for _name in ("PROMETHEUS_MULTIPROC_DIR", "PROMETHEUS_MULTIPROCESS_DIR"):
    if Path(os.environ.get(_name, "")).name.startswith("feast_metrics_"):
        del os.environ[_name]

import prometheus_client.values  # noqa: E402,F401  (see above: before any Feast import)
