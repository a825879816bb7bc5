"""Per-example classification losses of the paper and its baselines.

Every loss takes logits ``z`` of shape ``(..., C)`` (bias already added: ``z = Wᵀh + b``) and
integer labels of shape ``(...)`` and returns per-example losses of shape ``(...)``; the caller
reduces (mean over the batch, masking of padded examples, ...). All functions are pure and jit-able.

Label *values* cannot be range-checked inside ``jit`` (``take_along_axis`` silently clamps); check
them where data enters with :func:`validate_labels`.
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import core as _core

Array = jax.Array

__all__ = [
    "unhinged_loss",
    "cross_entropy_loss",
    "mse_loss",
    "multiclass_hinge_loss",
    "adjusted_unhinged_loss",
    "feature_norm_penalty",
    "validate_labels",
    "default_gamma",
    "lemma1_gamma_max",
    "unhinged_min_mean_loss",
]


# --------------------------------------------------------------------------------------------
# argument checks (static: shapes and concrete Python numbers; tracers are skipped)
# --------------------------------------------------------------------------------------------
def _is_concrete(x) -> bool:
    return not isinstance(x, _core.Tracer)


def _check_logits_labels(logits: Array, labels: Array) -> int:
    """Checks ``logits (..., C)`` against ``labels (...)``; returns C."""
    logits_shape = jnp.shape(logits)
    labels_shape = jnp.shape(labels)
    if len(logits_shape) < 1:
        raise ValueError(
            f"logits must have a trailing class axis (..., C); got logits.shape={logits_shape}"
        )
    if tuple(labels_shape) != tuple(logits_shape[:-1]):
        raise ValueError(
            f"labels.shape={tuple(labels_shape)} must equal logits.shape[:-1]="
            f"{tuple(logits_shape[:-1])} (logits.shape={tuple(logits_shape)}); "
            "logits need a class axis and one label per example"
        )
    if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
        raise ValueError(f"labels must be integers; got labels.dtype={jnp.asarray(labels).dtype}")
    num_classes = logits_shape[-1]
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes; got logits.shape[-1]={num_classes}")
    return num_classes


def default_gamma(num_classes: int) -> float:
    """The paper's default trade-off γ = 1/(C−1) (the unhinged version of the hinge loss)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got num_classes={num_classes}")
    return 1.0 / (num_classes - 1)


def _resolve_gamma(gamma, num_classes: int):
    if gamma is None:
        return default_gamma(num_classes)
    if _is_concrete(gamma):
        g = np.asarray(gamma)
        if g.ndim == 0 and not np.isfinite(g):
            raise ValueError(f"gamma must be finite; got gamma={gamma}")
        if np.any(g < 0):
            raise ValueError(f"gamma must be >= 0; got gamma={gamma}")
    return gamma


def _target_logit(logits: Array, labels: Array) -> Array:
    return jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------
def unhinged_loss(logits: Array, labels: Array, gamma: float | Array | None = None) -> Array:
    """Unhinged loss, eq. (1):  ``L_γ(z, y) = −z_y + γ Σ_{j≠y} z_j``.

    Args:
      logits: ``(..., C)`` with ``z_j = w_jᵀh + b_j`` (bias included).
      labels: ``(...)`` integers in ``[0, C)``.
      gamma: γ ≥ 0; ``None`` means the paper's default ``1/(C−1)``.

    Returns:
      ``(...)`` per-example losses. Linear in the logits, so ``∂L/∂h = −(w_y − γ Σ_{j≠y} w_j)``.
    """
    num_classes = _check_logits_labels(logits, labels)
    gamma = _resolve_gamma(gamma, num_classes)
    z_y = _target_logit(logits, labels)
    return -z_y + gamma * (jnp.sum(logits, axis=-1) - z_y)


def cross_entropy_loss(logits: Array, labels: Array) -> Array:
    """Softmax cross-entropy ``−z_y + log Σ_j exp z_j`` (optax), shapes as :func:`unhinged_loss`."""
    _check_logits_labels(logits, labels)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels.astype(jnp.int32))


def mse_loss(logits: Array, labels: Array) -> Array:
    """Squared error against one-hot targets, ``‖z − e_y‖²`` (the summand of eq. 25's
    ``1/(CN)‖WᵀH + b1ᵀ − I_C⊗1_Nᵀ‖²_F``; no factor ½)."""
    num_classes = _check_logits_labels(logits, labels)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    return jnp.sum(jnp.square(logits - onehot), axis=-1)


def multiclass_hinge_loss(logits: Array, labels: Array, margin: float = 1.0) -> Array:
    """Multi-class hinge loss (footnote 4): ``Σ_{j≠y} max{0, z_j − z_y + m}``."""
    num_classes = _check_logits_labels(logits, labels)
    if _is_concrete(margin) and np.any(np.asarray(margin) < 0):
        raise ValueError(f"margin must be >= 0; got margin={margin}")
    z_y = _target_logit(logits, labels)
    terms = jax.nn.relu(logits - z_y[..., None] + margin)
    not_target = 1.0 - jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    return jnp.sum(terms * not_target, axis=-1)


def _l2_normalize(x: Array, axis: int, eps: float = 1e-12) -> Array:
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True), eps**2))


def adjusted_unhinged_loss(
    features: Array,
    prototypes: Array,
    labels: Array,
    gamma: float | Array | None = None,
    epsilon: float = 0.1,
) -> Array:
    """Adjusted sample-margin unhinged loss of Appendix D.3 (eq. 104), on normalized vectors.

    With ``ĥ = h/‖h‖``, ``ŵ_j = w_j/‖w_j‖`` and ``c = ŵ_yᵀĥ``::

        L = L_γ(Ŵᵀĥ, y)                       if c > −1 + ε
        L = L_γ(Ŵᵀĥ, y) − (1+γ) δᵀĥ           if c ≤ −1 + ε

    where ``δ = stop_gradient((a − 1)(ŵ_y − c ĥ))`` with
    ``a = |c|·√(ε(2−ε)) / ((1−ε)·√(1−c²))`` is the vector that stretches the part of ŵ_y
    orthogonal to ĥ so that ``cos(ŵ_y + δ, ĥ) = −1 + ε`` exactly. For simplex-ETF prototypes
    (``Σ_j ŵ_j = 0``) the second branch is the paper's ``−(1+γ)(ŵ_y + δ)ᵀĥ``; writing it as
    ``L_γ − (1+γ)δᵀĥ`` keeps the loss continuous at the threshold for any prototypes
    (``a = 1``, ``δ = 0`` at ``c = −1 + ε``). Its feature gradient is the plain one with the
    tangential part multiplied by ``a ≥ 1``, which removes the vanishing gradient near
    ``ĥ = −ŵ_y``. Since δ ⟂ ĥ, the loss *value* equals ``L_γ(Ŵᵀĥ, y)`` in both branches: only
    the gradient is adjusted. At exactly ``c = −1`` the tangent is zero and δ is set to 0.

    Args:
      features: ``(..., p)``; prototypes: ``(p, C)``; labels: ``(...)``.
      gamma: γ ≥ 0 (``None``: ``1/(C−1)``); epsilon: threshold ``ε ∈ (0, 1)``.

    Returns:
      ``(...)`` per-example losses.
    """
    if jnp.ndim(prototypes) != 2:
        raise ValueError(f"prototypes must be (p, C); got prototypes.shape={jnp.shape(prototypes)}")
    p, num_classes = jnp.shape(prototypes)
    if jnp.ndim(features) < 1 or jnp.shape(features)[-1] != p:
        raise ValueError(
            f"features.shape={jnp.shape(features)} must end in p={p} "
            f"(prototypes.shape={jnp.shape(prototypes)})"
        )
    if _is_concrete(epsilon) and not 0.0 < float(epsilon) < 1.0:
        raise ValueError(f"epsilon must lie in (0, 1); got epsilon={epsilon}")
    h_hat = _l2_normalize(features, axis=-1)
    w_hat = _l2_normalize(prototypes, axis=0)
    logits = h_hat @ w_hat
    base = unhinged_loss(logits, labels, gamma)
    gamma = _resolve_gamma(gamma, num_classes)

    w_y = jnp.take(w_hat.T, labels.astype(jnp.int32), axis=0)  # (..., p)
    c = jnp.sum(w_y * h_hat, axis=-1)
    tangent = w_y - c[..., None] * h_hat
    sin_c = jnp.sqrt(jnp.maximum(1.0 - jnp.square(c), 0.0))
    active = (c <= -1.0 + epsilon) & (sin_c > 1e-12)
    safe_sin = jnp.where(active, sin_c, 1.0)
    a = jnp.abs(c) * math.sqrt(epsilon * (2.0 - epsilon)) / ((1.0 - epsilon) * safe_sin)
    delta = jax.lax.stop_gradient(jnp.where(active[..., None], (a - 1.0)[..., None] * tangent, 0.0))
    return base - (1.0 + gamma) * jnp.sum(delta * h_hat, axis=-1)


def feature_norm_penalty(
    features: Array,
    reduction: Literal["sum", "mean"] = "sum",
    mask: Array | None = None,
) -> Array:
    """Explicit feature regularization term (Sec. 4.2): ``Σ_i ‖f(x_i)‖²``.

    Args:
      features: ``(B, p)`` (any leading batch axes; the last axis is the feature axis).
      reduction: ``"sum"`` over examples (the paper's term; the caller multiplies by λ) or
        ``"mean"`` over the (unmasked) examples.
      mask: optional ``(B,)`` weights (1 = real example, 0 = padding).

    Returns:
      scalar.
    """
    if jnp.ndim(features) < 1:
        raise ValueError(f"features must have a feature axis; got shape {jnp.shape(features)}")
    sq = jnp.sum(jnp.square(features), axis=-1)
    if mask is not None:
        if jnp.shape(mask) != jnp.shape(sq):
            raise ValueError(
                f"mask.shape={jnp.shape(mask)} must equal features.shape[:-1]={jnp.shape(sq)}"
            )
        sq = sq * mask
        count = jnp.sum(mask)
    else:
        count = sq.size
    if reduction == "sum":
        return jnp.sum(sq)
    if reduction == "mean":
        return jnp.sum(sq) / jnp.maximum(count, 1)
    raise ValueError(f"reduction must be 'sum' or 'mean'; got reduction={reduction!r}")


def validate_labels(labels, num_classes: int, *, name: str = "labels") -> np.ndarray:
    """Host-side check that integer labels lie in ``[0, num_classes)``.

    Call it where data enters (the data pipeline): inside ``jit`` an out-of-range label is
    silently clamped by the gather. Returns the labels as an ``int32`` NumPy array.
    """
    arr = np.asarray(labels)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must be integers; got dtype {arr.dtype}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got num_classes={num_classes}")
    bad = (arr < 0) | (arr >= num_classes)
    if np.any(bad):
        idx = np.flatnonzero(bad.ravel())
        vals = arr.ravel()[idx[:5]].tolist()
        raise ValueError(
            f"{name} out of range [0, {num_classes}): {idx.size} bad value(s), e.g. {vals} "
            f"at flat index {idx[:5].tolist()}"
        )
    return arr.astype(np.int32)


# --------------------------------------------------------------------------------------------
# Lemma 1
# --------------------------------------------------------------------------------------------
def lemma1_gamma_max(num_classes: int) -> float:
    """Largest γ for which Lemma 1's neural-collapse bound holds: ``2/(C−2)`` (∞ for C = 2).

    Derivation (bias omitted). The mean loss is ``1/(CN) Σ_{i,c} v_cᵀh_{i,c}`` with
    ``v_c = −(1+γ)w_c + γ w̄``, ``w̄ = Σ_j w_j``. With ``‖h‖ ≤ E_H`` and Cauchy–Schwarz over c,
    ``L ≥ −E_H √(1/C Σ_c ‖v_c‖²)`` and
    ``Σ_c ‖v_c‖² = (1+γ)² Σ_c ‖w_c‖² + γ(Cγ − 2 − 2γ) ‖w̄‖²``.
    The ``‖w̄‖²`` coefficient is ≤ 0 iff ``γ(C−2) ≤ 2``; then ``L ≥ −(1+γ)E_W E_H``, with
    equality iff ``w̄ = 0``, all ``‖w_c‖ = E_W`` and ``h_{i,c} = E_H w_c/E_W`` (needs p ≥ C−1),
    i.e. neural collapse. Above the threshold the minimum is ``−(Cγ−1−γ)E_W E_H < −(1+γ)E_W E_H``,
    reached by *identical* prototypes (``w_c = E_W u``) and features ``h = −E_H u`` — no collapse
    to a simplex ETF. The paper states the lemma for every γ > 0; it needs ``γ ≤ 2/(C−2)``
    (strict for uniqueness), the same threshold as Corollary 3.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got num_classes={num_classes}")
    return math.inf if num_classes == 2 else 2.0 / (num_classes - 2)


def unhinged_min_mean_loss(
    num_classes: int, gamma: float, prototype_norm: float, feature_norm: float
) -> float:
    """Global minimum of the bias-free mean unhinged loss under ``‖w_c‖ ≤ E_W``, ``‖h‖ ≤ E_H``
    (p ≥ C−1): ``−E_W E_H · max(1+γ, Cγ−1−γ)``; equals Lemma 1's ``−(1+γ)E_W E_H`` iff
    ``γ ≤ 2/(C−2)`` (see :func:`lemma1_gamma_max`)."""
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0; got gamma={gamma}")
    return -prototype_norm * feature_norm * max(1.0 + gamma, num_classes * gamma - 1.0 - gamma)
