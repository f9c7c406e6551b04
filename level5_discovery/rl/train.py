"""Training experiment-choosing policies with stable-baselines3 (PPO, A2C) across many seeded worlds.

Every episode of :class:`~level5_discovery.rl.env.DiscoveryEnv` is a new world: the vectorised
environment is seeded once (``seed``, ``seed + 1``, ... per copy) and each automatic reset draws the
next world seed from the training range (``EnvConfig.seed_range``), so evaluation worlds outside
that range are never seen in training. CPU only, a small MLP, torch limited to ``torch_threads``
threads (small networks gain nothing from more, and the machine is shared). A callback records the
learning curve (one row per finished episode). Policies are saved as SB3 ``.zip`` files, atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env

from level5_discovery.rl.env import DiscoveryEnv, EnvConfig
from shared.atomic import atomic_path
from shared.progress import make_progress

Algo = Literal["ppo", "a2c"]
ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C}
CURVE_COLUMNS = ["timesteps", "episode", "episode_return", "info_gain", "cost", "world_seed"]


class TrainConfig(BaseModel):
    """Settings of one training run (defaults = the quick profile)."""

    model_config = ConfigDict(extra="forbid")

    algo: Algo = "ppo"
    timesteps: int = Field(15_000, ge=1)
    seed: int = 0
    n_envs: int = Field(4, ge=1)
    net_arch: tuple[int, ...] = (64, 64)
    learning_rate: float = Field(1e-3, gt=0.0)
    n_steps: int = Field(128, ge=1, description="Steps per env per update (PPO); A2C uses a_n_steps")
    batch_size: int = Field(128, ge=1)
    n_epochs: int = Field(6, ge=1)
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    ent_coef: float = Field(0.01, ge=0.0)
    a2c_n_steps: int = Field(10, ge=1)
    torch_threads: int = Field(1, ge=1)
    env: EnvConfig = Field(default_factory=EnvConfig)


@dataclass
class TrainResult:
    """A trained model, its learning curve (one row per finished episode) and the wall time."""

    model: BaseAlgorithm
    curve: pd.DataFrame
    seconds: float


class LearningCurveCallback(BaseCallback):
    """Records every finished episode: timesteps so far, return, information gained, cost, world."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []
        self._returns: np.ndarray = np.zeros(0)

    def _on_training_start(self) -> None:
        self._returns = np.zeros(self.training_env.num_envs)

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"], dtype=float)
        dones = np.asarray(self.locals["dones"], dtype=bool)
        infos = self.locals["infos"]
        self._returns += rewards
        for i in np.flatnonzero(dones):
            info = infos[i]
            self.rows.append(
                {
                    "timesteps": int(self.num_timesteps),
                    "episode": len(self.rows),
                    "episode_return": float(self._returns[i]),
                    # The final step's info is the terminal one (VecEnv resets after it is taken).
                    "info_gain": float(info.get("information", np.nan))
                    - float(info.get("initial_information", 0.0)),
                    "cost": float(info.get("spent", np.nan)),
                    "world_seed": int(info.get("world_seed", -1)),
                }
            )
            self._returns[i] = 0.0
        return True

    def frame(self) -> pd.DataFrame:
        """The learning curve so far."""
        return pd.DataFrame(self.rows, columns=CURVE_COLUMNS)


def make_model(cfg: TrainConfig) -> BaseAlgorithm:
    """An untrained SB3 model on ``cfg.n_envs`` seeded copies of the environment."""
    import torch

    torch.set_num_threads(cfg.torch_threads)
    vec = make_vec_env(DiscoveryEnv, n_envs=cfg.n_envs, seed=cfg.seed, env_kwargs={"cfg": cfg.env})
    policy_kwargs = {"net_arch": list(cfg.net_arch)}
    common: dict[str, Any] = {
        "learning_rate": cfg.learning_rate,
        "gamma": cfg.gamma,
        "ent_coef": cfg.ent_coef,
        "seed": cfg.seed,
        "device": "cpu",
        "verbose": 0,
        "policy_kwargs": policy_kwargs,
    }
    if cfg.algo == "ppo":
        return PPO(
            "MlpPolicy", vec, n_steps=cfg.n_steps, batch_size=cfg.batch_size, n_epochs=cfg.n_epochs, **common
        )
    return A2C("MlpPolicy", vec, n_steps=cfg.a2c_n_steps, **common)


class ProgressCallback(BaseCallback):
    """A rich progress bar over the environment steps (the level's shared bar)."""

    def __init__(self, total: int, label: str) -> None:
        super().__init__()
        self._bar = make_progress()
        self._task = self._bar.add_task(label, total=total)

    def _on_training_start(self) -> None:
        self._bar.start()

    def _on_step(self) -> bool:
        self._bar.update(self._task, completed=self.num_timesteps)
        return True

    def _on_training_end(self) -> None:
        self._bar.stop()


def train_policy(cfg: TrainConfig | None = None, *, progress: bool = False) -> TrainResult:
    """Train one policy for ``cfg.timesteps`` environment steps.

    Args:
        cfg: Algorithm, budget of steps, network and environment settings; same config -> same model.
        progress: Draw a progress bar over the steps.

    Returns:
        The model, its learning curve (``CURVE_COLUMNS``) and the wall seconds.
    """
    cfg = cfg or TrainConfig()
    model = make_model(cfg)
    callback = LearningCurveCallback()
    callbacks: list[BaseCallback] = [callback]
    if progress:
        callbacks.append(ProgressCallback(cfg.timesteps, f"{cfg.algo.upper()} policy on simulated worlds"))
    start = time.perf_counter()
    model.learn(total_timesteps=cfg.timesteps, callback=CallbackList(callbacks))
    curve = callback.frame()
    curve.insert(0, "algo", cfg.algo)
    return TrainResult(model, curve, time.perf_counter() - start)


def smooth_curve(curve: pd.DataFrame, window: int = 50) -> pd.DataFrame:
    """Rolling mean of the episode return and information gain (for plots and tables)."""
    out = curve.copy()
    for col in ("episode_return", "info_gain"):
        out[f"{col}_smooth"] = out[col].rolling(window, min_periods=1).mean()
    return out


def save_policy(model: BaseAlgorithm, path: str | Path) -> Path:
    """Write the model as an SB3 ``.zip``, atomically (readers never see a partial file)."""
    target = Path(path)
    with atomic_path(target) as tmp:
        model.save(tmp)
    return target


def load_policy(path: str | Path, algo: Algo) -> BaseAlgorithm:
    """Load a model written by :func:`save_policy` (on CPU).

    Raises:
        FileNotFoundError: No such file.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no policy at {target}")
    return ALGOS[algo].load(target, device="cpu")
