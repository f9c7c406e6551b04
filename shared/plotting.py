"""One plotting theme and figure savers: PNG for matplotlib/seaborn, HTML for plotly."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.atomic import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def set_theme() -> None:
    """Apply the shared seaborn/matplotlib theme (non-interactive backend, readable sizes)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "figure.autolayout": False})


def save_png(fig: Figure, path: str | os.PathLike[str], *, close: bool = True) -> Path:
    """Save a matplotlib figure as PNG atomically (tight bounding box)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return Path(path)


def png_bytes(fig: Figure, *, close: bool = True) -> bytes:
    """Render a matplotlib figure to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def png_data_uri(data: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for embedding in HTML."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def save_plotly_html(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Save a plotly figure as a self-contained HTML file (plotly.js inlined), atomically."""
    html = fig.to_html(full_html=True, include_plotlyjs=True)
    return atomic_write_text(path, html)


def plotly_div(fig: Any) -> str:
    """An HTML ``<div>`` for a plotly figure that relies on plotly.js being loaded once by the page."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False))


def plotly_js() -> str:
    """The plotly.js bundle, inlined once per report so the HTML works offline."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())
