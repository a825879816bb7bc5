"""Fixed class prototypes for prototype-anchored learning (PAL / FNPAL).

A simplex equiangular tight frame (ETF) of C vectors in R^p is a matrix ``W (p, C)`` with
``WᵀW = s²·(C/(C−1)·I_C − 1/(C−1)·1 1ᵀ)``: equal norms s, pairwise cosine ``−1/(C−1)``, and
``W1 = 0``. It exists iff ``p ≥ C−1``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array

__all__ = ["simplex_etf", "etf_gram", "is_simplex_etf", "optimized_prototypes"]


def _check_classes_dim(num_classes: int, dim: int) -> None:
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got num_classes={num_classes!r}")
    if not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive integer; got dim={dim!r}")


def etf_gram(num_classes: int, scale: float = 1.0) -> np.ndarray:
    """The target Gram matrix ``scale²·(C/(C−1)·I − 1/(C−1)·11ᵀ)`` of shape ``(C, C)``."""
    c = num_classes
    return scale**2 * (c / (c - 1) * np.eye(c) - np.ones((c, c)) / (c - 1))


def simplex_etf(
    key: Array, num_classes: int, dim: int, scale: float = 1.0, dtype=jnp.float32
) -> Array:
    """Random simplex ETF ``W (dim, C)`` with ``WᵀW = scale²(C/(C−1)I − 11ᵀ/(C−1))``.

    Construction (valid for every ``dim ≥ C−1``, including ``dim = C−1``): the standard ETF
    ``M = √(C/(C−1))(I_C − 11ᵀ/C)`` has its columns in the (C−1)-dim subspace ``1⊥``. With an
    orthonormal basis ``V (C, C−1)`` of ``1⊥`` and a Haar-random partial orthogonal
    ``U (dim, C−1)`` (``UᵀU = I``), ``W = scale·U VᵀM`` satisfies
    ``WᵀW = scale²·MᵀVVᵀM = scale²·MᵀM`` because ``VVᵀ`` is the projector onto ``1⊥``.
    (The usual ``W = √(C/(C−1))U(I − 11ᵀ/C)`` with ``U (dim, C)`` needs ``dim ≥ C``.)

    The orthogonalization runs in float64 on the host (this is an initializer, not a hot path);
    the result is cast to ``dtype``.

    Raises:
      ValueError: ``num_classes < 2`` or ``dim < num_classes − 1``.
    """
    _check_classes_dim(num_classes, dim)
    c = int(num_classes)
    if dim < c - 1:
        raise ValueError(
            f"a simplex ETF of num_classes={c} vectors needs dim >= num_classes-1={c - 1}; "
            f"got dim={dim}"
        )
    m = math.sqrt(c / (c - 1)) * (np.eye(c) - np.ones((c, c)) / c)
    # Orthonormal basis of 1⊥: the last C-1 columns of a QR of [1, e_1, ..., e_{C-1}].
    q, _ = np.linalg.qr(np.concatenate([np.ones((c, 1)), np.eye(c)[:, : c - 1]], axis=1))
    v = q[:, 1:]
    g = np.asarray(jax.random.normal(key, (dim, c - 1), dtype=jnp.float32), dtype=np.float64)
    u, r = np.linalg.qr(g)
    u = u * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))  # Haar measure
    w = scale * (u @ (v.T @ m))
    return jnp.asarray(w, dtype=dtype)


def is_simplex_etf(W, atol: float = 1e-5, scale: float | None = None) -> bool:
    """Whether ``W (p, C)`` is a simplex ETF up to ``atol`` on its Gram matrix.

    ``scale=None`` infers the norm from the mean squared column norm. Host-side helper.
    """
    w = np.asarray(W, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"W must be (p, C) with C >= 2; got W.shape={w.shape}")
    gram = w.T @ w
    if scale is None:
        scale = math.sqrt(float(np.mean(np.diag(gram))))
    return bool(np.max(np.abs(gram - etf_gram(w.shape[1], scale))) <= atol)


def optimized_prototypes(
    key: Array,
    num_classes: int,
    dim: int,
    *,
    temperature_scale: float = 10.0,
    steps: int = 2000,
    learning_rate: float = 0.01,
) -> Array:
    """Unit-norm prototypes that maximize class separation (footnote 14, method (i)).

    Minimizes ``Σ_c log Σ_{j≠c} exp(s·ŵ_jᵀŵ_c)`` over ``ŵ_c = m_c/‖m_c‖`` with Adam (optax),
    starting from Gaussian ``m``. Works for any ``dim ≥ 1`` (for ``dim ≥ C−1`` the optimum is a
    simplex ETF; for smaller ``dim`` it spreads the prototypes, e.g. a regular polygon for
    ``dim = 2``). Returns ``(dim, C)`` with unit-norm columns.
    """
    _check_classes_dim(num_classes, dim)
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got steps={steps}")
    c = int(num_classes)
    off_diag = ~np.eye(c, dtype=bool)

    def objective(m):
        w = m / jnp.linalg.norm(m, axis=0, keepdims=True)
        logits = temperature_scale * (w.T @ w)
        logits = jnp.where(off_diag, logits, -jnp.inf)
        return jnp.sum(jax.nn.logsumexp(logits, axis=1))

    opt = optax.adam(learning_rate)
    m0 = jax.random.normal(key, (dim, c), dtype=jnp.float32)

    def step(carry, _):
        m, state = carry
        g = jax.grad(objective)(m)
        updates, state = opt.update(g, state, m)
        return (optax.apply_updates(m, updates), state), None

    (m, _), _ = jax.lax.scan(step, (m0, opt.init(m0)), None, length=steps)
    return m / jnp.linalg.norm(m, axis=0, keepdims=True)
