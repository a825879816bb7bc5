"""EFR reduction, RLR per-example semantics, optimizer and weight-decay mask; the objective with
and without ``jit`` (``chex.variants``)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ul_jax import losses
from ul_jax.objectives import (
    classification_objective,
    efr_feature_target_scale,
    efr_lambda_conventions,
    efr_weight_from,
    make_optimizer,
    weight_decay_mask,
)
from ul_jax.prototypes import simplex_etf


def _batch(seed=0, b=8, p=5, c=4):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.normal(size=(b, p)) * rng.uniform(0.5, 4.0, size=(b, 1)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(p, c)), jnp.float32)
    y = jnp.asarray(rng.integers(0, c, size=b), jnp.int32)
    return h, w, y


@pytest.mark.parametrize("loss", ["ce", "ul", "mse"])
def test_rlr_step_equals_per_example_learning_rates(loss):
    """One SGD step on the RLR objective of a linear head on fixed features equals SGD where
    example i uses the learning rate η‖h_i‖."""
    h, w, y = _batch()
    eta = 0.3

    def obj(w_, rlr):
        return classification_objective(h @ w_, h, y, loss=loss, gamma=0.2, rlr=rlr)[0]

    opt = optax.sgd(eta)
    upd, _ = opt.update(jax.grad(obj)(w, True), opt.init(w))
    w_rlr = optax.apply_updates(w, upd)

    def ex_loss(w_, hi, yi):
        return classification_objective((hi @ w_)[None], hi[None], yi[None], loss=loss, gamma=0.2)[
            0
        ]

    per_ex_grads = jax.vmap(jax.grad(ex_loss), in_axes=(None, 0, 0))(w, h, y)  # (B, p, C)
    lrs = eta * np.linalg.norm(np.asarray(h), axis=1)
    expected = w - jnp.einsum("b,bpc->pc", lrs, per_ex_grads) / h.shape[0]
    np.testing.assert_allclose(w_rlr, expected, rtol=1e-5, atol=1e-6)
    # and it differs from the plain step (the test data has unequal feature norms)
    upd_plain, _ = opt.update(jax.grad(obj)(w, False), opt.init(w))
    assert not np.allclose(optax.apply_updates(w, upd_plain), w_rlr, atol=1e-4)


def test_efr_is_a_sum_over_the_batch_and_its_feature_gradient_is_2_lambda_h():
    h, w, y = _batch(1)
    lam = 1e-3
    total, aux = classification_objective(h @ w, h, y, loss="ce", efr_weight=lam)
    np.testing.assert_allclose(aux["efr_term"], lam * np.sum(np.asarray(h) ** 2), rtol=1e-6)
    np.testing.assert_allclose(total, aux["loss"] + aux["efr_term"], rtol=1e-6)
    g_with = jax.grad(lambda f: classification_objective(f @ w, f, y, efr_weight=lam)[0])(h)
    g_without = jax.grad(lambda f: classification_objective(f @ w, f, y)[0])(h)
    np.testing.assert_allclose(g_with - g_without, 2 * lam * h, rtol=1e-4, atol=1e-7)


def test_mask_ignores_padding_rows():
    h, w, y = _batch(2)
    mask = jnp.asarray([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32)
    garbage = h.at[5:].set(1e6)
    a, aux_a = classification_objective(
        garbage @ w, garbage, y, loss="ul", efr_weight=1e-3, rlr=True, mask=mask
    )
    b, aux_b = classification_objective(
        h[:5] @ w, h[:5], y[:5], loss="ul", efr_weight=1e-3, rlr=True
    )
    np.testing.assert_allclose(a, b, rtol=1e-5)
    np.testing.assert_allclose(aux_a["loss"], aux_b["loss"], rtol=1e-5)


def test_objective_loss_matches_losses_module():
    h, w, y = _batch(3)
    _, aux = classification_objective(h @ w, h, y, loss="ul", gamma=0.5)
    np.testing.assert_allclose(aux["loss"], losses.unhinged_loss(h @ w, y, 0.5).mean(), rtol=1e-6)
    with pytest.raises(ValueError, match="loss='focal'"):
        classification_objective(h @ w, h, y, loss="focal")


def test_optimizer_cosine_schedule_and_coupled_weight_decay():
    tx, sched = make_optimizer(learning_rate=0.1, total_steps=100, momentum=0.0, weight_decay=0.5)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(50)) == pytest.approx(0.05, rel=1e-5)
    assert float(sched(100)) == pytest.approx(0.0, abs=1e-8)
    params = {"dense": {"kernel": jnp.ones((2,)), "bias": jnp.ones((2,))}}
    grads = jax.tree.map(jnp.zeros_like, params)
    upd, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(upd["dense"]["kernel"], -0.1 * 0.5 * np.ones(2), rtol=1e-6)
    tx_k, _ = make_optimizer(
        learning_rate=0.1,
        total_steps=100,
        momentum=0.0,
        weight_decay=0.5,
        weight_decay_on="kernels",
    )
    upd, _ = tx_k.update(grads, tx_k.init(params), params)
    np.testing.assert_allclose(upd["dense"]["bias"], 0.0)
    assert weight_decay_mask(params, "kernels") == {"dense": {"kernel": True, "bias": False}}


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(learning_rate=-1.0), "learning_rate=-1.0"),
        (dict(weight_decay=-5e-4), "weight_decay=-0.0005"),
        (dict(total_steps=0), "total_steps=0"),
        (dict(schedule="step"), "schedule='step'"),
    ],
)
def test_optimizer_bad_arguments(kw, match):
    args = dict(learning_rate=0.1, total_steps=10)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        make_optimizer(**args)


@pytest.mark.parametrize("gamma", [None, 0.3])
def test_efr_theorem6_target_is_where_the_ul_pal_feature_gradient_vanishes(gamma):
    """Theorem 6 in our normalization: (1/B)Σ L_γ(Wᵀh_i) + λΣ‖h_i‖² with a simplex-ETF W is
    stationary in the features exactly at h*_i = (1+γ)/(2λB)·w_{y_i}; elsewhere it is not."""
    b, c, p, lam = 12, 5, 7, 3e-3
    w = np.asarray(simplex_etf(jax.random.PRNGKey(0), c, p, scale=1.7), np.float64)
    w -= w.mean(axis=1, keepdims=True)  # Σ_j w_j = 0 in float64, not just float32
    labels = jnp.arange(b) % c
    kappa = efr_feature_target_scale(lam, b, c, gamma)
    g = 1 / (c - 1) if gamma is None else gamma
    assert kappa == pytest.approx((1 + g) / (2 * lam * b))

    def obj(h):
        return classification_objective(
            h @ jnp.asarray(w), h, labels, loss="ul", gamma=gamma, efr_weight=lam
        )[0]

    with jax.enable_x64(True):
        h_star = kappa * jnp.asarray(w.T)[labels]
        grad = jax.grad(obj)(h_star)
        np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-12 * kappa)
        off = jax.grad(obj)(0.9 * h_star)
        assert np.abs(np.asarray(off)).max() > 1e-3
    assert np.linalg.norm(w[:, 0]) * kappa == pytest.approx(1.7 * kappa)
    # the paper's λ = 1e-6 at B = 256 (Table 2), carried to B = 128 as λ = 2e-6: ‖h*‖ ≈ 2,170
    assert efr_feature_target_scale(2e-6, 128, 10) == pytest.approx(2170.1, rel=1e-4)
    with pytest.raises(ValueError, match="efr_weight"):
        efr_feature_target_scale(0.0, b, c)


def test_efr_lambda_conventions_have_the_same_feature_gradient():
    """batch-sum λ_b, per-example λ_e = λ_b·B and data-set-sum λ_n = 2λ_b·B/n: per example, the
    penalty's feature gradient relative to the (1/B or 1/n)-weighted loss gradient is the same."""
    lb, bsz, n = 2e-6, 128, 45000
    conv = efr_lambda_conventions(lb, bsz, n)
    h = 3.0
    rel_batch = 2 * conv["batch_sum"] * h / (1 / bsz)  # d/dh λΣ‖h‖² over d/dh mean ℓ
    rel_mean = 2 * conv["per_example"] / bsz * h / (1 / bsz)
    rel_data = conv["dataset_sum"] * h / (1 / n)
    assert rel_batch == pytest.approx(rel_mean) == pytest.approx(rel_data)
    for name, value in conv.items():
        assert efr_weight_from(value, name, bsz, n) == pytest.approx(lb)
    with pytest.raises(ValueError, match="convention"):
        efr_weight_from(1.0, "mean", bsz, n)


class ObjectiveUnderJitTest(chex.TestCase):
    """The objective is the same function with and without ``jit`` (``chex.variants``): the EFR
    term ``λ Σ_i ‖h_i‖²``, the mask (padding rows ignored) and the RLR weights ``‖h_i‖`` hold in
    both, so nothing in it depends on Python-side values of traced arrays."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_efr_mask_and_loss_agree_with_and_without_jit(self):
        h, w, y = _batch(4)
        mask = jnp.asarray([1, 1, 1, 1, 1, 1, 0, 0], jnp.float32)
        lam = 1e-3

        @self.variant
        def objective(h_, w_, y_, m_):
            return classification_objective(
                h_ @ w_, h_, y_, loss="ul", gamma=0.3, efr_weight=lam, mask=m_
            )

        garbage = h.at[6:].set(1e6)
        total, aux = objective(garbage, w, y, mask)
        ref_loss = losses.unhinged_loss(h[:6] @ w, y[:6], 0.3).mean()
        np.testing.assert_allclose(aux["loss"], ref_loss, rtol=1e-5)
        np.testing.assert_allclose(aux["efr_term"], lam * np.sum(np.asarray(h[:6]) ** 2), rtol=1e-5)
        np.testing.assert_allclose(total, aux["loss"] + aux["efr_term"], rtol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_rlr_gradient_is_the_norm_weighted_per_example_gradient(self):
        h, w, y = _batch(5)

        @self.variant(static_argnums=1)
        def grad_w(w_, rlr):
            return jax.grad(lambda v: classification_objective(h @ v, h, y, loss="ce", rlr=rlr)[0])(
                w_
            )

        per_ex = jax.vmap(
            jax.grad(
                lambda v, hi, yi: classification_objective((hi @ v)[None], hi[None], yi[None])[0]
            ),
            in_axes=(None, 0, 0),
        )(w, h, y)
        weights = jnp.linalg.norm(h, axis=1)
        expected = jnp.einsum("b,bpc->pc", weights, per_ex) / h.shape[0]
        np.testing.assert_allclose(grad_w(w, True), expected, rtol=1e-5, atol=1e-6)
        assert not np.allclose(grad_w(w, False), expected, atol=1e-4)
