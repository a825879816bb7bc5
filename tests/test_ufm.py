"""Layer-peeled model (ul_jax.ufm): closed forms against brute-force integration and iteration.

Every reference here is independent of the code under test: the loss is evaluated by loops, the
gradients by autodiff of a dense per-example loss, the flows by fine-step RK4 of that autodiff
gradient field, GD by a plain autodiff loop, the eigenspaces from their definitions (eq. 8).
All tests run in float64 (autouse fixture) except the explicit float32 check.
"""

import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from ul_jax import ufm

P, C, N = 7, 5, 3  # small model: H (7, 15), W (7, 5)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


# ------------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------------


def _model(seed, p=P, c=C, n=N, scale=1.0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return (
        scale * jax.random.normal(k1, (p, c * n)),
        scale * jax.random.normal(k2, (p, c)),
        jax.random.normal(k3, (c,)),
    )


def _etf(seed, p=P, c=C):
    """Simplex ETF W = √(C/(C−1)) U (I − 11ᵀ/C), UᵀU = I (built here, not from ul_jax)."""
    U, _ = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(seed), (p, c)))
    return math.sqrt(c / (c - 1)) * U @ (jnp.eye(c) - jnp.ones((c, c)) / c)


def dense_loss(H, W, b, gamma):
    """Eq. (2) from the per-example logits (dense, for autodiff references)."""
    c = W.shape[1]
    n = H.shape[1] // c
    logits = W.T @ H + b[:, None]  # (C, C*N)
    onehot = jax.nn.one_hot(jnp.repeat(jnp.arange(c), n), c).T
    per = -(logits * onehot).sum(0) + gamma * (logits * (1 - onehot)).sum(0)
    return per.mean()


def np_loss(H, W, b, gamma):
    """Eq. (2) by explicit loops over examples and classes."""
    H, W, b = map(np.asarray, (H, W, b))
    c = W.shape[1]
    n = H.shape[1] // c
    tot = 0.0
    for cls in range(c):
        for i in range(n):
            h = H[:, cls * n + i]
            tot += -(W[:, cls] @ h + b[cls])
            tot += gamma * sum(W[:, j] @ h + b[j] for j in range(c) if j != cls)
    return tot / (c * n)


def rk4(f, y0, t0, t1, n):
    """Classical RK4 for a pytree state."""
    dt = (t1 - t0) / n

    def add(y, k, c):
        return jax.tree.map(lambda a, d: a + c * d, y, k)

    def body(i, y):
        t = t0 + i * dt
        k1 = f(t, y)
        k2 = f(t + dt / 2, add(y, k1, dt / 2))
        k3 = f(t + dt / 2, add(y, k2, dt / 2))
        k4 = f(t + dt, add(y, k3, dt))
        return jax.tree.map(
            lambda a, b1, b2, b3, b4: a + dt / 6 * (b1 + 2 * b2 + 2 * b3 + b4), y, k1, k2, k3, k4
        )

    return lax.fori_loop(0, n, body, y0)


def flow_rhs(gamma, lam1, lam2, eta_fn, s_fn):
    """Gradient-flow field of eq. (12) from autodiff of the dense loss."""

    def f(t, y):
        H, W, b = y
        gH, gW, gb = jax.grad(dense_loss, argnums=(0, 1, 2))(H, W, b, gamma)
        e2 = eta_fn(t)
        e1 = s_fn(t) * e2
        return (e1 * (-gH - lam1 * H), e2 * (-gW - lam2 * W), e2 * (-gb - lam2 * b))

    return f


def naive_gd(H, W, b, lrs, gamma, s=1.0, lam1=0.0, lam2=0.0):
    """Plain GD with autodiff gradients of the dense loss, full H."""

    def step(y, eta):
        H, W, b = y
        gH, gW, gb = jax.grad(dense_loss, argnums=(0, 1, 2))(H, W, b, gamma)
        return (
            H - s * eta * (gH + lam1 * H),
            W - eta * (gW + lam2 * W),
            b - eta * (gb + lam2 * b),
        ), None

    return lax.scan(step, (H, W, b), jnp.asarray(lrs))[0]


def expm_reference(f, y0, times):
    """States of the autonomous affine ODE y' = f(y) at ``times``, via scipy's expm of the dense
    (augmented) generator built from f applied to basis vectors."""
    import scipy.linalg

    shapes = [x.shape for x in y0]
    sizes = [x.size for x in y0]
    dim = sum(sizes)

    def unflat(v):
        parts, k = [], 0
        for shp, sz in zip(shapes, sizes):
            parts.append(v[k : k + sz].reshape(shp))
            k += sz
        return tuple(parts)

    def field(v):
        return jnp.concatenate([jnp.ravel(x) for x in f(0.0, unflat(v))])

    F0 = field(jnp.zeros(dim))
    G = jax.vmap(field)(jnp.eye(dim)).T - F0[:, None]  # f(v) = G v + F0
    A = np.zeros((dim + 1, dim + 1))
    A[:dim, :dim], A[:dim, dim] = np.asarray(G), np.asarray(F0)
    z0 = np.concatenate([np.concatenate([np.ravel(x) for x in y0]), [1.0]])
    return [unflat(jnp.asarray((scipy.linalg.expm(t * A) @ z0)[:dim])) for t in times]


def rel_err(x, y):
    """‖x − y‖/‖y‖ over pytrees."""
    xs, ys = jax.tree.leaves(x), jax.tree.leaves(y)
    num = sum(float(jnp.sum((a - c) ** 2)) for a, c in zip(xs, ys))
    den = sum(float(jnp.sum(c**2)) for c in ys)
    return math.sqrt(num / den)


def unit_dist(H, W, Hr, Wr):
    """‖Z/‖Z‖ − Zr/‖Zr‖‖ (Z = (H, W))."""
    z = jnp.sqrt(jnp.sum(H**2, (-2, -1)) + jnp.sum(W**2, (-2, -1)))
    zr = jnp.sqrt(jnp.sum(Hr**2) + jnp.sum(Wr**2))
    dH = H / z[..., None, None] - Hr / zr
    dW = W / z[..., None, None] - Wr / zr
    return jnp.sqrt(jnp.sum(dH**2, (-2, -1)) + jnp.sum(dW**2, (-2, -1)))


# ------------------------------------------------------------------------------------------------
# Loss, gradients
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.7])
def test_loss_matches_loop_evaluation_of_eq2(gamma):
    H, W, b = _model(0)
    np.testing.assert_allclose(float(ufm.loss(H, W, b, gamma)), np_loss(H, W, b, gamma), rtol=1e-12)
    np.testing.assert_allclose(
        float(dense_loss(H, W, b, gamma)), np_loss(H, W, b, gamma), rtol=1e-12
    )


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.7])
def test_grads_equal_autodiff(gamma):
    H, W, b = _model(1)
    ref = jax.grad(dense_loss, argnums=(0, 1, 2))(H, W, b, gamma)
    ref2 = jax.grad(ufm.loss, argnums=(0, 1, 2))(H, W, b, gamma)
    got = ufm.grads(H, W, b, gamma)
    for g, r, r2 in zip(got, ref, ref2):
        chex.assert_trees_all_close(g, r, rtol=1e-12, atol=1e-14)
        chex.assert_trees_all_close(g, r2, rtol=1e-12, atol=1e-14)
    # c0 = (1+γ−γC)/C = −∂L/∂b_c
    np.testing.assert_allclose(-got[2], (1 + gamma - gamma * C) / C, rtol=1e-14)


# ------------------------------------------------------------------------------------------------
# Eigenspaces and projections (Lemma 9, Lemmas 15–17)
# ------------------------------------------------------------------------------------------------


def _dense_operator(fn, p, c, n):
    """Matrix of a linear map on vec(H, W) built by applying it to the standard basis."""
    dim = p * c * n + p * c
    cols = []
    for k in range(dim):
        e = np.zeros(dim)
        e[k] = 1.0
        Hk = jnp.asarray(e[: p * c * n].reshape(p, c * n))
        Wk = jnp.asarray(e[p * c * n :].reshape(p, c))
        oH, oW = fn(Hk, Wk)
        cols.append(np.concatenate([np.ravel(oH), np.ravel(oW)]))
    return np.stack(cols, 1)


def _span_projector(vectors):
    """Orthogonal projector onto span(vectors) (columns), via SVD."""
    A = np.stack(vectors, 1)
    U, sv, _ = np.linalg.svd(A, full_matrices=False)
    U = U[:, sv > 1e-10 * sv.max()]
    return U @ U.T, U.shape[1]


def _definition_spans(p, c, n):
    """Spanning sets of E1±, E2±, E3 straight from eq. (8) (class-major columns)."""
    vec = lambda H, W: np.concatenate([np.ravel(H), np.ravel(W)])
    spans = {k: [] for k in ["E1+", "E1-", "E2+", "E2-", "E3"]}
    for i in range(p):
        for j in range(c):
            V = np.zeros((p, c))
            V[i, j] = 1.0
            V = V - V.mean(1, keepdims=True)  # W1 = 0
            for eps, key in [(1, "E1+"), (-1, "E1-")]:
                spans[key].append(vec(eps * np.repeat(V, n, 1) / math.sqrt(n), V))
        h = np.zeros(p)
        h[i] = 1.0
        for eps, key in [(1, "E2+"), (-1, "E2-")]:
            spans[key].append(
                vec(eps * np.outer(h, np.ones(c * n)) / math.sqrt(n), np.outer(h, np.ones(c)))
            )
        for j in range(c):
            for k in range(n):
                Hm = np.zeros((p, c * n))
                Hm[i, j * n + k] = 1.0
                Hm[i, j * n : (j + 1) * n] -= 1.0 / n  # class mean zero
                spans["E3"].append(vec(Hm, np.zeros((p, c))))
    return spans


@pytest.mark.parametrize("p,c,n,gamma", [(2, 3, 2, 0.3), (3, 4, 3, 1 / 3), (2, 3, 1, 0.0)])
def test_projections_are_the_orthogonal_eigenprojections(p, c, n, gamma):
    keys = ["E1+", "E1-", "E2+", "E2-", "E3"]
    mats = {
        k: _dense_operator(lambda H, W, k=k: ufm.projections(H, W, n)[k], p, c, n) for k in keys
    }
    dim = p * c * (n + 1)
    expected_rank = {
        "E1+": p * (c - 1),
        "E1-": p * (c - 1),
        "E2+": p,
        "E2-": p,
        "E3": p * c * (n - 1),
    }
    spans = _definition_spans(p, c, n)
    for k in keys:
        Pk = mats[k]
        np.testing.assert_allclose(Pk, Pk.T, atol=1e-13)  # symmetric
        np.testing.assert_allclose(Pk @ Pk, Pk, atol=1e-13)  # idempotent
        assert np.linalg.matrix_rank(Pk, tol=1e-8) == expected_rank[k]
        if expected_rank[k]:
            ref, r = _span_projector(spans[k])  # eq. (8) definition
            assert r == expected_rank[k]
            np.testing.assert_allclose(Pk, ref, atol=1e-12)
    for k1, k2 in itertools.combinations(keys, 2):
        np.testing.assert_allclose(mats[k1] @ mats[k2], 0.0, atol=1e-13)  # mutually orthogonal
    np.testing.assert_allclose(sum(mats.values()), np.eye(dim), atol=1e-13)

    # each is an eigenspace of (H, W) ↦ (WM, HMᵀ) = −(∇_H L, ∇_W L) with the stated eigenvalue
    b = jnp.zeros(c)

    def B(H, W):
        gH, gW, _ = jax.grad(dense_loss, argnums=(0, 1, 2))(H, W, b, gamma)
        return -gH, -gW

    Bm = _dense_operator(B, p, c, n)
    s1, s2 = (float(x) for x in ufm.eigenvalues(c, n, gamma))
    np.testing.assert_allclose(s1, (1 + gamma) / (c * math.sqrt(n)), rtol=1e-14)
    np.testing.assert_allclose(s2, (1 + gamma - gamma * c) / (c * math.sqrt(n)), rtol=1e-14)
    for k, sig in zip(keys, [s1, -s1, s2, -s2, 0.0]):
        np.testing.assert_allclose(Bm @ mats[k], sig * mats[k], atol=1e-13)


# ------------------------------------------------------------------------------------------------
# Theorems 2 and 4 against RK4
# ------------------------------------------------------------------------------------------------

ETA0 = 20.0  # ζ₂(1) = 20 for both schedules


def _eta(cosflag):
    return lambda t: ETA0 * (1 + cosflag * jnp.cos(jnp.pi * t))


def _zeta(cosflag, t):
    return ETA0 * (t + cosflag * jnp.sin(jnp.pi * t) / jnp.pi)


def test_flow_closed_form_matches_rk4_constant_and_cosine_rates():
    H0, W0, b0 = _model(2)
    grid = list(
        itertools.product(
            [0.5, 1.0, 4.0], [0.0, 1 / (C - 1), 0.05], [(0.0, 0.0), (0.3, 0.1)], [0.0, 1.0]
        )
    )
    s, g, lam, cosf = (jnp.array(v) for v in zip(*grid))
    lam = jnp.asarray(lam)

    def one(s, g, l1, l2, cosflag):
        f = flow_rhs(g, l1, l2, _eta(cosflag), lambda t: s)
        y_half = rk4(f, (H0, W0, b0), 0.0, 0.5, 1000)
        y_one = rk4(f, y_half, 0.5, 1.0, 1000)
        zetas = jnp.stack([_zeta(cosflag, 0.5), _zeta(cosflag, 1.0)])
        cf = ufm.flow_closed_form(H0, W0, b0, zetas, gamma=g, s=s, weight_decay=(l1, l2))
        return y_half, y_one, cf

    y_half, y_one, cf = jax.jit(jax.vmap(one))(s, g, lam[:, 0], lam[:, 1], cosf)
    for i, params in enumerate(grid):
        take = lambda t, j=None: jax.tree.map(lambda x: x[i] if j is None else x[i, j], t)
        e_half = rel_err(take(cf, 0), take(y_half))
        e_one = rel_err(take(cf, 1), take(y_one))
        assert e_half < 1e-9 and e_one < 1e-9, (params, e_half, e_one)  # RK4 error ~1e-11
        assert rel_err(take(y_one), (H0, W0, b0)) > 0.5, params  # the flow really moved
    # same ζ₂ at t = 1 for constant and cosine η₂: both flows end at the same state
    for i, j in [(k, k + 1) for k in range(0, len(grid), 2)]:
        assert (
            rel_err(jax.tree.map(lambda x: x[i], y_one), jax.tree.map(lambda x: x[j], y_one)) < 1e-9
        )


def test_theorem2_factors_cosh_sinh():
    """λ = 0 (Theorem 2): the component of Z₀ with eigenvalue σ has its H part scaled by
    cosh u + √s sinh u and its W part by cosh u + sinh u/√s, u = σ√sζ₂; E3 is unchanged.
    For s ≠ 1 the image leaves E_σ, but stays in E_σ ⊕ E_−σ, so compare the pair sums."""
    H0, W0, b0 = _model(3)
    g, s, zeta = 0.1, 2.5, 7.0
    rs = math.sqrt(s)
    H, W, b = ufm.flow_closed_form(H0, W0, b0, zeta, gamma=g, s=s)
    Pz, P0 = ufm.projections(H, W, N), ufm.projections(H0, W0, N)
    s1, s2 = (float(x) for x in ufm.eigenvalues(C, N, g))

    def factors(sig):
        u = sig * rs * zeta
        return math.cosh(u) + rs * math.sinh(u), math.cosh(u) + math.sinh(u) / rs

    for plus, minus, sig in [("E1+", "E1-", s1), ("E2+", "E2-", s2)]:
        (ap, bp), (am, bm) = factors(sig), factors(-sig)
        for part, (fp, fm) in [(0, (ap, am)), (1, (bp, bm))]:
            got = Pz[plus][part] + Pz[minus][part]
            ref = fp * P0[plus][part] + fm * P0[minus][part]
            np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(Pz["E3"][0], P0["E3"][0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(b, b0 + (1 + g - g * C) / C * zeta, rtol=1e-13)


@pytest.mark.parametrize(
    "s,g,wd",
    [
        (0.5, 0.0, (0.0, 0.0)),
        (1.0, 1 / (C - 1), (0.1, 0.1)),
        (4.0, 0.05, (0.3, 0.1)),
        (2.0, 1.0, (0.0, 0.4)),
    ],
)
def test_flow_closed_form_matches_matrix_exponential(s, g, wd):
    """With constant η₂ = 1 the flow is affine in (H, W, b): compare with scipy's expm of the
    dense generator (built from the autodiff field), for ζ from 1e-6 (series branch of the 2×2
    exponential) to 20, at 1e-12."""
    H0, W0, b0 = _model(34)
    f = flow_rhs(g, wd[0], wd[1], lambda t: 1.0, lambda t: s)
    zetas = np.concatenate([np.logspace(-6, 1.3, 12), [0.07, 0.08, 0.09]])
    refs = expm_reference(f, (H0, W0, b0), zetas)
    cf = ufm.flow_closed_form(H0, W0, b0, jnp.asarray(zetas), gamma=g, s=s, weight_decay=wd)
    for i, z in enumerate(zetas):
        assert rel_err(jax.tree.map(lambda x: x[i], cf), refs[i]) < 1e-12, z


def test_flow_is_function_of_zeta_only_negative_control_varying_ratio():
    """Constant s: exact. s(t) varying (η₁/η₂ not constant): the ζ₁, ζ₂ formula is NOT exact."""
    H0, W0, b0 = _model(4)
    g = 0.1
    eta2 = lambda t: 20.0

    def run(s_fn):
        return rk4(flow_rhs(g, 0.0, 0.0, eta2, s_fn), (H0, W0, b0), 0.0, 1.0, 2000)

    # s(t) = 0.5 + 3t: ζ₂ = 20, ζ₁ = 20·(0.5 + 1.5) = 40 → the formula's ratio is s = ζ₁/ζ₂ = 2
    varying = jax.jit(lambda: run(lambda t: 0.5 + 3.0 * t))()
    constant = jax.jit(lambda: run(lambda t: 2.0))()
    cf = ufm.flow_closed_form(H0, W0, b0, 20.0, gamma=g, s=2.0)
    assert rel_err(cf, constant) < 1e-8
    assert rel_err(cf, varying) > 1e-3


# ------------------------------------------------------------------------------------------------
# Exact discrete GD
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "g,s,wd",
    [
        (0.1, 1.0, (0.0, 0.0)),
        (0.05, 3.0, (0.2, 0.5)),
        (0.25, 0.5, (0.1, 0.0)),
        (1.0, 1.0, (0.4, 0.4)),
    ],
)
def test_gd_closed_form_matches_iterated_gd(g, s, wd):
    H0, W0, b0 = _model(5)
    steps = 200
    lrs_const = jnp.full((steps,), 0.7)
    lrs_var = 0.7 * (1 + jnp.cos(jnp.pi * jnp.arange(steps) / steps)) / 2 + 0.05
    for lrs in (lrs_const, lrs_var):
        sim = ufm.gradient_descent(H0, W0, b0, lrs, gamma=g, s=s, weight_decay=wd)
        cf_arr = ufm.gd_closed_form(H0, W0, b0, None, lrs, gamma=g, s=s, weight_decay=wd)
        assert rel_err(cf_arr, sim) < 1e-11
        assert rel_err(sim, (H0, W0, b0)) > 0.1
    cf_const = ufm.gd_closed_form(H0, W0, b0, steps, 0.7, gamma=g, s=s, weight_decay=wd)
    sim_const = ufm.gradient_descent(H0, W0, b0, lrs_const, gamma=g, s=s, weight_decay=wd)
    assert rel_err(cf_const, sim_const) < 1e-11
    # and gradient_descent is plain GD: a dense autodiff loop over the full H agrees
    naive = jax.jit(naive_gd)(H0, W0, b0, lrs_var, g, s, *wd)
    sim = ufm.gradient_descent(H0, W0, b0, lrs_var, gamma=g, s=s, weight_decay=wd)
    assert rel_err(sim, naive) < 1e-12


def test_gd_closed_form_large_steps_and_zero_steps():
    """Oscillating regime (negative eigenvalues of T, η large) and steps = 0 are exact too."""
    H0, W0, b0 = _model(6)
    for lr, wd in [(6.0, (0.0, 0.0)), (3.0, (0.5, 0.9))]:
        lrs = jnp.full((25,), lr)
        sim = ufm.gradient_descent(H0, W0, b0, lrs, gamma=0.3, s=2.0, weight_decay=wd)
        cf = ufm.gd_closed_form(H0, W0, b0, 25, lr, gamma=0.3, s=2.0, weight_decay=wd)
        assert rel_err(cf, sim) < 1e-11
    chex.assert_trees_all_close(
        ufm.gd_closed_form(H0, W0, b0, 0, 0.5, gamma=0.3), (H0, W0, b0), atol=1e-14
    )
    chex.assert_trees_all_close(
        ufm.flow_closed_form(H0, W0, b0, 0.0, gamma=0.3, s=3.0, weight_decay=(0.2, 0.1)),
        (H0, W0, b0),
        atol=1e-14,
    )


def test_gradient_descent_trajectory_metrics():
    H0, W0, b0 = _model(7)
    g, s, wd = 0.1, 2.0, (0.05, 0.02)
    lrs = jnp.linspace(0.9, 0.2, 53)  # not a multiple of record_every
    Hr, Wr = ufm.limit_direction(H0, W0, gamma=g, s=s)
    Hr = Hr + 0.3 * ufm.projections(_model(70)[0], W0, N)["E3"][0]  # within-class part ∦ H0's
    (H, W, b), tr = ufm.gradient_descent(
        H0, W0, b0, lrs, gamma=g, s=s, weight_decay=wd, record_every=5, reference=(Hr, Wr)
    )
    np.testing.assert_array_equal(tr["step"], np.arange(11) * 5)
    assert (
        rel_err((H, W, b), ufm.gd_closed_form(H0, W0, b0, None, lrs, gamma=g, s=s, weight_decay=wd))
        < 1e-10
    )
    y = jnp.repeat(jnp.arange(C), N)
    accs = []
    prefix = jax.jit(
        lambda k: ufm.gd_closed_form(  # zero rates after step k: T = I (one compile)
            H0,
            W0,
            b0,
            None,
            jnp.where(jnp.arange(lrs.shape[0]) < k, lrs, 0.0),
            gamma=g,
            s=s,
            weight_decay=wd,
        )
    )
    for r, k in enumerate(np.asarray(tr["step"])):
        Hk, Wk, bk = prefix(k)
        np.testing.assert_allclose(tr["loss"][r], np_loss(Hk, Wk, bk, g), rtol=1e-9, atol=1e-12)
        acc = float(jnp.mean(jnp.argmax(Wk.T @ Hk + bk[:, None], 0) == y))
        accs.append(acc)
        np.testing.assert_allclose(tr["accuracy"][r], acc)
        np.testing.assert_allclose(tr["h_norm"][r], jnp.linalg.norm(Hk), rtol=1e-10)
        np.testing.assert_allclose(tr["w_norm"][r], jnp.linalg.norm(Wk), rtol=1e-10)
        np.testing.assert_allclose(
            tr["z_norm"][r], jnp.sqrt(jnp.sum(Hk**2) + jnp.sum(Wk**2)), rtol=1e-10
        )
        np.testing.assert_allclose(
            tr["dist_to_reference"][r], unit_dist(Hk, Wk, Hr, Wr), rtol=1e-8, atol=1e-12
        )
    assert len(set(accs)) > 1  # accuracy actually changes


def test_metrics_fn_under_jit_and_vmap():
    """A user metrics_fn(H, W, b) closing over traced values (e.g. a γ-dependent reference) gets
    the materialized iterates; it agrees with the built-in metrics."""
    H0, W0, b0 = _model(35)
    lrs = jnp.full((30,), 0.4)
    gammas = jnp.array([0.1, 0.3])

    def one(g):
        Hr, Wr = ufm.limit_direction(H0, W0, gamma=g, s=2.0)

        def mfn(H, W, b):
            return {
                "loss": dense_loss(H, W, b, g),
                "dist": unit_dist(H, W, Hr, Wr),
                "w_norm": jnp.linalg.norm(W),
            }

        custom = ufm.gradient_descent(
            H0,
            W0,
            b0,
            lrs,
            gamma=g,
            s=2.0,
            weight_decay=(0.1, 0.0),
            record_every=10,
            metrics_fn=mfn,
        )
        builtin = ufm.gradient_descent(
            H0,
            W0,
            b0,
            lrs,
            gamma=g,
            s=2.0,
            weight_decay=(0.1, 0.0),
            record_every=10,
            reference=(Hr, Wr),
        )
        return custom, builtin

    (fc, tc), (fb, tb) = jax.jit(jax.vmap(one))(gammas)
    assert set(tc) == {"step", "loss", "dist", "w_norm"}
    chex.assert_trees_all_close(fc, fb, rtol=1e-14)
    np.testing.assert_array_equal(tc["step"], tb["step"])
    for kc, kb in [("loss", "loss"), ("dist", "dist_to_reference"), ("w_norm", "w_norm")]:
        np.testing.assert_allclose(tc[kc], tb[kb], rtol=1e-10, atol=1e-13)
    W = _etf(36)
    _, ts = ufm.spherical_descent(
        H0, W, lrs, gamma=0.2, record_every=10, metrics_fn=lambda H: {"h_norm": jnp.linalg.norm(H)}
    )
    _, tsb = ufm.spherical_descent(H0, W, lrs, gamma=0.2, record_every=10)
    np.testing.assert_allclose(ts["h_norm"], tsb["h_norm"], rtol=1e-13)
    _, ta = ufm.anchored_descent(
        H0,
        W,
        lrs,
        gamma=0.2,
        weight_decay=0.3,
        record_every=10,
        metrics_fn=lambda H: {"h_norm": jnp.linalg.norm(H)},
    )
    _, tab = ufm.anchored_descent(H0, W, lrs, gamma=0.2, weight_decay=0.3, record_every=10)
    np.testing.assert_allclose(ta["h_norm"], tab["h_norm"], rtol=1e-13)


# ------------------------------------------------------------------------------------------------
# Corollary 3
# ------------------------------------------------------------------------------------------------


def _kappa(g):
    return max(-g * C, (C - 2) * g - 2) / (C * math.sqrt(N))


@pytest.mark.parametrize("g,s", [(0.1, 1.0), (0.25, 0.5), (0.5, 3.0)])
def test_corollary3_direction_converges_at_rate_kappa(g, s):
    assert 0 < g < 2 / (C - 2)
    H0, W0, b0 = _model(8)
    Zb = ufm.limit_direction(H0, W0, gamma=g, s=s)
    Ze1 = ufm.limit_direction(H0, W0, gamma=g, s=s, e1_only=True)
    chex.assert_trees_all_close(Zb, Ze1, atol=1e-14)  # inside the range: Corollary 3's Z̄
    # Corollary 3's formula, written out from the projections
    Pj = ufm.projections(H0, W0, N)
    rs = math.sqrt(s)
    ref = (
        (1 + rs) / 2 * Pj["E1+"][0] + (1 - rs) / 2 * Pj["E1-"][0],
        (1 + rs) / (2 * rs) * Pj["E1+"][1] + (rs - 1) / (2 * rs) * Pj["E1-"][1],
    )
    chex.assert_trees_all_close(Zb, ref, atol=1e-14)
    k = _kappa(g)
    zetas = jnp.linspace(0.0, 22.0 / (abs(k) * rs), 23)  # κ√(ζ₁ζ₂) from 0 to −22
    H, W, _ = ufm.flow_closed_form(H0, W0, b0, zetas, gamma=g, s=s)
    dist = np.asarray(unit_dist(H, W, *Zb))
    assert np.all(np.diff(dist[2:]) < 0)
    assert dist[-1] < 1e-8 < dist[0]
    # decay rate: log-distance slope against √(ζ₁ζ₂) = √s ζ₂ equals κ
    slope = (math.log(dist[-1]) - math.log(dist[-6])) / (rs * float(zetas[-1] - zetas[-6]))
    np.testing.assert_allclose(slope, k, rtol=1e-3)


@pytest.mark.parametrize("g,s", [(1.0, 1.0), (2.0, 2.0)])
def test_corollary3_beyond_threshold_ends_orthogonal(g, s):
    assert g > 2 / (C - 2)
    H0, W0, b0 = _model(9)
    Z1 = ufm.limit_direction(H0, W0, gamma=g, s=s, e1_only=True)
    Zd = ufm.limit_direction(H0, W0, gamma=g, s=s)
    zmax = 120.0 / (abs(float(ufm.eigenvalues(C, N, g)[1])) * math.sqrt(s))  # ‖Z‖ ~ e^120
    H, W, _ = ufm.flow_closed_form(H0, W0, b0, jnp.array([zmax / 2, zmax]), gamma=g, s=s)
    d1 = np.asarray(unit_dist(H, W, *Z1))
    np.testing.assert_allclose(d1[-1], math.sqrt(2), atol=1e-8)
    assert abs(d1[0] - math.sqrt(2)) > abs(d1[-1] - math.sqrt(2))
    assert float(unit_dist(H[-1], W[-1], *Zd)) < 1e-8  # it converges to the E2 direction
    # and constant-step GD does the same (Fig. 1c, γ = 0.05 > 2/(C−2) there)
    _, tr = ufm.gradient_descent(
        H0, W0, b0, jnp.full((6000,), 0.1), gamma=g, s=s, record_every=1000, reference=Z1
    )
    np.testing.assert_allclose(tr["dist_to_reference"][-1], math.sqrt(2), atol=1e-6)


def test_corollary3_gamma_zero_tie_keeps_e2_part():
    H0, W0, b0 = _model(10)
    Zd = ufm.limit_direction(H0, W0, gamma=0.0)
    Z1 = ufm.limit_direction(H0, W0, gamma=0.0, e1_only=True)
    H, W, _ = ufm.flow_closed_form(H0, W0, b0, 400.0, gamma=0.0)
    assert float(unit_dist(H, W, *Zd)) < 1e-8
    assert float(unit_dist(H, W, *Z1)) > 1e-3


def test_corollary3_gd_rate_per_step():
    """Constant-step GD (s = 1): per-step log-decay of the distance is log(μ₂/μ₁),
    μ₁ = 1 + ησ₁, μ₂ = 1 + η·max(|σ₂|, 0) (T's two largest eigenvalues)."""
    H0, W0, b0 = _model(11)
    g, eta = 0.1, 0.25
    Zb = ufm.limit_direction(H0, W0, gamma=g)
    _, tr = ufm.gradient_descent(
        H0, W0, b0, jnp.full((1500,), eta), gamma=g, record_every=50, reference=Zb
    )
    dist = np.asarray(tr["dist_to_reference"])
    assert np.all(np.diff(dist[1:]) < 0) and dist[-1] < 1e-9
    s1, s2 = (float(x) for x in ufm.eigenvalues(C, N, g))
    pred = math.log((1 + eta * abs(s2)) / (1 + eta * s1))
    i, j = np.argmax(dist < 1e-4), np.argmax(dist < 1e-9)  # fit where the rate is asymptotic
    assert j - i >= 3
    np.testing.assert_allclose(
        (math.log(dist[j]) - math.log(dist[i])) / (50 * (j - i)), pred, rtol=1e-3
    )


# ------------------------------------------------------------------------------------------------
# Corollary 5
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [0.5, 1.0, 2.0])
def test_corollary5_critical_weight_decay(s):
    g = 0.1
    H0, W0, b0 = _model(12)
    lam_star = float(ufm.critical_weight_decay(C, N, g))
    np.testing.assert_allclose(lam_star, (1 + g) / (C * math.sqrt(N)), rtol=1e-14)
    z0 = math.sqrt(float(jnp.sum(H0**2) + jnp.sum(W0**2)))
    zetas = jnp.array([250.0, 500.0, 1000.0])

    def znorm(lam):
        H, W, _ = ufm.flow_closed_form(H0, W0, b0, zetas, gamma=g, s=s, weight_decay=(lam, lam))
        return np.sqrt(np.asarray(jnp.sum(H**2, (1, 2)) + jnp.sum(W**2, (1, 2))))

    above, below = znorm(1.1 * lam_star), znorm(0.9 * lam_star)
    assert np.all(np.diff(above) < 0) and above[-1] < 1e-3 * z0
    assert np.all(np.diff(below) > 0) and below[-1] > 1e3 * z0
    # at λ*: Z → (H₁₊ + rH₁₋, W₁₊ − rW₁₋), r = (1−s)/(1+s); b → c₀/λ*
    Pj = ufm.projections(H0, W0, N)
    r = (1 - s) / (1 + s)
    lim = (Pj["E1+"][0] + r * Pj["E1-"][0], Pj["E1+"][1] - r * Pj["E1-"][1])
    H, W, b = ufm.flow_closed_form(
        H0, W0, b0, 1000.0, gamma=g, s=s, weight_decay=(lam_star, lam_star)
    )
    assert rel_err((H, W), lim) < 1e-8
    np.testing.assert_allclose(b, (1 + g - g * C) / C / lam_star, rtol=1e-10)
    # overflow safety: at ζ = 2e4, cosh d and sinh d overflow (d ≫ 710) but e^{m+d} = O(1)
    Hf, Wf, bf = ufm.flow_closed_form(
        H0, W0, b0, 2e4, gamma=g, s=s, weight_decay=(lam_star, lam_star)
    )
    assert rel_err((Hf, Wf), lim) < 1e-8 and np.all(np.isfinite(np.asarray(bf)))
    # constant-step GD: same threshold and limit
    Hg, Wg, bg = ufm.gd_closed_form(
        H0, W0, b0, 4000, 0.25, gamma=g, s=s, weight_decay=(lam_star, lam_star)
    )
    assert rel_err((Hg, Wg), lim) < 1e-8
    np.testing.assert_allclose(bg, (1 + g - g * C) / C / lam_star, rtol=1e-10)


def test_critical_weight_decay_beyond_threshold_is_sigma2():
    """For γ > 2/(C−2) the E2 eigenvalue |σ₂| > σ₁ sets the threshold (outside Corollary 5)."""
    g = 1.0
    H0, W0, b0 = _model(13)
    lam_star = float(ufm.critical_weight_decay(C, N, g))
    np.testing.assert_allclose(lam_star, (g * C - 1 - g) / (C * math.sqrt(N)), rtol=1e-14)
    norms = {}
    for f in (0.9, 1.0, 1.1):
        H, W, _ = ufm.flow_closed_form(
            H0,
            W0,
            b0,
            jnp.array([300.0, 600.0]),
            gamma=g,
            weight_decay=(f * lam_star, f * lam_star),
        )
        norms[f] = np.sqrt(np.asarray(jnp.sum(H**2, (1, 2)) + jnp.sum(W**2, (1, 2))))
    assert norms[0.9][1] > 1e3 * norms[0.9][0]
    assert norms[1.1][1] < 1e-3 * norms[1.1][0]
    np.testing.assert_allclose(norms[1.0][1], norms[1.0][0], rtol=1e-8)
    assert norms[1.0][1] > 1e-2


# ------------------------------------------------------------------------------------------------
# Theorem 6 (prototype-anchored)
# ------------------------------------------------------------------------------------------------


def _np_WM(W, g, n):
    W = np.asarray(W)
    c = W.shape[1]
    Y = np.kron(np.eye(c), np.ones((1, n)))
    M = ((1 + g) * Y - g * np.ones((c, c * n))) / (c * n)
    return W @ M


@pytest.mark.parametrize("lam", [0.0, 0.5])
def test_theorem6_anchored_flow_and_descent(lam):
    H0, W, _ = _model(14)
    g = 0.2
    WM = jnp.asarray(_np_WM(W, g, N))

    def f(t, H):
        gH = jax.grad(dense_loss)(H, W, jnp.zeros(C), g)
        return _eta(1.0)(t) * (-gH - lam * H)

    ref = jax.jit(lambda: rk4(f, H0, 0.0, 1.0, 2000))()
    cf = ufm.anchored_closed_form(H0, W, ETA0, gamma=g, weight_decay=lam)
    assert rel_err(cf, ref) < 1e-8
    # exact discrete iterate: H_K = Q H0 + S·WM, Q = Π(1−η_kλ), S = Σ_k η_k Π_{j>k}(1−η_jλ)
    lrs = np.linspace(1.0, 0.1, 60)
    Q, S = 1.0, 0.0
    for eta in lrs:
        Q, S = Q * (1 - eta * lam), S * (1 - eta * lam) + eta
    got, tr = ufm.anchored_descent(
        H0, W, jnp.asarray(lrs), gamma=g, weight_decay=lam, record_every=30
    )
    assert rel_err(got, Q * H0 + S * WM) < 1e-12
    # recorded metrics at steps 0, 30, 60 against direct evaluation of the exact iterates
    for r, k in enumerate([0, 30, 60]):
        Qk, Sk = 1.0, 0.0
        for eta in lrs[:k]:
            Qk, Sk = Qk * (1 - eta * lam), Sk * (1 - eta * lam) + eta
        Hk = np.asarray(Qk * H0 + Sk * WM)
        np.testing.assert_allclose(tr["loss"][r], np_loss(Hk, W, np.zeros(C), g), rtol=1e-10)
        np.testing.assert_allclose(tr["h_norm"][r], np.linalg.norm(Hk), rtol=1e-12)
        cos = [
            Hk[:, j] @ WM[:, j] / (np.linalg.norm(Hk[:, j]) * np.linalg.norm(WM[:, j]))
            for j in range(C * N)
        ]
        np.testing.assert_allclose(tr["mean_cos_to_target"][r], np.mean(cos), rtol=1e-12)
        pred = np.argmax(np.asarray(W).T @ Hk, 0)
        np.testing.assert_allclose(tr["accuracy"][r], np.mean(pred == np.repeat(np.arange(C), N)))


def test_theorem6_limit_columns():
    g, lam = 0.3, 0.4
    H0, W, _ = _model(15)
    H = np.asarray(ufm.anchored_closed_form(H0, W, 200.0, gamma=g, weight_decay=lam))
    Wn = np.asarray(W)
    for c in range(C):
        target = (Wn[:, c] - g * sum(Wn[:, j] for j in range(C) if j != c)) / (lam * C * N)
        for i in range(N):
            np.testing.assert_allclose(H[:, c * N + i], target, rtol=1e-10, atol=1e-12)
    We = _etf(16)
    He = np.asarray(ufm.anchored_closed_form(H0, We, 200.0, gamma=g, weight_decay=lam))
    np.testing.assert_allclose(
        He, np.repeat((1 + g) * np.asarray(We) / (lam * C * N), N, 1), rtol=1e-10, atol=1e-12
    )
    _, tr = ufm.anchored_descent(
        H0, We, jnp.full((2000,), 0.5), gamma=g, weight_decay=lam, record_every=500
    )
    assert tr["mean_cos_to_target"][0] < 0.9 and tr["mean_cos_to_target"][-1] > 1 - 1e-12
    assert tr["accuracy"][-1] == 1.0


# ------------------------------------------------------------------------------------------------
# Spherical case (eq. 19, Theorem 7)
# ------------------------------------------------------------------------------------------------


def test_spherical_step_is_eq19():
    g, eta = 0.3, 0.8
    H0, _, _ = _model(17)
    W = _etf(18)
    H1 = np.asarray(ufm.spherical_descent(H0, W, jnp.array([eta]), gamma=g))
    H0n, Wn = np.asarray(H0), np.asarray(W)
    for c in range(C):
        for i in range(N):
            h = H0n[:, c * N + i]
            hh = h / np.linalg.norm(h)
            upd = (
                (1 + g)
                * eta
                / (C * N)
                * (np.eye(P) - np.outer(hh, hh))
                @ Wn[:, c]
                / np.linalg.norm(h)
            )
            np.testing.assert_allclose(H1[:, c * N + i], h + upd, rtol=1e-13)
    H1r = np.asarray(ufm.spherical_descent(H0, W, jnp.array([eta]), gamma=g, rescaled=True))
    h = H0n[:, 0]
    hh = h / np.linalg.norm(h)
    np.testing.assert_allclose(
        H1r[:, 0],
        h + (1 + g) * eta / (C * N) * (np.eye(P) - np.outer(hh, hh)) @ Wn[:, 0],
        rtol=1e-13,
    )


def test_spherical_convergence_rescaled_faster_and_fixed_point():
    g = 0.25
    H0, _, _ = _model(19)
    W = _etf(20)
    gnorm = (1 + g) / (C * N)  # ‖g_c‖ for an ETF (‖w_c‖ = 1)
    eta = 0.5 / gnorm  # η‖g_c‖ = 0.5 ≤ min ‖h(0)‖ and ≤ 1 (Theorem 7)
    assert 0.5 <= float(jnp.min(jnp.linalg.norm(H0, axis=0)))
    lrs = jnp.full((3000,), eta)
    _, tr = ufm.spherical_descent(H0, W, lrs, gamma=g, record_every=10)
    _, trr = ufm.spherical_descent(H0, W, lrs, gamma=g, rescaled=True, record_every=10)
    for t in (tr, trr):
        md = np.asarray(t["max_dist"])
        assert np.all(np.diff(md) <= 1e-15)  # monotone (proof of Theorem 7)
        assert md[0] > 0.5 and md[-1] < 1e-9
        assert np.all(np.diff(np.asarray(t["mean_cos"])) >= -1e-15)
        assert np.all(np.diff(np.asarray(t["h_norm"])) >= -1e-12)  # ‖h‖ non-decreasing
    # recorded metrics against direct evaluation at step 20
    H20 = np.asarray(ufm.spherical_descent(H0, W, lrs[:20], gamma=g))
    Hh = H20 / np.linalg.norm(H20, axis=0)
    What = np.repeat(np.asarray(W) / np.linalg.norm(np.asarray(W), axis=0), N, 1)
    np.testing.assert_allclose(tr["mean_cos"][2], np.mean(np.sum(Hh * What, 0)), rtol=1e-12)
    np.testing.assert_allclose(
        tr["max_dist"][2], np.max(np.linalg.norm(Hh - What, axis=0)), rtol=1e-12
    )
    np.testing.assert_allclose(tr["h_norm"][2], np.linalg.norm(H20), rtol=1e-12)
    np.testing.assert_allclose(tr["loss"][2], np_loss(Hh, W, np.zeros(C), g), rtol=1e-12)
    first = lambda t: int(np.argmax(np.asarray(t["max_dist"]) < 1e-6))
    assert first(trr) < first(tr) / 1.5, (first(trr), first(tr))
    # ĥ = −ŵ_c is a fixed point: those columns do not move, the others do. (It is unstable:
    # rounding errors of 1e-16 grow by ≤ (1 + η‖g_c‖/‖h‖) per step, so only 20 steps.)
    Hfix = H0.at[:, 0].set(-2.0 * W[:, 0]).at[:, N].set(-1.0 * W[:, 1])
    Hend = ufm.spherical_descent(Hfix, W, lrs[:20], gamma=g)
    np.testing.assert_allclose(Hend[:, [0, N]], Hfix[:, [0, N]], atol=1e-12)
    assert float(jnp.min(jnp.linalg.norm(Hend[:, 1:N] - Hfix[:, 1:N], axis=0))) > 1e-2


# ------------------------------------------------------------------------------------------------
# Theorem 8 (constant NTK) and eq. (25)
# ------------------------------------------------------------------------------------------------


def _kernel(seed, rank, indefinite=False):
    J = jax.random.normal(jax.random.PRNGKey(seed), (C * N, rank)) / math.sqrt(rank)
    K = J @ J.T
    if indefinite:
        K = K - 0.6 * jnp.eye(C * N)
    return K


def unhinged_ntk_rhs(g, K, eta):
    def f(t, y):
        H, W, b = y
        gH, gW, gb = jax.grad(dense_loss, argnums=(0, 1, 2))(H, W, b, g)
        return (eta * (-gH) @ K, -gW, -gb)

    return f


@pytest.mark.parametrize("g,rank,indefinite", [(0.1, 6, False), (0.5, 20, False), (0.2, 8, True)])
def test_theorem8_closed_form_matches_rk4(g, rank, indefinite):
    H0, W0, b0 = _model(21)
    K = _kernel(22, rank, indefinite)
    eta = 0.7
    ts = jnp.array([0.0, 3.0, 6.0])
    cf = ufm.ntk_closed_form(H0, W0, b0, K, ts, gamma=g, eta=eta)
    f = unhinged_ntk_rhs(g, K, eta)
    y3 = jax.jit(lambda: rk4(f, (H0, W0, b0), 0.0, 3.0, 1500))()
    y6 = jax.jit(lambda y: rk4(f, y, 3.0, 6.0, 1500))(y3)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], cf), (H0, W0, b0), atol=1e-14)
    assert rel_err(jax.tree.map(lambda x: x[1], cf), y3) < 1e-9
    assert rel_err(jax.tree.map(lambda x: x[2], cf), y6) < 1e-9
    assert rel_err(y6, (H0, W0, b0)) > 0.1
    # and against expm of the dense generator, including tiny t (series branch), at 1e-12
    ts = np.array([1e-5, 3e-3, 0.02, 0.5, 6.0])
    cf = ufm.ntk_closed_form(H0, W0, b0, K, jnp.asarray(ts), gamma=g, eta=eta)
    for i, ref in enumerate(expm_reference(f, (H0, W0, b0), ts)):
        assert rel_err(jax.tree.map(lambda x: x[i], cf), ref) < 1e-12, ts[i]


def test_theorem8_identity_kernel_is_theorem2():
    H0, W0, b0 = _model(23)
    for s in (0.5, 2.0):
        cf = ufm.ntk_closed_form(H0, W0, b0, s * jnp.eye(C * N), 9.0, gamma=0.3)
        ref = ufm.flow_closed_form(H0, W0, b0, 9.0, gamma=0.3, s=s)
        assert rel_err(cf, ref) < 1e-12


def test_mse_ntk_flow_is_nonlinear_unhinged_is_affine():
    H0, W0, _ = _model(24)
    Ha, Wa, ba = _model(25)
    b0 = jnp.zeros(C)
    K = _kernel(26, 10)
    eta, g, T = 0.7, 0.2, 4.0
    # eq. (25) right-hand side = −(η ∇_H L K, ∇_W L, ∇_b L) of L = ‖WᵀH + b1ᵀ − Y‖²/(2CN)
    Y = jax.nn.one_hot(jnp.repeat(jnp.arange(C), N), C).T

    def mse(H, W, b):
        return jnp.sum((W.T @ H + b[:, None] - Y) ** 2) / (2 * C * N)

    gH, gW, gb = jax.grad(mse, argnums=(0, 1, 2))(Ha, Wa, ba)
    chex.assert_trees_all_close(
        ufm.mse_ntk_rhs(Ha, Wa, ba, K, eta=eta), (-eta * gH @ K, -gW, -gb), rtol=1e-12, atol=1e-14
    )

    mse_flow = jax.jit(lambda y: rk4(lambda t, z: ufm.mse_ntk_rhs(*z, K, eta=eta), y, 0.0, T, 2000))
    un_flow = lambda y: ufm.ntk_closed_form(*y, K, T, gamma=g, eta=eta)
    za, zb = (H0, W0, b0), (Ha, Wa, ba)
    mix = lambda u, v, a: jax.tree.map(lambda x, y: a * x + (1 - a) * y, u, v)
    # unhinged: (H, W) flow is linear, the bias is b₀ + c₀t, so affine combinations are preserved
    hw = lambda y: y[:2]
    assert (
        rel_err(
            hw(un_flow(jax.tree.map(lambda x: 2 * x, za))),
            jax.tree.map(lambda x: 2 * x, hw(un_flow(za))),
        )
        < 1e-12
    )
    assert rel_err(un_flow(mix(za, zb, 0.3)), mix(un_flow(za), un_flow(zb), 0.3)) < 1e-12
    # the same checks fail clearly for MSE
    assert (
        rel_err(
            hw(mse_flow(jax.tree.map(lambda x: 2 * x, za))),
            jax.tree.map(lambda x: 2 * x, hw(mse_flow(za))),
        )
        > 0.05
    )
    assert rel_err(mse_flow(mix(za, zb, 0.3)), mix(mse_flow(za), mse_flow(zb), 0.3)) > 0.05


# ------------------------------------------------------------------------------------------------
# vmap, gradients at degenerate points, float32
# ------------------------------------------------------------------------------------------------


def test_everything_vmaps():
    H0, W0, b0 = _model(27)
    gammas = jnp.array([0.0, 0.1, 1 / (C - 1), 0.7, 2.0])
    vm = jax.vmap(
        lambda g: ufm.flow_closed_form(H0, W0, b0, 5.0, gamma=g, s=2.0, weight_decay=(0.1, 0.2))
    )(gammas)
    for i, g in enumerate(gammas):
        loop = ufm.flow_closed_form(H0, W0, b0, 5.0, gamma=float(g), s=2.0, weight_decay=(0.1, 0.2))
        assert rel_err(jax.tree.map(lambda x: x[i], vm), loop) < 1e-13
    lams = jnp.array([0.0, 0.05, 0.3])
    steps = jnp.array([0, 7, 40])
    vg = jax.vmap(
        lambda lam, k: ufm.gd_closed_form(
            H0, W0, b0, k, 0.4, gamma=0.2, s=0.5, weight_decay=(lam, lam)
        )
    )(lams, steps)
    vs = jax.vmap(
        lambda scale, s: ufm.gradient_descent(
            H0, W0, b0, scale * jnp.full((40,), 0.4), gamma=0.2, s=s, weight_decay=(0.3, 0.3)
        )
    )(jnp.array([0.5, 1.0]), jnp.array([0.5, 2.0]))
    for i in range(3):
        loop = ufm.gd_closed_form(
            H0, W0, b0, int(steps[i]), 0.4, gamma=0.2, s=0.5, weight_decay=(float(lams[i]),) * 2
        )
        assert rel_err(jax.tree.map(lambda x: x[i], vg), loop) < 1e-12
    for i, (sc, s) in enumerate([(0.5, 0.5), (1.0, 2.0)]):
        loop = ufm.gd_closed_form(H0, W0, b0, 40, 0.4 * sc, gamma=0.2, s=s, weight_decay=(0.3, 0.3))
        assert rel_err(jax.tree.map(lambda x: x[i], vs), loop) < 1e-10
    W = _etf(28)
    K = _kernel(29, 8)
    for fn in (
        lambda g: ufm.anchored_closed_form(H0, W, 3.0, gamma=g, weight_decay=g),
        lambda g: ufm.anchored_descent(H0, W, jnp.full((5,), 0.3), gamma=g, weight_decay=g),
        lambda g: ufm.spherical_descent(H0, W, jnp.full((5,), 0.3), gamma=g),
        lambda g: ufm.ntk_closed_form(H0, W0, b0, K, 2.0, gamma=g),
        lambda g: ufm.limit_direction(H0, W0, gamma=g, s=1.0 + g),
        lambda g: ufm.critical_weight_decay(C, N, g),
    ):
        out = jax.vmap(fn)(gammas)
        for i, g in enumerate(gammas):
            chex.assert_trees_all_close(
                jax.tree.map(lambda x: x[i], out), fn(float(g)), rtol=1e-12, atol=1e-13
            )


def _fd_grad(f, x, h=1e-6):
    if x == 0.0:  # every parameter is ≥ 0: one-sided (second-order) difference at 0
        return (-3 * f(x) + 4 * f(x + h) - f(x + 2 * h)) / (2 * h)
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.mark.parametrize(
    "point",
    [
        dict(g=1 / (C - 1), lam=(0.0, 0.0), s=1.0, zeta=2.0),  # σ₂ = 0, λ = 0
        dict(g=1 / (C - 1), lam=(0.1, 0.1), s=1.0, zeta=2.0),  # σ₂ = 0 and sλ₁ = λ₂: d = 0 in E2
        dict(g=0.0, lam=(0.0, 0.0), s=1.0, zeta=0.0),  # ζ = 0
        dict(g=0.3, lam=(0.0, 0.2), s=0.0, zeta=1.5),  # s = 0 (H frozen)
        dict(g=0.3, lam=(0.2, 0.0), s=0.0, zeta=1.5),  # s = 0, λ₂ = 0: d = 0, D ≠ 0
    ],
)
def test_gradients_finite_and_correct_at_degenerate_points(point):
    H0, W0, b0 = _model(30)
    g, (l1, l2), s, zeta = point["g"], point["lam"], point["s"], point["zeta"]

    def scalar_flow(g, l1, l2, s, zeta):
        H, W, b = ufm.flow_closed_form(H0, W0, b0, zeta, gamma=g, s=s, weight_decay=(l1, l2))
        return jnp.sum(H * H0) + jnp.sum(W * W0) + jnp.sum(b)

    def scalar_gd(g, l1, l2, s, lr):
        H, W, b = ufm.gd_closed_form(H0, W0, b0, 6, lr, gamma=g, s=s, weight_decay=(l1, l2))
        return jnp.sum(H * H0) + jnp.sum(W * W0) + jnp.sum(b)

    for fn, last in ((scalar_flow, zeta), (scalar_gd, 0.3)):
        args = [g, l1, l2, s, last]
        grads_ = jax.grad(fn, argnums=(0, 1, 2, 3, 4))(*args)
        assert all(np.isfinite(float(x)) for x in grads_)
        for k in range(5):
            fd = _fd_grad(
                lambda x, k=k: float(fn(*[x if j == k else a for j, a in enumerate(args)])), args[k]
            )
            np.testing.assert_allclose(float(grads_[k]), fd, rtol=1e-6, atol=1e-6)
    # values at the degenerate point: GD closed form = iterated GD, flow is continuous there
    lrs = jnp.full((6,), 0.3)
    assert (
        rel_err(
            ufm.gd_closed_form(H0, W0, b0, 6, 0.3, gamma=g, s=s, weight_decay=(l1, l2)),
            ufm.gradient_descent(H0, W0, b0, lrs, gamma=g, s=s, weight_decay=(l1, l2)),
        )
        < 1e-12
    )
    assert (
        rel_err(
            ufm.gd_closed_form(H0, W0, b0, None, lrs, gamma=g, s=s, weight_decay=(l1, l2)),
            ufm.gradient_descent(H0, W0, b0, lrs, gamma=g, s=s, weight_decay=(l1, l2)),
        )
        < 1e-12
    )
    near = ufm.flow_closed_form(
        H0, W0, b0, zeta + 1e-9, gamma=g + 1e-9, s=s + 1e-9, weight_decay=(l1 + 1e-9, l2)
    )
    assert (
        rel_err(ufm.flow_closed_form(H0, W0, b0, zeta, gamma=g, s=s, weight_decay=(l1, l2)), near)
        < 1e-7
    )
    # values at λ₂ = 0 equal the limit of the (1 − e^{−λζ})/λ bias formula
    b_small = ufm.flow_closed_form(H0, W0, b0, 3.0, gamma=0.2, weight_decay=(0.0, 1e-9))[2]
    b_zero = ufm.flow_closed_form(H0, W0, b0, 3.0, gamma=0.2)[2]
    np.testing.assert_allclose(b_small, b_zero, rtol=1e-8)


def test_float32_inputs_work_without_x64():
    with jax.enable_x64(False):
        H0, W0, b0 = _model(31)
        assert H0.dtype == jnp.float32
        out = ufm.flow_closed_form(
            H0, W0, b0, jnp.array([1.0, 4.0]), gamma=0.1, s=2.0, weight_decay=(0.1, 0.1)
        )
        gd = ufm.gradient_descent(H0, W0, b0, jnp.full((50,), 0.3), gamma=0.1, record_every=10)
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(out))
        assert gd[0][0].dtype == jnp.float32
    H64, W64, b64 = (jnp.asarray(x, jnp.float64) for x in (H0, W0, b0))
    ref = ufm.flow_closed_form(
        H64, W64, b64, jnp.array([1.0, 4.0]), gamma=0.1, s=2.0, weight_decay=(0.1, 0.1)
    )
    assert rel_err(jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), out), ref) < 1e-5
    ref_gd = ufm.gd_closed_form(H64, W64, b64, 50, 0.3, gamma=0.1)
    assert rel_err(jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), gd[0]), ref_gd) < 1e-5


# ------------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------------


def test_bad_arguments_raise_value_error_naming_the_argument():
    H, W, b = _model(32)
    lrs = jnp.full((4,), 0.1)
    cases = [
        (lambda: ufm.grads(H[:, :-1], W, b, 0.1), r"columns of H"),
        (lambda: ufm.loss(H, W[:-1], b, 0.1), r"H and W must have the same number of rows"),
        (lambda: ufm.loss(H, W, b[:-1], 0.1), r"\bb must have shape"),
        (lambda: ufm.loss(H[None], W, b, 0.1), r"H must be 2-D"),
        (lambda: ufm.loss(H, W, b, -0.1), r"gamma must be >= 0, got -0.1"),
        (lambda: ufm.projections(H, W, 4), r"num_per_class=4"),
        (lambda: ufm.projections(H, W[:, :-1], N), r"W has 4 columns"),
        (lambda: ufm.projections(H, W, 0), r"num_per_class must be >= 1"),
        (lambda: ufm.eigenvalues(C, 0, 0.1), r"\bN must be >= 1"),
        (lambda: ufm.flow_closed_form(H, W, b, 1.0, gamma=-1.0), r"gamma must be >= 0"),
        (lambda: ufm.flow_closed_form(H, W, b, 1.0, gamma=0.1, s=-0.5), r"\bs must be >= 0"),
        (
            lambda: ufm.flow_closed_form(H, W, b, 1.0, gamma=0.1, weight_decay=(-0.1, 0.0)),
            r"weight_decay\[0\] \(lambda1\) must be >= 0",
        ),
        (
            lambda: ufm.flow_closed_form(H, W, b, 1.0, gamma=0.1, weight_decay=(0.0, -2.0)),
            r"weight_decay\[1\] \(lambda2\)",
        ),
        (
            lambda: ufm.flow_closed_form(H, W, b, 1.0, gamma=0.1, weight_decay=0.1),
            r"weight_decay must be a pair",
        ),
        (lambda: ufm.flow_closed_form(H, W, b, -1.0, gamma=0.1), r"zeta must be >= 0"),
        (lambda: ufm.flow_closed_form(H, W, b, jnp.ones((2, 2)), gamma=0.1), r"zeta must have"),
        (lambda: ufm.flow_closed_form(H[:, :14], W, b, 1.0, gamma=0.1), r"columns of H0"),
        (lambda: ufm.flow_closed_form(H, W, b, 1.0, gamma=jnp.ones(2)), r"gamma must be a scalar"),
        (lambda: ufm.gd_closed_form(H, W, b, 3, lrs, gamma=0.1), r"steps=3"),
        (lambda: ufm.gd_closed_form(H, W, b, None, 0.1, gamma=0.1), r"steps=None"),
        (lambda: ufm.gd_closed_form(H, W, b, -2, 0.1, gamma=0.1), r"steps must be"),
        (lambda: ufm.gd_closed_form(H, W, b, 2.5, 0.1, gamma=0.1), r"steps must be"),
        (lambda: ufm.gd_closed_form(H, W, b, 2, -0.1, gamma=0.1), r"lr must be >= 0"),
        (lambda: ufm.gradient_descent(H, W, b, lrs[None], gamma=0.1), r"lrs must be a 1-D"),
        (lambda: ufm.gradient_descent(H, W, b, -lrs, gamma=0.1), r"lrs must be >= 0"),
        (lambda: ufm.gradient_descent(H, W, b[:2], lrs, gamma=0.1), r"b0 must have shape"),
        (
            lambda: ufm.gradient_descent(H, W, b, lrs, gamma=0.1, record_every=0),
            r"record_every must be >= 1",
        ),
        (
            lambda: ufm.gradient_descent(H, W, b, lrs, gamma=0.1, reference=(H, W[:, :2])),
            r"reference",
        ),
        (
            lambda: ufm.gradient_descent(H, W, b, lrs, gamma=0.1, record_every=2, metrics_fn=3),
            r"metrics_fn must be callable",
        ),
        (
            lambda: ufm.gradient_descent(
                H, W, b, lrs, gamma=0.1, record_every=2, reference=(H, W), metrics_fn=lambda *a: {}
            ),
            r"reference",
        ),
        (lambda: ufm.limit_direction(H, W, gamma=0.1, s=0.0), r"\bs must be > 0"),
        (lambda: ufm.critical_weight_decay(C, N, -1.0), r"gamma"),
        (
            lambda: ufm.anchored_closed_form(H, W, 1.0, gamma=0.1, weight_decay=-0.1),
            r"weight_decay must be >= 0",
        ),
        (
            lambda: ufm.anchored_descent(H, W[:-1], lrs, gamma=0.1, weight_decay=0.1),
            r"H0 and W must have the same number of rows",
        ),
        (lambda: ufm.spherical_descent(H, W, lrs, gamma=0.1, rescaled=1), r"rescaled"),
        (lambda: ufm.ntk_closed_form(H, W, b, jnp.eye(4), 1.0, gamma=0.1), r"K must be a"),
        (
            lambda: ufm.ntk_closed_form(
                H, W, b, jnp.triu(jnp.ones((C * N, C * N))), 1.0, gamma=0.1
            ),
            r"K must be symmetric",
        ),
        (
            lambda: ufm.ntk_closed_form(H, W, b, jnp.eye(C * N), 1.0, gamma=0.1, eta=-1.0),
            r"eta must be >= 0",
        ),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    # value checks are skipped for tracers (negative values cannot be detected under jit)
    out = jax.jit(lambda g: ufm.flow_closed_form(H, W, b, 1.0, gamma=g))(0.1)
    assert rel_err(out, ufm.flow_closed_form(H, W, b, 1.0, gamma=0.1)) < 1e-14


# ------------------------------------------------------------------------------------------------
# NOTES.md "Numbers to expect" (p=512, C=100, N=10, η=0.1, s=1, N(0,1) init)
# ------------------------------------------------------------------------------------------------


def test_notes_numbers_late_log_growth():
    p, c, n, eta = 512, 100, 10, 0.1
    k1, k2 = jax.random.split(jax.random.PRNGKey(33))
    H0 = jax.random.normal(k1, (p, c * n))
    W0 = jax.random.normal(k2, (p, c))
    b0 = jnp.zeros(c)
    notes = {
        0.0: 3.1618e-4,
        0.001: 3.1649e-4,
        0.005: 3.1776e-4,
        1 / 99: 3.1937e-4,
        0.05: 1.24832e-3,
    }
    K = 400_000

    def log_norm(H, W):
        sc = jnp.maximum(jnp.max(jnp.abs(H)), jnp.max(jnp.abs(W)))
        return jnp.log(sc) + 0.5 * jnp.log(jnp.sum((H / sc) ** 2) + jnp.sum((W / sc) ** 2))

    f = jax.jit(lambda g, k: log_norm(*ufm.gd_closed_form(H0, W0, b0, k, eta, gamma=g)[:2]))
    for g, expected in notes.items():
        growth = float(f(g, K + 1) - f(g, K))
        s1, s2 = (float(x) for x in ufm.eigenvalues(c, n, g))
        np.testing.assert_allclose(growth, math.log1p(eta * max(s1, abs(s2))), rtol=1e-6)
        np.testing.assert_allclose(growth, expected, rtol=5e-5)
    # the paper's "3.95/(C√N)" at γ = 0.05 is |σ₂|
    np.testing.assert_allclose(
        abs(float(ufm.eigenvalues(c, n, 0.05)[1])) * c * math.sqrt(n), 3.95, rtol=1e-12
    )


# ------------------------------------------------------------------------------------------------
# With and without jit (chex.variants)
# ------------------------------------------------------------------------------------------------


class SimulatorsUnderJitTest(chex.TestCase):
    """The structured gradients (eq. 4) and the GD closed form against plain GD give the same
    numbers with and without ``jit``: nothing in them reads a traced value on the host."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_structured_grads_equal_autodiff(self):
        with jax.enable_x64(True):
            H, W, b = _model(11)
            got = self.variant(lambda h, w, b_: ufm.grads(h, w, b_, 0.25))(H, W, b)
            ref = jax.grad(dense_loss, argnums=(0, 1, 2))(H, W, b, 0.25)
            chex.assert_trees_all_close(got, ref, rtol=1e-12, atol=1e-14)

    @chex.variants(with_jit=True, without_jit=True)
    def test_gd_closed_form_matches_iterated_gd(self):
        with jax.enable_x64(True):
            H0, W0, b0 = _model(12)
            lrs = 0.7 * (1 + jnp.cos(jnp.pi * jnp.arange(50) / 50)) / 2 + 0.05
            kw = dict(gamma=0.05, s=3.0, weight_decay=(0.2, 0.5))
            cf = self.variant(lambda h, w, b, lr: ufm.gd_closed_form(h, w, b, None, lr, **kw))
            sim = self.variant(lambda h, w, b, lr: ufm.gradient_descent(h, w, b, lr, **kw))
            got, ref = cf(H0, W0, b0, lrs), sim(H0, W0, b0, lrs)
            assert rel_err(got, ref) < 1e-11
            assert rel_err(ref, (H0, W0, b0)) > 0.1
            naive = naive_gd(H0, W0, b0, lrs, 0.05, 3.0, 0.2, 0.5)
            assert rel_err(ref, naive) < 1e-12


# ------------------------------------------------------------------------------------------------
# optax: schedules as rates, RLR as a gradient transformation (features are the parameters)
# ------------------------------------------------------------------------------------------------


def _optax_descent(H0, W, schedule, steps, gamma, tx_first=()):
    """GD on the unhinged loss of Ĥ = H/‖H‖ (b = 0) driven by optax: the gradient by autodiff
    of the dense loss, the update by ``optax.chain(*tx_first, optax.sgd(schedule))``."""
    import optax

    tx = optax.chain(*tx_first, optax.sgd(schedule))
    grad = jax.grad(
        lambda H: dense_loss(H / jnp.linalg.norm(H, axis=0), W, jnp.zeros(W.shape[1]), gamma)
    )
    state, H = tx.init(H0), H0
    for _ in range(steps):
        u, state = tx.update(grad(H), state, H)
        H = optax.apply_updates(H, u)
    return H


@pytest.mark.parametrize("rescaled", [False, True])
def test_spherical_descent_equals_the_optax_path(rescaled):
    """eq. (19) and its rescaled variant: ``spherical_descent`` with an optax cosine schedule
    equals optax's SGD on the normalized-feature loss, with RLR as
    ``objectives.scale_by_feature_norm`` (rows of the H-gradient scaled by ‖h_i‖)."""
    import optax

    from ul_jax.objectives import scale_by_feature_norm

    H0, _, _ = _model(3)
    W = _etf(4)
    steps, gamma = 40, 0.25
    schedule = optax.cosine_decay_schedule(0.3, steps)
    ours = ufm.spherical_descent(H0, W, schedule, gamma=gamma, rescaled=rescaled, num_steps=steps)
    ref = _optax_descent(
        H0, W, schedule, steps, gamma, (scale_by_feature_norm(),) if rescaled else ()
    )
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-11, atol=1e-12)
    # the schedule's rates as an array give the same iterate (today's path)
    rates = ufm.schedule_rates(schedule, steps)
    np.testing.assert_allclose(rates[:3], [schedule(0), schedule(1), schedule(2)])
    same = ufm.spherical_descent(H0, W, rates, gamma=gamma, rescaled=rescaled)
    np.testing.assert_array_equal(np.asarray(same), np.asarray(ours))


def test_simulators_take_optax_schedules():
    import optax

    H0, W0, b0 = _model(5)
    steps = 25
    sched = optax.warmup_cosine_decay_schedule(0.0, 0.2, 5, steps)
    rates = ufm.schedule_rates(sched, steps)
    for fn, args, kw in (
        (ufm.gradient_descent, (H0, W0, b0), {"gamma": 0.25, "s": 2.0}),
        (ufm.anchored_descent, (H0, _etf(2)), {"gamma": 0.25, "weight_decay": 1e-2}),
    ):
        a = fn(*args, sched, num_steps=steps, **kw)
        b = fn(*args, rates, **kw)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ValueError, match="pass num_steps=S"):
        ufm.gradient_descent(H0, W0, b0, sched, gamma=0.25)
    with pytest.raises(ValueError, match="num_steps=3 but lrs has shape"):
        ufm.gradient_descent(H0, W0, b0, rates, gamma=0.25, num_steps=3)


def test_scale_by_feature_norm_needs_params():
    from ul_jax.objectives import scale_by_feature_norm

    tx = scale_by_feature_norm()
    H = jnp.array([[3.0, 0.0], [4.0, 2.0]])
    u, _ = tx.update(jnp.ones_like(H), tx.init(H), H)
    np.testing.assert_allclose(np.asarray(u), [[5.0, 2.0], [5.0, 2.0]])
    with pytest.raises(ValueError, match="needs params"):
        tx.update(jnp.ones_like(H), tx.init(H))
