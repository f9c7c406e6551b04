"""Activity models with uncertainty, Morgan features and encoder-vs-fingerprint learning curves.

The default model is a Gaussian process: on binary fingerprints the kernel is Tanimoto
similarity (the standard for molecules: a positive-definite kernel, Ralaivola et al. 2005), on
real-valued features (encoder embeddings) an RBF on standardised features (scikit-learn). Both
are scaled by a learnt signal variance and add a learnt noise term, fitted by maximum marginal
likelihood. ``tanimoto+rbf`` sums the two over fingerprint bits followed by embeddings
(`TanimotoRbfGP`): the likelihood sets each part's weight, and the embeddings are kept only when
the sum's leave-one-out error beats the Tanimoto kernel alone. The alternative is a random forest
whose spread across trees is the uncertainty.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.linalg import cho_factor, cho_solve
from scipy.stats import spearmanr
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.metrics import r2_score

from shared.errors import DataError, EmptyDataError

Featurizer = Callable[[Sequence[str]], np.ndarray]


# ------------------------------------------------------------------------------------ features
def morgan_features(smiles: Sequence[str], radius: int = 2, n_bits: int = 2048) -> np.ndarray:
    """Morgan (ECFP4 for radius 2) bit vectors ``(n, n_bits)`` uint8, one row per SMILES.

    Raises:
        DataError: A SMILES RDKit cannot parse (its position and text in the message).
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    RDLogger.DisableLog("rdApp.*")  # type: ignore[attr-defined]
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    out = np.zeros((len(smiles), n_bits), dtype=np.uint8)
    for i, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            raise DataError(f"invalid SMILES at row {i}: {s!r}")
        out[i] = gen.GetFingerprintAsNumPy(mol)
    return out


def tanimoto_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Tanimoto similarity of every row of `a` with every row of `b` (binary rows; two empty rows = 1)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    inter = a @ b.T
    union = a.sum(axis=1)[:, None] + b.sum(axis=1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)


class TanimotoGP:
    """Exact GP regression with kernel ``s * Tanimoto + n * I`` on normalised targets.

    The Tanimoto matrix has no hyperparameters, so it is eigendecomposed once and the marginal
    likelihood over the signal variance s and noise n is then cheap to evaluate (the eigenvalues
    shift to ``s * lambda + n``); scikit-learn's GP would recompute the kernel at every optimiser
    step. Predictive standard deviations include the noise (those of a new measurement).
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> TanimotoGP:
        """Fit signal and noise variances by maximum marginal likelihood; returns self."""
        from scipy.optimize import minimize

        self.X_ = np.asarray(X, dtype=np.float64)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
        z = (y - self.y_mean_) / self.y_std_
        lam, u = np.linalg.eigh(tanimoto_matrix(self.X_, self.X_))
        lam = np.clip(lam, 0.0, None)
        b = u.T @ z

        def nll(theta: np.ndarray) -> float:
            ev = np.exp(theta[0]) * lam + np.exp(theta[1])
            return float(0.5 * np.sum(b**2 / ev) + 0.5 * np.sum(np.log(ev)))

        # A coarse grid first: the likelihood surface can have a poor local optimum at high noise.
        grid = [
            np.array([ls, ln]) for ls in np.log([0.1, 0.3, 1.0, 3.0]) for ln in np.log([0.01, 0.1, 0.3, 1.0])
        ]
        start = min(grid, key=nll)
        bounds = [(np.log(1e-3), np.log(1e2)), (np.log(1e-4), np.log(1e1))]
        theta = minimize(nll, start, method="L-BFGS-B", bounds=bounds).x
        self.signal_, self.noise_ = float(np.exp(theta[0])), float(np.exp(theta[1]))
        ev = self.signal_ * lam + self.noise_
        self.alpha_ = u @ (b / ev)
        self.whiten_ = u / np.sqrt(ev)[None, :]
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation in the targets' units."""
        ks = self.signal_ * tanimoto_matrix(np.asarray(X, dtype=np.float64), self.X_)
        mean = ks @ self.alpha_
        var = self.signal_ + self.noise_ - np.sum((ks @ self.whiten_) ** 2, axis=1)
        std = np.sqrt(np.clip(var, 1e-12, None))
        return mean * self.y_std_ + self.y_mean_, std * self.y_std_


def _loo_mse(kernel: np.ndarray, z: np.ndarray) -> float:
    """Exact leave-one-out squared error of a GP with this kernel (noise included) on targets z."""
    inverse = cho_solve(cho_factor(kernel, lower=True), np.eye(len(z)))
    return float(np.mean((inverse @ z / np.diag(inverse)) ** 2))


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * a @ b.T
    return np.clip(d, 0.0, None)


class TanimotoRbfGP:
    """Exact GP regression with kernel ``s_t * Tanimoto(bits) + s_r * RBF(emb; l) + n * I``.

    The rows of ``X`` are fingerprint bits (the first `n_bits` columns) followed by real-valued
    features (encoder embeddings, standardised here). The four hyperparameters are fitted by
    maximum marginal likelihood with its analytic gradient, from the best of a small grid of
    starts. On a few dozen molecules the likelihood can prefer a smooth RBF that interpolates the
    training set and predicts badly (R^2 -6 on 50 molecules of a Morgan-count SAR), so the fit is
    then checked against the Tanimoto kernel alone by exact leave-one-out error and the better is
    kept (``uses_embeddings_``): the embeddings count only where they predict held-out molecules
    better. Targets are normalised; predictive standard deviations include the noise.

    Args:
        n_bits: Columns of ``X`` that are fingerprint bits.
    """

    def __init__(self, n_bits: int) -> None:
        self.n_bits = n_bits

    def _split(self, X: np.ndarray, fit: bool = False) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if X.shape[1] <= self.n_bits:
            raise DataError(
                f"tanimoto+rbf needs {self.n_bits} bits and then embeddings ({X.shape[1]} columns)"
            )
        bits, emb = X[:, : self.n_bits], X[:, self.n_bits :]
        if fit:
            self.center_ = emb.mean(axis=0)
            self.scale_ = np.where(emb.std(axis=0) > 0, emb.std(axis=0), 1.0)
        return bits, (emb - self.center_) / self.scale_

    def fit(self, X: np.ndarray, y: np.ndarray) -> TanimotoRbfGP:
        """Fit the two signal variances, the length-scale and the noise; returns self."""
        from scipy.optimize import minimize

        self.bits_, self.emb_ = self._split(X, fit=True)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
        z = (np.asarray(y, dtype=np.float64) - self.y_mean_) / self.y_std_
        tani = tanimoto_matrix(self.bits_, self.bits_)
        dist = _squared_distances(self.emb_, self.emb_)
        eye = np.eye(len(z))

        def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
            st, sr, ls, noise = np.exp(theta)
            rbf = np.exp(-dist / (2.0 * ls * ls))
            try:
                chol = cho_factor(st * tani + sr * rbf + noise * eye, lower=True)
            except np.linalg.LinAlgError:
                return 1e12, np.zeros(4)
            alpha = cho_solve(chol, z)
            value = 0.5 * z @ alpha + float(np.sum(np.log(np.diag(chol[0]))))
            inner = cho_solve(chol, eye) - np.outer(alpha, alpha)
            parts = (st * tani, sr * rbf, sr * rbf * dist / (ls * ls), noise * eye)
            return float(value), np.array([0.5 * np.sum(inner * d) for d in parts])

        # Standardised embeddings: squared distances grow like 2 F, so length-scales near sqrt(F).
        root = float(np.sqrt(self.emb_.shape[1]))
        grid = [
            np.log([st, sr, root * ls, noise])
            for st in (0.3, 1.0)
            for sr in (0.1, 0.5)
            for ls in (0.5, 1.0)
            for noise in (0.05, 0.3)
        ]
        start = min(grid, key=lambda th: nll(th)[0])
        bounds = [(np.log(1e-3), np.log(1e2)), (np.log(1e-4), np.log(1e2))]
        bounds += [(np.log(1e-2 * root), np.log(1e2 * root)), (np.log(1e-4), np.log(1e1))]
        theta = minimize(nll, start, jac=True, method="L-BFGS-B", bounds=bounds).x
        st, sr, ls, noise = map(float, np.exp(theta))
        hybrid = st * tani + sr * np.exp(-dist / (2.0 * ls * ls)) + noise * eye
        alone = TanimotoGP().fit(self.bits_, z)
        plain = alone.signal_ * tani + alone.noise_ * eye
        self.uses_embeddings_ = _loo_mse(hybrid, z) < _loo_mse(plain, z)
        if self.uses_embeddings_:
            self.signal_tanimoto_, self.signal_rbf_, self.length_scale_, self.noise_ = st, sr, ls, noise
        else:
            self.signal_tanimoto_, self.signal_rbf_, self.noise_ = alone.signal_, 0.0, alone.noise_
            self.length_scale_ = float("nan")  # no RBF part
        self.chol_ = cho_factor(hybrid if self.uses_embeddings_ else plain, lower=True)
        self.alpha_ = cho_solve(self.chol_, z)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and standard deviation in the targets' units."""
        bits, emb = self._split(X)
        ks = self.signal_tanimoto_ * tanimoto_matrix(bits, self.bits_)
        if self.uses_embeddings_:
            scaled = _squared_distances(emb, self.emb_) / (2.0 * self.length_scale_**2)
            ks += self.signal_rbf_ * np.exp(-scaled)
        mean = ks @ self.alpha_
        var = self.signal_tanimoto_ + self.signal_rbf_ + self.noise_
        var = var - np.sum(ks * cho_solve(self.chol_, ks.T).T, axis=1)
        std = np.sqrt(np.clip(var, 1e-12, None))
        return mean * self.y_std_ + self.y_mean_, std * self.y_std_


# ------------------------------------------------------------------------------------ model
class ActivityConfig(BaseModel):
    """Activity model settings (defaults: the quick profile)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["gp", "forest"] = "gp"
    kernel: Literal["auto", "tanimoto", "rbf", "tanimoto+rbf"] = Field(
        "auto",
        description="GP kernel; auto = Tanimoto on binary features, RBF otherwise; tanimoto+rbf = "
        "their sum over fingerprint bits followed by embeddings",
    )
    fingerprint_bits: int = Field(2048, ge=1, description="tanimoto+rbf: leading columns that are bits")
    n_restarts: int = Field(0, ge=0, description="extra GP hyperparameter optimiser starts")
    n_estimators: int = Field(200, ge=2, description="trees in the forest")
    seed: int = 0


class ActivityModel:
    """Regression of activity on molecule features with a predictive standard deviation.

    Example:
        >>> model = ActivityModel().fit(morgan_features(train_smiles), y)  # doctest: +SKIP
        >>> mean, std = model.predict(morgan_features(new_smiles))  # doctest: +SKIP
    """

    def __init__(self, cfg: ActivityConfig | None = None) -> None:
        self.cfg = cfg or ActivityConfig()
        self.kernel_: str | None = None
        self._model: Any = None
        self._center: np.ndarray | None = None
        self._scale: np.ndarray | None = None

    def fit(self, X: np.ndarray, y: np.ndarray) -> ActivityModel:
        """Fit on features ``(n, F)`` and activities ``(n,)``; returns self."""
        X, y = np.asarray(X), np.asarray(y, dtype=np.float64)
        if len(X) < 2 or len(X) != len(y):
            raise EmptyDataError(
                f"need at least two labelled molecules with one activity each ({len(X)}, {len(y)})"
            )
        if not np.isfinite(y).all():
            raise DataError("activities must be finite")
        if self.cfg.kind == "forest":
            self._model = self._fit_forest(X, y)
            return self
        self.kernel_ = self._resolve_kernel(X)
        self._model = self._fit_gp(self._transform(X, fit=True), y)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean and standard deviation, each ``(n,)``."""
        if self._model is None:
            raise RuntimeError("fit the model first")
        X = np.asarray(X)
        if self.cfg.kind == "forest":
            per_tree = np.stack([t.predict(X.astype(np.float32)) for t in self._model.estimators_])
            return per_tree.mean(axis=0), per_tree.std(axis=0)
        Xt = self._transform(X, fit=False)
        if isinstance(self._model, TanimotoGP | TanimotoRbfGP):
            return self._model.predict(Xt)
        mean, std = self._model.predict(Xt, return_std=True)
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    @property
    def kernel_used(self) -> str:
        """What the fitted model uses: ``forest``, ``rbf``, ``tanimoto``, or ``tanimoto+rbf`` (only
        when a ``tanimoto+rbf`` fit kept its embeddings)."""
        if self._model is None:
            raise RuntimeError("fit the model first")
        if self.cfg.kind == "forest":
            return "forest"
        if isinstance(self._model, TanimotoRbfGP):
            return "tanimoto+rbf" if self._model.uses_embeddings_ else "tanimoto"
        return str(self.kernel_)

    def _resolve_kernel(self, X: np.ndarray) -> str:
        if self.cfg.kernel != "auto":
            return self.cfg.kernel
        binary = bool(np.isin(X, (0, 1)).all())
        return "tanimoto" if binary else "rbf"

    def _transform(self, X: np.ndarray, fit: bool) -> np.ndarray:
        if self.kernel_ in ("tanimoto", "tanimoto+rbf"):  # the hybrid standardises its own part
            return np.asarray(X, dtype=np.float64)
        X = np.asarray(X, dtype=np.float64)
        if fit:
            self._center = X.mean(axis=0)
            self._scale = np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        assert self._center is not None and self._scale is not None
        return np.asarray((X - self._center) / self._scale, dtype=np.float64)

    def _fit_gp(self, X: np.ndarray, y: np.ndarray) -> TanimotoGP | TanimotoRbfGP | GaussianProcessRegressor:
        if self.kernel_ == "tanimoto":
            return TanimotoGP().fit(X, y)
        if self.kernel_ == "tanimoto+rbf":
            return TanimotoRbfGP(self.cfg.fingerprint_bits).fit(X, y)
        # Standardised features: squared distances grow like 2 F, so start at sqrt(F).
        d = X.shape[1]
        base = RBF(length_scale=float(np.sqrt(d)), length_scale_bounds=(1e-2 * np.sqrt(d), 1e2 * np.sqrt(d)))
        kernel = ConstantKernel(1.0, (1e-2, 1e2)) * base + WhiteKernel(0.1, (1e-4, 1e1))
        gp = GaussianProcessRegressor(
            kernel=kernel,
            normalize_y=True,
            n_restarts_optimizer=self.cfg.n_restarts,
            random_state=self.cfg.seed,
        )
        with warnings.catch_warnings():
            # Noise at its lower bound is a legitimate optimum on clean targets, not a failure.
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
            return gp.fit(X, y)

    def _fit_forest(self, X: np.ndarray, y: np.ndarray) -> Any:
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(
            n_estimators=self.cfg.n_estimators, max_features=0.3, random_state=self.cfg.seed, n_jobs=1
        )
        return forest.fit(X.astype(np.float32), y)


# ------------------------------------------------------------------------------------ learning curve
def learning_curve(
    smiles: Sequence[str],
    y: np.ndarray | Callable[[str], float],
    featurizers: Mapping[str, Featurizer],
    sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    test_fraction: float = 0.2,
    model: ActivityConfig | None = None,
    models: Mapping[str, ActivityConfig] | None = None,
) -> pd.DataFrame:
    """Test-set quality of the activity model per featurizer at the same labelled budgets.

    Per seed, one random test split (`test_fraction`) is held out; the training sets are nested
    prefixes of one random order of the rest, so a larger budget adds molecules and the
    featurizers see exactly the same molecules at each budget.

    Args:
        smiles: Molecules.
        y: Their activities, or a hidden activity function ``smiles -> float`` to label them.
        featurizers: Name -> ``smiles -> (n, F)`` features (e.g. Morgan bits, encoder embeddings).
        sizes: Labelled budgets (those larger than the training pool are skipped).
        seeds: Repetitions (split and order).
        test_fraction: Share of molecules held out for testing.
        model: The activity model's settings.
        models: Settings for some featurizers instead of `model` (e.g. ``tanimoto+rbf`` for
            fingerprint bits followed by embeddings).

    Returns:
        Rows ``featurizer, n_labelled, seed, r2, spearman, rmse, mean_std``.
    """
    smiles = list(smiles)
    targets = (
        np.array([y(s) for s in smiles], dtype=np.float64) if callable(y) else np.asarray(y, dtype=np.float64)
    )
    if len(targets) != len(smiles) or len(smiles) < 10:
        raise EmptyDataError(f"a learning curve needs >= 10 labelled molecules (got {len(smiles)})")
    features = {name: np.asarray(f(smiles)) for name, f in featurizers.items()}
    n_test = max(2, round(test_fraction * len(smiles)))
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(smiles))
        test, pool = order[:n_test], order[n_test:]
        for size in sizes:
            if size > len(pool) or size < 2:
                continue
            train = pool[:size]
            for name, X in features.items():
                base = (models or {}).get(name) or model or ActivityConfig()
                cfg = base.model_copy(update={"seed": int(seed)})
                mean, std = ActivityModel(cfg).fit(X[train], targets[train]).predict(X[test])
                rows.append(
                    {
                        "featurizer": name,
                        "n_labelled": int(size),
                        "seed": int(seed),
                        **_scores(targets[test], mean, std),
                    }
                )
    return pd.DataFrame(
        rows, columns=["featurizer", "n_labelled", "seed", "r2", "spearman", "rmse", "mean_std"]
    )


def _scores(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    rho = spearmanr(y, mean).statistic if np.std(mean) > 0 else 0.0
    return {
        "r2": float(r2_score(y, mean)),
        "spearman": float(rho),
        "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
        "mean_std": float(np.mean(std)),
    }
