"""Losses against direct NumPy evaluations of their definitions, gradients, jit, Lemma 1."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from ul_jax import losses
from ul_jax.prototypes import simplex_etf


def _np_unhinged(z, y, gamma):
    out = np.empty(z.shape[0])
    for i in range(z.shape[0]):
        out[i] = -z[i, y[i]] + gamma * sum(z[i, j] for j in range(z.shape[1]) if j != y[i])
    return out


def _np_ce(z, y):
    out = np.empty(z.shape[0])
    for i in range(z.shape[0]):
        m = z[i].max()
        out[i] = -z[i, y[i]] + m + math.log(np.sum(np.exp(z[i] - m)))
    return out


def _np_mse(z, y):
    t = np.zeros_like(z)
    t[np.arange(len(y)), y] = 1.0
    return np.sum((z - t) ** 2, axis=1)


def _np_hinge(z, y, m):
    out = np.zeros(z.shape[0])
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            if j != y[i]:
                out[i] += max(0.0, z[i, j] - z[i, y[i]] + m)
    return out


def _data(seed=0, batch=16, num_classes=7):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(batch, num_classes)).astype(np.float32) * 3
    y = rng.integers(0, num_classes, size=batch).astype(np.int32)
    return z, y


class LossDefinitionTest(chex.TestCase, parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(None, 0.0, 0.05, 1.0)
    def test_unhinged_matches_definition(self, gamma):
        z, y = _data()
        fn = self.variant(lambda a, b: losses.unhinged_loss(a, b, gamma))
        got = fn(z, y)
        chex.assert_shape(got, (16,))
        g = 1.0 / 6.0 if gamma is None else gamma
        np.testing.assert_allclose(got, _np_unhinged(z, y, g), rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_cross_entropy_matches_definition(self):
        z, y = _data(1)
        got = self.variant(losses.cross_entropy_loss)(z, y)
        np.testing.assert_allclose(got, _np_ce(z.astype(np.float64), y), rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_mse_matches_definition(self):
        z, y = _data(2)
        got = self.variant(losses.mse_loss)(z, y)
        np.testing.assert_allclose(got, _np_mse(z, y), rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(0.0, 0.5, 1.0, 2.0)
    def test_hinge_matches_definition(self, margin):
        z, y = _data(3)
        got = self.variant(lambda a, b: losses.multiclass_hinge_loss(a, b, margin))(z, y)
        np.testing.assert_allclose(got, _np_hinge(z, y, margin), rtol=1e-5, atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_batch_axes_are_preserved(self):
        z, y = _data(4, batch=12)
        z3, y3 = z.reshape(3, 4, 7), y.reshape(3, 4)
        for fn in (
            losses.unhinged_loss,
            losses.cross_entropy_loss,
            losses.mse_loss,
            losses.multiclass_hinge_loss,
        ):
            got = self.variant(fn)(z3, y3)
            chex.assert_shape(got, (3, 4))
            np.testing.assert_allclose(got.reshape(-1), fn(z, y), rtol=1e-6)


def test_unhinged_feature_gradient_is_linear_in_prototypes():
    """∂L/∂h = −(w_y − γ Σ_{j≠y} w_j) for logits Wᵀh + b."""
    rng = np.random.default_rng(5)
    p, c, gamma = 6, 5, 0.3
    w = rng.normal(size=(p, c)).astype(np.float32)
    b = rng.normal(size=(c,)).astype(np.float32)
    h = rng.normal(size=(p,)).astype(np.float32)
    for y in range(c):
        g = jax.grad(lambda hh: losses.unhinged_loss(hh @ w + b, jnp.int32(y), gamma))(h)
        expected = -(w[:, y] - gamma * (w.sum(axis=1) - w[:, y]))
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-6)


def test_unhinged_bias_gradient_is_class_frequency_drift():
    """∂/∂b_c of the batch-mean UL = γ − (1+γ)π_c (π_c: class frequency), whatever h and W:
    zero for all c iff balanced with γ = 1/(C−1); else the loss is unbounded below in b
    (why the PAL configs have no bias, configs/common.py)."""
    rng = np.random.default_rng(7)
    c, p = 10, 8
    counts = np.array([5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50])  # CIFAR-10-LT ρ=100
    y = np.repeat(np.arange(c), counts // 10)
    pi = np.bincount(y, minlength=c) / y.size
    h = rng.normal(size=(y.size, p)).astype(np.float64)
    w = rng.normal(size=(p, c))
    for gamma in (1 / (c - 1), 0.0, 0.3):
        mean_loss = lambda b, g=gamma: losses.unhinged_loss(h @ w + b, y, g).mean()
        grad = jax.grad(mean_loss)(jnp.zeros(c))
        np.testing.assert_allclose(grad, gamma - (1 + gamma) * pi, atol=1e-6)
        # linear in b: a step along −grad lowers the loss by exactly t·‖grad‖²
        t = 100.0
        drop = mean_loss(jnp.zeros(c)) - mean_loss(-t * grad)
        np.testing.assert_allclose(drop, t * float(jnp.sum(grad**2)), rtol=1e-4)
    balanced = jax.grad(
        lambda b: losses.unhinged_loss(h[:50] @ w + b, np.arange(50) % c, 1 / (c - 1)).mean()
    )(jnp.zeros(c))
    np.testing.assert_allclose(balanced, 0.0, atol=1e-7)


def test_cross_entropy_differs_from_unhinged():
    """Guards against the test data making all losses trivially agree."""
    z, y = _data(6)
    assert not np.allclose(losses.cross_entropy_loss(z, y), losses.unhinged_loss(z, y))


# --------------------------------------------------------------------------------------------
# adjusted sample-margin loss (Appendix D.3)
# --------------------------------------------------------------------------------------------
def _unit(x):
    return x / np.linalg.norm(x)


def test_adjusted_loss_equals_plain_above_threshold_and_value_everywhere():
    key = jax.random.PRNGKey(0)
    c, p = 6, 8
    w = np.asarray(simplex_etf(key, c, p))
    rng = np.random.default_rng(0)
    h = rng.normal(size=(32, p)).astype(np.float32)
    y = rng.integers(0, c, size=32).astype(np.int32)
    # push half the features close to -w_y (cosine below -1 + eps)
    h[:16] = -w[:, y[:16]].T * 3.0 + 0.05 * h[:16]
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    plain = losses.unhinged_loss(jnp.asarray(hn @ w), y)
    adj = losses.adjusted_unhinged_loss(h, w, y, epsilon=0.1)
    # δ is orthogonal to ĥ: the value never changes
    np.testing.assert_allclose(adj, plain, rtol=1e-5, atol=1e-5)
    cos = np.sum(hn * w[:, y].T, axis=1)
    assert np.all(cos[:16] <= -0.9) and np.all(cos[16:] > -0.9)

    def grad_fn(fn):
        return jax.vmap(jax.grad(fn), in_axes=(0, 0))(jnp.asarray(h), jnp.asarray(y))

    g_adj = grad_fn(lambda hh, yy: losses.adjusted_unhinged_loss(hh, w, yy, epsilon=0.1))
    g_plain = grad_fn(lambda hh, yy: losses.unhinged_loss(_jnorm(hh) @ w, yy))
    np.testing.assert_allclose(g_adj[16:], g_plain[16:], rtol=1e-4, atol=1e-6)
    ratio = np.linalg.norm(g_adj[:16], axis=1) / np.linalg.norm(g_plain[:16], axis=1)
    assert np.all(ratio > 1.5), ratio


def _jnorm(x):
    return x / jnp.linalg.norm(x)


def test_adjusted_loss_delta_reaches_threshold_cosine():
    """(ŵ_y + δ) has cosine exactly −1 + ε with ĥ, and the gradient equals the plain gradient
    computed with ŵ_y + δ in place of ŵ_y (the paper's −(1+γ)(w_y+δ)ᵀĥ for ETF prototypes)."""
    key = jax.random.PRNGKey(1)
    c, p, eps, gamma = 4, 5, 0.2, 1.0 / 3
    w = np.asarray(simplex_etf(key, c, p), dtype=np.float64)
    rng = np.random.default_rng(1)
    y = 2
    h = -w[:, y] + 0.1 * rng.normal(size=p)
    hn, wy = _unit(h), _unit(w[:, y])
    cc = hn @ wy
    assert cc < -1 + eps
    a = abs(cc) * math.sqrt(eps * (2 - eps)) / ((1 - eps) * math.sqrt(1 - cc**2))
    delta = (a - 1) * (wy - cc * hn)
    v = wy + delta
    np.testing.assert_allclose(_unit(v) @ hn, -1 + eps, atol=1e-12)
    g = jax.grad(lambda hh: losses.adjusted_unhinged_loss(hh, w, jnp.int32(y), gamma, eps))(
        jnp.asarray(h, jnp.float32)
    )
    expected = jax.grad(lambda hh: -(1 + gamma) * jnp.dot(jnp.asarray(v, jnp.float32), _jnorm(hh)))(
        jnp.asarray(h, jnp.float32)
    )
    np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)


def test_adjusted_loss_is_continuous_at_threshold():
    """At cos = −1 + ε the stretch factor a is exactly 1 (δ = 0)."""
    eps = 0.3
    cc = -1 + eps
    a = abs(cc) * math.sqrt(eps * (2 - eps)) / ((1 - eps) * math.sqrt(1 - cc**2))
    assert a == pytest.approx(1.0, abs=1e-12)


# --------------------------------------------------------------------------------------------
# feature-norm penalty and label validation
# --------------------------------------------------------------------------------------------
def test_feature_norm_penalty_sum_mean_and_mask():
    f = np.arange(12, dtype=np.float32).reshape(4, 3)
    sq = (f**2).sum(axis=1)
    assert float(losses.feature_norm_penalty(f)) == pytest.approx(sq.sum())
    assert float(losses.feature_norm_penalty(f, "mean")) == pytest.approx(sq.mean())
    mask = np.array([1, 1, 0, 0], np.float32)
    assert float(losses.feature_norm_penalty(f, "sum", mask)) == pytest.approx(sq[:2].sum())
    assert float(losses.feature_norm_penalty(f, "mean", mask)) == pytest.approx(sq[:2].mean())
    with pytest.raises(ValueError, match="reduction"):
        losses.feature_norm_penalty(f, "median")
    with pytest.raises(ValueError, match="mask.shape"):
        losses.feature_norm_penalty(f, "sum", np.ones(3))


def test_validate_labels():
    np.testing.assert_array_equal(losses.validate_labels([0, 2, 1], 3), [0, 2, 1])
    with pytest.raises(ValueError, match=r"out of range \[0, 3\).*\[3\]"):
        losses.validate_labels([0, 3, 1], 3)
    with pytest.raises(ValueError, match="-1"):
        losses.validate_labels(np.array([-1, 0]), 3)
    with pytest.raises(ValueError, match="integers"):
        losses.validate_labels(np.array([0.5, 1.0]), 3)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fn",
    [
        losses.unhinged_loss,
        losses.cross_entropy_loss,
        losses.mse_loss,
        losses.multiclass_hinge_loss,
    ],
)
def test_bad_shapes_raise(fn):
    with pytest.raises(ValueError, match="logits.shape"):
        fn(jnp.float32(1.0), jnp.int32(0))  # no class axis
    with pytest.raises(ValueError, match=r"labels.shape=\(4,\)"):
        fn(jnp.zeros((4,)), jnp.zeros((4,), jnp.int32))  # class axis missing, labels per logit
    with pytest.raises(ValueError, match=r"labels.shape=\(3,\)"):
        fn(jnp.zeros((4, 5)), jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="classes"):
        fn(jnp.zeros((4, 1)), jnp.zeros((4,), jnp.int32))
    with pytest.raises(ValueError, match="labels.dtype"):
        fn(jnp.zeros((4, 5)), jnp.zeros((4,)))


def test_negative_gamma_raises():
    with pytest.raises(ValueError, match=r"gamma=-0.1"):
        losses.unhinged_loss(jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), -0.1)
    with pytest.raises(ValueError, match=r"gamma=-1"):
        losses.adjusted_unhinged_loss(jnp.ones((2, 3)), jnp.eye(3), jnp.zeros((2,), jnp.int32), -1)
    with pytest.raises(ValueError, match="epsilon=1.5"):
        losses.adjusted_unhinged_loss(
            jnp.ones((2, 3)), jnp.eye(3), jnp.zeros((2,), jnp.int32), epsilon=1.5
        )
    with pytest.raises(ValueError, match="margin=-1"):
        losses.multiclass_hinge_loss(jnp.zeros((2, 3)), jnp.zeros((2,), jnp.int32), -1)


# --------------------------------------------------------------------------------------------
# Lemma 1
# --------------------------------------------------------------------------------------------
def _mean_ul(h, w, y, gamma):
    """Bias-free mean unhinged loss, h (n, p), w (p, C)."""
    return float(np.mean(_np_unhinged(h @ w, y, gamma)))


@pytest.mark.parametrize("c,p", [(2, 1), (4, 3), (10, 9), (10, 16)])
def test_lemma1_neural_collapse_value(c, p):
    ew, eh, n = 1.7, 0.6, 3
    w = np.asarray(simplex_etf(jax.random.PRNGKey(c), c, p, scale=ew), np.float64)
    y = np.repeat(np.arange(c), n)
    h = (eh / ew) * w[:, y].T
    for gamma in (0.0, 1.0 / (c - 1), losses.lemma1_gamma_max(c) if c > 2 else 3.0):
        expected = -(1 + gamma) * ew * eh
        assert _mean_ul(h, w, y, gamma) == pytest.approx(expected, rel=1e-6)
        assert losses.unhinged_min_mean_loss(c, gamma, ew, eh) == pytest.approx(expected)


@pytest.mark.parametrize("c", [3, 5, 10])
def test_lemma1_bound_holds_on_random_configurations(c):
    """For γ = 1/(C−1) (and γ at the threshold 2/(C−2)) no norm-bounded configuration goes below
    −(1+γ)E_W E_H; random search plus a local ascent-free check on 2,000 configurations."""
    rng = np.random.default_rng(c)
    ew, eh, n, p = 1.0, 2.0, 2, c + 2
    y = np.repeat(np.arange(c), n)
    for gamma in (1.0 / (c - 1), 2.0 / (c - 2) if c > 2 else 1.0):
        bound = -(1 + gamma) * ew * eh
        worst = np.inf
        for _ in range(2000):
            w = rng.normal(size=(p, c))
            w *= ew * rng.uniform(0.2, 1.0, size=c) / np.linalg.norm(w, axis=0)
            # best features for these prototypes: h = -E_H v/‖v‖ with v = −(1+γ)w_y + γ w̄
            v = -(1 + gamma) * w[:, y] + gamma * w.sum(axis=1, keepdims=True)
            h = -eh * (v / np.linalg.norm(v, axis=0)).T
            worst = min(worst, _mean_ul(h, w, y, gamma))
        assert worst >= bound - 1e-9, (gamma, worst, bound)


@pytest.mark.parametrize("c", [4, 10])
def test_lemma1_fails_above_gamma_threshold(c):
    """Counter-example for γ > 2/(C−2): identical prototypes w_c = E_W u and features
    h = −E_H u beat the neural-collapse value −(1+γ)E_W E_H, reaching −(Cγ−1−γ)E_W E_H."""
    ew, eh, n, p = 1.0, 1.0, 2, c
    gamma = 1.5 * losses.lemma1_gamma_max(c)
    u = np.zeros(p)
    u[0] = 1.0
    w = np.tile((ew * u)[:, None], (1, c))
    y = np.repeat(np.arange(c), n)
    h = np.tile(-eh * u, (c * n, 1))
    value = _mean_ul(h, w, y, gamma)
    nc_value = -(1 + gamma) * ew * eh
    assert value < nc_value - 0.1
    assert value == pytest.approx(-(c * gamma - 1 - gamma) * ew * eh)
    assert losses.unhinged_min_mean_loss(c, gamma, ew, eh) == pytest.approx(value)
    # and just below the threshold the same configuration does not beat the bound
    g2 = 0.9 * losses.lemma1_gamma_max(c)
    assert _mean_ul(h, w, y, g2) > -(1 + g2) * ew * eh


def test_lemma1_gamma_max_values():
    assert losses.lemma1_gamma_max(2) == math.inf
    assert losses.lemma1_gamma_max(10) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="num_classes=1"):
        losses.lemma1_gamma_max(1)
