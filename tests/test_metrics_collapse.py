"""Neural-collapse metrics: exact collapse, random features, hand cases, a direct Papyan-style
reference, float32 near-collapse numerics, and the layer-peeled adapter."""

import math

import jax
import numpy as np
import pytest
from scipy.sparse.linalg import svds

from ul_jax import metrics
from ul_jax.prototypes import simplex_etf


def _collapsed(num_classes=10, dim=32, per_class=20, scale=3.0, noise=1e-7, seed=0):
    w = np.asarray(simplex_etf(jax.random.PRNGKey(seed), num_classes, dim), np.float64)
    rng = np.random.default_rng(seed)
    h = scale * np.repeat(w.T, per_class, axis=0) + noise * rng.normal(
        size=(num_classes * per_class, dim)
    )
    return h, np.repeat(np.arange(num_classes), per_class), w


def _reference(h, y, w, b):
    """Direct transcription of the definitions (Papyan et al. 2020 reference-code style)."""
    c = w.shape[1]
    mu = np.stack([h[y == k].mean(0) for k in range(c)])  # (C, p)
    mu_g = mu.mean(0)
    m = (mu - mu_g).T
    sw = sum(np.outer(h[i] - mu[y[i]], h[i] - mu[y[i]]) for i in range(len(y))) / len(y)
    sb = m @ m.T / c
    vec, val, _ = svds(sb, k=c - 1)
    nc1 = np.trace(sw @ (vec @ np.diag(1 / val) @ vec.T)) / c
    cos = lambda v: (v / np.linalg.norm(v, axis=0)).T @ (v / np.linalg.norm(v, axis=0))
    off = ~np.eye(c, dtype=bool)
    g = m.T @ m
    etf = np.linalg.norm(g / np.linalg.norm(g) - (np.eye(c) - 1 / c) / math.sqrt(c - 1))
    dual = np.linalg.norm(w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2
    ncc = np.argmin([[np.linalg.norm(hi - mu[k]) for k in range(c)] for hi in h], axis=1)
    net = np.argmax(h @ w + b, axis=1)
    mn = np.linalg.norm(m, axis=0)
    return {
        "nc1": nc1,
        "equinorm_means": np.std(mn, ddof=1) / np.mean(mn),
        "equiangular_means": np.mean(np.abs(cos(m)[off] + 1 / (c - 1))),
        "equiangular_prototypes": np.mean(np.abs(cos(w)[off] + 1 / (c - 1))),
        "etf_distance": etf,
        "self_duality": dual,
        "ncc_agreement": np.mean(ncc == net),
        "mean_feature_norm": np.mean(np.linalg.norm(h, axis=1)),
    }


def test_exact_collapse():
    h, y, w = _collapsed()
    got = metrics.neural_collapse(h, y, w)
    assert 0.0 <= got["nc1"] < 1e-10
    assert got["etf_distance"] < 1e-6
    assert got["etf_distance_prototypes"] < 1e-6
    assert got["self_duality"] < 1e-10
    assert got["ncc_agreement"] == 1.0
    assert got["equinorm_means"] < 1e-6 and got["equiangular_means"] < 1e-6
    assert got["prototype_norm_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert got["min_prototype_angle_deg"] == pytest.approx(
        math.degrees(math.acos(-1 / 9)), abs=1e-4
    )
    assert got["mean_feature_norm"] == pytest.approx(3.0, abs=1e-5)
    assert got["num_examples"] == 200


def test_random_configuration_is_not_collapsed():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(400, 32))
    y = rng.integers(0, 10, size=400)
    got = metrics.neural_collapse(h, y, rng.normal(size=(32, 10)))
    assert got["nc1"] > 1.0
    assert got["etf_distance"] > 0.2
    assert got["self_duality"] > 0.5
    assert got["ncc_agreement"] < 0.5
    assert got["equiangular_means"] > 0.05


def test_matches_direct_reference():
    rng = np.random.default_rng(2)
    c, p = 6, 12
    w = rng.normal(size=(p, c))
    b = rng.normal(size=c)
    y = rng.integers(0, c, size=120)
    h = rng.normal(size=(120, p)) + 2.0 * rng.normal(size=(c, p))[y]  # imbalanced, partly collapsed
    got = metrics.neural_collapse(h, y, w, bias=b)
    for key, val in _reference(h, y, w, b).items():
        assert got[key] == pytest.approx(val, rel=1e-9, abs=1e-12), key


def test_hand_two_classes_one_dim():
    # p = 1, class 0 at {−1.5, −0.5}, class 1 at {0.5, 1.5}: μ = ±1, μ_G = 0, M = [−1, 1],
    # Σ_W = 0.25, Σ_B = (1 + 1)/2 = 1  ->  NC1 = tr(Σ_W Σ_B⁺)/C = 0.25/2 = 0.125.
    # MᵀM/‖MᵀM‖ = [[½, −½], [−½, ½]] = (I − 11ᵀ/2)/√1  ->  ETF distance 0.
    # W = [−2, 1]: ‖w‖ = (2, 1), std(ddof=1)/mean = 0.70711/1.5; NC3 = ‖W/√5 − M/√2‖².
    h = np.array([[-1.5], [-0.5], [0.5], [1.5]])
    y = np.array([0, 0, 1, 1])
    w = np.array([[-2.0, 1.0]])
    got = metrics.neural_collapse(h, y, w)
    assert got["nc1"] == pytest.approx(0.125)
    assert got["within_class_variation"] == pytest.approx(0.25)
    assert got["etf_distance"] == pytest.approx(0.0, abs=1e-12)
    assert got["equinorm_prototypes"] == pytest.approx(math.sqrt(0.5) / 1.5)
    want_dual = (-2 / math.sqrt(5) + 1 / math.sqrt(2)) ** 2 + (
        1 / math.sqrt(5) - 1 / math.sqrt(2)
    ) ** 2
    assert got["self_duality"] == pytest.approx(want_dual)
    assert got["ncc_agreement"] == 1.0
    # bias b = (0, −2) flips the classifier at h = 0.5 (logits −1 vs −1.5) but not the NCC: 3/4
    assert metrics.neural_collapse(h, y, w, bias=[0.0, -2.0])["ncc_agreement"] == 0.75


def test_global_mean_is_unweighted_mean_of_class_means():
    # class 1 has twice the examples; μ = ±1 still. With μ_G = mean of class means = 0:
    # Σ_W = 0.25, Σ_B = 1 -> NC1 = 0.125. (A count-weighted μ_G = 1/3 would give 0.1125.)
    h = np.array([[-1.5], [-0.5], [0.5], [1.5], [0.5], [1.5]])
    y = np.array([0, 0, 1, 1, 1, 1])
    assert metrics.neural_collapse(h, y, np.array([[-1.0, 1.0]]))["nc1"] == pytest.approx(0.125)


def test_prototype_geometry_hand():
    w = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    got = metrics.prototype_geometry(w)
    # norms (1, 2, 1); cosines: (1,2) 0, (1,3) −1, (2,3) 0 -> max 0 -> 90°
    assert got["prototype_norm_ratio"] == pytest.approx(2.0)
    assert got["min_prototype_angle_deg"] == pytest.approx(90.0)
    w2 = np.array([[1.0, 1.0, -1.0], [0.0, 1.0, 0.0]])  # cos(w1, w2) = 1/√2 -> 45°
    assert metrics.prototype_geometry(w2)["min_prototype_angle_deg"] == pytest.approx(45.0)


def test_nc1_nonnegative_near_collapse_float32():
    # Near-collapsed float32 features far from the origin: the uncentered float32 estimate
    # Σ_W = HᵀH/n − Σ_c (n_c/n) μ_c μ_cᵀ loses everything to cancellation and gives NC1 < 0.
    c, p, n_per = 10, 64, 50
    w = np.asarray(simplex_etf(jax.random.PRNGKey(1), c, p), np.float64)
    y = np.repeat(np.arange(c), n_per)
    rng = np.random.default_rng(0)
    h = 10 * np.repeat(w.T, n_per, axis=0) + 1e-5 * rng.normal(size=(c * n_per, p)) + 30.0
    h = h.astype(np.float32)
    mu = np.stack([h[y == k].mean(0) for k in range(c)]).astype(np.float32)
    sw_naive = (h.T @ h) / np.float32(len(y)) - sum(
        np.float32(n_per / len(y)) * np.outer(mu[k], mu[k]) for k in range(c)
    )
    m = (mu - mu.mean(0)).T.astype(np.float64)
    vec, val, _ = svds(m @ m.T / c, k=c - 1)
    naive = np.trace(sw_naive.astype(np.float64) @ (vec @ np.diag(1 / val) @ vec.T)) / c
    assert naive < 0  # the hazard is real for this input
    got = metrics.neural_collapse(h, y, w)["nc1"]
    assert 0.0 <= got < 1e-8
    # the float32 streaming accumulator as well
    state = metrics.collapse_init(c, p)
    upd = jax.jit(metrics.collapse_update)
    for i in range(0, len(y), 128):
        state = upd(state, h[i : i + 128], y[i : i + 128])
    assert 0.0 <= metrics.collapse_finalize(state, w)["nc1"] < 1e-6


def test_ufm_adapter_class_major():
    c, n_per, p = 4, 3, 5
    rng = np.random.default_rng(3)
    w = rng.normal(size=(p, c))
    hmat = rng.normal(size=(p, c * n_per)) + np.repeat(3 * w, n_per, axis=1)  # columns c·N + i
    got = metrics.neural_collapse_ufm(hmat, w, n_per)
    want = metrics.neural_collapse(hmat.T, np.repeat(np.arange(c), n_per), w)
    assert got == want
    # reading the columns example-major instead (labels tiled) gives different numbers
    wrong = metrics.neural_collapse(hmat.T, np.tile(np.arange(c), n_per), w)
    assert wrong["nc1"] != pytest.approx(got["nc1"], rel=1e-3)
    with pytest.raises(ValueError, match="H.shape"):
        metrics.neural_collapse_ufm(hmat[:, :-1], w, n_per)


def _with_nan(h):
    h = h.copy()
    h[7, 3] = np.nan
    return h


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda h, y, w: metrics.neural_collapse(h, np.minimum(y, 8), w), "every class needs"),
        (lambda h, y, w: metrics.neural_collapse(h[:, :-1], y, w), "features.shape"),
        (lambda h, y, w: metrics.neural_collapse(h, y[:-1], w), "labels.shape"),
        (lambda h, y, w: metrics.neural_collapse(_with_nan(h), y, w), "features must be finite"),
        (lambda h, y, w: metrics.neural_collapse(h, y, w, bias=np.zeros(3)), "bias.shape"),
        (lambda h, y, w: metrics.neural_collapse(h, y, w[:, :1]), "prototypes must be"),
        (lambda h, y, w: metrics.neural_collapse(h, y + 1, w), "out of range"),
    ],
)
def test_bad_inputs(call, match):
    h, y, w = _collapsed(noise=1e-2)
    with pytest.raises(ValueError, match=match):
        call(h, y, w)
