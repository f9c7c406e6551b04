"""The campaign report on a hand-written 4-gene campaign folder (the files `campaign/run.py` writes):
every section, the headline numbers, the chosen target and its reason, molecules drawn by RDKit,
real PNG files beside the report, the hidden truth read from the dataset folder, a campaign that
found no target (no compound section), and the errors."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from level5_discovery.campaign.report import CHOSEN_TINT, build_campaign_report, load_truth
from shared.errors import InputFileError

GENES = ["G0", "G1", "G2", "G3"]
# Hidden world: G0 -> G1 -> G2, G3 -> G2; G1 drives the phenotype, so G0 and G1 are upstream.
TRUE_EDGES = [("G0", "G1"), ("G1", "G2"), ("G3", "G2")]
# The agent's model: two right, G2 -> G3 reversed (so G3 -> G2 missed), G0 -> G3 false.
LEARNED = [("G0", "G1"), ("G1", "G2"), ("G2", "G3"), ("G0", "G3")]
SMILES = {
    "lib_hit": "Brc1cccc(Nc2ncnc3c2cnn3-c2ccccc2)c1",
    "lib_weak": "CC(=O)Nc1ccc(O)cc1",
    "d1": "Cc1ccc2c(c1Cl)C(=O)c1ccccc1C2=O",
    "d2": "Cn1cnc2c1c(=O)n(C)c(=O)n2C",
    "d3": "CC(=O)Oc1ccccc1C(=O)O",
    "d4": "Clc1ccc2c(c1)C(=O)c1ccccc1C2=O",
    "bad": "C1CC(",  # does not parse: the table says so instead of drawing
}
REASON_G1 = "upstream of the phenotype; knockout changed the phenotype by -0.412 (95% CI -0.5..-0.3)"
SECTIONS = [
    "Headline",
    "Causal graph",
    "RL policy",
    "Target choice",
    "Compound design",
    "Cell tests",
    "Literature &amp; logic",
    "Steps",
]


def _adjacency(edges: list[tuple[str, str]]) -> list[list[int]]:
    adj = np.zeros((len(GENES), len(GENES)), dtype=int)
    for cause, effect in edges:
        adj[GENES.index(cause), GENES.index(effect)] = 1
    return adj.tolist()


def _csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def write_world(data: Path) -> Path:
    """The dataset folder's hidden world, ``truth/world.json``."""
    (data / "truth").mkdir(parents=True)
    weights = np.array(_adjacency(TRUE_EDGES), dtype=float) * 1.3
    _json(
        data / "truth" / "world.json",
        {"genes": GENES, "weights": weights.tolist(), "phenotype_weights": [0.0, 1.1, 0.0, 0.0]},
    )
    return data


def _scores(f1: float, shd: float) -> dict[str, float]:
    return {
        "precision": f1, "recall": f1, "f1": f1, "shd": shd, "n_true": 3.0, "n_pred": 4.0,
        "n_correct": 2.0, "decided_share": 0.75, "correct_share": 0.75, "wrong": 0.0, "cost": 6.0,
        "experiments": 6,
    }  # fmt: skip


def write_campaign(folder: Path, data: Path | None) -> Path:
    """A finished campaign folder that chose target G1 and designed two rounds of compounds."""
    folder.mkdir(parents=True)
    result = {
        "causal": {"rl": _scores(0.571, 3.0), "random": _scores(0.333, 5.0)},
        "target": {
            "best_true_target": "G2", "best_true_effect": -0.7, "candidates": 3, "target": "G1",
            "is_upstream": True, "is_driver": True, "true_knockout_effect": -0.45, "true_rank": 2,
            "druggable": True,
        },
        "budget": {"total": 20.0, "experiments": 6.0, "assays": 0.8, "validation": 3.0},
        "claims": 3,
        "compounds": {
            "assayed": 8, "designed_assayed": 5, "designed_passing": 3,
            "library_best_true_pic50": 6.9, "screen_best_true_pic50": 6.7,
            "designed_best_smiles": SMILES["d2"], "designed_best_measured_pic50": 7.9,
            "designed_best_true_pic50": 7.61, "designed_max_true_pic50": 7.8, "beats_library": True,
            "margin_over_library": 0.71,
        },
    }  # fmt: skip
    _json(folder / "result.json", result)
    _json(folder / "metrics.json", {"level": 5, "headline_metric": "designed_minus_library_pic50",
                                    "headline_value": 0.71, "profile": "quick", "seed": 7})  # fmt: skip
    steps = {
        name: {"status": "done", "attempts": 1, "seconds": 0.5 + i}
        for i, name in enumerate(["hypotheses", "logic", "policy", "experiments", "causal_model",
                                  "targets", "screen", "design_round_1", "design_round_2",
                                  "validate", "evaluate"])
    }  # fmt: skip
    steps["policy"]["attempts"] = 2
    steps["report"] = {"status": "running", "attempts": 1, "seconds": 0.0}
    _json(
        folder / "state.json",
        {
            "fingerprint": "abc123",
            "settings": {"seed": 7, "campaign": {"budget": 20.0, "rl_algo": "ppo", "hit_pic50": 5.0},
                         "world": {"n_genes": 4}, "literature": {"n_papers": 12}},
            "steps": steps,
            "order": [s for s in steps if s != "report"],
            "notes": {"data": str(data) if data else None},
        },
    )  # fmt: skip
    _csv(folder / "claims.csv", [
        {"cause": "G0", "effect": "G1", "sign": "+", "confidence": 0.9, "papers": "P01,P04"},
        {"cause": "G1", "effect": "G2", "sign": "-", "confidence": 0.7, "papers": "P02"},
        {"cause": "G3", "effect": "G0", "sign": "+", "confidence": 0.2, "papers": "P09"},
    ])  # fmt: skip
    _csv(folder / "logic.csv", [
        {"cause": "G0", "effect": "G1", "sign": "+", "path": "G0->G1", "length": 1, "confidence": 0.9,
         "sources": "paper:P01"},
        {"cause": "G0", "effect": "G2", "sign": "-", "path": "G0->G1->G2", "length": 2,
         "confidence": 0.63, "sources": "paper:P01;paper:P02"},
    ])  # fmt: skip
    (folder / "contradictions.txt").write_text("sign: G1 -> G2: keep '-', drop '+' (support 0.7 vs 0.2)\n")
    _csv(folder / "policy" / "curve.csv", [
        {"algo": "ppo", "timesteps": 16 * (k + 1), "episode": k, "episode_return": -0.2 + 0.04 * k,
         "info_gain": 0.5 + 0.04 * k, "cost": 6.0, "world_seed": 100 + k}
        for k in range(12)
    ])  # fmt: skip
    chosen = ["G0", "G1", "G2", "G3", "G1", "G1"]
    _csv(folder / "experiments.csv", [
        {"step": k + 1, "action": GENES.index(g), "kind": "knockout", "target": g, "policy_prob": 0.3,
         "cost": 1.0, "spent": float(k + 1), "information": min(0.75, 0.25 * (k + 1)),
         "info_gain": 0.25 if k < 3 else 0.0, "reward": 0.2 if k < 3 else -0.05,
         "descendants": "G1;G2;phenotype" if g == "G0" else "G2;phenotype" if g == "G1" else "",
         "not_descendants": "G0;G3" if g != "G3" else "G0;G1;G2;phenotype",
         "phenotype_effect": -0.41, "phenotype_ci_low": -0.5, "phenotype_ci_high": -0.3,
         "phenotype_q": 0.01}
        for k, g in enumerate(chosen)
    ])  # fmt: skip
    _json(folder / "graph.json", {"genes": GENES, "estimated": _adjacency(LEARNED),
                                  "upstream": ["G0", "G1", "G2"], "not_upstream": ["G3"]})  # fmt: skip
    _csv(folder / "targets.csv", [
        {"rank": 1, "gene": "G2", "upstream": True, "tested": True, "experiments": "3",
         "phenotype_effect": -0.6, "ci_low": -0.7, "ci_high": -0.5, "q": 0.001, "papers": "P02",
         "eligible": True, "reason": "upstream of the phenotype; knockout changed the phenotype by -0.600"},
        {"rank": 2, "gene": "G1", "upstream": True, "tested": True, "experiments": "2",
         "phenotype_effect": -0.412, "ci_low": -0.5, "ci_high": -0.3, "q": 0.004, "papers": "P01,P02",
         "eligible": True, "reason": REASON_G1},
        {"rank": 3, "gene": "G0", "upstream": True, "tested": True, "experiments": "1",
         "phenotype_effect": 0.2, "ci_low": 0.1, "ci_high": 0.3, "q": 0.02, "papers": "",
         "eligible": False, "reason": "excluded: inhibiting it would raise the phenotype"},
    ])  # fmt: skip
    _json(folder / "chosen_target.json", {"target": "G1", "tried": [
        {"target": "G2", "screened": 3, "best_compound": "C0002", "best_pic50": 4.1, "hit": False},
        {"target": "G1", "screened": 3, "best_compound": "C0001", "best_pic50": 6.4, "hit": True},
    ]})  # fmt: skip
    assays = [
        (0, "G2", "library", "C0001", SMILES["lib_hit"], 4.1, None, None, None),
        (1, "G1", "library", "C0001", SMILES["lib_hit"], 6.4, None, None, 6.7),
        (2, "G1", "library", "C0002", SMILES["lib_weak"], 3.2, None, None, 3.0),
        (3, "G1", "designed", "", SMILES["d1"], 6.8, 6.5, 0.6, 6.6),
        (4, "G1", "designed", "", SMILES["d2"], 7.9, 7.0, 0.5, 7.61),
        (5, "G1", "designed", "", SMILES["bad"], 8.2, 7.2, 0.7, 7.8),
        (6, "G1", "designed", "", SMILES["d3"], 5.5, 6.0, 0.4, 5.2),
        (7, "G1", "designed", "", SMILES["d4"], 7.0, 6.9, 0.5, 7.1),
    ]
    rounds = [0, 0, 0, 1, 1, 2, 2, 2]
    rows = [
        {"assay": a, "round": r, "target": t, "source": s, "compound_id": cid, "smiles": smi,
         "measured_pic50": m, "predicted_mean": pm, "predicted_sd": ps}
        for (a, t, s, cid, smi, m, pm, ps, _), r in zip(assays, rounds, strict=True)
    ]  # fmt: skip
    _csv(folder / "assays.csv", rows)
    compounds = [
        {**row, "qed": 0.6, "sa": 2.5, "lipinski_violations": 0, "tpsa": 60.0, "library_similarity": 0.4,
         "passes": row["assay"] != 5, "reasons": "QED 0.31 < 0.5" if row["assay"] == 5 else "",
         "true_pic50": truth}
        for row, (*_, truth) in zip(rows, assays, strict=True)
        if row["target"] == "G1"
    ]  # fmt: skip
    _csv(folder / "compounds.csv", sorted(compounds, key=lambda r: -r["measured_pic50"]))
    _csv(folder / "validation.csv", [
        {"compound_id": "D0001", "source": "designed", "smiles": SMILES["d2"], "measured_pic50": 7.9,
         "dose_um": 1.0, "phenotype_effect": -0.52, "phenotype_ci_low": -0.6, "phenotype_ci_high": -0.44,
         "phenotype_q": 0.002, "target_effect": -2.1, "cost": 1.5},
        {"compound_id": "C0001", "source": "library", "smiles": SMILES["lib_hit"], "measured_pic50": 6.4,
         "dose_um": 1.0, "phenotype_effect": -0.31, "phenotype_ci_low": -0.45, "phenotype_ci_high": -0.17,
         "phenotype_q": 0.01, "target_effect": -1.2, "cost": 1.5},
    ])  # fmt: skip
    return folder


def no_target(folder: Path) -> Path:
    """The same campaign when no candidate gave a screening hit: nothing designed, nothing validated."""
    result = json.loads((folder / "result.json").read_text())
    result.pop("compounds")
    result["target"].update(target=None, is_upstream=None, is_driver=None, true_rank=None)
    result["budget"].update(assays=0.6, validation=0.0)
    _json(folder / "result.json", result)
    chosen = json.loads((folder / "chosen_target.json").read_text())
    chosen["target"] = None
    chosen["tried"][1]["hit"] = False
    _json(folder / "chosen_target.json", chosen)
    for name in ("compounds.csv", "validation.csv"):
        (folder / name).unlink()
    return folder


def nav(page: str) -> list[str]:
    bar = re.search(r"<nav>(.*?)</nav>", page, flags=re.S)
    assert bar
    return re.findall(r"<a [^>]*>(.*?)</a>", bar.group(1))


def section(page: str, title: str) -> str:
    """The markup of one section (by its title)."""
    found = re.search(rf"<section id=\"[^\"]*\">\s*<h2>{re.escape(title)}</h2>(.*?)</section>", page, re.S)
    assert found, f"no section {title!r}"
    return found.group(1)


def _row(page: str, text: str) -> str:
    rows = [r for r in re.findall(r"<tr[^>]*>.*?</tr>", page, flags=re.S) if text in r]
    assert rows, f"no row with {text!r}"
    return rows[0]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("campaign_report")
    folder = write_campaign(base / "campaign", write_world(base / "data"))
    path = build_campaign_report(folder)
    assert path == folder / "report.html"
    return folder, path.read_text(encoding="utf-8")


def test_every_section_in_order(full: tuple[Path, str]) -> None:
    _, page = full
    assert nav(page) == SECTIONS


def test_headline_cards_and_sentence(full: tuple[Path, str]) -> None:
    headline = section(full[1], "Headline")
    for value, label in [("0.571", "causal F1 · RL"), ("0.333", "causal F1 · random"), ("G1", "target"),
                         ("7.61", "best designed · true pIC50"), ("6.9", "library best · true pIC50"),
                         ("9.8 of 20", "budget spent")]:  # fmt: skip
        assert f"<div class='value'>{value}</div><div class='label'>{label}</div>" in headline
    assert "above random experiments" in headline
    assert "beats the library&#x27;s best" in headline


def test_chosen_target_its_reason_and_the_screens(full: tuple[Path, str]) -> None:
    target = section(full[1], "Target choice")
    assert f"Chosen target: G1. Why: {REASON_G1}" in target
    chosen_row = _row(target, "★ G1")
    assert CHOSEN_TINT in chosen_row and REASON_G1 in chosen_row
    assert CHOSEN_TINT not in _row(target, ">G2<")  # only the chosen one is highlighted
    assert "excluded: inhibiting it would raise the phenotype" in target
    assert "hidden truth, evaluation only" in target


def test_structures_drawn_with_their_properties(full: tuple[Path, str]) -> None:
    design = section(full[1], "Compound design")
    # Four designed compounds parse and the library's best is drawn for comparison; one does not parse.
    assert design.count("<svg") == 5
    assert "SMILES does not parse" in design
    assert "true pIC50 (hidden truth, evaluation only)" in design
    pick = _row(design, SMILES["d2"])
    assert CHOSEN_TINT in pick and "7.00 ± 0.50" in pick and "7.61" in pick and "✓ passes" in pick
    library = _row(design, SMILES["lib_hit"])
    assert "library C0001" in library
    assert "✗ QED 0.31 &lt; 0.5" in _row(design, "C1CC(")
    # Compounds screened against a target tried before (G2) are not in the per-round figure's data.
    assert "against G1" in design


def test_figures_are_png_files_inlined_in_the_page(full: tuple[Path, str]) -> None:
    folder, page = full
    for name in ("graph.png", "policy.png", "rounds.png", "validation.png", "molecules.png"):
        path = folder / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as img:
            assert img.width > 200 and img.height > 100
        assert f"href='{name}'" in page
    graph = base64.b64encode((folder / "graph.png").read_bytes()).decode()
    assert graph in page


def test_graph_scored_against_the_hidden_world(full: tuple[Path, str]) -> None:
    graph = section(full[1], "Causal graph")
    table = graph[graph.index("<table") :]
    head = table[: table.index("</thead>")]
    names = re.findall(r"<th>(.*?)</th>", head)[1:]  # the first is the index's
    row = dict(zip(names, re.findall(r"<td>(.*?)</td>", table), strict=True))
    assert (row["true edges"], row["learned edges"], row["correct"], row["false"]) == ("3", "4", "2", "1")
    # The agent calls G2 upstream of the phenotype; the hidden world does not.
    assert (row["reversed"], row["missed"], row["calls wrong"]) == ("1", "1", "1")


def test_policy_experiments_and_provenance(full: tuple[Path, str]) -> None:
    policy = section(full[1], "RL policy")
    assert "<div class='value'>3</div><div class='label'>with no information gain</div>" in policy
    first = _row(policy, ">G0<")
    assert ">yes<" in first  # the knockout moved the phenotype
    assert ">—<" in _row(policy, ">G2<")  # neither a shift nor a powered null of the phenotype
    steps = section(full[1], "Steps")
    assert ">design_round_2<" in steps and ">running<" in steps
    assert "<div class='value'>1</div><div class='label'>retried</div>" in steps
    literature = section(full[1], "Literature &amp; logic")
    assert "G0 → G1 → G2" in literature and "keep &#x27;-&#x27;" in literature


def test_load_truth_finds_the_phenotype_ancestors(tmp_path: Path) -> None:
    data = write_world(tmp_path / "data")
    truth = load_truth(tmp_path, {"notes": {"data": str(data)}})
    assert truth is not None
    assert truth["upstream"] == {"G0", "G1"}
    assert truth["adjacency"].sum() == len(TRUE_EDGES)
    assert load_truth(tmp_path, {"notes": {"data": str(tmp_path / "gone")}}) is None


def test_without_the_hidden_world_the_estimate_is_drawn_alone(tmp_path: Path) -> None:
    folder = write_campaign(tmp_path / "campaign", None)
    for name in ("assays.csv", "compounds.csv", "validation.csv", "policy/curve.csv"):
        (folder / name).unlink()
    page = build_campaign_report(folder).read_text(encoding="utf-8")
    graph = section(page, "Causal graph")
    assert "drawn alone" in graph and "correct" not in graph
    assert (folder / "graph.png").is_file()
    assert "Cell tests" not in nav(page)


def test_no_target_renders_without_the_compound_section(tmp_path: Path) -> None:
    folder = no_target(write_campaign(tmp_path / "campaign", None))
    page = build_campaign_report(folder).read_text(encoding="utf-8")
    titles = nav(page)
    assert "Compound design" not in titles and "Cell tests" not in titles
    assert "Target choice" in titles and "Steps" in titles
    assert "no compound was designed" in section(page, "Headline")
    assert "<div class='value'>none</div><div class='label'>target</div>" in page
    assert "no compound was designed" in section(page, "Target choice")
    assert not (folder / "molecules.png").exists() and not (folder / "rounds.png").exists()


def test_only_result_json_and_another_output_folder(tmp_path: Path) -> None:
    folder = write_campaign(tmp_path / "campaign", None)
    for path in sorted(folder.rglob("*"), reverse=True):
        if path.name != "result.json":
            path.rmdir() if path.is_dir() else path.unlink()
    out = build_campaign_report(folder, out=tmp_path / "elsewhere" / "campaign.html")
    assert out == tmp_path / "elsewhere" / "campaign.html"
    page = out.read_text(encoding="utf-8")
    assert nav(page) == ["Headline", "Compound design"]  # result.json alone still has compound scores
    assert list((tmp_path / "elsewhere").glob("*.png")) == []
    assert not (folder / "report.html").exists()


def test_a_missing_result_is_a_one_line_user_error(tmp_path: Path) -> None:
    folder = write_campaign(tmp_path / "campaign", None)
    (folder / "result.json").unlink()
    with pytest.raises(InputFileError, match=r"no result\.json") as err:
        build_campaign_report(folder)
    assert "\n" not in str(err.value)
    with pytest.raises(InputFileError):
        build_campaign_report(tmp_path / "never-ran")
