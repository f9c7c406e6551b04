"""A self-contained HTML report built with Jinja2: every level's `report.html`.

Sections hold text, tables (pandas DataFrames), PNG figures (inlined as
base64) and plotly figures (plotly.js inlined once). The file opens offline.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from shared.atomic import atomic_write_text
from shared.plotting import plotly_div, plotly_js, png_bytes, png_data_uri

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Block:
    """One item of a section: ``kind`` is text, html, table, image or plotly."""

    kind: str
    content: str
    caption: str = ""


@dataclass
class Section:
    """A titled part of a report; blocks render in the order added."""

    title: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")

    def text(self, text: str) -> Section:
        """Add a paragraph (plain text, escaped)."""
        self.blocks.append(Block("text", html.escape(text)))
        return self

    def html(self, markup: str) -> Section:
        """Add trusted HTML markup as is."""
        self.blocks.append(Block("html", markup))
        return self

    def table(
        self,
        df: pd.DataFrame,
        caption: str = "",
        *,
        index: bool = True,
        float_format: str = "{:.4g}",
        max_rows: int = 200,
    ) -> Section:
        """Add a DataFrame as an HTML table (long tables are cut at `max_rows` with a note)."""
        shown = df.head(max_rows)
        markup = shown.to_html(
            classes="table", index=index, border=0, na_rep="—", float_format=lambda v: float_format.format(v)
        )
        if len(df) > max_rows:
            markup += f"<p class='note'>showing {max_rows} of {len(df)} rows</p>"
        self.blocks.append(Block("table", markup, caption))
        return self

    def figure(self, fig: Figure, caption: str = "") -> Section:
        """Add a matplotlib/seaborn figure as an inlined PNG (the figure is closed)."""
        self.blocks.append(Block("image", png_data_uri(png_bytes(fig)), caption))
        return self

    def image(self, png: bytes, caption: str = "") -> Section:
        """Add PNG bytes as an inlined image."""
        self.blocks.append(Block("image", png_data_uri(png), caption))
        return self

    def plotly(self, fig: Any, caption: str = "") -> Section:
        """Add an interactive plotly figure."""
        self.blocks.append(Block("plotly", plotly_div(fig), caption))
        return self

    def metrics(self, values: dict[str, Any], caption: str = "") -> Section:
        """Add a row of headline numbers as cards."""
        cards = "".join(
            f"<div class='card'><div class='value'>{html.escape(_fmt(v))}</div>"
            f"<div class='label'>{html.escape(str(k))}</div></div>"
            for k, v in values.items()
        )
        self.blocks.append(Block("html", f"<div class='cards'>{cards}</div>", caption))
        return self


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class Report:
    """An HTML report: a title, a subtitle and sections.

    Example:
        >>> r = Report("Level 1", "penguins")
        >>> _ = r.section("Data").text("344 rows")
        >>> "344 rows" in r.render()
        True
    """

    title: str
    subtitle: str = ""
    sections: list[Section] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str, intro: str = "") -> Section:
        """Start a new section and return it for chaining."""
        sec = Section(title, intro)
        self.sections.append(sec)
        return sec

    def render(self) -> str:
        """Render the report to an HTML string."""
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=True)
        needs_plotly = any(b.kind == "plotly" for s in self.sections for b in s.blocks)
        return env.get_template("report.html.j2").render(
            title=self.title,
            subtitle=self.subtitle,
            sections=self.sections,
            meta=self.meta,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            plotly_js=plotly_js() if needs_plotly else "",
        )

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Render and write the report atomically; returns the path."""
        return atomic_write_text(path, self.render())
