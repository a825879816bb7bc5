"""ECE / MCE against eq. (103) evaluated by hand and by a per-example loop; bin-edge convention."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ul_jax import metrics


def _rows(conf, correct):
    """Rows [c, (1−c)/2, (1−c)/2] (prediction 0 for c > 1/3); label 0 if correct else 1."""
    conf = np.asarray(conf, np.float64)
    rest = (1.0 - conf) / 2
    probs = np.stack([conf, rest, rest], axis=1)
    return probs, np.where(np.asarray(correct, bool), 0, 1)


def _ece_loop(probs, labels, num_bins):
    """Eq. (103) literally: bins (k/B, (k+1)/B], per-bin acc and mean confidence."""
    edges = np.linspace(0, 1, num_bins + 1)
    conf, pred = probs.max(1).astype(np.float64), probs.argmax(1)
    total, gaps = 0.0, []
    for b in range(num_bins):
        sel = [i for i in range(len(conf)) if edges[b] < conf[i] <= edges[b + 1]]
        if sel:
            acc = np.mean([pred[i] == labels[i] for i in sel])
            avg = np.mean([conf[i] for i in sel])
            total += len(sel) / len(conf) * abs(acc - avg)
            gaps.append(abs(acc - avg))
    return total, max(gaps)


def test_hand_two_bins():
    # bin (14/15, 1]: conf 0.95 (right), 0.97 (wrong): acc 0.5, conf 0.96, gap 0.46
    # bin (9/15, 10/15]: conf 0.62, 0.64, 0.66 (all right): acc 1, conf 0.64, gap 0.36
    # ECE = 2/5·0.46 + 3/5·0.36 = 0.184 + 0.216 = 0.4;  MCE = 0.46
    probs, y = _rows([0.95, 0.97, 0.62, 0.64, 0.66], [1, 0, 1, 1, 1])
    assert metrics.expected_calibration_error(probs, y) == pytest.approx(0.4, abs=1e-12)
    assert metrics.maximum_calibration_error(probs, y) == pytest.approx(0.46, abs=1e-12)
    bins = metrics.calibration_bins(probs, y)
    np.testing.assert_array_equal(np.flatnonzero(bins.counts), [9, 14])


def test_matches_loop_on_random_probs():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 10)) * 3
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits, jnp.float32)))
    y = rng.integers(0, 10, size=2000)
    for nb in (15, 7):
        ece, mce = _ece_loop(probs, y, nb)
        assert metrics.expected_calibration_error(probs, y, nb) == pytest.approx(ece, abs=1e-12)
        assert metrics.maximum_calibration_error(probs, y, nb) == pytest.approx(mce, abs=1e-12)


def _synthetic(rng, n, c, shift):
    """Confidence ~ U(1/c, 1) at a random predicted class; correct ~ Bernoulli(conf − shift)."""
    conf = rng.uniform(1.0 / c, 1.0, size=n)
    pred = rng.integers(0, c, size=n)
    probs = np.repeat(((1 - conf) / (c - 1))[:, None], c, axis=1)
    probs[np.arange(n), pred] = conf
    correct = rng.uniform(size=n) < np.clip(conf - shift, 0, 1)
    other = (pred + rng.integers(1, c, size=n)) % c
    return probs, np.where(correct, pred, other)


def test_perfectly_calibrated_is_near_zero_and_shifted_is_not():
    rng = np.random.default_rng(1)
    probs, y = _synthetic(rng, 200_000, 10, shift=0.0)
    assert metrics.expected_calibration_error(probs, y) < 0.005
    probs, y = _synthetic(rng, 200_000, 10, shift=0.1)
    # P(correct) = conf − 0.1 except where clipped at 0 (conf < 0.1, none here): ECE ≈ 0.1
    assert metrics.expected_calibration_error(probs, y) == pytest.approx(0.1, abs=0.005)


def test_known_miscalibrated_predictor():
    # every confidence 0.9 (one bin), 6 of 10 correct: ECE = MCE = |0.6 − 0.9| = 0.3
    probs, y = _rows([0.9] * 10, [1] * 6 + [0] * 4)
    assert metrics.expected_calibration_error(probs, y) == pytest.approx(0.3, abs=1e-12)
    assert metrics.maximum_calibration_error(probs, y) == pytest.approx(0.3, abs=1e-12)


def test_edge_goes_to_lower_bin():
    # 10 bins. conf 0.5 (right) and 0.45 (wrong) share (0.4, 0.5]: acc 0.5, conf 0.475, ECE 0.025.
    # Under a [lo, hi) convention 0.5 would sit alone in [0.5, 0.6): ECE = ½·0.5 + ½·0.45 = 0.475.
    probs, y = _rows([0.5, 0.45], [1, 0])
    assert metrics.expected_calibration_error(probs, y, num_bins=10) == pytest.approx(0.025)
    # every float64 edge k/15 (as np.linspace makes it) lands in the bin below it; 1.0 in the last
    edges = np.linspace(0, 1, 16)
    conf = edges[1:]
    bins = metrics.calibration_bins_from_confidence(conf, np.ones(15, bool))
    np.testing.assert_array_equal(bins.counts, np.ones(15))
    idx = np.asarray(metrics.bin_index(jnp.asarray(conf[:-1], jnp.float32)))
    # float32(k/15) > k/15 for every interior k, so in float32 the same values are one bin up
    np.testing.assert_array_equal(idx, np.arange(1, 15))


def test_jax_bin_index_equals_float64_digitize():
    edges = np.linspace(0, 1, 16)
    e32 = edges.astype(np.float32)
    cand = np.concatenate(
        [
            e32,
            np.nextafter(e32, np.float32(0)),
            np.nextafter(e32, np.float32(2)),
            np.random.default_rng(0).uniform(size=500).astype(np.float32),
        ]
    )
    cand = cand[(cand > 0) & (cand <= 1)]
    want = np.digitize(cand.astype(np.float64), edges, right=True) - 1
    np.testing.assert_array_equal(np.asarray(jax.jit(metrics.bin_index)(cand)), want)
    # a naive float32 comparison with float32 edges disagrees exactly on the float32 edge values
    naive = np.digitize(cand, e32, right=True) - 1
    assert np.any(naive != want)


@pytest.mark.parametrize(
    "probs, labels, match",
    [
        (np.full((4, 3), 0.5), np.zeros(4, int), "rows must sum to 1"),
        (np.array([[2.0, -1.0], [0.5, 0.5]]), np.zeros(2, int), "must lie in \\[0, 1\\]"),
        (np.full((4,), 0.25), np.zeros(4, int), "probs must be 2-D"),
        (np.full((4, 2), 0.5), np.zeros(3, int), "labels.shape"),
        (np.full((4, 2), 0.5), np.array([0, 1, 2, 0]), "out of range"),
        (np.array([[np.nan, 0.5], [0.5, 0.5]]), np.zeros(2, int), "probs must be finite"),
        (np.zeros((0, 2)), np.zeros(0, int), "at least one row"),
    ],
)
def test_bad_inputs(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        metrics.expected_calibration_error(probs, labels)


def test_bad_num_bins():
    probs, y = _rows([0.9], [1])
    with pytest.raises(ValueError, match="num_bins"):
        metrics.expected_calibration_error(probs, y, num_bins=0)
