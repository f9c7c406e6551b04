"""Level 5 benchmark: the autonomous campaign end to end, wall time per step and what it found.

Runs ``python -m level5_discovery campaign --profile quick`` (LM trained inside, PPO policy, a
budget of 100) on several seeds, each in a fresh folder and a fresh process, and reports per seed:
wall time and the slowest steps, the causal model against random knockouts on the same world and
budget (edge F1, share of genes whose link to the phenotype was decided right), the chosen target
against the hidden truth, and the best designed compound's hidden pIC50 against the best compound
of the whole library. ``python benchmarks/bench_level5_campaign.py [--seeds 42 7 11]`` writes
``benchmarks/sections/level5_campaign.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from shared.atomic import atomic_write_text  # noqa: E402
from shared.runtime import configure_environment  # noqa: E402

SECTION = HERE / "sections" / "level5_campaign.md"


def run_seed(seed: int, work: Path, profile: str) -> dict[str, Any]:
    """One campaign in a fresh process; its result, step seconds and wall time."""
    out = work / f"seed{seed}"
    cmd = [sys.executable, "-m", "level5_discovery", "campaign", "--profile", profile, "--seed", str(seed),
           "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"campaign seed {seed} failed: {proc.stderr[-2000:]}")
    state = json.loads((out / "state.json").read_text())
    steps = {k: float(v["seconds"]) for k, v in state["steps"].items()}
    return {
        "seed": seed,
        "wall": wall,
        "steps": steps,
        "result": json.loads((out / "result.json").read_text()),
    }


def _row(r: dict[str, Any]) -> str:
    res = r["result"]
    rl, rnd, t = res["causal"]["rl"], res["causal"]["random"], res["target"]
    c = res.get("compounds", {})
    comp = (
        f"{c['designed_best_true_pic50']:.2f} vs {c['library_best_true_pic50']:.2f}"
        if "designed_best_true_pic50" in c
        else "no design"
    )
    target = "none"
    if t["target"]:
        target = f"{t['target']} (driver: {t.get('is_driver')}, true rank {t.get('true_rank')})"
    steps = r["steps"]
    design = sum(v for k, v in steps.items() if k.startswith("design_round"))
    timing = f"{steps.get('hypotheses', 0):.0f} / {steps.get('policy', 0):.0f} / {design:.0f}"
    causal = f"{rl['f1']:.3f} vs {rnd['f1']:.3f} | {rl['correct_share']:.2f} vs {rnd['correct_share']:.2f}"
    d, b = res.get("design") or {}, res["budget"]
    spent = b["experiments"] + b["assays"] + b["validation"]
    rounds = f"{d['rounds']} ({d['stopped']})" if d else "—"
    return (
        f"| {r['seed']} | {r['wall']:.0f} | {timing} | {causal} | {target} | {comp} | {rounds} "
        f"| {spent:.1f} of {b['total']:g} |"
    )


def markdown(results: list[dict[str, Any]], profile: str, load: tuple[float, float]) -> str:
    """The results section."""
    wins = sum(bool(r["result"].get("compounds", {}).get("beats_library")) for r in results)
    rl_better = sum(
        r["result"]["causal"]["rl"]["f1"] > r["result"]["causal"]["random"]["f1"] for r in results
    )
    lines = [
        "## Level 5 — the autonomous campaign end to end",
        "",
        f"`python -m level5_discovery campaign --profile {profile}` per seed in a fresh process (2 cores; "
        f"{datetime.now(UTC):%Y-%m-%d}; load average {load[0]:.1f} before, {load[1]:.1f} after): the LM is "
        "pretrained and LoRA-tuned inside, the PPO policy trained on other worlds, then the campaign runs on "
        "a budget of 100 cost units (knockouts, assays, cell tests; a cap: the knockouts stop once every "
        "gene's link to the phenotype is decided, the design rounds when the budget is spent or 5 rounds "
        "in a row find nothing better). "
        "Graph and ancestry scores are against the hidden "
        "truth; *random* plays random knockouts on the same world with the same budget and literature "
        "priors.",
        "",
        "| seed | wall s | LM / policy / design s | edge F1 RL vs random "
        "| phenotype links right, RL vs random | target | best designed vs best library pIC50 (hidden) "
        "| design rounds (why they stopped) | budget spent |",
        "|---:|---:|---:|---|---|---|---|---|---|",
        *[_row(r) for r in results],
        "",
        f"The designed compound beats the whole library's best on the hidden activity on {wins} of "
        f"{len(results)} seeds; the RL-chosen knockouts give a better graph than random ones on {rl_better} "
        f"of {len(results)}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 11])
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    configure_environment()
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="l5-campaign-") as tmp:
        results = [run_seed(s, Path(tmp), args.profile) for s in args.seeds]
    text = markdown(results, args.profile, (before, os.getloadavg()[0]))
    atomic_write_text(SECTION, text)
    print(text)
    print(f"wrote {SECTION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
