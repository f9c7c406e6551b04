"""The autonomous campaign: checkpoints, the assay's budget, target choice, designed compounds in the
lab, and a campaign killed mid-way that resumes to the same result as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from level5_discovery import data
from level5_discovery.campaign import causal, chemistry
from level5_discovery.campaign.assay import Assay
from level5_discovery.campaign.checkpoint import Checkpoint, StepFailedError
from level5_discovery.campaign.run import run_campaign
from level5_discovery.campaign.target import rank_targets
from level5_discovery.compounds import CompoundConfig, build_library
from level5_discovery.config import DiscoveryConfig
from level5_discovery.experiments import BudgetExceededError, ExperimentAPI, Intervention, UnknownTargetError
from level5_discovery.investigate import LiteratureClaim
from level5_discovery.literature import LiteratureConfig
from level5_discovery.rl.env import DiscoveryEnv, EnvConfig
from level5_discovery.simulate import WorldConfig, generate_world
from shared.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
TINY: dict[str, Any] = {
    "seed": 5,
    "world": {"n_genes": 8},
    "literature": {"n_papers": 60},
    "campaign": {
        "budget": 40.0,
        "hypotheses": "extraction",
        "rl_timesteps": 256,
        "rl_n_envs": 2,
        "rl_n_steps": 64,
        "screen_size": 20,
        "design_rounds": 14,
        "design_batch": 25,
        "assay_cost": 0.1,
        "design_patience": 3,
        "compounds": {"n_compounds": 60},
    },
    "tracking": {"enabled": False},
    "show_progress": False,
}


# ---------------------------------------------------------------------------------- checkpoint
def test_checkpoint_retries_a_failing_step_then_loads_it_instead_of_rerunning(tmp_path: Path) -> None:
    calls = {"work": 0, "load": 0}

    def flaky() -> int:
        calls["work"] += 1
        if calls["work"] == 1:
            raise OSError("disk hiccup")
        return 7

    def load() -> int:
        calls["load"] += 1
        return 7

    ck = Checkpoint(tmp_path, {"seed": 1})
    assert ck.run("a", flaky, load, retries=2) == 7
    assert ck.state["steps"]["a"]["attempts"] == 2 and ck.is_done("a")
    again = Checkpoint(tmp_path, {"seed": 1})
    assert again.resumed and again.run("a", flaky, load) == 7
    assert calls == {"work": 2, "load": 1}


def test_checkpoint_reports_a_step_that_always_fails_and_never_retries_user_errors(tmp_path: Path) -> None:
    ck = Checkpoint(tmp_path, {"seed": 1})

    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(StepFailedError, match="'b' failed 2 times: RuntimeError: boom"):
        ck.run("b", broken, broken, retries=2)
    assert ck.state["steps"]["b"]["status"] == "failed"
    attempts = []

    def mistake() -> None:
        attempts.append(1)
        raise DataError("bad file")

    with pytest.raises(DataError):
        ck.run("c", mistake, mistake, retries=3)
    assert len(attempts) == 1
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["steps"]["b"]["error"] == "RuntimeError: boom" and not saved["order"]


def test_checkpoint_refuses_a_folder_of_other_settings_unless_fresh(tmp_path: Path) -> None:
    Checkpoint(tmp_path, {"seed": 1}).run("a", lambda: 1, lambda: 1)
    with pytest.raises(ConfigError, match="other settings"):
        Checkpoint(tmp_path, {"seed": 2})
    assert not Checkpoint(tmp_path, {"seed": 2}, fresh=True).is_done("a")


def test_fresh_start_deletes_the_earlier_campaigns_outputs_and_nothing_else(tmp_path: Path) -> None:
    # A fresh campaign once read the earlier one's assays.csv back: it skipped the screen and
    # chose a designed compound (no id) as the best hit.
    folder = tmp_path / "campaign"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")  # the user's, there before the campaign
    Checkpoint(folder, {"seed": 1}).run("screen", lambda: 1, lambda: 1)
    (folder / "assays.csv").write_text("assay,round\n0,0\n")
    (folder / "policy").mkdir()
    (folder / "policy" / "policy.zip").write_text("x")
    Checkpoint(folder, {"seed": 1}, fresh=True, outputs=("assays.csv", "policy", "report.html"))
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt", "state.json"]
    assert (folder / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------------------------- lab pieces
@pytest.fixture(scope="module")
def small_world_and_library() -> tuple[Any, Any]:
    world = generate_world(WorldConfig(n_genes=8), 3)
    return world, build_library(world, CompoundConfig(n_compounds=40), 3)


def test_assay_charges_its_price_and_replays_the_same_noise_when_resumed(
    small_world_and_library: tuple[Any, Any],
) -> None:
    _world, library = small_world_and_library
    gene = library.genes[int(np.argmax(library.druggable))]
    smiles = list(library.smiles[:6])
    whole = Assay(library, 11, cost=0.5, sd=0.3).measure(smiles, gene, remaining=10.0)
    first = Assay(library, 11, cost=0.5, sd=0.3)
    head = first.measure(smiles[:2], gene, remaining=10.0)
    tail = Assay(library, 11, cost=0.5, sd=0.3, calls_done=first.calls).measure(smiles[2:], gene, 10.0)
    np.testing.assert_allclose(np.concatenate([head, tail]), whole)
    truth = np.array([library.hidden_activity(s, gene) for s in smiles])
    assert 0 < np.abs(whole - truth).max() < 1.5  # noisy, but around the hidden value
    broke = Assay(library, 11, cost=0.5, sd=0.3)
    with pytest.raises(BudgetExceededError):
        broke.measure(smiles, gene, remaining=2.9)  # 6 x 0.5 = 3 > 2.9
    assert broke.calls == 0


def test_a_designed_compound_can_be_tested_on_cells_and_acts_through_the_hidden_sar(
    small_world_and_library: tuple[Any, Any],
) -> None:
    world, library = small_world_and_library
    api = ExperimentAPI(world, budget=10.0, seed=1, compounds=library)
    smi = "CC(=O)Nc1ccc(O)cc1"
    cid = api.add_compound(smi)
    assert api.add_compound(smi) == cid and cid in api.compound_ids and api.compound_smiles(cid) == smi
    result = api.run(Intervention("compound", cid, dose=10.0))
    assert result.cost == api.costs.compound and len(result.treated) == api.n_replicates
    with pytest.raises(UnknownTargetError):
        api.add_compound("not a molecule")
    with pytest.raises(UnknownTargetError):
        api.run(Intervention("compound", "D9999"))


def test_environment_plays_a_given_world_and_refuses_one_of_another_size() -> None:
    world = generate_world(WorldConfig(n_genes=6), 42)
    env = DiscoveryEnv(EnvConfig(world=WorldConfig(n_genes=6)))
    env.reset(options={"world": world})
    assert env.world_seed == 42 and env.genes == world.genes
    with pytest.raises(ValueError, match="6-gene"):
        env.reset(options={"world": generate_world(WorldConfig(n_genes=5), 1)})


def test_replaying_recorded_knockouts_rebuilds_the_same_beliefs_and_continues_identically() -> None:
    world = generate_world(WorldConfig(n_genes=8), 9)
    cfg = EnvConfig(world=WorldConfig(n_genes=8), budget=8.0)
    claims = [LiteratureClaim(world.genes[0], world.genes[1], "+", ("P1",), 0.8)]

    def first_untested(env: DiscoveryEnv, obs: np.ndarray) -> tuple[int, float]:
        return int(np.argmin(env.tested)), 1.0

    whole = causal.play(DiscoveryEnv(cfg), world, claims, first_untested)
    resumed_env = DiscoveryEnv(cfg)
    resumed = causal.play(resumed_env, world, claims, first_untested, [r["action"] for r in whole[:3]])
    cols = [c for c in causal.EXPERIMENT_COLUMNS if c != "policy_prob"]
    pd.testing.assert_frame_equal(
        causal.experiments_frame(whole)[cols], causal.experiments_frame(resumed)[cols]
    )


def test_targets_rank_by_phenotype_drop_and_exclude_genes_whose_knockout_raises_it() -> None:
    experiments = pd.DataFrame(
        {
            "step": [1, 2, 3, 4],
            "target": ["A", "B", "C", "D"],
            "phenotype_effect": [-0.2, -0.5, 0.3, -0.4],
            "phenotype_ci_low": [-0.3, -0.6, 0.2, -0.9],
            "phenotype_ci_high": [-0.1, -0.4, 0.4, 0.1],
            "phenotype_q": [0.01, 0.001, 0.01, 0.3],
        }
    )
    claims = [LiteratureClaim("B", "A", "+", ("P7", "P8"), 0.9)]
    ranked = rank_targets(["A", "B", "C", "D", "E"], experiments, claims)
    assert list(ranked["gene"]) == ["B", "A", "E", "C", "D"]
    assert list(ranked["eligible"]) == [True, True, True, False, False]
    top = ranked.iloc[0]
    assert "-0.500" in top["reason"] and "experiment 2" in top["reason"] and top["papers"] == "P7,P8"
    assert "raise the phenotype" in ranked.iloc[3]["reason"]
    assert "not significant" in ranked.iloc[4]["reason"]


def test_design_rounds_stop_on_the_budget_the_cap_or_no_progress() -> None:
    readings = pd.DataFrame({"round": [0, 0, 1, 2, 2, 4], "measured_pic50": [5.0, 6.0, 6.5, 6.2, 7.0, 6.9]})
    best = chemistry.best_by_round(readings, 5)
    assert best == [6.0, 6.5, 7.0, 7.0, 7.0, 7.0]  # round 3 assayed nothing; the best carries over
    assert chemistry.stop_reason(best, 4, 40, True, 3) is None  # 7.0 first reached in round 2
    assert chemistry.stop_reason(best, 5, 40, True, 3) == "no better compound in 3 rounds"
    assert chemistry.stop_reason(best, 2, 40, False, 3) == "the budget is spent"
    assert chemistry.stop_reason(best, 2, 2, True, 3) == "reached the most rounds (2)"


# ---------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("campaign")
    cfg = DiscoveryConfig.model_validate({**TINY, "artifacts_dir": str(tmp / "artifacts")})
    dataset = tmp / "data"
    data.generate(dataset, cfg.world, LiteratureConfig(n_papers=60), cfg.seed)
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "artifacts_dir": str(tmp / "artifacts")}))
    whole = tmp / "whole"
    run_campaign(cfg, out=whole, data_dir=dataset)
    return {"tmp": tmp, "data": dataset, "config": config, "whole": whole}


def test_campaign_designs_compounds_that_beat_the_library_on_the_hidden_activity(
    tiny: dict[str, Path],
) -> None:
    result = json.loads((tiny["whole"] / "result.json").read_text())
    target = result["target"]
    assert target["target"] is not None and target["is_upstream"]
    comp = result["compounds"]
    assert comp["beats_library"] and comp["designed_best_true_pic50"] > comp["library_best_true_pic50"]
    compounds = pd.read_csv(tiny["whole"] / "compounds.csv")
    designed = compounds[compounds["source"] == "designed"]
    assert len(designed) > 0 and designed["passes"].all()  # only filter-passing designs are assayed
    spent = result["budget"]
    used = spent["experiments"] + spent["assays"] + spent["validation"]
    assert used <= spent["total"] + 1e-9
    # The rounds stop for the reason recorded, and that reason holds in the data.
    design, camp = result["design"], TINY["campaign"]
    assert design["rounds"] == compounds["round"].max()
    best = chemistry.best_by_round(compounds, design["rounds"])
    if design["stopped"] == "the budget is spent":
        assert spent["total"] - camp["assay_cost"] - 1e-9 < used
    else:
        assert design["stopped"] == f"no better compound in {camp['design_patience']} rounds"
        assert best[-1] == best[-1 - camp["design_patience"]]
        assert used <= spent["total"] - camp["assay_cost"] + 1e-9  # an assay was still affordable
    validation = pd.read_csv(tiny["whole"] / "validation.csv")
    assert set(validation["source"]) == {"designed", "library"}
    assert (tiny["whole"] / "report.html").is_file()


def _done(folder: Path) -> list[str]:
    path = folder / "state.json"
    if not path.is_file():
        return []
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    return [s for s, v in state["steps"].items() if v.get("status") == "done"]


def test_campaign_killed_mid_design_resumes_to_the_same_result(tiny: dict[str, Path]) -> None:
    out = tiny["tmp"] / "killed"
    cmd = [sys.executable, "-m", "level5_discovery", "campaign", "--config", str(tiny["config"]),
           "--data", str(tiny["data"]), "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while "design_round_1" not in _done(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _done(out)
    assert "design_round_1" in done and "report" not in done, done
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout
    state = json.loads((out / "state.json").read_text())
    assert state["steps"]["policy"]["attempts"] == 1  # read back, not trained again
    for name in ("experiments.csv", "assays.csv", "validation.csv", "compounds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(tiny["whole"] / name))
    assert json.loads((out / "result.json").read_text()) == json.loads(
        (tiny["whole"] / "result.json").read_text()
    )


def test_campaign_cli_gives_one_line_errors(tiny: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from level5_discovery.cli import app

    runner = CliRunner()
    missing = runner.invoke(
        app, ["campaign", "--config", str(tiny["config"]), "--data", str(tmp_path / "nope")]
    )
    assert missing.exit_code == 2 and "no such dataset folder" in missing.output
    args = ["campaign", "--config", str(tiny["config"]), "--data", str(tiny["data"])]
    other = runner.invoke(app, [*args, "--out", str(tiny["whole"]), "--seed", "6"])
    assert other.exit_code == 2 and "other settings" in other.output


# ---------------------------------------------------------------------------------- encoder features
TINY_ENCODER: dict[str, Any] = {
    "activity_features": "morgan+encoder",
    "encoder_molecules": 400,
    "encoder": {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "max_steps": 20, "batch_size": 32},
}


def test_campaign_with_encoder_features_pretrains_once_designs_and_resumes(tiny: dict[str, Path]) -> None:
    settings = {**TINY, "campaign": {**TINY["campaign"], **TINY_ENCODER}}
    cfg = DiscoveryConfig.model_validate({**settings, "artifacts_dir": str(tiny["tmp"] / "artifacts")})
    out = tiny["tmp"] / "encoder"
    first = run_campaign(cfg, out=out, data_dir=tiny["data"])
    assert all((out / "encoder" / f).is_file() for f in ("config.json", "model.pt", "vocab.json"))
    result = first.result
    assert result["design"]["features"] == "morgan+encoder" and result["design"]["rounds"] >= 1
    assays = pd.read_csv(out / "assays.csv")
    designed = assays[assays["source"] == "designed"]
    assert set(designed["model"]) <= {"tanimoto", "tanimoto+rbf"}
    used = designed.loc[designed["model"] == "tanimoto+rbf", "round"].nunique()
    assert result["design"]["rounds_with_embeddings"] == used
    comp = result["compounds"]
    assert comp["beats_library"] and comp["designed_best_true_pic50"] > comp["library_best_true_pic50"]
    again = run_campaign(cfg, out=out, data_dir=tiny["data"])
    state = json.loads((out / "state.json").read_text())
    assert again.resumed and state["steps"]["encoder"]["attempts"] == 1  # read back, not retrained
    assert again.result == result


def test_campaign_refuses_a_folder_that_is_not_an_encoder_before_any_work(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from level5_discovery.cli import app

    args = ["campaign", "--config", str(tiny["config"]), "--data", str(tiny["data"])]
    out = tmp_path / "never"
    res = CliRunner().invoke(app, [*args, "--encoder", str(tmp_path / "nope"), "--out", str(out)])
    assert res.exit_code == 2 and "not a saved SMILES encoder" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()
    bad = CliRunner().invoke(app, [*args, "--activity-features", "fingerprints", "--out", str(out)])
    assert bad.exit_code == 2 and "activity_features" in bad.output
    enc = tmp_path / "enc"
    enc.mkdir()
    for name in ("config.json", "model.pt", "vocab.json"):
        (enc / name).write_text("{}")
    both = [*args, "--activity-features", "morgan", "--encoder", str(enc), "--out", str(out)]
    ignored = CliRunner().invoke(app, both)
    assert ignored.exit_code == 2 and "activity_features is morgan" in ignored.output
    assert not out.exists()


def test_campaign_checks_the_encoder_settings_before_any_work(tiny: dict[str, Path]) -> None:
    settings = {**TINY, "campaign": {**TINY["campaign"], **TINY_ENCODER, "encoder": {"d_modle": 32}}}
    cfg = DiscoveryConfig.model_validate({**settings, "artifacts_dir": str(tiny["tmp"] / "artifacts")})
    out = tiny["tmp"] / "typo"
    with pytest.raises(ConfigError, match=r"campaign\.encoder: d_modle"):
        run_campaign(cfg, out=out, data_dir=tiny["data"])
    assert not out.exists()


def test_a_campaign_folder_from_before_the_encoder_settings_still_resumes(tiny: dict[str, Path]) -> None:
    from level5_discovery.campaign.run import LATER_SETTINGS, campaign_config, campaign_fingerprint

    cfg = DiscoveryConfig.model_validate({**TINY, "artifacts_dir": str(tiny["tmp"] / "artifacts")})
    camp = campaign_config(cfg)
    print_before = {k: v for k, v in camp.model_dump().items() if k not in LATER_SETTINGS}
    assert campaign_fingerprint(camp) == print_before  # defaults: the fingerprint folders already hold
    encoder = camp.model_copy(update={"activity_features": "morgan+encoder"})
    assert campaign_fingerprint(encoder)["activity_features"] == "morgan+encoder"


def test_fresh_campaign_over_a_finished_one_reruns_it_to_the_same_result(tiny: dict[str, Path]) -> None:
    import shutil

    cfg = DiscoveryConfig.model_validate({**TINY, "artifacts_dir": str(tiny["tmp"] / "artifacts")})
    again = tiny["tmp"] / "fresh-over-finished"
    shutil.copytree(tiny["whole"], again)
    res = run_campaign(cfg, out=again, data_dir=tiny["data"], fresh=True)
    assert not res.resumed
    state = json.loads((again / "state.json").read_text())
    assert state["steps"]["screen"]["attempts"] == 1
    for name in ("experiments.csv", "assays.csv", "compounds.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(again / name), pd.read_csv(tiny["whole"] / name))
    assert res.result == json.loads((tiny["whole"] / "result.json").read_text())
