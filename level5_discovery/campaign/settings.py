"""Settings of the autonomous campaign (the ``campaign`` section of the level's config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class CampaignConfig(BaseModel):
    """One budget for the whole campaign, and how each phase spends it (defaults: the quick profile).

    Costs are in the lab's units (a knockout costs 1, a compound tested on cells 1.5); a
    biochemical assay of one compound on one gene costs ``assay_cost``.
    """

    model_config = ConfigDict(extra="forbid")

    budget: float = Field(100.0, gt=0, description="Total cost units of the campaign")
    causal_share: float = Field(0.4, gt=0, lt=1, description="Most of the budget the knockouts may spend")
    hypotheses: Literal["lm", "extraction"] = Field(
        "lm", description="Who reads the literature: the LoRA-tuned LM, or extraction without an LM"
    )
    rl_algo: Literal["ppo", "a2c"] = "ppo"
    rl_timesteps: int = Field(20_000, ge=64, description="Training steps of the experiment policy")
    rl_n_envs: int = Field(4, ge=1)
    rl_n_steps: int = Field(128, ge=8, description="PPO rollout length per environment")
    assay_cost: float = Field(0.1, gt=0)
    assay_sd: float = Field(0.3, ge=0, description="Noise of a measured pIC50 (log units)")
    hit_pic50: float = Field(5.0, description="A screened compound at or above this is a hit")
    max_targets: int = Field(3, ge=1, description="Targets screened before giving up on compounds")
    screen_size: int = Field(60, ge=2, description="Library compounds assayed per target")
    design_rounds: int = Field(
        40,
        ge=0,
        description="Most design rounds; they stop earlier when the budget left (after the cell "
        "tests' reserve) cannot pay for an assay, or when design_patience rounds found nothing better",
    )
    design_patience: int = Field(
        5, ge=1, description="Stop designing after this many rounds without a better measured compound"
    )
    design_batch: int = Field(20, ge=1, description="Designed compounds assayed per round")
    candidate_factor: int = Field(10, ge=1, description="Children proposed per compound assayed")
    ucb_beta: float = Field(1.0, ge=0.0, description="Exploration weight of the assay choice (pIC50 units)")
    validate_top: int = Field(2, ge=1, description="Designed compounds tested on cells at the end")
    dose_um: float = Field(1.0, gt=0, description="Concentration of the cell experiments (uM)")
    compounds: dict[str, Any] = Field(
        default_factory=dict, description="`compounds.CompoundConfig` values (the library)"
    )
    activity_features: Literal["morgan", "morgan+encoder"] = Field(
        "morgan",
        description="What the design rounds' activity model reads: Morgan bits (Tanimoto GP), or the "
        "bits and a self-supervised SMILES encoder's embeddings (summed Tanimoto + RBF kernel, the "
        "embeddings kept in a round only where they lower the leave-one-out error)",
    )
    encoder_dir: str | None = Field(
        None,
        description="morgan+encoder: a saved encoder (`chem.encoder.save_encoder`) to use; None: the "
        "campaign pretrains one (step 'encoder')",
    )
    encoder_molecules: int = Field(
        20_000, ge=100, description="Unlabelled SMILES (MOSES, NCI, WEHI) the campaign's encoder learns from"
    )
    encoder: dict[str, Any] = Field(
        default_factory=dict, description="`chem.encoder.EncoderConfig` values of the campaign's encoder"
    )
    retries: int = Field(2, ge=1, description="Attempts per step before the campaign stops")

    @model_validator(mode="after")
    def _fits(self) -> CampaignConfig:
        if self.causal_share * self.budget < 1.0:
            raise ValueError("causal_share * budget must pay for at least one knockout")
        return self

    @property
    def causal_budget(self) -> float:
        """Most the knockout phase may spend."""
        return self.causal_share * self.budget
