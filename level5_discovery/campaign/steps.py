"""The campaign's steps as functions of a shared context, each writing its own files.

Every ``do_*`` function does one step and writes its outputs into the campaign folder; the
matching ``load_*`` rebuilds the step's value from those files when a resumed campaign finds the
step done. `run.run_campaign` chains them through `checkpoint.Checkpoint`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from level5_discovery.campaign import causal, chemistry
from level5_discovery.campaign.assay import Assay
from level5_discovery.campaign.target import rank_targets
from level5_discovery.investigate import LiteratureClaim, claim_facts
from level5_discovery.logic.kb import KnowledgeBase
from level5_discovery.pipeline import claims_frame, write_csv
from level5_discovery.rl.env import DiscoveryEnv, api_seed
from shared.atomic import atomic_write_json, atomic_write_text
from shared.errors import ConfigError, InputFileError

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

    from level5_discovery.campaign.settings import CampaignConfig
    from level5_discovery.chem.activity import ActivityConfig, Featurizer
    from level5_discovery.chem.encoder import EncoderConfig
    from level5_discovery.compounds import CompoundLibrary
    from level5_discovery.config import DiscoveryConfig
    from level5_discovery.data import Dataset
    from level5_discovery.simulate import World

CLAIMS = "claims.csv"
LOGIC = "logic.csv"
CONTRADICTIONS = "contradictions.txt"
POLICY = "policy/policy.zip"
CURVE = "policy/curve.csv"
EXPERIMENTS = "experiments.csv"
GRAPH = "graph.json"
TARGETS = "targets.csv"
ASSAYS = "assays.csv"
VALIDATION = "validation.csv"
CHOSEN = "chosen_target.json"
ENCODER = "encoder"
ENCODER_FILES = ("config.json", "model.pt", "vocab.json")
LM = "lm"  # the LM trained inside the campaign (no --run)
# What the steps write into the campaign folder: what a fresh start deletes (and nothing else).
OUTPUTS = (
    CLAIMS, LOGIC, CONTRADICTIONS, "policy", EXPERIMENTS, GRAPH, TARGETS, ASSAYS, VALIDATION, CHOSEN,
    ENCODER, LM,
)  # fmt: skip


@dataclass
class Context:
    """What every step reads: settings, the dataset and world, the library, the folder."""

    cfg: DiscoveryConfig
    camp: CampaignConfig
    folder: Path
    dataset: Dataset
    world: World
    library: CompoundLibrary
    lm_run: Path | None = None
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The campaign seed."""
        return int(self.cfg.seed)

    def path(self, name: str) -> Path:
        """A file of the campaign folder."""
        return self.folder / name

    @cached_property
    def featurize(self) -> Featurizer:
        """The design rounds' molecule features: Morgan bits, then the encoder's embeddings when
        ``campaign.activity_features`` is ``morgan+encoder`` (needs the ``encoder`` step's folder
        in ``values["encoder"]``)."""
        from level5_discovery.chem.activity import morgan_features

        if self.camp.activity_features == "morgan":
            return morgan_features
        from level5_discovery.chem.encoder import bits_and_embeddings, load_encoder

        return bits_and_embeddings(*load_encoder(self.values["encoder"]))

    @property
    def activity(self) -> ActivityConfig:
        """The design rounds' activity model settings (the kernel that fits `featurize`)."""
        from level5_discovery.chem.activity import ActivityConfig

        hybrid = self.camp.activity_features == "morgan+encoder"
        return ActivityConfig(kernel="tanimoto+rbf" if hybrid else "tanimoto")

    @cached_property
    def library_fps(self) -> list[Any]:
        """Morgan fingerprints of the library (the novelty filter's reference), computed once."""
        from level5_discovery.chem.filters import morgan_fps

        return morgan_fps(list(self.library.smiles))


# ------------------------------------------------------------------------------ hypotheses
def do_hypotheses(ctx: Context) -> list[LiteratureClaim]:
    """Literature -> claims: the LoRA-tuned LM (trained here, or from ``--run``) or extraction."""
    from level5_discovery import pipeline
    from level5_discovery.train import LM_DIR, load_hypothesis_model

    index = pipeline.build_index(ctx.cfg, ctx.dataset.papers, ctx.dataset.folder / pipeline.INDEX_DIR)
    genes = ctx.world.genes
    if ctx.camp.hypotheses == "extraction":
        claims = pipeline.baseline_claims(index, genes, progress=ctx.cfg.show_progress)
    else:
        if ctx.lm_run is not None:
            model = load_hypothesis_model(ctx.lm_run / LM_DIR)
        else:
            model = pipeline.train(ctx.cfg, ctx.dataset, ctx.folder, index)[0].model
        claims = pipeline.lm_claims(model, index, genes, progress=ctx.cfg.show_progress)
    write_csv(claims_frame(claims), ctx.path(CLAIMS))
    return claims


def load_hypotheses(ctx: Context) -> list[LiteratureClaim]:
    """The claims of a finished hypotheses step."""
    frame = pd.read_csv(ctx.path(CLAIMS), dtype={"papers": str}, keep_default_na=False)
    return [
        LiteratureClaim(
            r.cause, r.effect, r.sign, tuple(p for p in str(r.papers).split(",") if p), float(r.confidence)
        )
        for r in frame.itertuples()
    ]


# ------------------------------------------------------------------------------ logic
def do_logic(ctx: Context, claims: list[LiteratureClaim]) -> dict[str, int]:
    """Claims -> clingo knowledge base: implied signed paths and contradictions, with provenance."""
    kb = KnowledgeBase(ctx.world.genes)
    kb.add_many(claim_facts(claims))
    derived = kb.derive() if len(kb) else []
    contradictions = kb.contradictions() if len(kb) else []
    frame = pd.DataFrame(
        [{"cause": d.cause, "effect": d.effect, "sign": d.sign, "path": "->".join(d.path),
          "length": len(d.path) - 1, "confidence": d.confidence, "sources": ";".join(d.sources)}
         for d in derived],
        columns=["cause", "effect", "sign", "path", "length", "confidence", "sources"],
    )  # fmt: skip
    write_csv(frame, ctx.path(LOGIC))
    lines = [f"{c.kind}: {c.cause} -> {c.effect}: {c.resolution}" for c in contradictions]
    atomic_write_text(ctx.path(CONTRADICTIONS), "".join(f"{ln}\n" for ln in lines))
    return load_logic(ctx)


def load_logic(ctx: Context) -> dict[str, int]:
    """Counts of a finished logic step."""
    frame = pd.read_csv(ctx.path(LOGIC))
    text = ctx.path(CONTRADICTIONS).read_text(encoding="utf-8")
    return {
        "derived": len(frame),
        "implied_paths": int((frame["length"] > 1).sum()) if len(frame) else 0,
        "contradictions": len(text.splitlines()),
    }


# ------------------------------------------------------------------------------ policy
def do_policy(ctx: Context) -> BaseAlgorithm:
    """Train the experiment policy on other worlds of the same settings."""
    from level5_discovery.rl.train import save_policy

    model, curve = causal.train_policy(ctx.world.config, ctx.camp, ctx.seed, progress=ctx.cfg.show_progress)
    write_csv(curve, ctx.path(CURVE))
    save_policy(model, ctx.path(POLICY))
    return model


def load_policy(ctx: Context) -> BaseAlgorithm:
    """The trained policy of a finished policy step."""
    from level5_discovery.rl.train import load_policy as sb3_load

    return sb3_load(ctx.path(POLICY), ctx.camp.rl_algo)


# ------------------------------------------------------------------------------ experiments
def _env(ctx: Context) -> DiscoveryEnv:
    return DiscoveryEnv(causal.env_config(ctx.world.config, ctx.camp, ctx.seed))


def _done_actions(ctx: Context) -> list[int]:
    path = ctx.path(EXPERIMENTS)
    return pd.read_csv(path)["action"].astype(int).tolist() if path.is_file() else []


def do_experiments(ctx: Context, claims: list[LiteratureClaim], model: BaseAlgorithm) -> DiscoveryEnv:
    """RL-chosen knockouts until every gene's link to the phenotype is known or the causal budget is
    spent; ``experiments.csv`` is rewritten after every experiment (a kill loses at most one)."""
    env = _env(ctx)
    rows = causal.play(
        env,
        ctx.world,
        claims,
        causal.greedy_untested(model),
        _done_actions(ctx),
        on_step=lambda r: write_csv(causal.experiments_frame(r), ctx.path(EXPERIMENTS)),
    )
    write_csv(causal.experiments_frame(rows), ctx.path(EXPERIMENTS))
    return env


def _no_more(env: DiscoveryEnv, obs: np.ndarray) -> tuple[int, float]:
    raise RuntimeError("experiments.csv ends before the episode did: the checkpoint is damaged")


def load_experiments(ctx: Context, claims: list[LiteratureClaim]) -> DiscoveryEnv:
    """Rebuild the beliefs of a finished experiments step by replaying its rows."""
    env = _env(ctx)
    causal.play(env, ctx.world, claims, _no_more, _done_actions(ctx))
    return env


def experiments(ctx: Context) -> pd.DataFrame:
    """The ``experiments.csv`` table."""
    return pd.read_csv(ctx.path(EXPERIMENTS), keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------------------ model and target
def do_causal_model(ctx: Context, env: DiscoveryEnv) -> dict[str, Any]:
    """The graph and the phenotype's known ancestors, from the beliefs."""
    model = causal.causal_model(env)
    atomic_write_json(ctx.path(GRAPH), model)
    return model


def load_json(ctx: Context, name: str) -> Any:
    """A JSON output of a finished step."""
    import json

    return json.loads(ctx.path(name).read_text(encoding="utf-8"))


def do_targets(ctx: Context, model: dict[str, Any], claims: list[LiteratureClaim]) -> pd.DataFrame:
    """Rank the candidate targets with their evidence."""
    frame = rank_targets(model["upstream"], experiments(ctx), claims)
    write_csv(frame, ctx.path(TARGETS))
    return frame


def load_targets(ctx: Context) -> pd.DataFrame:
    """The ranked targets of a finished step."""
    return pd.read_csv(ctx.path(TARGETS), keep_default_na=False, na_values=[""])


# ------------------------------------------------------------------------------ budget
def spent(ctx: Context) -> dict[str, float]:
    """Budget spent so far per phase (from the files, so it survives a restart)."""
    out = {"experiments": 0.0, "assays": 0.0, "validation": 0.0}
    if ctx.path(EXPERIMENTS).is_file():
        out["experiments"] = float(experiments(ctx)["cost"].sum())
    if ctx.path(ASSAYS).is_file():
        out["assays"] = len(readings(ctx)) * ctx.camp.assay_cost
    if ctx.path(VALIDATION).is_file():
        out["validation"] = float(pd.read_csv(ctx.path(VALIDATION))["cost"].sum())
    return out


def remaining(ctx: Context, reserve: float = 0.0) -> float:
    """Budget left, minus ``reserve`` (held back for the cell experiments at the end)."""
    return max(ctx.camp.budget - sum(spent(ctx).values()) - reserve, 0.0)


def validation_reserve(ctx: Context) -> float:
    """What the final cell experiments will cost."""
    return (ctx.camp.validate_top + 1) * float(ctx.cfg.lab.costs.compound)


# ------------------------------------------------------------------------------ compounds
def assay(ctx: Context) -> Assay:
    """The assay, continuing the readings already on disk."""
    done = len(readings(ctx))
    seed = int(np.random.SeedSequence([ctx.seed, 31]).generate_state(1)[0])
    return Assay(ctx.library, seed, ctx.camp.assay_cost, ctx.camp.assay_sd, calls_done=done)


def readings(ctx: Context) -> pd.DataFrame:
    """Every assay reading so far (``chemistry.ASSAY_COLUMNS``)."""
    path = ctx.path(ASSAYS)
    if not path.is_file():
        return pd.DataFrame(columns=chemistry.ASSAY_COLUMNS)
    return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype={"compound_id": str})


def target_readings(ctx: Context, target: str) -> pd.DataFrame:
    """The readings so far on one target."""
    frame = readings(ctx)
    return frame[frame["target"] == target]


def _append_readings(ctx: Context, new: pd.DataFrame) -> None:
    old = readings(ctx)
    both = new if old.empty else pd.concat([old, new], ignore_index=True)
    write_csv(both, ctx.path(ASSAYS))


def do_screen(ctx: Context, targets: pd.DataFrame) -> dict[str, Any]:
    """Screen the library on the best targets in turn until one has a hit (``CHOSEN``)."""
    lab = assay(ctx)
    screened = set(readings(ctx)["target"])
    tried: list[dict[str, Any]] = []
    chosen: str | None = None
    for gene in targets.loc[targets["eligible"].astype(bool), "gene"].head(ctx.camp.max_targets):
        if gene not in screened:
            left = remaining(ctx, validation_reserve(ctx))
            if lab.price(min(ctx.camp.screen_size, len(ctx.library.ids))) > left:
                break
            _append_readings(
                ctx, chemistry.screen(ctx.library, lab, gene, ctx.camp.screen_size, ctx.seed, left)
            )
        own = target_readings(ctx, gene)
        best = own.loc[own["measured_pic50"].idxmax()]
        hit = float(best["measured_pic50"]) >= ctx.camp.hit_pic50
        tried.append({"target": gene, "screened": len(own), "best_compound": best["compound_id"],
                      "best_pic50": float(best["measured_pic50"]), "hit": hit})  # fmt: skip
        if hit:
            chosen = str(gene)
            break
    result = {"target": chosen, "tried": tried}
    atomic_write_json(ctx.path(CHOSEN), result)
    return result


def can_design(ctx: Context) -> bool:
    """Whether the budget left, after the cell tests' reserve, pays for at least one more assay."""
    return remaining(ctx, validation_reserve(ctx)) + 1e-9 >= ctx.camp.assay_cost


def design_stop(ctx: Context, target: str, rounds_done: int) -> str | None:
    """Why the design rounds end after ``rounds_done`` rounds, or None to run another."""
    own = target_readings(ctx, target)
    best = chemistry.best_by_round(own, rounds_done)
    return chemistry.stop_reason(
        best, rounds_done, ctx.camp.design_rounds, can_design(ctx), ctx.camp.design_patience
    )


# ------------------------------------------------------------------------------ encoder
def do_encoder(ctx: Context) -> str:
    """The SMILES encoder of ``morgan+encoder`` design rounds: the given folder, checked, or one
    pretrained here on ``encoder_molecules`` unlabelled molecules and saved in the campaign folder.

    Raises:
        InputFileError: ``encoder_dir`` is not a saved encoder.
    """
    camp = ctx.camp
    folder, cfg = check_encoder_settings(camp)
    if folder is not None:
        return str(folder)
    from level5_discovery.chem.datasets import pretraining_smiles
    from level5_discovery.chem.encoder import pretrain_encoder, save_encoder

    smiles = pretraining_smiles(camp.encoder_molecules, seed=ctx.seed)
    model, vocab, _ = pretrain_encoder(smiles, cfg, seed=ctx.seed)
    return str(save_encoder(model, vocab, ctx.path(ENCODER)))


def check_encoder_settings(camp: CampaignConfig) -> tuple[Path | None, EncoderConfig]:
    """The saved encoder of ``campaign.encoder_dir`` (None when not set) and the settings of one
    pretrained here, both checked.

    Raises:
        ConfigError: ``campaign.encoder`` holds an unknown or invalid setting, or an encoder
            folder is given while ``activity_features`` is ``morgan``.
        InputFileError: ``encoder_dir`` is not a saved encoder (missing, or without its files).
    """
    from pydantic import ValidationError

    from level5_discovery.chem.encoder import EncoderConfig
    from shared.config import validation_problems

    try:
        cfg = EncoderConfig.model_validate(camp.encoder)
    except ValidationError as exc:
        raise ConfigError(f"campaign.encoder: {validation_problems(exc)}") from None
    if not camp.encoder_dir:
        return None, cfg
    if camp.activity_features == "morgan":
        raise ConfigError("an encoder folder is given but activity_features is morgan: use morgan+encoder")
    folder = Path(camp.encoder_dir)
    missing = [f for f in ENCODER_FILES if not (folder / f).is_file()]
    if missing:
        raise InputFileError(f"{folder}: not a saved SMILES encoder (no {', '.join(missing)})")
    return folder, cfg


def load_encoder_folder(ctx: Context) -> str:
    """The folder of a finished ``encoder`` step."""
    return ctx.camp.encoder_dir or str(ctx.path(ENCODER))


def do_design_round(ctx: Context, target: str, round_no: int) -> int:
    """One model-guided design round on ``target``; returns the compounds assayed."""
    lab = assay(ctx)
    own = target_readings(ctx, target)
    new = chemistry.design_round(
        own, round_no, ctx.camp, lab, ctx.library_fps,
        ctx.library.cfg.pic50_floor, ctx.seed, remaining(ctx, validation_reserve(ctx)),
        featurize=ctx.featurize, activity=ctx.activity,
    )  # fmt: skip
    if not new.empty:
        _append_readings(ctx, new)
    return len(new)


def count_round(ctx: Context, round_no: int) -> int:
    """Compounds assayed in a finished design round."""
    frame = readings(ctx)
    return int((frame["round"] == round_no).sum())


def do_validate(ctx: Context, target: str) -> pd.DataFrame:
    """The best designed compounds and the best library hit, tested on cells."""
    from level5_discovery.experiments import ExperimentAPI

    picks = chemistry.validation_picks(target_readings(ctx, target), ctx.camp.validate_top)
    lab = ctx.cfg.lab
    api = ExperimentAPI(
        ctx.world, budget=remaining(ctx), seed=api_seed(ctx.seed) + 1, costs=lab.costs,
        n_replicates=lab.n_replicates, batch_sd=lab.batch_sd, measurement_sd=lab.measurement_sd,
        compounds=ctx.library,
    )  # fmt: skip
    frame = chemistry.cell_test(api, picks, target, ctx.camp.dose_um)
    write_csv(frame, ctx.path(VALIDATION))
    return frame


def load_validation(ctx: Context) -> pd.DataFrame:
    """The cell experiments of a finished validate step."""
    return pd.read_csv(
        ctx.path(VALIDATION), keep_default_na=False, na_values=[""], dtype={"compound_id": str}
    )
