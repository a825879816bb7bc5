"""Simplex-ETF and optimized prototypes."""

import chex
import jax
import numpy as np
import pytest

from ul_jax.prototypes import etf_gram, is_simplex_etf, optimized_prototypes, simplex_etf


@pytest.mark.parametrize("c,dim", [(2, 1), (10, 9), (10, 10), (100, 512), (3, 2), (5, 64)])
@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_simplex_etf_gram_is_exact(c, dim, scale):
    w = simplex_etf(jax.random.PRNGKey(c * dim), c, dim, scale=scale)
    chex.assert_shape(w, (dim, c))
    w64 = np.asarray(w, np.float64)
    gram = w64.T @ w64
    np.testing.assert_allclose(gram, etf_gram(c, scale), atol=1e-6 * scale**2)
    np.testing.assert_allclose(w64.sum(axis=1), 0.0, atol=1e-5 * scale)
    assert is_simplex_etf(w, atol=1e-5)
    assert is_simplex_etf(w, atol=1e-5, scale=scale)


def test_simplex_etf_is_random_and_keyed():
    a = simplex_etf(jax.random.PRNGKey(0), 10, 32)
    b = simplex_etf(jax.random.PRNGKey(0), 10, 32)
    c = simplex_etf(jax.random.PRNGKey(1), 10, 32)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_etf_dim_equal_c_minus_1_spans_whole_space():
    w = np.asarray(simplex_etf(jax.random.PRNGKey(3), 6, 5), np.float64)
    assert np.linalg.matrix_rank(w) == 5


@pytest.mark.parametrize(
    "c,dim,match", [(1, 4, "num_classes=1"), (10, 8, "dim=8"), (2, 0, "dim=0")]
)
def test_simplex_etf_bad_arguments(c, dim, match):
    with pytest.raises(ValueError, match=match):
        simplex_etf(jax.random.PRNGKey(0), c, dim)


def test_is_simplex_etf_rejects_non_etf():
    rng = np.random.default_rng(0)
    assert not is_simplex_etf(rng.normal(size=(10, 5)), atol=1e-3)
    w = np.asarray(simplex_etf(jax.random.PRNGKey(0), 5, 8), np.float64)
    w[:, 0] *= 1.01  # unequal norm
    assert not is_simplex_etf(w, atol=1e-3)
    with pytest.raises(ValueError, match="W.shape"):
        is_simplex_etf(np.ones(4))


def test_optimized_prototypes_high_dim_is_etf():
    w = optimized_prototypes(jax.random.PRNGKey(0), 8, 12, steps=1500)
    chex.assert_shape(w, (12, 8))
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w), axis=0), 1.0, atol=1e-5)
    assert is_simplex_etf(w, atol=2e-3)


def test_optimized_prototypes_low_dim_regular_polygon():
    """dim = 2 < C − 1: the optimum spreads 6 unit vectors as a regular hexagon (60°)."""
    w = np.asarray(optimized_prototypes(jax.random.PRNGKey(1), 6, 2, steps=2000), np.float64)
    g = w.T @ w
    np.fill_diagonal(g, -2.0)
    min_angle = np.degrees(np.arccos(np.clip(g.max(axis=1), -1, 1)))
    np.testing.assert_allclose(min_angle, 60.0, atol=0.5)
