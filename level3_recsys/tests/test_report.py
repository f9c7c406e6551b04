"""The level-3 report: a subtitle that names the run, and coverage-vs-novelty labels that stay readable."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from level3_recsys.report import build_report, figures

# Quick-profile figures (README): ALS, EASE and the two-stage ranker sit almost on one point.
QUICK = pd.DataFrame(
    {
        "ndcg@10": [0.1661, 0.1617, 0.1551, 0.1366, 0.1192, 0.0293],
        "recall@10": [0.197, 0.189, 0.185, 0.172, 0.145, 0.038],
        "coverage": [0.25, 0.27, 0.25, 0.32, 0.45, 0.01],
        "novelty": [4.84, 4.88, 4.75, 5.10, 5.78, 3.75],
    },
    index=pd.Index(["two_stage", "als", "ease", "itemknn", "two_tower", "popularity"], name="model"),
)
# Worse than any real run: three models on exactly one point.
STACKED = QUICK.assign(coverage=[0.3, 0.3, 0.3, 0.31, 0.45, 0.02], novelty=[4.8, 4.8, 4.8, 4.79, 5.8, 3.9])


def _coverage_axes(table: pd.DataFrame):
    (fig,) = [f for caption, f in figures(table).items() if caption.startswith("Coverage against novelty")]
    ax = fig.axes[0]
    fig.canvas.draw()
    return fig, ax, fig.canvas.get_renderer()


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@pytest.mark.parametrize("table", [QUICK, STACKED], ids=["quick", "stacked"])
def test_coverage_novelty_labels_cover_neither_each_other_nor_the_points(table: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    fig, ax, renderer = _coverage_axes(table)
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(labels) == set(table.index)
    for (a, box_a), (b, box_b) in combinations(labels.items(), 2):
        assert not _overlap(box_a, box_b), f"labels {a} and {b} overlap"
    frame = ax.get_window_extent(renderer)
    points = ax.transData.transform(table[["coverage", "novelty"]].to_numpy(dtype=float))
    radius = np.sqrt(80) / 2 * fig.dpi / 72  # the scatter's marker (s=80 points²)
    for name, box in labels.items():
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, name
        for x, y in points:
            beside = box.x1 <= x - radius or x + radius <= box.x0
            assert beside or box.y1 <= y - radius or y + radius <= box.y0, f"label {name} covers a point"
    plt.close(fig)


def test_report_subtitle_names_the_run_not_the_machine_path(tmp_path: Path) -> None:
    run_dir = tmp_path / "deep" / "folders" / "20260310-0200"
    run_dir.mkdir(parents=True)
    path = build_report(run_dir, QUICK, title="Level 3 — test")
    html = path.read_text(encoding="utf-8")
    assert path == run_dir / "report.html"
    assert "<p>run 20260310-0200</p>" in html
    assert str(tmp_path) not in html
