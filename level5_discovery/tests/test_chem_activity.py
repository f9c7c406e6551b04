"""Activity models with uncertainty, Morgan features, the wheel-shipped data sets, learning curves."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import Crippen

from level5_discovery.chem.activity import (
    ActivityConfig,
    ActivityModel,
    learning_curve,
    morgan_features,
    tanimoto_matrix,
)
from level5_discovery.chem.datasets import chembl_activity_set, moses_train_smiles, nci_smiles, wehi_smiles
from shared.errors import DataError

# Far from drug-like ZINC molecules: small inorganics, perhalides, long chains, metals.
FAR = [
    "O=C=O",
    "ClC(Cl)(Cl)Cl",
    "FC(F)(F)C(F)(F)F",
    "N#N",
    "CCCCCCCCCCCCCCCCCCCC",
    "[Na+].[Cl-]",
    "O=S(=O)(O)O",
    "[Fe]",
    "C=CC=CC=CC=C",
    "OO",
]


def logp(s: str) -> float:
    return float(Crippen.MolLogP(Chem.MolFromSmiles(s)))


@pytest.fixture(scope="module")
def logp_set() -> tuple[list[str], np.ndarray]:
    smiles = moses_train_smiles(500)
    return smiles, np.array([logp(s) for s in smiles])


def test_tanimoto_by_hand() -> None:
    a = np.array([[1, 1, 0, 0], [0, 0, 0, 0]])
    b = np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]])
    expected = np.array([[1 / 3, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert np.allclose(tanimoto_matrix(a, b), expected)


def test_morgan_features_shape_bits_and_bad_smiles() -> None:
    x = morgan_features(["c1ccccc1", "C1=CC=CC=C1", "CCO"])
    assert x.shape == (3, 2048) and x.dtype == np.uint8
    assert np.array_equal(x[0], x[1])  # Kekulé and aromatic benzene are one molecule
    assert x[0].sum() == 3  # benzene: one atom environment per radius 0, 1, 2
    with pytest.raises(DataError, match="row 1"):
        morgan_features(["CCO", "C1CC"])


def test_gp_uncertainty_grows_away_from_the_training_data(logp_set: tuple[list[str], np.ndarray]) -> None:
    smiles, y = logp_set
    model = ActivityModel().fit(morgan_features(smiles[:200]), y[:200])
    _, std_train = model.predict(morgan_features(smiles[:200]))
    _, std_far = model.predict(morgan_features(FAR))
    assert np.median(std_far) > 1.5 * np.median(std_train)
    assert std_far.min() > std_train.max()


@pytest.mark.parametrize("kind", ["gp", "forest"])
def test_model_beats_predicting_the_mean(logp_set: tuple[list[str], np.ndarray], kind: str) -> None:
    smiles, y = logp_set
    x = morgan_features(smiles)
    model = ActivityModel(ActivityConfig(kind=kind, n_estimators=100)).fit(x[:300], y[:300])
    mean, std = model.predict(x[300:])
    mse_model = np.mean((mean - y[300:]) ** 2)
    mse_mean = np.mean((y[:300].mean() - y[300:]) ** 2)
    assert mse_model < 0.6 * mse_mean, (mse_model, mse_mean)
    assert (std > 0).all()


def test_gp_on_real_valued_features_uses_rbf(logp_set: tuple[list[str], np.ndarray]) -> None:
    smiles, y = logp_set
    # Real-valued features: counts of atoms per element and aromaticity (logP is atom-additive).
    symbols = ["C", "N", "O", "F", "Cl", "Br", "S"]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    x = np.array(
        [
            [
                sum(a.GetSymbol() == e and a.GetIsAromatic() == aro for a in m.GetAtoms())
                for e in symbols
                for aro in (False, True)
            ]
            for m in mols
        ],
        dtype=np.float64,
    )
    model = ActivityModel().fit(x[:300], y[:300])
    assert model.kernel_ == "rbf"
    mean, _ = model.predict(x[300:])
    assert np.mean((mean - y[300:]) ** 2) < 0.5 * np.mean((y[:300].mean() - y[300:]) ** 2)


def test_chembl_loader_returns_finite_activities() -> None:
    smiles, y = chembl_activity_set()
    assert len(smiles) == len(y) == 1017
    assert np.isfinite(y).all() and 4.0 < y.min() < y.max() < 10.0
    assert all(Chem.MolFromSmiles(s) is not None for s in smiles[:50])


def test_unlabelled_wheel_sets_load() -> None:
    assert len(nci_smiles()) > 4900
    assert len(wehi_smiles()) > 9900


def test_learning_curve_morgan_beats_noise_features_at_equal_budget() -> None:
    smiles, y = chembl_activity_set()

    def noise(batch: list[str]) -> np.ndarray:
        return np.random.default_rng(0).normal(size=(len(batch), 16))

    df = learning_curve(
        smiles, y, {"morgan": morgan_features, "noise": noise}, sizes=[40, 200, 10_000], seeds=[0, 1]
    )
    assert len(df) == 2 * 2 * 2  # 10,000 exceeds the pool and is skipped
    assert set(df["n_labelled"]) == {40, 200}
    by = df.groupby(["featurizer", "n_labelled"])["r2"].mean()
    assert by[("morgan", 200)] > by[("noise", 200)] + 0.2
    assert by[("morgan", 200)] > by[("morgan", 40)]


def test_learning_curve_labels_with_a_hidden_function(logp_set: tuple[list[str], np.ndarray]) -> None:
    smiles, y = logp_set
    df = learning_curve(smiles[:200], logp, {"morgan": morgan_features}, sizes=[100], seeds=[0])
    direct = learning_curve(smiles[:200], y[:200], {"morgan": morgan_features}, sizes=[100], seeds=[0])
    assert df["r2"].iloc[0] == pytest.approx(direct["r2"].iloc[0]) and df["r2"].iloc[0] > 0.3


def _bits_then(smiles: list[str], extra: np.ndarray) -> np.ndarray:
    return np.hstack([morgan_features(smiles).astype(np.float64), extra])


def test_tanimoto_plus_rbf_beats_each_part_when_each_explains_a_part(
    logp_set: tuple[list[str], np.ndarray],
) -> None:
    # logP follows the atoms (the bits see it); the second term follows two real-valued
    # columns no fingerprint can see: only the sum of the kernels can learn both.
    smiles, y_logp = logp_set
    r = np.random.default_rng(3).normal(size=(len(smiles), 2))
    y = y_logp + 2.0 * np.sin(2.0 * r[:, 0]) + r[:, 1] ** 2
    x = _bits_then(smiles, r)
    train, test = slice(0, 350), slice(350, None)

    def mse(cfg: ActivityConfig, cols: slice) -> float:
        mean, std = ActivityModel(cfg).fit(x[train, cols], y[train]).predict(x[test, cols])
        assert (std > 0).all()
        return float(np.mean((mean - y[test]) ** 2))

    hybrid = mse(ActivityConfig(kernel="tanimoto+rbf"), slice(None))
    fitted = ActivityModel(ActivityConfig(kernel="tanimoto+rbf")).fit(x[train], y[train])
    assert fitted._model.uses_embeddings_
    bits_only = mse(ActivityConfig(kernel="tanimoto"), slice(0, 2048))
    emb_only = mse(ActivityConfig(kernel="rbf"), slice(2048, None))
    assert hybrid < 0.7 * min(bits_only, emb_only), (hybrid, bits_only, emb_only)


def test_tanimoto_plus_rbf_gives_noise_embeddings_no_say(logp_set: tuple[list[str], np.ndarray]) -> None:
    smiles, y = logp_set
    noise = np.random.default_rng(4).normal(size=(len(smiles), 16))
    x = _bits_then(smiles, noise)
    hybrid = ActivityModel(ActivityConfig(kernel="tanimoto+rbf")).fit(x[:300], y[:300])
    plain = ActivityModel(ActivityConfig(kernel="tanimoto")).fit(x[:300, :2048], y[:300])
    mse_h = np.mean((hybrid.predict(x[300:])[0] - y[300:]) ** 2)
    mse_p = np.mean((plain.predict(x[300:, :2048])[0] - y[300:]) ** 2)
    assert mse_h < 1.05 * mse_p, (mse_h, mse_p)
    gp = hybrid._model
    assert not gp.uses_embeddings_  # leave-one-out error keeps the fingerprint model


def test_tanimoto_plus_rbf_needs_embeddings_after_the_bits() -> None:
    x = morgan_features(["CCO", "CCN", "CCC"])
    with pytest.raises(DataError, match="2048 bits and then embeddings"):
        ActivityModel(ActivityConfig(kernel="tanimoto+rbf")).fit(x, np.array([1.0, 2.0, 3.0]))


def test_learning_curve_takes_settings_per_featurizer(logp_set: tuple[list[str], np.ndarray]) -> None:
    smiles, y = logp_set
    r = np.random.default_rng(5).normal(size=(len(smiles), 2))

    def both(batch: Sequence[str]) -> np.ndarray:
        return _bits_then(list(batch), r[: len(batch)])

    df = learning_curve(
        smiles[:200],
        y[:200],
        {"morgan": morgan_features, "both": both},
        sizes=[100],
        seeds=[0],
        models={"both": ActivityConfig(kernel="tanimoto+rbf")},
    )
    assert set(df["featurizer"]) == {"morgan", "both"} and np.isfinite(df["r2"]).all()
    # The settings are used: the summed kernel refuses features with no embeddings after the bits.
    with pytest.raises(DataError, match="bits and then embeddings"):
        learning_curve(
            smiles[:60],
            y[:60],
            {"morgan": morgan_features},
            sizes=[30],
            seeds=[0],
            models={"morgan": ActivityConfig(kernel="tanimoto+rbf")},
        )
