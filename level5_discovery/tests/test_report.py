"""The level-5 report on a hand-written 6-gene run folder (the contract `pipeline.py` writes):
every section, the headline numbers, the evidence rows, real PNG files beside the report, and an
``investigate``-only folder (no LM, no claims) that still renders."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from level5_discovery.report import build_report, graph_categories
from shared.errors import InputFileError

GENES = [f"G{i}" for i in range(6)]
TRUE_EDGES = [("G0", "G1"), ("G0", "G2"), ("G1", "G3"), ("G2", "G3"), ("G3", "G4"), ("G4", "G5")]
# The designed estimate: four right, G5 -> G4 reversed, G2 -> G5 false; G2 -> G3 and G4 -> G5 missed.
LEARNED = [("G0", "G1"), ("G0", "G2"), ("G1", "G3"), ("G3", "G4"), ("G5", "G4"), ("G2", "G5")]
DESIGNED_F1 = 0.6667
SECTIONS = [
    "Headline",
    "F1 and SHD vs budget",
    "Learned graph vs truth",
    "Accepted relations",
    "Rejected hypotheses",
    "Experiments chosen",
]
LITERATURE = ["Literature retrieval", "Hypothesis LM", "Literature claims"]


def _adjacency(edges: list[tuple[str, str]]) -> list[list[int]]:
    adj = np.zeros((len(GENES), len(GENES)), dtype=int)
    for cause, effect in edges:
        adj[GENES.index(cause), GENES.index(effect)] = 1
    return adj.tolist()


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    pd.DataFrame(rows).to_csv(path, index=False)


def write_run(run: Path) -> Path:
    """A complete run folder of a 6-gene world, as `pipeline.run_pipeline` lays it out."""
    run.mkdir(parents=True)
    graph = {
        "designed": {"precision": 0.6667, "recall": 0.6667, "f1": DESIGNED_F1, "shd": 4.0},
        "random": {"precision": 0.5, "recall": 0.3333, "f1": 0.4, "shd": 6.0},
        "round_robin": {"precision": 0.6, "recall": 0.5, "f1": 0.5455, "shd": 5.0},
        "observational_pc": {"precision": 0.25, "recall": 0.1667, "f1": 0.2, "shd": 7.5},
    }
    metrics = {
        "level": 5,
        "dataset": "simulated",
        "headline_metric": "edge_f1",
        "headline_value": DESIGNED_F1,
        "graph": graph,
        "retrieval": {
            "hybrid": {"recall@5": 0.82, "mrr": 0.64},
            "bm25": {"recall@5": 0.71, "mrr": 0.55},
            "dense": {"recall@5": 0.58, "mrr": 0.41},
        },
        "lm": {
            "pretrain_ppl_before": 610.0,
            "pretrain_ppl_after": 38.5,
            "target_ppl_before_lora": 95.2,
            "target_ppl_after_lora": 3.1,
            "constrained_parse_rate": 1.0,
            "free_parse_rate": 0.62,
            "lm_precision": 0.58,
            "baseline_precision": 0.47,
            "lm_signed_precision": 0.5,
            "baseline_signed_precision": 0.41,
            "pretrain_seconds": 12.3,
            "lora_seconds": 4.5,
            "n_params": 1.4e6,
            "n_pairs": 240.0,
        },
        "claims": {
            "lm": {"precision": 0.5, "precision_top": 0.67, "recall": 0.5, "n_claims": 8.0},
            "baseline": {"precision": 0.38, "precision_top": 0.4, "recall": 0.33, "n_claims": 8.0},
        },
        "budget": 8.0,
        "n_genes": 6,
        "n_papers": 40,
        "seed": 0,
        "profile": "quick",
        "seconds": {"data": 0.4, "train": 17.0, "investigate": 3.2},
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    _csv(
        run / "summary.csv",
        [
            {"method": m, **s, "experiments": 0 if m == "observational_pc" else 4, "cost": 8.0}
            for m, s in graph.items()
        ],
    )
    curves = [
        {"method": m, "spent": 2.0 * (k + 1), "f1": s["f1"] * (k + 1) / 4, "shd": s["shd"] + 3 - k}
        for m, s in graph.items()
        for k in range(4)
    ]
    _csv(run / "curves.csv", curves)
    chosen = [("G0", 1.52, 4), ("G3", 0.87, 2), ("G1", 0.41, 2), ("G2", 0.0, 1)]
    _csv(
        run / "steps.csv",
        [
            {"step": k + 1, "kind": "knockout", "target": t, "cost": 2.0, "spent": 2.0 * (k + 1),
             "eig_bits": eig, "n_candidates": 40, "n_shifted": n, "precision": 0.5 + 0.05 * k,
             "recall": 0.2 * (k + 1), "f1": 0.3 + 0.1 * k, "shd": 8 - k}
            for k, (t, eig, n) in enumerate(chosen)
        ],
    )  # fmt: skip
    truth = set(TRUE_EDGES)
    _csv(
        run / "relations.csv",
        [
            {"cause": c, "effect": e, "sign": "+", "experiments": str(i + 1),
             "knockout_effect": -0.8 - 0.1 * i, "ci_low": -1.1, "ci_high": -0.5, "q": 0.001 * (i + 1),
             "delta_bic": 25.0 + i, "papers": "P01,P07", "status": "tested", "true_edge": (c, e) in truth}
            for i, (c, e) in enumerate(LEARNED)
        ],
    )  # fmt: skip
    _csv(
        run / "rejected.csv",
        [
            {"cause": "G1", "effect": "G4", "sign": "-", "confidence": 0.7, "papers": "P03",
             "reason": "refuted: intervening on G1 did not change G4 (a powered null)", "true_edge": False},
            {"cause": "G2", "effect": "G3", "sign": "+", "confidence": 0.4, "papers": "P05,P11",
             "reason": "not supported: no experiment or regression evidence for a direct effect",
             "true_edge": True},
        ],
    )  # fmt: skip
    claims = [("G0", "G1", 0.9), ("G0", "G2", 0.8), ("G1", "G4", 0.7), ("G2", "G3", 0.4), ("G5", "G0", 0.3)]
    _csv(
        run / "claims.csv",
        [
            {
                "cause": c,
                "effect": e,
                "sign": "+",
                "confidence": conf,
                "papers": "P02",
                "true_edge": (c, e) in truth,
            }
            for c, e, conf in claims
        ],
    )
    (run / "contradictions.txt").write_text(
        "papers P03 claim G1 -> G4 but knocking out G1 left G4 unchanged\n"
    )
    (run / "graph.json").write_text(
        json.dumps({"genes": GENES, "estimated": _adjacency(LEARNED), "truth": _adjacency(TRUE_EDGES)})
    )
    (run / "lm").mkdir()
    steps = np.arange(1, 61)
    (run / "lm" / "losses.json").write_text(
        json.dumps({"pretrain": (6 / np.sqrt(steps)).tolist(), "lora": (3 / steps[:30]).tolist()})
    )
    return run


def investigate_only(run: Path) -> Path:
    """What ``investigate`` leaves: no LM folder, no claims table, no literature metrics."""
    shutil.rmtree(run / "lm")
    (run / "claims.csv").unlink()
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("retrieval", "lm", "claims"):
        metrics.pop(key)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def linked_pngs(page: str) -> list[str]:
    return re.findall(r"<a href='([^']+\.png)'>", page)


def _row(page: str, text: str) -> str:
    """The table row (``<tr>``) holding ``text``."""
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", page, flags=re.S) if text in r]
    assert rows, f"no row with {text!r}"
    return rows[0]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = write_run(tmp_path_factory.mktemp("l5report") / "run-quick")
    path = build_report(run)
    assert path == run / "report.html"
    return run, path.read_text(encoding="utf-8")


def test_every_section_and_the_headline_numbers(full: tuple[Path, str]) -> None:
    _, page = full
    for title in SECTIONS + LITERATURE:
        assert f"<h2>{title}</h2>" in page
    # the headline card carries the designed campaign's F1 from metrics.json
    assert f"<div class='value'>{DESIGNED_F1:.3f}</div><div class='label'>edge F1 · designed</div>" in page
    assert "<div class='label'>SHD · observational PC</div>" in page
    assert f"above the best baseline (round-robin, {0.5455:.3f}) by {DESIGNED_F1 - 0.5455:.3f}" in page


def test_accepted_relations_are_listed_with_their_verdict(full: tuple[Path, str]) -> None:
    _, page = full
    relations = page.split("<h2>Accepted relations</h2>")[1].split("<h2>")[0]
    for cause, effect in LEARNED:
        row = _row(relations, f">{cause} → {effect}</td>")
        verdict = "✓ true edge" if (cause, effect) in TRUE_EDGES else "✗ not in the truth"
        assert verdict in row
        assert "P01, P07" in row
    rejected = page.split("<h2>Rejected hypotheses</h2>")[1].split("<h2>")[0]
    assert "✗ real edge (missed)" in _row(rejected, ">G2 → G3</td>")
    assert "powered null" in _row(rejected, ">G1 → G4</td>")
    assert "knocking out G1 left G4 unchanged" in rejected


def test_linked_figures_are_png_files_beside_the_report(full: tuple[Path, str]) -> None:
    run, page = full
    names = linked_pngs(page)
    assert sorted(names) == ["curves.png", "graph.png", "lm_losses.png", "retrieval.png", "steps.png"]
    for name in names:
        data = (run / name).read_bytes()
        with Image.open(run / name) as img:
            assert img.format == "PNG" and img.size[0] > 200 and img.size[1] > 100
        assert base64.b64encode(data).decode("ascii") in page  # the inlined figure is that file


def test_graph_categories_mark_a_reversal_on_both_cells() -> None:
    cat = graph_categories(np.array(_adjacency(LEARNED)), np.array(_adjacency(TRUE_EDGES)))
    at = {name: cat[GENES.index(c), GENES.index(e)] for name, (c, e) in {
        "correct": ("G0", "G1"), "false": ("G2", "G5"), "reversed": ("G5", "G4"), "its truth": ("G4", "G5"),
        "missed": ("G2", "G3"), "absent": ("G1", "G0"),
    }.items()}  # fmt: skip
    assert at == {"correct": 1, "false": 2, "reversed": 3, "its truth": 4, "missed": 4, "absent": 0}
    assert (np.diag(cat) == 5).all()


def test_an_investigate_run_renders_without_the_literature_sections(tmp_path: Path) -> None:
    run = investigate_only(write_run(tmp_path / "inv"))
    out = tmp_path / "elsewhere" / "inv.html"
    page = build_report(run, out=out).read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page
    for title in LITERATURE:
        assert title not in page
    # figures follow the report, not the run folder
    assert sorted(linked_pngs(page)) == ["curves.png", "graph.png", "steps.png"]
    assert all((out.parent / name).is_file() for name in linked_pngs(page))
    assert not (run / "report.html").exists()


def test_lm_metrics_without_the_lm_folder_still_show_the_lm_tables(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    shutil.rmtree(run / "lm")
    page = build_report(run).read_text(encoding="utf-8")
    lm = page.split("<h2>Hypothesis LM</h2>")[1].split("<h2>")[0]
    assert "retrieval-only baseline" in lm and "held-out answers (LoRA)" in lm
    assert "lm_losses.png" not in page


def test_a_folder_without_results_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"metrics\.json"):
        build_report(tmp_path)
