"""Level 3 load test for `make bench` / `make load-test-level3`: writes sections/level3_load.md.

A thin wrapper over ``python -m level3_recsys.loadtest.run_load`` (see its module docstring):
the recommendation API under Locust against a plain-FastAPI ceiling measured in the same run,
with the model service killed halfway in one scenario. Extra arguments are passed through
(``--duration``, ``--users``, ``--rate``, ``--engine``, ``--fresh``, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from level3_recsys.loadtest.run_load import app  # noqa: E402
from shared.cli import run  # noqa: E402

if __name__ == "__main__":
    run(app)
