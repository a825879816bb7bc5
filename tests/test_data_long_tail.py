"""LDAM-DRW long-tailed counts (exact published totals) and seeded per-class subsets."""

import numpy as np
import pytest

from ul_jax.data import ArrayDataset, long_tailed_counts, long_tailed_indices, make_long_tailed


@pytest.mark.parametrize(
    "n_max, num_classes, ratio, total",
    [
        (5000, 10, 100, 12406),
        (5000, 10, 50, 13996),
        (5000, 10, 10, 20431),
        (500, 100, 100, 10847),
        (500, 100, 50, 12608),
        (500, 100, 10, 19573),
    ],
)
def test_exp_totals_match_ldam_drw(n_max, num_classes, ratio, total):
    counts = long_tailed_counts(n_max, num_classes, ratio, "exp")
    assert len(counts) == num_classes
    assert sum(counts) == total
    assert counts[0] == n_max and counts[-1] == int(n_max / ratio)
    assert all(a >= b for a, b in zip(counts, counts[1:]))


def test_exp_cifar10_rho100_per_class():
    assert long_tailed_counts(5000, 10, 100) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_exp_is_ldam_formula():
    for c, n in enumerate(long_tailed_counts(5000, 10, 100)):
        assert n == int(5000 * (0.01 ** (c / 9.0)))


def test_step_profile():
    assert long_tailed_counts(5000, 10, 10, "step") == [5000] * 5 + [500] * 5
    assert sum(long_tailed_counts(5000, 10, 100, "step")) == 5 * 5000 + 5 * 50
    # odd C: C//2 head classes, every remaining class gets the tail count
    assert long_tailed_counts(100, 5, 4, "step") == [100, 100, 25, 25, 25]


def test_ratio_one_is_balanced():
    assert long_tailed_counts(7, 4, 1) == [7, 7, 7, 7]


@pytest.mark.parametrize("kind, first_empty", [("exp", 8), ("step", 5)])
def test_zero_class_raises(kind, first_empty):
    # 50·0.01^(8/9) = 0.83 -> 0 (exp); 50·0.01 = 0.5 -> 0 for the tail half (step)
    with pytest.raises(
        ValueError, match=rf"imbalance_ratio=100 .*class {first_empty} .*0 examples"
    ):
        long_tailed_counts(50, 10, 100, kind)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_max=0, num_classes=10, imbalance_ratio=10), "n_max"),
        (dict(n_max=10, num_classes=1, imbalance_ratio=10), "num_classes"),
        (dict(n_max=10, num_classes=10, imbalance_ratio=0.5), "imbalance_ratio=0.5"),
        (dict(n_max=10, num_classes=10, imbalance_ratio=float("nan")), "imbalance_ratio"),
        (dict(n_max=10, num_classes=10, imbalance_ratio=2, kind="linear"), "kind='linear'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        long_tailed_counts(**kwargs)


def _balanced_labels(per_class=100, num_classes=10, seed=0):
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels).astype(np.int32)


def test_indices_exact_counts_and_subset():
    labels = _balanced_labels()
    idx = long_tailed_indices(labels, 10, 10, "exp", seed=3)
    assert np.all(np.diff(idx) > 0)  # sorted, unique
    np.testing.assert_array_equal(
        np.bincount(labels[idx], minlength=10), long_tailed_counts(100, 10, 10)
    )


def test_indices_reproducible_and_seed_dependent():
    labels = _balanced_labels()
    a = long_tailed_indices(labels, 10, 10, seed=0)
    b = long_tailed_indices(labels, 10, 10, seed=0)
    c = long_tailed_indices(labels, 10, 10, seed=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == c.shape and not np.array_equal(a, c)
    # class 0 keeps everything for any seed; the tail classes differ
    np.testing.assert_array_equal(a[labels[a] == 0], c[labels[c] == 0])
    assert not np.array_equal(a[labels[a] == 9], c[labels[c] == 9])


def test_indices_class_too_small():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 3, np.int32)
    with pytest.raises(ValueError, match="class 2 has 3 examples"):
        long_tailed_indices(labels, 3, 2, "step", n_max=10)


def test_indices_bad_labels_named():
    with pytest.raises(ValueError, match=r"flat index \[2\]"):
        long_tailed_indices(np.array([0, 1, 7, 1]), 3, 2)


def test_make_long_tailed_keeps_pairs_aligned():
    labels = _balanced_labels(per_class=20, num_classes=4)
    images = np.zeros((80, 2, 2, 3), np.uint8)
    images[..., 0] = labels[:, None, None]  # the image encodes its label
    images[..., 1] = np.arange(80)[:, None, None]
    ds = ArrayDataset("toy", "train", images, labels, ("a", "b", "c", "d"))
    lt = make_long_tailed(ds, 4, "exp", seed=0)
    assert lt.name == "toy_lt_exp_4"
    np.testing.assert_array_equal(lt.class_counts(), long_tailed_counts(20, 4, 4))
    np.testing.assert_array_equal(lt.images[:, 0, 0, 0], lt.labels)
    np.testing.assert_array_equal(labels[lt.images[:, 0, 0, 1]], lt.labels)
