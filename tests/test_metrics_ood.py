"""OOD scores and metrics: hand cases, a brute-force oracle of energy_ood's FPR, sklearn."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_curve

from ul_jax import metrics


# --------------------------------------------------------------------------------------------
# scores
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_energy_score_definition(temperature):
    z = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1000.0, 999.0, -5.0]], np.float32)
    z64 = z.astype(np.float64)
    m = z64.max(1, keepdims=True)
    want = temperature * (
        np.log(np.sum(np.exp((z64 - m) / temperature), axis=1)) + m[:, 0] / temperature
    )
    got = jax.jit(metrics.energy_score, static_argnums=1)(z, temperature)
    chex.assert_shape(got, (3,))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)
    assert np.asarray(got)[1] == pytest.approx(temperature * np.log(3), rel=1e-6)  # uniform


def test_msp_and_feature_norm():
    z = np.array([[0.0, np.log(3.0)], [5.0, 5.0]], np.float32)
    np.testing.assert_allclose(np.asarray(metrics.msp_score(z)), [0.75, 0.5], rtol=1e-6)
    h = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(np.asarray(metrics.feature_norm_score(h)), [5.0, 0.0])


def test_bad_temperature_and_shapes():
    with pytest.raises(ValueError, match="temperature"):
        metrics.energy_score(jnp.ones((2, 3)), temperature=0.0)
    with pytest.raises(ValueError, match="logits must have a trailing class axis"):
        metrics.msp_score(jnp.float32(1.0))


# --------------------------------------------------------------------------------------------
# FPR at 95 % TPR
# --------------------------------------------------------------------------------------------
def test_fpr95_threshold_between_scores_hand():
    # ID scores 1..20, OOD scores {0.5, 1.5, 1.7, 3.5, 25}. TPR 19/20 = 0.95 holds for every
    # threshold t in (1, 2]; the candidate thresholds there are 2 (FP {25, 3.5} = 2),
    # 1.7 (FP 3) and 1.5 (FP {25, 3.5, 1.7, 1.5} = 4). energy_ood takes the *lowest* threshold
    # with the recall closest to 0.95 (here exactly 0.95): t = 1.5 -> FPR = 4/5 = 0.8.
    # ("first threshold with TPR >= 0.95" would be t = 2 -> 2/5 = 0.4, checked below.)
    s_in = np.arange(1.0, 21.0)
    s_out = np.array([0.5, 1.5, 1.7, 3.5, 25.0])
    assert metrics.ood_metrics(s_in, s_out)["fpr95"] == pytest.approx(0.8, abs=1e-15)
    y = np.r_[np.ones(20), np.zeros(5)]
    fpr, tpr, _ = roc_curve(y, np.r_[s_in, s_out], drop_intermediate=False)
    assert fpr[np.argmax(tpr >= 0.95)] == pytest.approx(0.4)


def test_fpr95_closest_recall_can_be_below_level_hand():
    # 10 ID scores 1..10, OOD {1.0 (tied with the lowest ID), 1.5, 10.5}.
    # t = 1: TPR 1.0, FP 3;  t = 1.5: TPR 0.9, FP 2;  t = 2: TPR 0.9, FP 1.
    # In float64 |0.9 − 0.95| = 0.04999999999999993 < |1.0 − 0.95| = 0.05000000000000004, so the
    # recall-0.9 points win, lowest threshold first (t = 1.5): FPR = 2/3.
    s_in = np.arange(1.0, 11.0)
    s_out = np.array([1.0, 1.5, 10.5])
    assert metrics.ood_metrics(s_in, s_out)["fpr95"] == pytest.approx(2 / 3, abs=1e-15)


def test_fpr_all_tied():
    # a single distinct score: the only threshold has TPR 1 and FP = all OOD
    assert metrics.ood_metrics([1.0, 1.0], [1.0])["fpr95"] == 1.0


def _oracle_fpr(s_in, s_out, level):
    """energy_ood semantics by brute force over distinct thresholds (see fpr_at_recall)."""
    pts = []
    for t in sorted(set(np.r_[s_in, s_out].tolist()), reverse=True):
        r = np.sum(s_in >= t) / len(s_in)
        pts.append((abs(r - level), t, np.sum(s_out >= t)))
        if r == 1.0:
            break
    best = min(pts, key=lambda p: (p[0], p[1]))  # closest recall, then lowest threshold
    return best[2] / len(s_out)


@pytest.mark.parametrize(
    "seed, n_in, n_out, discrete",
    list(itertools.product(range(3), [10, 20, 37, 200], [5, 64], [True, False])),
)
def test_fpr_matches_bruteforce_oracle(seed, n_in, n_out, discrete):
    rng = np.random.default_rng(seed)
    s_in = rng.normal(1.0, 1.0, n_in)
    s_out = rng.normal(0.0, 1.0, n_out)
    if discrete:  # heavy ties within and across the two sets
        s_in, s_out = np.round(s_in * 2), np.round(s_out * 2)
    for level in (0.95, 0.8):
        y = np.r_[np.ones(n_in), np.zeros(n_out)]
        got = metrics.fpr_at_recall(y, np.r_[s_in, s_out], level)
        assert got == _oracle_fpr(s_in, s_out, level)


# --------------------------------------------------------------------------------------------
# AUROC / AUPR
# --------------------------------------------------------------------------------------------
def test_auroc_is_pairwise_probability():
    rng = np.random.default_rng(4)
    s_in = np.round(rng.normal(0.5, 1, 60))
    s_out = np.round(rng.normal(0, 1, 40))
    diff = s_in[:, None] - s_out[None, :]
    want = np.mean(diff > 0) + 0.5 * np.mean(diff == 0)
    assert metrics.ood_metrics(s_in, s_out)["auroc"] == pytest.approx(want, abs=1e-12)


def test_aupr_hand():
    # descending: 3 (ID), 2 (OOD), 1 (ID). AP = Σ (R_k − R_{k−1}) P_k = ½·1 + ½·(2/3) = 5/6
    got = metrics.ood_metrics([3.0, 1.0], [2.0])
    assert got["aupr"] == pytest.approx(5 / 6)
    assert got["auroc"] == pytest.approx(0.5)


def test_separable_and_reversed():
    good = metrics.ood_metrics([2.0, 3.0, 4.0], [0.0, 1.0])
    assert good == {"fpr95": 0.0, "auroc": 1.0, "aupr": 1.0}
    bad = metrics.ood_metrics([0.0, 1.0], [2.0, 3.0, 4.0])
    assert bad["auroc"] == 0.0 and bad["fpr95"] == 1.0


def test_energy_separates_confident_from_flat_logits():
    rng = np.random.default_rng(0)
    z_in = rng.normal(size=(200, 10)) + 6.0 * np.eye(10)[rng.integers(0, 10, 200)]
    z_out = rng.normal(size=(300, 10))
    res = metrics.ood_metrics(metrics.energy_score(z_in), metrics.energy_score(z_out))
    assert res["auroc"] > 0.95 and res["fpr95"] < 0.2


def test_recall_level_key():
    assert set(metrics.ood_metrics([1.0, 2.0], [0.0], recall_level=0.9)) == {
        "fpr90",
        "auroc",
        "aupr",
    }


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.ood_metrics([1.0, np.nan], [0.0]), "id_scores must be finite"),
        (lambda: metrics.ood_metrics([1.0], [0.0, np.inf]), "ood_scores must be finite"),
        (lambda: metrics.ood_metrics([1.0, 2.0], []), "ood_scores is empty"),
        (lambda: metrics.ood_metrics([], [1.0]), "id_scores is empty"),
        (lambda: metrics.ood_metrics(np.ones((2, 2)), [0.0]), "id_scores must be 1-D"),
        (lambda: metrics.auroc([1, 1, 1], [0.1, 0.2, 0.3]), "only one class"),
        (lambda: metrics.fpr_at_recall([0, 0], [0.1, 0.2]), "only one class"),
        (lambda: metrics.aupr([0, 1, 2], [0.1, 0.2, 0.3]), "labels must be binary"),
        (lambda: metrics.auroc([0, 1], [0.1, 0.2, 0.3]), "labels.shape"),
        (lambda: metrics.fpr_at_recall([0, 1], [0.1, 0.2], recall_level=1.5), "recall_level"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()
