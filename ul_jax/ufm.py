"""The layer-peeled (unconstrained-features) model under the unhinged loss.

Gradient-descent simulators and exact closed forms for Section 3 of "On the Dynamics under the
Unhinged Loss and Beyond" (Theorems 2, 4, 6, 8, Corollaries 3, 5, eq. 19), following the forms
re-derived in ``shared/paper/NOTES.md``.

Conventions
-----------
* ``H`` is ``(p, C*N)`` with **class-major** columns: column ``c*N + i`` is example ``i`` of class
  ``c`` (labels ``repeat(arange(C), N)``, label matrix ``I_C ⊗ 1_Nᵀ``). ``W`` is ``(p, C)``,
  ``b`` is ``(C,)``. ``Z = (H, W)`` with the Frobenius inner product.
* Loss (eq. 2): ``L = 1/(CN) Σ_{i,c} [−(w_cᵀh_{i,c} + b_c) + γ Σ_{j≠c} (w_jᵀh_{i,c} + b_j)]``.
* ``M = ((1+γ) I_C⊗1_Nᵀ − γ 1_C 1_CNᵀ)/(CN)``; ``−∇_H L = W M`` (every column of class c equals
  ``g_c = ((1+γ) w_c − γ Σ_j w_j)/(CN)``), ``−∇_W L = H Mᵀ`` (class sums), ``−∇_b L = c₀ 1_C`` with
  ``c₀ = (1+γ−γC)/C``.
* Rates: ``lr``/``zeta`` are η₂ / ζ₂ = ∫η₂ (W and b); H uses η₁ = s·η₂ (ζ₁ = s·ζ₂).
* ``weight_decay = (λ₁, λ₂)`` is the gradient of ``λ₁/2‖H‖² + λ₂/2(‖W‖² + ‖b‖²)``, multiplied by
  the rate of the variable it acts on.

Eigen-structure of ``(H, W) ↦ (W M, H Mᵀ)`` (Lemma 9, Lemmas 15–17): ``E1±`` (eigenvalue ±σ₁,
``σ₁ = (1+γ)/(C√N)``, dim p(C−1)), ``E2±`` (±σ₂, ``σ₂ = (1+γ−γC)/(C√N)``, dim p), ``E3`` (0, dim
pC(N−1)). Every function below works on (p, C) class-level quantities and never forms a CN×CN
matrix or a dense ``M`` (except :func:`ntk_closed_form`/:func:`mse_ntk_rhs`, whose kernel ``K`` is
CN×CN by definition).

Paper result → function → test (``tests/test_ufm.py``)
-------------------------------------------------------
=====================================  ===============================  =======================================================
paper                                  function                         test
=====================================  ===============================  =======================================================
eq. (2) loss, its gradients            :func:`loss`, :func:`grads`      ``test_loss_matches_loop_evaluation_of_eq2``,
                                                                        ``test_grads_equal_autodiff``
Lemma 9, Lemmas 15–17 (eigenspaces)    :func:`eigenvalues`,             ``test_projections_are_the_orthogonal_eigenprojections``
                                       :func:`projections`
Theorem 2 (flow, no weight decay)      :func:`flow_closed_form`         ``test_theorem2_factors_cosh_sinh``,
                                                                        ``test_flow_closed_form_matches_rk4_constant_and_cosine_rates``
Theorem 4 (flow with weight decay)     :func:`flow_closed_form`         ``test_flow_closed_form_matches_matrix_exponential``
exact discrete GD (NOTES.md)           :func:`gd_closed_form`,          ``test_gd_closed_form_matches_iterated_gd``
                                       :func:`gradient_descent`
Corollary 3 (limit direction)          :func:`limit_direction`          ``test_corollary3_direction_converges_at_rate_kappa``,
                                                                        ``test_corollary3_beyond_threshold_ends_orthogonal``
Corollary 5 (critical weight decay)    :func:`critical_weight_decay`    ``test_corollary5_critical_weight_decay``
Theorem 6 (prototype-anchored)         :func:`anchored_closed_form`,    ``test_theorem6_anchored_flow_and_descent``,
                                       :func:`anchored_descent`         ``test_theorem6_limit_columns``
eq. (19), Theorem 7 (spherical)        :func:`spherical_descent`        ``test_spherical_step_is_eq19``,
                                                                        ``test_spherical_convergence_rescaled_faster_and_fixed_point``
Theorem 8, eq. (25) (NTK-invariant)    :func:`ntk_closed_form`,         ``test_theorem8_closed_form_matches_rk4``,
                                       :func:`mse_ntk_rhs`              ``test_mse_ntk_flow_is_nonlinear_unhinged_is_affine``
=====================================  ===============================  =======================================================

The deep-network counterpart of Theorem 6 (UL + PAL + EFR stationary features) is
:func:`ul_jax.objectives.efr_feature_target_scale` (``tests/test_objectives.py``).

All hyper-parameters (``gamma``, ``s``, ``weight_decay``, ``lr``/``lrs``, ``zeta``) may be traced
JAX scalars, so sweeps are a single ``jax.vmap``. Argument checks raise ``ValueError`` naming the
argument; value checks are skipped for tracers. float64 works when x64 is enabled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
ArrayLike = Any

__all__ = [
    "loss",
    "grads",
    "eigenvalues",
    "projections",
    "flow_closed_form",
    "gd_closed_form",
    "gradient_descent",
    "limit_direction",
    "critical_weight_decay",
    "anchored_closed_form",
    "anchored_descent",
    "spherical_descent",
    "ntk_closed_form",
    "mse_ntk_rhs",
]

# Below this value of d² the 2×2 exponential uses the even Taylor series of cosh d and sinh d / d
# (truncation error < d⁸/40320 ≈ 3e-21); this keeps values and gradients finite at d = 0.
_SMALL_D2 = 1e-4
# Inner-scan unroll factor of the GD simulators (about 2x faster on CPU than no unrolling).
_UNROLL = 4


# ----------------------------------------------------------------------------------------------
# Argument checking
# ----------------------------------------------------------------------------------------------


def _is_tracer(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _check_scalar(name: str, value: Any, *, positive: bool = False) -> None:
    """Raise ValueError unless ``value`` is 0-D and (when concrete) ≥ 0 (or > 0)."""
    if np.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {np.shape(value)}")
    if _is_tracer(value):
        return
    try:
        v = float(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name} must be a real scalar, got {value!r}") from e
    if positive and not v > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if not v >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _check_nonneg_array(name: str, value: Any, max_ndim: int) -> None:
    if np.ndim(value) > max_ndim:
        raise ValueError(f"{name} must have ndim <= {max_ndim}, got shape {np.shape(value)}")
    if _is_tracer(value):
        return
    arr = np.asarray(value, dtype=float)
    if not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _check_weight_decay(weight_decay: Any) -> tuple[Any, Any]:
    if not isinstance(weight_decay, (tuple, list)) or len(weight_decay) != 2:
        raise ValueError(f"weight_decay must be a pair (lambda1, lambda2), got {weight_decay!r}")
    _check_scalar("weight_decay[0] (lambda1)", weight_decay[0])
    _check_scalar("weight_decay[1] (lambda2)", weight_decay[1])
    return weight_decay[0], weight_decay[1]


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_model(
    H: Array,
    W: Array,
    b: Array | None = None,
    num_per_class: int | None = None,
    names: tuple[str, str, str] = ("H", "W", "b"),
) -> tuple[int, int, int]:
    """Validate static shapes of (H, W[, b]); return (p, C, N)."""
    nH, nW, nb = names
    if np.ndim(H) != 2:
        raise ValueError(f"{nH} must be 2-D (p, C*N), got shape {np.shape(H)}")
    if np.ndim(W) != 2:
        raise ValueError(f"{nW} must be 2-D (p, C), got shape {np.shape(W)}")
    p, cols = np.shape(H)
    pW, C = np.shape(W)
    if pW != p:
        raise ValueError(
            f"{nH} and {nW} must have the same number of rows p: "
            f"{nH}.shape={np.shape(H)}, {nW}.shape={np.shape(W)}"
        )
    if num_per_class is not None:
        N = _check_int("num_per_class", num_per_class, minimum=1)
        if cols % N != 0:
            raise ValueError(f"num_per_class={N} does not divide the {cols} columns of {nH}")
        if cols // N != C:
            raise ValueError(
                f"{nW} has {C} columns but {nH} has {cols} columns = "
                f"{cols // N} classes x num_per_class={N}; {nW} must have C columns"
            )
    else:
        if C < 1:
            raise ValueError(f"{nW} must have at least one column (class), got shape {np.shape(W)}")
        if cols % C != 0 or cols == 0:
            raise ValueError(
                f"the number of columns of {nH} ({cols}) must be a positive multiple "
                f"of C = {C} (the number of columns of {nW}); N = {cols}/{C}"
            )
        N = cols // C
    if b is not None and np.shape(b) != (C,):
        raise ValueError(f"{nb} must have shape (C,) = ({C},), got shape {np.shape(b)}")
    return p, C, N


def _float_dtype(*xs: Any) -> Any:
    dt = jnp.result_type(*xs)
    if not jnp.issubdtype(dt, jnp.floating):
        dt = jnp.result_type(float)
    return dt


# ----------------------------------------------------------------------------------------------
# Numerically safe scalar helpers
# ----------------------------------------------------------------------------------------------


def _expm1_ratio(x: Array) -> Array:
    """expm1(x)/x, equal to 1 at x = 0, with finite gradients everywhere."""
    small = jnp.abs(x) < 1e-5
    xs = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 + x / 2 + x * x / 6, jnp.expm1(xs) / xs)


def _log1p_ratio(x: Array) -> Array:
    """log1p(x)/x for x > −1, equal to 1 at x = 0, with finite gradients everywhere."""
    small = jnp.abs(x) < 1e-5
    xs = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - x / 2 + x * x / 3, jnp.log1p(xs) / xs)


def _log_abs_1p(x: Array) -> Array:
    """log|1 + x|, accurate for small x (log1p) and defined for x < −1."""
    pos = x > -1
    return jnp.where(
        pos, jnp.log1p(jnp.where(pos, x, 0.0)), jnp.log(jnp.abs(1.0 + jnp.where(pos, -2.0, x)))
    )


# ----------------------------------------------------------------------------------------------
# Structured class-level building blocks
# ----------------------------------------------------------------------------------------------


def _class_sums(H: Array, C: int, N: int) -> Array:
    """(p, C*N) -> (p, C): Σ_i h_{i,c} = H (I_C ⊗ 1_N)."""
    return H.reshape(H.shape[0], C, N).sum(-1)


def _repeat(X: Array, N: int) -> Array:
    """(..., p, C) -> (..., p, C*N): X ⊗ 1_Nᵀ (class-major)."""
    return jnp.repeat(X, N, axis=-1)


def _targets(W: Array, gamma: Array, C: int, N: int) -> Array:
    """(p, C) -> (p, C): g_c = ((1+γ) w_c − γ Σ_j w_j)/(CN), the columns of W M = −∇_H L."""
    return ((1 + gamma) * W - gamma * W.sum(-1, keepdims=True)) / (C * N)


def _neg_grad_W(S: Array, gamma: Array, C: int, N: int) -> Array:
    """Class sums S = H(I⊗1) (p, C) -> −∇_W L = H Mᵀ = ((1+γ) S − γ S 1 1ᵀ)/(CN)."""
    return ((1 + gamma) * S - gamma * S.sum(-1, keepdims=True)) / (C * N)


def _c0(gamma: Array, C: int) -> Array:
    """c₀ = (1+γ−γC)/C = −∂L/∂b_c."""
    return (1 + gamma - gamma * C) / C


def _loss_from_sums(S: Array, W: Array, b: Array, gamma: Array, C: int, N: int) -> Array:
    """Eq. 2 from the class sums S = H(I⊗1): [−(1+γ)(⟨W,S⟩ + NΣb) + γ((W1)·(S1) + CNΣb)]/(CN)."""
    pos = jnp.sum(W * S) + N * jnp.sum(b)
    tot = jnp.dot(W.sum(-1), S.sum(-1)) + C * N * jnp.sum(b)
    return (-(1 + gamma) * pos + gamma * tot) / (C * N)


# ----------------------------------------------------------------------------------------------
# Loss, gradients, eigenvalues, projections
# ----------------------------------------------------------------------------------------------


def loss(H: ArrayLike, W: ArrayLike, b: ArrayLike, gamma: ArrayLike) -> Array:
    """Unhinged loss of the layer-peeled model, eq. (2): mean over the C*N examples of
    ``−(w_yᵀh + b_y) + γ Σ_{j≠y}(w_jᵀh + b_j)``.

    Args: H (p, C*N) class-major, W (p, C), b (C,), gamma ≥ 0 scalar. Returns a scalar. O(pCN).
    """
    H, W, b = jnp.asarray(H), jnp.asarray(W), jnp.asarray(b)
    _, C, N = _check_model(H, W, b)
    _check_scalar("gamma", gamma)
    return _loss_from_sums(_class_sums(H, C, N), W, b, gamma, C, N)


def grads(H: ArrayLike, W: ArrayLike, b: ArrayLike, gamma: ArrayLike) -> tuple[Array, Array, Array]:
    """Gradients of :func:`loss` (eq. 4), structured in O(pCN).

    ``∇_H L = −W M`` (column of class c: ``−((1+γ)w_c − γΣ_j w_j)/(CN)``),
    ``∇_W L = −H Mᵀ = −((1+γ)H(I⊗1) − γ(H1)1ᵀ)/(CN)``, ``∇_b L = −c₀ 1``, ``c₀ = (1+γ−γC)/C``.

    Returns (gH (p, C*N), gW (p, C), gb (C,)).
    """
    H, W, b = jnp.asarray(H), jnp.asarray(W), jnp.asarray(b)
    _, C, N = _check_model(H, W, b)
    _check_scalar("gamma", gamma)
    dt = _float_dtype(H, W, b)
    gH = -_repeat(_targets(W, gamma, C, N), N).astype(dt)
    gW = -_neg_grad_W(_class_sums(H, C, N), gamma, C, N).astype(dt)
    gb = -jnp.full((C,), _c0(gamma, C), dtype=dt)
    return gH, gW, gb


def eigenvalues(C: int, N: int, gamma: ArrayLike) -> tuple[Array, Array]:
    """Eigenvalues of ``(H, W) ↦ (W M, H Mᵀ)`` (proof of Theorem 2, eq. 37):
    ``σ₁ = (1+γ)/(C√N)`` on E1± (as ±σ₁) and ``σ₂ = (1+γ−γC)/(C√N)`` on E2± (as ±σ₂).
    Returns (sigma1, sigma2); σ₂ < 0 for γ > 1/(C−1)."""
    C = _check_int("C", C, minimum=1)
    N = _check_int("N", N, minimum=1)
    _check_scalar("gamma", gamma)
    g = jnp.asarray(gamma, dtype=_float_dtype(gamma))
    r = 1.0 / (C * math.sqrt(N))
    return (1 + g) * r, (1 + g - g * C) * r


def _decompose(H: Array, W: Array, C: int, N: int) -> dict[str, Array]:
    """Class-level pieces of the orthogonal projections (Lemmas 15–17).

    Returns P± (p, C) with Π1±(H, W) = (±P±⊗1ᵀ/√N, P±), h± (p,) with Π2±(H, W) = (±h± 1ᵀ/√N,
    h± 1ᵀ), the class means (p, C) and H3 = H − class means (p, C*N) = H part of Π3."""
    rN = math.sqrt(N)
    S = _class_sums(H, C, N)
    means = S / N
    Sc = S - S.mean(-1, keepdims=True)  # H(I⊗1)(I − 11ᵀ/C)
    Wc = W - W.mean(-1, keepdims=True)  # W(I − 11ᵀ/C)
    Pp = 0.5 * (Sc / rN + Wc)
    Pm = 0.5 * (-Sc / rN + Wc)
    tH = S.sum(-1) / rN  # H 1_CN / √N
    tW = W.sum(-1)
    hp = (tH + tW) / (2 * C)
    hm = (-tH + tW) / (2 * C)
    H3 = H - _repeat(means, N)
    return dict(Pp=Pp, Pm=Pm, hp=hp, hm=hm, means=means, H3=H3)


def projections(H: ArrayLike, W: ArrayLike, num_per_class: int) -> dict[str, tuple[Array, Array]]:
    """Orthogonal projections of Z = (H, W) onto the eigenspaces E1+, E1−, E2+, E2−, E3
    (Lemmas 15–17; NOTES.md):

    * ``Π1±(H,W) = (±P⊗1_Nᵀ/√N, P)``, ``P = ½(±H(I_C⊗1_N)/√N + W)(I_C − 11ᵀ/C)``;
    * ``Π2±(H,W) = (±h 1_CNᵀ/√N, h 1_Cᵀ)``, ``h = (±H1_CN/√N + W1_C)/(2C)``;
    * ``Π3(H,W) = (H − class means repeated, 0)``.

    Args: H (p, C*N), W (p, C), num_per_class N. Returns ``{"E1+": (H_part, W_part), ...,
    "E3": (H_part, W_part)}`` with parts of shapes (p, C*N) and (p, C); they sum to (H, W).
    """
    H, W = jnp.asarray(H), jnp.asarray(W)
    _, _, N = _check_model(H, W, None, num_per_class)
    dt = _float_dtype(H, W)
    return _projections_core(H.astype(dt), W.astype(dt), N=N)


@partial(jax.jit, static_argnames=("N",))
def _projections_core(H: Array, W: Array, *, N: int) -> dict[str, tuple[Array, Array]]:
    C = W.shape[1]
    d = _decompose(H, W, C, N)
    rN = math.sqrt(N)
    ones = jnp.ones((1, C * N), d["hp"].dtype)
    onesC = jnp.ones((1, C), d["hp"].dtype)
    return {
        "E1+": (_repeat(d["Pp"], N) / rN, d["Pp"]),
        "E1-": (-_repeat(d["Pm"], N) / rN, d["Pm"]),
        "E2+": (d["hp"][:, None] * ones / rN, d["hp"][:, None] * onesC),
        "E2-": (-d["hm"][:, None] * ones / rN, d["hm"][:, None] * onesC),
        "E3": (d["H3"], jnp.zeros_like(W)),
    }


def _assemble_H(d: dict[str, Array], a: Array, e3: Array, N: int) -> Array:
    """H = Σ_ε a_ε·(H part of Π_ε Z₀) + e3·H3; ``a`` (..., 4) ordered (E1+, E1−, E2+, E2−)."""
    rN = math.sqrt(N)
    a = a[..., None, None]
    cls = (
        a[..., 0, :, :] * d["Pp"]
        - a[..., 1, :, :] * d["Pm"]
        + (a[..., 2, :, :] * d["hp"][:, None] - a[..., 3, :, :] * d["hm"][:, None])
    ) / rN
    return _repeat(cls, N) + e3[..., None, None] * d["H3"]


def _assemble_W(d: dict[str, Array], bc: Array) -> Array:
    """W = Σ_ε b_ε·(W part of Π_ε Z₀); ``bc`` (..., 4) ordered (E1+, E1−, E2+, E2−)."""
    bc = bc[..., None, None]
    return (
        bc[..., 0, :, :] * d["Pp"]
        + bc[..., 1, :, :] * d["Pm"]
        + bc[..., 2, :, :] * d["hp"][:, None]
        + bc[..., 3, :, :] * d["hm"][:, None]
    )


def _sigmas(gamma: Array, C: int, N: int) -> Array:
    r = 1.0 / (C * math.sqrt(N))
    s1 = (1 + gamma) * r
    s2 = (1 + gamma - gamma * C) * r
    return jnp.stack([s1, -s1, s2, -s2], axis=-1)


# ----------------------------------------------------------------------------------------------
# Gradient flow: Theorems 2 and 4
# ----------------------------------------------------------------------------------------------


def _flow_pair(sigma: Array, z1: Array, z2: Array, lam1: Array, lam2: Array) -> tuple[Array, Array]:
    """(a, b)ᵀ = exp(S)(1, 1)ᵀ, S = [[−λ₁ζ₁, σζ₁], [σζ₂, −λ₂ζ₂]] (Theorem 4), overflow-safe:
    ``exp(S) = e^{m+d}[(1+e^{−2d})/2·I + (1−e^{−2d})/(2d)·(S − mI)]`` with ``m = tr S/2`` and
    ``d² = ((S₁₁−S₂₂)/2)² + σ²ζ₁ζ₂``; for d² < 1e-4 the even series of cosh d and sinh d/d."""
    s11, s12, s21, s22 = -lam1 * z1, sigma * z1, sigma * z2, -lam2 * z2
    m = (s11 + s22) / 2
    delta = (s11 - s22) / 2
    d2 = delta * delta + s12 * s21
    small = d2 < _SMALL_D2
    d = jnp.sqrt(jnp.where(small, 1.0, d2))
    grow = jnp.exp(m + d)
    ch = (1 + jnp.exp(-2 * d)) / 2
    sh = -jnp.expm1(-2 * d) / (2 * d)
    a_big = grow * (ch + sh * (delta + s12))
    b_big = grow * (ch + sh * (s21 - delta))
    d2s = jnp.where(small, d2, 0.0)
    ch_s = 1 + d2s / 2 + d2s**2 / 24 + d2s**3 / 720
    sh_s = 1 + d2s / 6 + d2s**2 / 120 + d2s**3 / 5040
    em = jnp.exp(m)
    a_small = em * (ch_s + sh_s * (delta + s12))
    b_small = em * (ch_s + sh_s * (s21 - delta))
    return jnp.where(small, a_small, a_big), jnp.where(small, b_small, b_big)


@partial(jax.jit, static_argnames=("N",))
def _flow_core(H0, W0, b0, zeta, gamma, s, lam1, lam2, *, N):
    C = W0.shape[1]
    d = _decompose(H0, W0, C, N)
    z2 = zeta[..., None]
    a, bc = _flow_pair(_sigmas(gamma, C, N), s * z2, z2, lam1, lam2)
    e3 = jnp.exp(-lam1 * s * zeta)
    H = _assemble_H(d, a, e3, N)
    W = _assemble_W(d, bc)
    decay = jnp.exp(-lam2 * zeta)[..., None]
    drift = (zeta * _expm1_ratio(-lam2 * zeta))[..., None]  # (1 − e^{−λ₂ζ})/λ₂, = ζ at λ₂=0
    b = decay * b0 + drift * _c0(gamma, C)
    return H, W, b


def flow_closed_form(
    H0: ArrayLike,
    W0: ArrayLike,
    b0: ArrayLike,
    zeta: ArrayLike,
    *,
    gamma: ArrayLike,
    s: ArrayLike = 1.0,
    weight_decay: tuple[ArrayLike, ArrayLike] = (0.0, 0.0),
) -> tuple[Array, Array, Array]:
    """Exact gradient flow of eq. (5)/(12) at cumulative rate ζ₂ = ``zeta``: Theorem 2 (no weight
    decay, any s) and Theorem 4 (weight decay λ₁, λ₂).

    With ``H' = sη₂(WM − λ₁H)``, ``W' = η₂(HMᵀ − λ₂W)``, ``b' = η₂(c₀1 − λ₂b)`` and constant
    ratio s = η₁/η₂, the state depends on η₂(t) only through ζ₂ = ∫η₂. Per eigenvalue σ ∈ {±σ₁,
    ±σ₂}: ``(a, b)ᵀ = exp([[−λ₁ζ₁, σζ₁], [σζ₂, −λ₂ζ₂]])(1, 1)ᵀ`` (ζ₁ = sζ₂) multiplies the H part
    (a) and W part (b) of ``Π_σ Z₀``; E3 is multiplied by ``e^{−λ₁ζ₁}``. Without weight decay
    ``a = cosh u + √s sinh u``, ``b = cosh u + sinh u/√s``, ``u = σ√s ζ₂`` (Theorem 2). Bias:
    ``b = e^{−λ₂ζ₂} b₀ + c₀(1 − e^{−λ₂ζ₂})/λ₂ 1`` (``b₀ + c₀ζ₂1`` at λ₂ = 0).

    Args:
      H0 (p, C*N), W0 (p, C), b0 (C,); zeta: scalar or 1-D (T,) array of ζ₂ ≥ 0.
      gamma, s ≥ 0; weight_decay (λ₁, λ₂) ≥ 0 — all may be traced scalars.
    Returns (H, W, b) with shapes (p, C*N), (p, C), (C,), or with a leading T axis.
    """
    H0, W0, b0 = jnp.asarray(H0), jnp.asarray(W0), jnp.asarray(b0)
    _, _, N = _check_model(H0, W0, b0, names=("H0", "W0", "b0"))
    _check_nonneg_array("zeta", zeta, 1)
    _check_scalar("gamma", gamma)
    _check_scalar("s", s)
    lam1, lam2 = _check_weight_decay(weight_decay)
    dt = _float_dtype(H0, W0, b0)
    cast = lambda x: jnp.asarray(x, dt)
    return _flow_core(
        H0.astype(dt),
        W0.astype(dt),
        b0.astype(dt),
        cast(zeta),
        cast(gamma),
        cast(s),
        cast(lam1),
        cast(lam2),
        N=N,
    )


# ----------------------------------------------------------------------------------------------
# Exact discrete gradient descent
# ----------------------------------------------------------------------------------------------


def _prod_one_plus(etas: Array, count: Array, rate: Array) -> tuple[Array, Array]:
    """Π_k (1 + η_k·rate) as (log|·|, sign); etas (S,) repeated ``count`` times, rate (...)."""
    x = etas * rate[..., None]
    logabs = count * jnp.sum(_log_abs_1p(x), -1)
    nneg = count * jnp.sum((1 + x < 0).astype(etas.dtype), -1)
    sign = 1 - 2 * jnp.mod(nneg, 2)
    return logabs, sign


def _gd_pair(sigma, etas, count, s, lam1, lam2):
    """(a, b)ᵀ = Π_k T_k (1, 1)ᵀ with T_k = I + η_k A, A = [[−sλ₁, sσ], [σ, −λ₂]].

    The T_k commute; with A = mI + D, D² = d²I: ``Π T_k = (Λ₊+Λ₋)/2·I + (Λ₊−Λ₋)/(2d)·D`` with
    ``Λ± = Π(1 + η_k(m ± d))``. At d = 0 both coefficients are replaced by their expansions to
    first order in d² (exact values there, and correct derivatives), with ``Λ₀ = Π(1 + η_k m)``
    and ``S_j = Σ_k (η_k/(1 + η_k m))^j``."""
    m = -(s * lam1 + lam2) / 2
    delta = (lam2 - s * lam1) / 2
    d2 = delta * delta + s * sigma * sigma
    pos = d2 > 0
    d_safe = jnp.sqrt(jnp.where(pos, d2, 1.0))
    d = jnp.where(pos, d_safe, 0.0)
    lp, sp = _prod_one_plus(etas, count, m + d)
    lm, sm = _prod_one_plus(etas, count, m - d)
    Lp, Lm = sp * jnp.exp(lp), sm * jnp.exp(lm)
    p_gen = (Lp + Lm) / 2
    q_gen = (Lp - Lm) / (2 * d_safe)
    l0, s0 = _prod_one_plus(etas, count, m)
    lam0 = s0 * jnp.exp(l0)
    mu = 1 + etas * m[..., None]
    r = etas / jnp.where(mu == 0, 1.0, mu)
    S1, S2, S3 = (count * jnp.sum(r**j, -1) for j in (1, 2, 3))
    p_lim = lam0 * (1 + d2 * (S1 * S1 - S2) / 2)
    q_lim = lam0 * (S1 + d2 * (S1**3 / 6 + S3 / 3 - S1 * S2 / 2))
    P = jnp.where(pos, p_gen, p_lim)
    Q = jnp.where(pos, q_gen, q_lim)
    return P + Q * (delta + s * sigma), P + Q * (sigma - delta)


def _gd_scalar_decay(etas, count, lam):
    """(Π_k (1 − η_kλ), Σ_k η_k Π_{j>k}(1 − η_jλ)) — the E3/bias factors — stable at λ → 0."""
    l, sg = _prod_one_plus(etas, count, -lam)
    Q = sg * jnp.exp(l)
    mild = jnp.max(etas) * lam < 0.5
    lam_m = jnp.where(mild, lam, 0.0)
    L = count * jnp.sum(jnp.log1p(-etas * lam_m))
    s_mild = _expm1_ratio(L) * count * jnp.sum(etas * _log1p_ratio(-etas * lam_m))
    s_big = (1 - Q) / jnp.where(mild, 1.0, lam)
    return Q, jnp.where(mild, s_mild, s_big)


@partial(jax.jit, static_argnames=("N",))
def _gd_core(H0, W0, b0, etas, count, gamma, s, lam1, lam2, *, N):
    C = W0.shape[1]
    d = _decompose(H0, W0, C, N)
    a, bc = _gd_pair(_sigmas(gamma, C, N), etas, count, s, lam1, lam2)
    e3, _ = _gd_scalar_decay(s * etas, count, lam1)
    H = _assemble_H(d, a, e3, N)
    W = _assemble_W(d, bc)
    q, acc = _gd_scalar_decay(etas, count, lam2)
    b = q * b0 + acc * _c0(gamma, C)
    return H, W, b


def gd_closed_form(
    H0: ArrayLike,
    W0: ArrayLike,
    b0: ArrayLike,
    steps: int | ArrayLike | None,
    lr: ArrayLike,
    *,
    gamma: ArrayLike,
    s: ArrayLike = 1.0,
    weight_decay: tuple[ArrayLike, ArrayLike] = (0.0, 0.0),
) -> tuple[Array, Array, Array]:
    """Exact iterate of discrete gradient descent: the discrete-time counterpart of Theorems 2
    and 4 (NOTES.md, "Exact discrete gradient descent").

    GD ``H ← H + sη(WM − λ₁H)``, ``W ← W + η(HMᵀ − λ₂W)``, ``b ← b + η(c₀1 − λ₂b)``: each
    eigenvalue σ's coefficients evolve as ``(a, b) ← T(a, b)``, ``T = [[1−sηλ₁, sησ], [ησ, 1−ηλ₂]]``
    from (1, 1); E3 by ``(1 − sηλ₁)``; the bias as ``b ← (1−ηλ₂)b + ηc₀``. Different T's commute,
    so a varying step sequence is an exact product. Computed spectrally (O(1) for constant steps),
    overflow-safe up to the size of the result.

    Args:
      H0 (p, C*N), W0 (p, C), b0 (C,).
      steps: number of steps (int ≥ 0, may be traced) when ``lr`` is a scalar; ``None`` or
        ``len(lr)`` when ``lr`` is a 1-D array of per-step η₂.
      lr: η₂ (scalar) or per-step η₂ array (S,). gamma, s, weight_decay as in flow_closed_form.
    Returns (H, W, b) after the steps.
    """
    H0, W0, b0 = jnp.asarray(H0), jnp.asarray(W0), jnp.asarray(b0)
    _, _, N = _check_model(H0, W0, b0, names=("H0", "W0", "b0"))
    _check_nonneg_array("lr", lr, 1)
    _check_scalar("gamma", gamma)
    _check_scalar("s", s)
    lam1, lam2 = _check_weight_decay(weight_decay)
    dt = _float_dtype(H0, W0, b0)
    cast = lambda x: jnp.asarray(x, dt)
    if np.ndim(lr) == 1:
        if np.shape(lr)[0] == 0:
            raise ValueError("lr must not be an empty array")
        if steps is not None and (_is_tracer(steps) or int(steps) != np.shape(lr)[0]):
            raise ValueError(
                f"steps={steps!r} must be None or len(lr)={np.shape(lr)[0]} when lr is "
                "a per-step array"
            )
        etas, count = cast(lr), cast(1.0)
    else:
        if steps is None:
            raise ValueError("steps=None requires lr to be a 1-D array of per-step rates")
        if np.ndim(steps) != 0:
            raise ValueError(f"steps must be a scalar int, got shape {np.shape(steps)}")
        if not _is_tracer(steps):
            if isinstance(steps, bool) or float(steps) != int(steps) or int(steps) < 0:
                raise ValueError(f"steps must be a non-negative int, got {steps!r}")
        etas, count = cast(lr)[None], cast(steps)
    return _gd_core(
        H0.astype(dt),
        W0.astype(dt),
        b0.astype(dt),
        etas,
        count,
        cast(gamma),
        cast(s),
        cast(lam1),
        cast(lam2),
        N=N,
    )


# ----------------------------------------------------------------------------------------------
# Gradient-descent simulator
# ----------------------------------------------------------------------------------------------


def _split_lrs(lrs: Array, record_every: int | None) -> tuple[Array | None, Array]:
    """Split per-step rates into (n_records, record_every) blocks and a remainder."""
    if record_every is None:
        return None, lrs
    n = lrs.shape[0] // record_every
    return lrs[: n * record_every].reshape(n, record_every), lrs[n * record_every :]


def _scan_steps(step_fn, state, lrs):
    if lrs.shape[0] == 0:
        return state
    state, _ = lax.scan(
        lambda st, lr: (step_fn(st, lr), None), state, lrs, unroll=min(_UNROLL, lrs.shape[0])
    )
    return state


def _simulate(step_fn, metrics_fn, state, lrs, record_every):
    """Nested scan: outer over records, inner over ``record_every`` steps (memory O(records))."""
    blocks, rest = _split_lrs(lrs, record_every)
    if blocks is None:
        return _scan_steps(step_fn, state, rest), None
    m0 = metrics_fn(state)

    def outer(st, blk):
        st = _scan_steps(step_fn, st, blk)
        return st, metrics_fn(st)

    state, traj = lax.scan(outer, state, blocks)
    traj = jax.tree.map(lambda x0, xs: jnp.concatenate([x0[None], xs]), m0, traj)
    traj["step"] = jnp.arange(blocks.shape[0] + 1) * record_every
    state = _scan_steps(step_fn, state, rest)
    return state, traj


def _check_record_every(record_every: Any) -> int | None:
    if record_every is None:
        return None
    return _check_int("record_every", record_every, minimum=1)


def _check_metrics_fn(metrics_fn: Any) -> None:
    if metrics_fn is not None and not callable(metrics_fn):
        raise ValueError(f"metrics_fn must be callable, got {metrics_fn!r}")


def schedule_rates(schedule: Callable[[Array], Any], num_steps: int) -> Array:
    """The per-step rates ``η_k = schedule(k)``, k = 0..num_steps−1, of a step → rate function
    (an optax schedule, e.g. ``optax.cosine_decay_schedule(0.1, S)``) as the ``(S,)`` array the
    simulators and :func:`gd_closed_form` take (``lrs=``); every simulator also accepts the
    schedule itself with ``num_steps=S``."""
    n = _check_int("num_steps", num_steps, minimum=1)
    return jnp.asarray(jax.vmap(schedule)(jnp.arange(n)))


def _as_lrs(lrs: Any, num_steps: int | None) -> Any:
    """``lrs`` as an array: a schedule (callable) needs ``num_steps``; an array must not get it."""
    if callable(lrs):
        if num_steps is None:
            raise ValueError("lrs is a schedule (callable): pass num_steps=S as well")
        return schedule_rates(lrs, num_steps)
    if num_steps is not None and np.shape(lrs) != (num_steps,):
        raise ValueError(f"num_steps={num_steps} but lrs has shape {np.shape(lrs)}")
    return lrs


def _check_lrs(lrs: Any, name: str = "lrs") -> None:
    if np.ndim(lrs) != 1:
        raise ValueError(f"{name} must be a 1-D array of per-step rates, got shape {np.shape(lrs)}")
    _check_nonneg_array(name, lrs, 1)


def _gd_sim_impl(
    H0,
    W0,
    b0,
    lrs,
    gamma,
    s,
    lam1,
    lam2,
    ref_H,
    ref_W,
    *,
    N,
    record_every,
    has_ref,
    metrics_fn=None,
):
    C = W0.shape[1]
    means = _class_sums(H0, C, N) / N
    Hperp = H0 - _repeat(means, N)  # within-class part: only shrinks under GD
    perp_sq = jnp.sum(Hperp * Hperp)
    perp_norm = jnp.sqrt(perp_sq)
    labels = jnp.repeat(jnp.arange(C), N)
    c0 = _c0(gamma, C)
    if has_ref:
        # ‖Z/‖Z‖ − R̂‖² split over the orthogonal pieces (class means ⊗ 1ᵀ, within-class, W):
        # ‖aH⊥ − R⊥‖² = (a‖H⊥‖ − ‖R⊥‖)² + a‖H⊥‖‖R⊥‖·‖Ĥ⊥ − R̂⊥‖², a = c/‖Z‖ (no cancellation).
        ref_norm = jnp.sqrt(jnp.sum(ref_H**2) + jnp.sum(ref_W**2))
        rH, rW = ref_H / ref_norm, ref_W / ref_norm
        r_means = _class_sums(rH, C, N) / N
        r_perp = rH - _repeat(r_means, N)
        r_perp_norm = jnp.sqrt(jnp.sum(r_perp**2))
        unit = lambda x, n: x / jnp.where(n > 0, n, 1.0)
        perp_gap = (
            perp_norm
            * r_perp_norm
            * jnp.sum((unit(Hperp, perp_norm) - unit(r_perp, r_perp_norm)) ** 2)
        )

    # GD iterates are H_k = Hbar_k ⊗ 1ᵀ + c_k H⊥: the gradient depends on H only through its class
    # means (−∇_H L = g ⊗ 1ᵀ, −∇_W L = class sums), so this representation is exact.
    def step(state, eta):
        Hbar, W, b, c = state
        eta1 = s * eta
        G = _targets(W, gamma, C, N)  # −∇_H L per class (p, C)
        GW = _neg_grad_W(N * Hbar, gamma, C, N)  # −∇_W L (p, C)
        return (
            Hbar + eta1 * (G - lam1 * Hbar),
            W + eta * (GW - lam2 * W),
            b + eta * (c0 - lam2 * b),
            c * (1 - eta1 * lam1),
        )

    def metrics(state):
        Hbar, W, b, c = state
        if metrics_fn is not None:
            return dict(metrics_fn(_repeat(Hbar, N) + c * Hperp, W, b))
        # norms computed after rescaling by the largest entry, so they do not overflow early
        sc = jnp.maximum(
            jnp.maximum(jnp.max(jnp.abs(Hbar)), jnp.max(jnp.abs(W))),
            jnp.abs(c) * jnp.max(jnp.abs(Hperp)),
        )
        sc = jnp.where(sc > 0, sc, 1.0)
        hb, w, cs = Hbar / sc, W / sc, c / sc
        h_sq = N * jnp.sum(hb * hb) + cs * cs * perp_sq
        w_sq = jnp.sum(w * w)
        z = jnp.sqrt(h_sq + w_sq)
        logits = _repeat(W.T @ Hbar, N) + c * (W.T @ Hperp) + b[:, None]  # (C, C*N)
        out = {
            "loss": _loss_from_sums(N * Hbar, W, b, gamma, C, N),
            "accuracy": jnp.mean(jnp.argmax(logits, axis=0) == labels),
            "z_norm": sc * z,
            "h_norm": sc * jnp.sqrt(h_sq),
            "w_norm": sc * jnp.sqrt(w_sq),
        }
        if has_ref:
            a = cs / z
            d_sq = (
                N * jnp.sum((hb / z - r_means) ** 2)
                + (a * perp_norm - r_perp_norm) ** 2
                + a * perp_gap
                + jnp.sum((w / z - rW) ** 2)
            )
            out["dist_to_reference"] = jnp.sqrt(d_sq)
        return out

    state = (means, W0, b0, jnp.ones((), H0.dtype))
    (Hbar, W, b, c), traj = _simulate(step, metrics, state, lrs, record_every)
    return (_repeat(Hbar, N) + c * Hperp, W, b), traj


_gd_sim = jax.jit(_gd_sim_impl, static_argnames=("N", "record_every", "has_ref"))


def gradient_descent(
    H0: ArrayLike,
    W0: ArrayLike,
    b0: ArrayLike,
    lrs: ArrayLike | Callable[[Array], Any],
    *,
    gamma: ArrayLike,
    s: ArrayLike = 1.0,
    weight_decay: tuple[ArrayLike, ArrayLike] = (0.0, 0.0),
    record_every: int | None = None,
    reference: tuple[ArrayLike, ArrayLike] | None = None,
    metrics_fn: Callable[[Array, Array, Array], dict[str, Array]] | None = None,
    num_steps: int | None = None,
):
    """Plain gradient descent on eq. (2)/(11) with per-step rates (the discrete eq. 5/12).

    ``H ← H + sη_k(WM − λ₁H)``, ``W ← W + η_k(HMᵀ − λ₂W)``, ``b ← b + η_k(c₀1 − λ₂b)`` for
    k = 0..len(lrs)−1, iterated under ``lax.scan``. The gradients depend on H only through its
    class means, so the iterate is kept exactly as ``H_k = H̄_k ⊗ 1ᵀ + c_k H⊥`` (class means
    (p, C) + the shrinking within-class part of H0): O(pC) work per step, O(pCN) per record.

    Args:
      H0 (p, C*N), W0 (p, C), b0 (C,); lrs (S,) per-step η₂ (H uses s·η₂), or a schedule
        ``k → η₂(k)`` (e.g. optax's) with ``num_steps=S`` (:func:`schedule_rates`).
      gamma, s, weight_decay: as in :func:`flow_closed_form` (may be traced).
      record_every: None, or an int r: record metrics at steps 0, r, 2r, ... (nested scan, memory
        O(S/r)); trailing S mod r steps run after the last record.
      reference: optional (H_ref, W_ref); adds ``dist_to_reference = ‖Z/‖Z‖ − Z_ref/‖Z_ref‖‖``
        (e.g. Corollary 3's Z̄ from :func:`limit_direction`, Fig. 1c).
      metrics_fn: optional ``f(H, W, b) -> dict`` replacing the built-in metrics; it receives the
        materialized iterate (O(pCN) per record). Not jitted here (call from your own jit).
    Returns ``(H, W, b)`` after all steps, and if ``record_every`` is set also a dict of arrays
    (n_records + 1,): ``step``, ``loss`` (eq. 2), ``accuracy`` (argmax_c w_cᵀh + b_c),
    ``z_norm`` (√(‖H‖²+‖W‖²)), ``h_norm``, ``w_norm`` [, ``dist_to_reference``] — or ``step``
    and the keys of ``metrics_fn``.
    """
    lrs = _as_lrs(lrs, num_steps)  # an optax-style schedule → its (num_steps,) rates
    H0, W0, b0 = jnp.asarray(H0), jnp.asarray(W0), jnp.asarray(b0)
    _, _, N = _check_model(H0, W0, b0, names=("H0", "W0", "b0"))
    _check_lrs(lrs)
    _check_scalar("gamma", gamma)
    _check_scalar("s", s)
    lam1, lam2 = _check_weight_decay(weight_decay)
    record_every = _check_record_every(record_every)
    _check_metrics_fn(metrics_fn)
    if metrics_fn is not None and reference is not None:
        raise ValueError(
            "reference is only used by the built-in metrics; with metrics_fn, "
            "compute the distance inside metrics_fn"
        )
    dt = _float_dtype(H0, W0, b0)
    cast = lambda x: jnp.asarray(x, dt)
    if reference is not None:
        if not isinstance(reference, (tuple, list)) or len(reference) != 2:
            raise ValueError(f"reference must be a pair (H_ref, W_ref), got {type(reference)}")
        rH, rW = jnp.asarray(reference[0], dt), jnp.asarray(reference[1], dt)
        if rH.shape != H0.shape or rW.shape != W0.shape:
            raise ValueError(
                f"reference shapes {rH.shape}, {rW.shape} must equal H0 {H0.shape} "
                f"and W0 {W0.shape}"
            )
    else:
        rH, rW = jnp.zeros((), dt), jnp.zeros((), dt)
    args = (
        H0.astype(dt),
        W0.astype(dt),
        b0.astype(dt),
        cast(lrs),
        cast(gamma),
        cast(s),
        cast(lam1),
        cast(lam2),
        rH,
        rW,
    )
    if metrics_fn is None:
        final, traj = _gd_sim(*args, N=N, record_every=record_every, has_ref=reference is not None)
    else:
        final, traj = _gd_sim_impl(
            *args, N=N, record_every=record_every, has_ref=False, metrics_fn=metrics_fn
        )
    return final if record_every is None else (final, traj)


# ----------------------------------------------------------------------------------------------
# Corollaries 3 and 5
# ----------------------------------------------------------------------------------------------


def limit_direction(
    H0: ArrayLike,
    W0: ArrayLike,
    *,
    gamma: ArrayLike,
    s: ArrayLike = 1.0,
    e1_only: bool = False,
) -> tuple[Array, Array]:
    """Asymptotic direction of the unregularized flow/GD (Corollary 3), **not normalized**.

    Corollary 3 (0 < γ < 2/(C−2), or C = 2): ``Z(t)/‖Z(t)‖ → Z̄/‖Z̄‖`` with
    ``Z̄ = (½(1+√s)H₁₊ + ½(1−√s)H₁₋, (1+√s)/(2√s)·W₁₊ + (√s−1)/(2√s)·W₁₋)``,
    ``(H₁±, W₁±) = Π1± Z₀``; the direction error decays like ``exp(κ√(ζ₁ζ₂))``,
    ``κ = max{−γC, (C−2)γ − 2}/(C√N)``.

    In general this returns the leading term of ``e^{−ρ√(ζ₁ζ₂)} Z(t)``, ρ = max(σ₁, |σ₂|): every
    eigen-component with |σ| = ρ contributes ``((1+sgn σ·√s)/2 · H part, (1+sgn σ/√s)/2 · W part)``.
    That is Corollary 3's Z̄ for 0 < γ < 2/(C−2); at γ = 0 (σ₂ = σ₁, a tie) the E2± parts are
    added; for γ > 2/(C−2) only E2± remain (the flow ends orthogonal to Corollary 3's Z̄).
    With ``e1_only=True`` Corollary 3's Z̄ formula is returned for every γ (e.g. Fig. 1c).
    Requires s > 0. Returns (H̄ (p, C*N), W̄ (p, C)).
    """
    H0, W0 = jnp.asarray(H0), jnp.asarray(W0)
    _, _, N = _check_model(H0, W0, names=("H0", "W0", "b0"))
    _check_scalar("gamma", gamma)
    _check_scalar("s", s, positive=True)
    dt = _float_dtype(H0, W0)
    return _limit_core(
        H0.astype(dt),
        W0.astype(dt),
        jnp.asarray(gamma, dt),
        jnp.asarray(s, dt),
        N=N,
        e1_only=bool(e1_only),
    )


@partial(jax.jit, static_argnames=("N", "e1_only"))
def _limit_core(H0, W0, g, s, *, N, e1_only):
    C, dt = W0.shape[1], W0.dtype
    sig = _sigmas(g, C, N)
    rho = jnp.max(jnp.abs(sig), -1)
    rs = jnp.sqrt(s)
    sgn = jnp.sign(sig)
    ha = (1 + sgn * rs) / 2
    wb = (1 + sgn / rs) / 2
    if e1_only:
        keep = jnp.array([1.0, 1.0, 0.0, 0.0], dt)
    else:
        keep = (jnp.abs(sig) >= rho).astype(dt)
    d = _decompose(H0, W0, C, N)
    return _assemble_H(d, keep * ha, jnp.zeros((), dt), N), _assemble_W(d, keep * wb)


def critical_weight_decay(C: int, N: int, gamma: ArrayLike) -> Array:
    """Critical weight decay λ* (Corollary 5, λ₁ = λ₂ = λ, any s > 0).

    For eigenvalue σ the coefficients grow like ``exp((−λ(1+s)/2 + √(λ²(1−s)²/4 + sσ²))ζ₂)``,
    whose exponent is zero exactly at λ = |σ|. Hence ‖Z‖ → 0 for λ > λ*, → ∞ for λ < λ* (generic
    Z₀), with ``λ* = max(σ₁, |σ₂|)``; this equals Corollary 5's ``(1+γ)/(C√N)`` for
    0 ≤ γ ≤ 2/(C−2) and ``(γC − 1 − γ)/(C√N)`` beyond. Constant-step GD has the same threshold.
    """
    s1, s2 = eigenvalues(C, N, gamma)
    return jnp.maximum(s1, jnp.abs(s2))


# ----------------------------------------------------------------------------------------------
# Prototype-anchored case: Theorem 6
# ----------------------------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("N",))
def _anchored_core(H0, W, zeta, gamma, lam, *, N):
    C = W.shape[1]
    WM = _repeat(_targets(W, gamma, C, N), N)
    z = zeta[..., None, None]
    return jnp.exp(-lam * z) * H0 + (z * _expm1_ratio(-lam * z)) * WM


def anchored_closed_form(
    H0: ArrayLike,
    W: ArrayLike,
    zeta: ArrayLike,
    *,
    gamma: ArrayLike,
    weight_decay: ArrayLike,
) -> Array:
    """Theorem 6 (prototype-anchored flow, W fixed): ``H' = η(WM − λH)`` gives
    ``H(ζ) = e^{−λζ}H₀ + (1 − e^{−λζ})/λ · WM`` (``H₀ + ζWM`` at λ = 0), ζ = ∫η.

    The limit (λ > 0) has class-c columns ``(w_c − γΣ_{j≠c} w_j)/(λCN)``, i.e. ``(1+γ)w_c/(λCN)``
    for a simplex ETF. Args: H0 (p, C*N), W (p, C), zeta scalar or (T,), gamma ≥ 0,
    weight_decay = λ ≥ 0 (scalar, on H). Returns H (p, C*N) or (T, p, C*N).
    """
    H0, W = jnp.asarray(H0), jnp.asarray(W)
    _, _, N = _check_model(H0, W, names=("H0", "W", "b"))
    _check_nonneg_array("zeta", zeta, 1)
    _check_scalar("gamma", gamma)
    _check_scalar("weight_decay", weight_decay)
    dt = _float_dtype(H0, W)
    cast = lambda x: jnp.asarray(x, dt)
    return _anchored_core(
        H0.astype(dt), W.astype(dt), cast(zeta), cast(gamma), cast(weight_decay), N=N
    )


def _anchored_sim_impl(H0, W, lrs, gamma, lam, *, N, record_every, metrics_fn=None):
    C = W.shape[1]
    means = _class_sums(H0, C, N) / N
    Hperp = H0 - _repeat(means, N)
    perp_sq = jnp.sum(Hperp * Hperp)
    G = _targets(W, gamma, C, N)  # target columns of WM (p, C)
    labels = jnp.repeat(jnp.arange(C), N)
    b = jnp.zeros((C,), H0.dtype)
    WtPerp = W.T @ Hperp
    GtPerp = jnp.sum(_repeat(G, N) * Hperp, 0)  # ⟨g_c, h⊥_{i,c}⟩ per column
    g_norm = jnp.linalg.norm(G, axis=0)

    def step(state, eta):
        Hbar, c = state
        return Hbar + eta * (G - lam * Hbar), c * (1 - eta * lam)

    def metrics(state):
        Hbar, c = state
        if metrics_fn is not None:
            return dict(metrics_fn(_repeat(Hbar, N) + c * Hperp))
        logits = _repeat(W.T @ Hbar, N) + c * WtPerp
        cols_sq = (
            _repeat(jnp.sum(Hbar * Hbar, 0), N)
            + 2 * c * jnp.sum(_repeat(Hbar, N) * Hperp, 0)
            + c * c * jnp.sum(Hperp * Hperp, 0)
        )
        cols_dot = _repeat(jnp.sum(Hbar * G, 0), N) + c * GtPerp
        cos = cols_dot / (jnp.sqrt(cols_sq) * _repeat(g_norm, N))
        return {
            "loss": _loss_from_sums(N * Hbar, W, b, gamma, C, N),
            "accuracy": jnp.mean(jnp.argmax(logits, axis=0) == labels),
            "h_norm": jnp.sqrt(N * jnp.sum(Hbar * Hbar) + c * c * perp_sq),
            "mean_cos_to_target": jnp.mean(cos),
        }

    (Hbar, c), traj = _simulate(step, metrics, (means, jnp.ones((), H0.dtype)), lrs, record_every)
    return _repeat(Hbar, N) + c * Hperp, traj


_anchored_sim = jax.jit(_anchored_sim_impl, static_argnames=("N", "record_every"))


def anchored_descent(
    H0: ArrayLike,
    W: ArrayLike,
    lrs: ArrayLike | Callable[[Array], Any],
    *,
    gamma: ArrayLike,
    weight_decay: ArrayLike,
    record_every: int | None = None,
    metrics_fn: Callable[[Array], dict[str, Array]] | None = None,
    num_steps: int | None = None,
):
    """Gradient descent on the discrete eq. (16) with W fixed: ``H ← H + η_k(WM − λH)``.

    Exact iterate ``H_K = Q H₀ + (1 − Q)/λ · WM``, ``Q = Π(1 − η_kλ)``, is what this reproduces
    (kept as class means + shrinking within-class part, like :func:`gradient_descent`).
    Args: H0 (p, C*N), W (p, C), lrs (S,), gamma, weight_decay = λ (scalar). Returns H, or
    (H, traj) with ``step``, ``loss`` (b = 0), ``accuracy``, ``h_norm``, ``mean_cos_to_target``
    (cosine of h_{i,c} with its Theorem 6 target column g_c ∝ (1+γ)w_c − γΣ_j w_j), or ``step``
    and the keys of ``metrics_fn(H)`` if given (not jitted here).
    """
    lrs = _as_lrs(lrs, num_steps)  # an optax-style schedule → its (num_steps,) rates
    H0, W = jnp.asarray(H0), jnp.asarray(W)
    _, _, N = _check_model(H0, W, names=("H0", "W", "b"))
    _check_lrs(lrs)
    _check_scalar("gamma", gamma)
    _check_scalar("weight_decay", weight_decay)
    record_every = _check_record_every(record_every)
    dt = _float_dtype(H0, W)
    cast = lambda x: jnp.asarray(x, dt)
    _check_metrics_fn(metrics_fn)
    args = (H0.astype(dt), W.astype(dt), cast(lrs), cast(gamma), cast(weight_decay))
    if metrics_fn is None:
        H, traj = _anchored_sim(*args, N=N, record_every=record_every)
    else:
        H, traj = _anchored_sim_impl(*args, N=N, record_every=record_every, metrics_fn=metrics_fn)
    return H if record_every is None else (H, traj)


# ----------------------------------------------------------------------------------------------
# Spherical constrained case: eq. (19), Theorem 7
# ----------------------------------------------------------------------------------------------


def _spherical_sim_impl(H0, W, lrs, gamma, *, N, record_every, rescaled, metrics_fn=None):
    C = W.shape[1]
    G = _repeat(_targets(W, gamma, C, N), N)  # −∂L/∂ĥ per column (p, C*N)
    Ghat = G / jnp.linalg.norm(G, axis=0, keepdims=True)
    b = jnp.zeros((C,), H0.dtype)

    def step(H, eta):
        nrm = jnp.linalg.norm(H, axis=0, keepdims=True)
        hh = H / nrm
        tang = G - hh * jnp.sum(hh * G, 0, keepdims=True)  # (I − ĥĥᵀ) g
        return H + eta * (tang if rescaled else tang / nrm)

    def metrics(H):
        if metrics_fn is not None:
            return dict(metrics_fn(H))
        hh = H / jnp.linalg.norm(H, axis=0, keepdims=True)
        return {
            "loss": _loss_from_sums(_class_sums(hh, C, N), W, b, gamma, C, N),
            "mean_cos": jnp.mean(jnp.sum(hh * Ghat, 0)),
            "max_dist": jnp.max(jnp.linalg.norm(hh - Ghat, axis=0)),
            "h_norm": jnp.linalg.norm(H),
        }

    return _simulate(step, metrics, H0, lrs, record_every)


_spherical_sim = jax.jit(_spherical_sim_impl, static_argnames=("N", "record_every", "rescaled"))


def spherical_descent(
    H0: ArrayLike,
    W: ArrayLike,
    lrs: ArrayLike | Callable[[Array], Any],
    *,
    gamma: ArrayLike,
    rescaled: bool = False,
    record_every: int | None = None,
    metrics_fn: Callable[[Array], dict[str, Array]] | None = None,
    num_steps: int | None = None,
):
    """Gradient descent on normalized features with fixed prototypes, eq. (19) (Theorem 7).

    Each column is updated by the gradient of the unhinged loss of ĥ = h/‖h‖ (b = 0):
    ``h ← h + η (I − ĥĥᵀ) g_c / ‖h‖``, ``g_c = ((1+γ)w_c − γΣ_j w_j)/(CN)``; with W1 = 0 (as the
    paper assumes) ``g_c = (1+γ)w_c/(CN)``, exactly eq. (19). ``rescaled=True`` multiplies the step
    by ‖h‖ (rescaled learning rate, Section 4.3): ``h ← h + η(I − ĥĥᵀ)g_c``. Theorem 7 needs
    ``η(0)‖g_c‖ ≤ ‖h(0)‖`` (plain) or ``η(0)‖g_c‖ ≤ 1`` (rescaled); ``ĥ = −ĝ_c`` is a fixed point.

    Args: H0 (p, C*N), W (p, C), lrs (S,), gamma ≥ 0. Returns H, or (H, traj) with ``step``,
    ``loss`` (of Ĥ), ``mean_cos`` (mean cos(ĥ, ĝ_c)), ``max_dist`` (max ‖ĥ − ĝ_c‖), ``h_norm``,
    where ĝ_c = ŵ_c when W1 = 0 — or ``step`` and the keys of ``metrics_fn(H)`` if given (not
    jitted here).
    """
    lrs = _as_lrs(lrs, num_steps)  # an optax-style schedule → its (num_steps,) rates
    H0, W = jnp.asarray(H0), jnp.asarray(W)
    _, _, N = _check_model(H0, W, names=("H0", "W", "b"))
    _check_lrs(lrs)
    _check_scalar("gamma", gamma)
    record_every = _check_record_every(record_every)
    if not isinstance(rescaled, bool):
        raise ValueError(f"rescaled must be a bool, got {rescaled!r}")
    dt = _float_dtype(H0, W)
    _check_metrics_fn(metrics_fn)
    args = (H0.astype(dt), W.astype(dt), jnp.asarray(lrs, dt), jnp.asarray(gamma, dt))
    if metrics_fn is None:
        H, traj = _spherical_sim(*args, N=N, record_every=record_every, rescaled=rescaled)
    else:
        H, traj = _spherical_sim_impl(
            *args, N=N, record_every=record_every, rescaled=rescaled, metrics_fn=metrics_fn
        )
    return H if record_every is None else (H, traj)


# ----------------------------------------------------------------------------------------------
# NTK-invariant case: Theorem 8 and eq. (25)
# ----------------------------------------------------------------------------------------------


def _check_kernel(K: Any, CN: int) -> None:
    if np.shape(K) != (CN, CN):
        raise ValueError(f"K must be a (C*N, C*N) = ({CN}, {CN}) kernel, got shape {np.shape(K)}")
    if not _is_tracer(K):
        k = np.asarray(K, dtype=float)
        if not np.allclose(k, k.T, rtol=1e-6, atol=1e-12 * max(1.0, float(np.abs(k).max()))):
            raise ValueError("K must be symmetric (K = ∇ΘHᵀ∇ΘH)")


def _M_dense(gamma: Array, C: int, N: int, dtype) -> Array:
    Y = jnp.repeat(jnp.eye(C, dtype=dtype), N, axis=1)
    return ((1 + gamma) * Y - gamma) / (C * N)


@partial(jax.jit, static_argnames=("N",))
def _ntk_core(H0, W0, b0, K, t, gamma, eta, *, N):
    C = W0.shape[1]
    M = _M_dense(gamma, C, N, H0.dtype)  # (C, C*N)
    KMt = K @ M.T  # (C*N, C)
    X = eta * (M @ KMt)  # η M K Mᵀ, symmetric PSD (C, C)
    X = (X + X.T) / 2
    x, V = jnp.linalg.eigh(X)
    tt = t[..., None]
    y = tt * tt * x  # (..., C); y < 0 if K is indefinite
    small = jnp.abs(y) < _SMALL_D2
    r = jnp.sqrt(jnp.where(small, 1.0, jnp.abs(y)))
    ys = jnp.where(small, 1.0, y)
    pos = y > 0
    ch = jnp.where(pos, jnp.cosh(r), jnp.cos(r))  # cosh(√y), analytic in y
    shc = jnp.where(pos, jnp.sinh(r), jnp.sin(r)) / r  # sinh(√y)/√y
    f1 = jnp.where(small, 1 + y / 2 + y**2 / 24 + y**3 / 720, ch)
    sinhc = jnp.where(small, 1 + y / 6 + y**2 / 120 + y**3 / 5040, shc)
    coshm = jnp.where(small, 0.5 + y / 24 + y**2 / 720 + y**3 / 40320, (ch - 1) / ys)
    f2 = tt * sinhc  # sinh(t√x)/√x
    f3 = tt * tt * coshm  # (cosh(t√x) − 1)/x
    F = lambda f: jnp.einsum("ij,...j,kj->...ik", V, f, V)
    F1, F2, F3 = F(f1), F(f2), F(f3)
    HMt = H0 @ M.T  # (p, C)
    W = W0 @ F1 + HMt @ F2
    H = H0 + eta * ((HMt @ F3 + W0 @ F2) @ KMt.T)
    b = b0 + tt * _c0(gamma, C)
    return H, W, b


def ntk_closed_form(
    H0: ArrayLike,
    W0: ArrayLike,
    b0: ArrayLike,
    K: ArrayLike,
    t: ArrayLike,
    *,
    gamma: ArrayLike,
    eta: ArrayLike = 1.0,
) -> tuple[Array, Array, Array]:
    """Theorem 8: linearized (constant-NTK) flow under the unhinged loss, in closed form.

    ``H' = η(−∇_H L)K = η W M K``, ``W' = −∇_W L = H Mᵀ``, ``b' = c₀1``, with a constant PSD
    kernel ``K = ∇_ΘHᵀ∇_ΘH`` (C*N × C*N, symmetric; PSD in practice, not required) on the example
    axis. Each feature row (h, w) obeys the
    linear ODE ``(h, w)' = [[0, ηKMᵀ], [M, 0]](h, w)``; with ``X = ηMKMᵀ = V diag(x) Vᵀ``:
    ``w(t) = cosh(t√X)w₀ + sinh(t√X)/√X·Mh₀`` and
    ``h(t) = h₀ + ηKMᵀ[(cosh(t√X) − 1)/X·Mh₀ + sinh(t√X)/√X·w₀]`` (entire functions of X, so K
    may be singular). ``K = s·I`` recovers :func:`flow_closed_form` with ratio s at ζ₂ = t.

    Args: H0 (p, C*N), W0 (p, C), b0 (C,), K (C*N, C*N) symmetric, t ≥ 0 scalar or (T,),
    gamma ≥ 0, eta ≥ 0 (rate of H relative to W). Returns (H, W, b) [with leading T axis].
    """
    H0, W0, b0 = jnp.asarray(H0), jnp.asarray(W0), jnp.asarray(b0)
    _, C, N = _check_model(H0, W0, b0, names=("H0", "W0", "b0"))
    _check_kernel(K, C * N)
    _check_nonneg_array("t", t, 1)
    _check_scalar("gamma", gamma)
    _check_scalar("eta", eta)
    dt = _float_dtype(H0, W0, b0, K)
    cast = lambda x: jnp.asarray(x, dt)
    return _ntk_core(
        H0.astype(dt), W0.astype(dt), b0.astype(dt), cast(K), cast(t), cast(gamma), cast(eta), N=N
    )


def mse_ntk_rhs(
    H: ArrayLike,
    W: ArrayLike,
    b: ArrayLike,
    K: ArrayLike,
    *,
    eta: ArrayLike = 1.0,
) -> tuple[Array, Array, Array]:
    """Right-hand side of the constant-NTK MSE flow, eq. (25) — quadratic, hence non-linear.

    Loss ``L = 1/(2CN)‖WᵀH + b1ᵀ − I_C⊗1_Nᵀ‖²``; with the residual
    ``R = (WᵀH + b1ᵀ − Y)/(CN)`` (C, C*N): ``H' = −η W R K``, ``W' = −H Rᵀ``, ``b' = −R 1``.
    Returns (dH (p, C*N), dW (p, C), db (C,)).
    """
    H, W, b = jnp.asarray(H), jnp.asarray(W), jnp.asarray(b)
    _, C, N = _check_model(H, W, b)
    _check_kernel(K, C * N)
    _check_scalar("eta", eta)
    Y = jnp.repeat(jnp.eye(C, dtype=_float_dtype(H, W, b)), N, axis=1)
    R = (W.T @ H + b[:, None] - Y) / (C * N)
    return -eta * (W @ R) @ jnp.asarray(K), -H @ R.T, -R.sum(-1)
