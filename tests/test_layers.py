"""The fused BatchNorm (ul_jax.layers) against its definition in float64, against flax's
BatchNorm, and inside the ResNets (same variables, checkpoints interchangeable)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ul_jax.layers import BatchNorm, batch_norm_train, channel_sums, resolve_norm_impl
from ul_jax.models import build_model

EPS = 1e-5


def _reference(x, scale, bias, dy, dmean, dvar):
    """Forward and VJP of training-mode BatchNorm in float64 NumPy, written from the
    definition y = γ (x − μ)/√(σ² + ε) + β with the VJP obtained by differentiating that
    expression by hand term by term (the module docstring's formula is what is tested)."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    mean = x.mean(axes)
    var = (x * x).mean(axes) - mean**2
    s = np.sqrt(var + EPS)
    xhat = (x - mean) / s
    y = scale * xhat + bias
    # y depends on x directly, through μ and through σ²:
    #   ∂L/∂x = γ/s ȳ + (1/n) ∂L/∂μ_total + (2(x−μ)/n) ∂L/∂σ²_total,
    # with ∂μ/∂x = 1/n and ∂σ²/∂x = ∂(E[x²] − μ²)/∂x = 2(x − μ)/n.
    dvar_total = dvar + np.sum(dy * scale * (x - mean), axes) * (-0.5) * s**-3
    dmean_total = dmean + np.sum(-dy * scale / s, axes)
    dx = scale / s * dy + dmean_total / n + 2 * (x - mean) / n * dvar_total
    return y, mean, var, dx, np.sum(dy * xhat, axes), np.sum(dy, axes)


@pytest.mark.parametrize("shape", [(16, 8, 8, 5), (7, 3), (4, 6, 5, 3, 2)])
def test_batch_norm_train_matches_float64_definition(shape):
    ks = jax.random.split(jax.random.PRNGKey(0), 6)
    c = shape[-1]
    x = 2.0 * jax.random.normal(ks[0], shape) + 1.5
    scale = 1.0 + 0.3 * jax.random.normal(ks[1], (c,))
    bias = 0.2 * jax.random.normal(ks[2], (c,))
    dy = jax.random.normal(ks[3], shape)
    dmean, dvar = jax.random.normal(ks[4], (c,)), jax.random.normal(ks[5], (c,))
    (y, mean, var), vjp = jax.vjp(lambda a, s, b: batch_norm_train(a, s, b, EPS), x, scale, bias)
    dx, ds, db = vjp((dy, dmean, dvar))
    chex.assert_shape(y, shape)
    chex.assert_shape((mean, var, ds, db), (c,))
    ref = _reference(*(np.asarray(a) for a in (x, scale, bias, dy, dmean, dvar)))
    for got, want in zip((y, mean, var, dx, ds, db), ref):
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_channel_sums_is_a_sum_over_all_but_the_last_axis():
    x = np.random.default_rng(0).normal(size=(6, 5, 4, 3)).astype(np.float32)
    (s,) = channel_sums(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(s), x.astype(np.float64).sum((0, 1, 2)), rtol=1e-5)


def _bn_apply(impl, x, scale, bias, r, dtype=jnp.float32):
    m = BatchNorm(impl=impl, use_running_average=False, momentum=0.9, epsilon=EPS, dtype=dtype)
    c = x.shape[-1]
    v = {
        "params": {"scale": scale, "bias": bias},
        "batch_stats": {"mean": jnp.full((c,), 0.5), "var": jnp.full((c,), 2.0)},
    }
    y, st = m.apply(v, x, mutable=["batch_stats"])
    return jnp.sum(y.astype(jnp.float32) * r), (y, st["batch_stats"])


def test_fused_equals_flax_batchnorm_values_stats_and_gradients():
    ks = jax.random.split(jax.random.PRNGKey(3), 4)
    x = 3.0 * jax.random.normal(ks[0], (32, 6, 6, 7)) - 1.0
    r = jax.random.normal(ks[1], x.shape)
    scale, bias = 1.0 + 0.2 * jax.random.normal(ks[2], (7,)), 0.1 * jax.random.normal(ks[3], (7,))
    grad = lambda impl: jax.grad(
        lambda *a: _bn_apply(impl, *a, r), argnums=(0, 1, 2), has_aux=True
    )(x, scale, bias)
    (ga, (ya, sa)), (gb, (yb, sb)) = grad("flax"), grad("fused")
    np.testing.assert_allclose(yb, ya, rtol=1e-5, atol=1e-5)
    for k in ("mean", "var"):  # running statistics: 0.9 · old + 0.1 · batch statistic
        np.testing.assert_allclose(sb[k], sa[k], rtol=1e-5, atol=1e-6)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * float(jnp.abs(a).max()))


def test_fused_batchnorm_in_bfloat16_keeps_float32_statistics():
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4, 4, 3)).astype(jnp.bfloat16)
    r = jnp.ones(x.shape)
    _, (y, st) = _bn_apply("fused", x, jnp.ones(3), jnp.zeros(3), r, dtype=jnp.bfloat16)
    assert y.dtype == jnp.bfloat16
    assert st["mean"].dtype == st["var"].dtype == jnp.float32
    _, (y32, _) = _bn_apply("flax", x, jnp.ones(3), jnp.zeros(3), r, dtype=jnp.bfloat16)
    np.testing.assert_allclose(y.astype(np.float32), y32.astype(np.float32), atol=2e-2)


def test_fused_batchnorm_refuses_what_it_does_not_implement():
    x = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="impl='bogus'"):
        BatchNorm(impl="bogus", use_running_average=False).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="axis_name='batch'"):
        BatchNorm(impl="fused", use_running_average=False, axis_name="batch").init(
            jax.random.PRNGKey(0), x
        )
    with pytest.raises(ValueError, match="model.norm_impl must be one of"):
        resolve_norm_impl("cudnn")


def test_auto_is_fused_on_cpu_only():
    assert resolve_norm_impl("auto", "cpu") == "fused"
    assert resolve_norm_impl("auto", "gpu") == resolve_norm_impl("auto", "tpu") == "flax"
    assert resolve_norm_impl("flax", "cpu") == "flax"


def test_resnet_same_variables_and_interchangeable_checkpoints():
    """Both implementations declare the same variables (names, shapes, initial values), so a
    checkpoint of one loads in the other; a train-mode step agrees to float32 rounding and the
    updated running statistics agree."""
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 16, 16, 3))
    models = {
        impl: build_model("resnet8", 10, head="pal", width_multiplier=0.5, norm_impl=impl)
        for impl in ("flax", "fused")
    }
    v = {k: m.init(jax.random.PRNGKey(0), x, train=False) for k, m in models.items()}
    chex.assert_trees_all_equal(v["flax"], v["fused"])
    # a "trained" state: perturb every parameter and running statistic
    leaves, tree = jax.tree.flatten(v["flax"])
    keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
    state = jax.tree.unflatten(
        tree, [a + 0.05 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys)]
    )

    def loss(params, impl):
        (logits, feats), st = models[impl].apply(
            {**state, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return jnp.sum(logits**2) + jnp.sum(feats), st["batch_stats"]

    out = {i: jax.value_and_grad(loss, has_aux=True)(state["params"], i) for i in models}
    (la, sa), ga = out["flax"]
    (lb, sb), gb = out["fused"]
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    chex.assert_trees_all_close(sb, sa, rtol=1e-4, atol=1e-5)
    scale = max(float(jnp.abs(a).max()) for a in jax.tree.leaves(ga))
    chex.assert_trees_all_close(gb, ga, rtol=1e-3, atol=1e-4 * scale)
    # inference reads the running statistics with flax's code in both: identical outputs
    ea, eb = (models[i].apply(state, x, train=False) for i in ("flax", "fused"))
    chex.assert_trees_all_equal(ea, eb)


def test_auto_falls_back_to_flax_with_an_axis_name():
    m = build_model("resnet8", 10, width_multiplier=0.5, axis_name="batch")
    assert m.trunk.norm_impl == "flax"
    assert build_model("resnet8", 10, width_multiplier=0.5).trunk.norm_impl == resolve_norm_impl(
        "auto"
    )


def test_config_field_names_a_bad_norm_impl():
    from ul_jax.config import REPO_ROOT, load_config_file
    from ul_jax.train.validate import validate_config

    config = load_config_file(f"{REPO_ROOT / 'configs' / 'cifar10.py'}:ce", {})
    assert config.model.norm_impl == "auto"
    config.model.norm_impl = "cudnn"
    with pytest.raises(ValueError, match="model.norm_impl"):
        validate_config(config, device_count=1)


def test_flax_reference_class_name_is_kept():
    # the auto-generated submodule names (BatchNorm_0 …) depend on the class name
    assert BatchNorm.__name__ == nn.BatchNorm.__name__ == "BatchNorm"


def test_a_config_saved_before_the_field_existed_still_validates_and_builds():
    """Run folders written before ``model.norm_impl`` existed (their ``config.json`` lacks it)
    must still evaluate and resume: the field is optional and defaults to ``auto``."""
    import ml_collections

    from ul_jax.config import REPO_ROOT, load_config_file
    from ul_jax.train.setup import build_model_from_config
    from ul_jax.train.validate import validate_config

    stored = load_config_file(f"{REPO_ROOT / 'configs' / 'cifar10.py'}:ul_pal", {}).to_dict()
    del stored["model"]["norm_impl"]
    config = ml_collections.ConfigDict(stored)
    validate_config(config, device_count=1)
    model = build_model_from_config(config, 10)
    assert model.trunk.norm_impl == resolve_norm_impl("auto")
