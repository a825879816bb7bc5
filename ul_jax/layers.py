"""Layers with a selectable implementation: BatchNorm whose training-mode statistics and
gradient take two passes over the activations instead of XLA's autodiff of ``flax.linen``'s.

Training-mode batch normalization over the reduction axes R (all but the last; n = Π_{a∈R} d_a):

    μ = (1/n) Σ_R x,   σ² = max(0, (1/n) Σ_R x² − μ²)   (flax's ``use_fast_variance``),
    x̂ = (x − μ) / √(σ² + ε),   y = γ ⊙ x̂ + β.

Its vector-Jacobian product, for cotangents (ȳ, μ̄, σ̄²) of the outputs (y, μ, σ²) — μ and σ² are
returned because the running statistics are updated from them:

    β̄ = Σ_R ȳ,   γ̄ = Σ_R ȳ ⊙ x̂,
    x̄ = (γ / (n √(σ² + ε))) ⊙ (n ȳ − β̄ − x̂ ⊙ γ̄) + μ̄ / n + 2 σ̄² ⊙ (x − μ) / n.

:func:`batch_norm_train` computes the forward pass with one read of ``x`` for both sums and the
backward pass with one read of ``(ȳ, x)`` for both sums (:func:`channel_sums`); XLA's autodiff of
flax's BatchNorm reduces more often, and on XLA:CPU each reduction over ``(B, H, W)`` of an NHWC
array is several times slower than an elementwise pass (``docs/PROFILE.md``). The math is the same:
tests check the values and all three gradients against flax's and a float64 reference.

:class:`BatchNorm` is ``flax.linen.BatchNorm`` with an ``impl`` field: ``"flax"`` is flax's code;
``"fused"`` uses :func:`batch_norm_train` in training mode (inference with running averages is
flax's code either way). Both declare the same variables under the same module names, so a
checkpoint written with one loads in the other. ``"fused"`` does not support ``axis_name`` (the
cross-device mean of a ``pmap``/``shard_map`` model; ul_jax's data parallelism is a sharded
``jit`` whose reductions are global without it) and raises if both are set.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["BatchNorm", "NORM_IMPLS", "batch_norm_train", "channel_sums", "resolve_norm_impl"]

NORM_IMPLS = ("auto", "flax", "fused")


def resolve_norm_impl(impl: str, backend: str | None = None) -> str:
    """``"auto"`` → ``"fused"`` on the CPU backend (measured faster there, ``docs/PROFILE.md``),
    ``"flax"`` elsewhere (GPU/TPU keep XLA's own fusions); other values pass through."""
    if impl not in NORM_IMPLS:
        raise ValueError(f"model.norm_impl must be one of {NORM_IMPLS}; got {impl!r}")
    if impl != "auto":
        return impl
    return "fused" if (backend or jax.default_backend()) == "cpu" else "flax"


def channel_sums(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """``Σ_R a`` over every axis but the last, in float32, for each array ``(..., C)`` → ``(C,)``.

    An NHWC array is summed as its ``(B·H, W·C)`` view along the leading axis, then the ``W``
    partial sums are folded: XLA:CPU vectorizes a reduction over the leading axis of a wide
    row-major matrix far better than one over ``(B, H, W)`` with ``C`` minor (1.6–5× measured)."""
    out = []
    for a in arrays:
        a = a.astype(jnp.float32)
        if a.ndim >= 3:
            w, c = a.shape[-2], a.shape[-1]
            out.append(jnp.sum(a.reshape(-1, w * c), axis=0).reshape(w, c).sum(axis=0))
        else:
            out.append(jnp.sum(a.reshape(-1, a.shape[-1]), axis=0))
    return tuple(out)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_train(
    x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BatchNorm (module docstring): ``x (..., C)``, ``scale, bias (C,)`` →
    ``(y (..., C) in x.dtype, μ (C,), σ² (C,))`` with float32 statistics."""
    return _bn_fwd(x, scale, bias, epsilon)[0]


def _bn_fwd(x, scale, bias, epsilon):
    n = x.size // x.shape[-1]
    s1, s2 = channel_sums(x, jnp.square(x.astype(jnp.float32)))
    mean = s1 / n
    var = jnp.maximum(0.0, s2 / n - jnp.square(mean))
    inv = lax.rsqrt(var + epsilon)
    y = (x.astype(jnp.float32) - mean) * (inv * scale) + bias
    return (y.astype(x.dtype), mean, var), (x, mean, inv, scale)


def _bn_bwd(epsilon, res, cts):
    del epsilon
    x, mean, inv, scale = res
    dy, dmean, dvar = cts
    n = x.size // x.shape[-1]
    xc = x.astype(jnp.float32) - mean
    xhat = xc * inv
    dy = dy.astype(jnp.float32)
    dbias, dscale = channel_sums(dy, dy * xhat)
    dx = (scale * inv / n) * (n * dy - dbias - xhat * dscale) + dmean / n + (2.0 / n) * dvar * xc
    return dx.astype(x.dtype), dscale.astype(scale.dtype), dbias.astype(scale.dtype)


batch_norm_train.defvjp(_bn_fwd, _bn_bwd)


class BatchNorm(nn.BatchNorm):
    """``flax.linen.BatchNorm`` plus ``impl`` (``"flax"`` | ``"fused"``, module docstring).

    The class keeps flax's name so that auto-named submodules (``BatchNorm_0`` …) and therefore
    checkpoints are the same for both implementations."""

    impl: str = "flax"

    @nn.compact
    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        use_ra = nn.merge_param(
            "use_running_average", self.use_running_average, use_running_average
        )
        if self.impl == "flax" or use_ra:
            return super().__call__(x, use_running_average, mask=mask)
        if self.impl != "fused":
            raise ValueError(f"BatchNorm impl must be 'flax' or 'fused'; got impl={self.impl!r}")
        if self.axis_name is not None or mask is not None or self.axis != -1:
            raise ValueError(
                "BatchNorm impl='fused' supports axis=-1 without axis_name or mask; got "
                f"axis={self.axis!r}, axis_name={self.axis_name!r}, mask given: {mask is not None}"
                " (use model.norm_impl='flax')"
            )
        if not (self.use_scale and self.use_bias and self.force_float32_reductions):
            raise ValueError(
                "BatchNorm impl='fused' needs use_scale, use_bias and float32 reductions"
            )
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
        scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c,), self.param_dtype)
        y, mean, var = batch_norm_train(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(self.dtype or jnp.result_type(x, scale))
