"""Running one benchmark function in a fresh Python process and reading back its JSON result.

A fresh process gives each measurement its own peak RSS and a cold import state. The child
imports the benchmark module by name, calls the function with string arguments, and prints its
result as the last stdout line starting with ``RESULT``; its stderr (progress, warnings) goes to
ours.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def json_default(obj: Any) -> Any:
    """NumPy scalars and arrays (``tolist``), timestamps and paths (``str``) in a JSON result."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def in_child(module: str, func: str, *args: str) -> dict[str, Any]:
    """Run ``<module>.<func>(*args)`` (a script in ``benchmarks/``) in a fresh process; its JSON result.

    Raises:
        RuntimeError: The child failed or printed no result (its stdout tail is echoed first).
    """
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
        f"import {module} as b; from benchmarks.children import json_default; "
        f"print('RESULT ' + json.dumps(b.{func}(*sys.argv[3:]), default=json_default), flush=True)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(HERE), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        check=False,
    )
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not results:
        sys.stdout.write(proc.stdout[-4000:])
        raise RuntimeError(f"{module}.{func}{args}: exit {proc.returncode}")
    return dict(json.loads(results[-1][len("RESULT ") :]))
