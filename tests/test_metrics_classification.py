"""Accuracy metrics against hand-computed cases and scikit-learn."""

import chex
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, recall_score, top_k_accuracy_score

from ul_jax import metrics


def _data(seed=0, n=300, c=10):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, c)).astype(np.float32), rng.integers(0, c, size=n)


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_topk_matches_sklearn(k):
    z, y = _data()
    want = top_k_accuracy_score(y, z, k=k, labels=np.arange(10))
    assert metrics.topk_accuracy(z, y, k) == pytest.approx(want, abs=1e-12)


def test_accuracy_dict_and_hand_case():
    # argmax rows: 0, 2, 1; labels 0, 1, 1 -> top1 = 2/3; label 1 of row 1 is 2nd -> top2 = 1
    z = np.array([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [0.5, 2.0, 1.0]])
    y = np.array([0, 1, 1])
    got = metrics.accuracy(z, y, topk=(1, 2))
    assert got == {"top1": pytest.approx(2 / 3), "top2": pytest.approx(1.0)}


def test_ties_break_to_lower_index():
    z = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    # label 0: first of the tie -> top-1 correct; label 1: ranked 2nd -> only top-2 correct
    np.testing.assert_array_equal(metrics.topk_correct(z, np.array([0, 1]), 1), [True, False])
    np.testing.assert_array_equal(metrics.topk_correct(z, np.array([0, 1]), 2), [True, True])


def test_per_class_accuracy_hand_and_sklearn():
    z = np.eye(4)[[0, 0, 1, 2, 2, 2]]  # predictions 0,0,1,2,2,2
    y = np.array([0, 1, 1, 2, 2, 0])
    got = metrics.per_class_accuracy(z, y)
    chex.assert_shape(got, (4,))
    # class 0: rows {0, 5} -> 1/2; class 1: rows {1, 2} -> 1/2; class 2: rows {3, 4} -> 1; class 3 absent
    np.testing.assert_allclose(got[:3], [0.5, 0.5, 1.0])
    assert np.isnan(got[3])
    zz, yy = _data(seed=3)
    pred = zz.argmax(1)
    np.testing.assert_allclose(
        metrics.per_class_accuracy(zz, yy), recall_score(yy, pred, average=None, labels=range(10))
    )
    assert metrics.mean_per_class_accuracy(metrics.per_class_accuracy(zz, yy)) == pytest.approx(
        balanced_accuracy_score(yy, pred)
    )


def test_shot_groups_thresholds():
    acc = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    counts = np.array([500, 101, 100, 20, 19, 5])
    got = metrics.shot_group_accuracy(acc, counts)
    # many: >100 -> {500, 101}; medium: 20..100 inclusive -> {100, 20}; few: <20 -> {19, 5}
    assert got["many"] == pytest.approx(0.85)
    assert got["medium"] == pytest.approx(0.65)
    assert got["few"] == pytest.approx(0.45)
    assert (got["num_many"], got["num_medium"], got["num_few"]) == (2, 2, 2)
    assert metrics.many_medium_few_accuracy is metrics.shot_group_accuracy


def test_shot_groups_empty_group_is_nan_and_absent_classes_skipped():
    acc = np.array([1.0, np.nan, 0.5])
    got = metrics.shot_group_accuracy(acc, np.array([1000, 1000, 50]))
    assert got["many"] == pytest.approx(1.0)  # the NaN (class absent from test set) is skipped
    assert got["medium"] == pytest.approx(0.5)
    assert np.isnan(got["few"])


def test_mislas_index_ranges():
    acc = np.arange(100) / 100.0
    got = metrics.index_range_group_accuracy(acc)
    # mean of 0..35 = 17.5, of 36..70 = 53, of 71..99 = 85
    assert got == {
        "many": pytest.approx(0.175),
        "medium": pytest.approx(0.53),
        "few": pytest.approx(0.85),
    }
    got10 = metrics.index_range_group_accuracy(np.arange(10) / 10.0)
    assert got10["many"] == pytest.approx(0.1) and got10["few"] == pytest.approx(0.8)
    assert metrics.index_range_group_accuracy(acc, {"a": (0, 2)}) == {"a": pytest.approx(0.005)}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda z, y: metrics.topk_accuracy(z, y[:-1]), "labels.shape"),
        (lambda z, y: metrics.topk_accuracy(z, y + 10), "out of range"),
        (lambda z, y: metrics.topk_accuracy(z[:, 0], y), "logits must be 2-D"),
        (
            lambda z, y: metrics.topk_accuracy(np.where(z > 2, np.nan, z), y),
            "logits must be finite",
        ),
        (lambda z, y: metrics.topk_accuracy(z, y, k=11), "k must be <="),
        (lambda z, y: metrics.topk_accuracy(z, y.astype(float) + 0.5), "labels must be integers"),
        (
            lambda z, y: metrics.shot_group_accuracy(np.ones(10), np.ones(9)),
            "train_class_counts.shape",
        ),
        (lambda z, y: metrics.index_range_group_accuracy(np.ones(7)), "no default MiSLAS"),
        (lambda z, y: metrics.index_range_group_accuracy(np.ones(10), {"x": (5, 11)}), "range 'x'"),
    ],
)
def test_bad_inputs(call, match):
    z, y = _data()
    with pytest.raises(ValueError, match=match):
        call(z, y)
