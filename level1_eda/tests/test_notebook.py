"""The teaching notebook runs top to bottom as a Jupyter notebook."""

from __future__ import annotations

from pathlib import Path

import jupytext
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebook.py"


def test_notebook_executes_top_to_bottom(tmp_path: Path) -> None:
    nb = jupytext.read(NOTEBOOK)
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 8
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        for o in c.get("outputs", [])
    )
    assert "test accuracy:" in outputs
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert errors == []
