import re

import matplotlib.pyplot as plt
import pandas as pd
import plotly.express as px

from shared.plotting import save_plotly_html, save_png, set_theme
from shared.report import Report


def test_report_is_self_contained(tmp_path):
    set_theme()
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    report = Report("Title <x>", "sub")
    sec = report.section("Data", "intro text")
    sec.text("a < b").table(pd.DataFrame({"a": [1.23456, None]}), "tbl").figure(fig, "line")
    sec.metrics({"accuracy": 0.98765})
    report.section("Interactive").plotly(px.scatter(x=[1, 2], y=[3, 4]), "scatter")
    path = report.write(tmp_path / "report.html")
    html = path.read_text()
    assert "Title &lt;x&gt;" in html and "a &lt; b" in html
    assert html.count('<img src="data:image/png;base64,') == 1
    assert "0.9877" in html and "—" in html  # formatted number, missing value shown
    assert 'href="#interactive"' in html
    # plotly.js is inlined once and nothing is fetched from the network
    assert html.count("plotly.js v") >= 1
    assert not re.search(r'<script[^>]+src="https?://', html)


def test_report_without_plotly_is_small(tmp_path):
    html = Report("t").render()
    assert len(html) < 20_000


def test_figure_savers(tmp_path):
    fig, ax = plt.subplots()
    ax.bar(["a"], [1])
    png = save_png(fig, tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = save_plotly_html(px.bar(x=["zebra"], y=[7]), tmp_path / "f.html").read_text()
    # self-contained: plotly.js inlined, the figure's own data inside, nothing fetched
    assert "plotly.js v" in html
    assert '"zebra"' in html
    assert not re.search(r'<script[^>]+src="https?://', html)
