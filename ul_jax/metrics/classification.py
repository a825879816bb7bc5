"""Classification accuracy: top-k, per-class, and long-tailed group accuracies.

Host-side NumPy functions over a whole evaluation set (for fixed-memory batch-wise evaluation use
:mod:`ul_jax.metrics.streaming`, which reproduces them exactly). All return fractions in [0, 1].

Ties. An example is top-k correct iff its label is among the first k classes when classes are
ordered by score descending with ties broken by the *lower class index first*, i.e. iff
``#{j: z_j > z_y} + #{j < y: z_j = z_y} < k``. This is the order of ``jax.lax.top_k`` and, for
k = 1, of ``argmax`` (first maximum). With continuous scores ties do not occur and the result
equals ``sklearn.metrics.top_k_accuracy_score``.

Long-tailed groups (two conventions, both provided; report which one you use):

* :func:`shot_group_accuracy` — by *training-set* class frequency, the OLTR convention
  (Liu et al., 2019, ``shot_acc``; also used by decoupling/cRT and MiSLAS on ImageNet-LT/Places-LT):
  many-shot ``n_train > 100``, medium-shot ``20 ≤ n_train ≤ 100``, few-shot ``n_train < 20``.
* :func:`index_range_group_accuracy` — by *class-index range*, the MiSLAS CIFAR-LT configs
  (``head/med/tail_class_idx``): CIFAR-100-LT ``[0,36) / [36,71) / [71,100)``, CIFAR-10-LT
  ``[0,3) / [3,7) / [7,10)``. On CIFAR-LT the class index order is the frequency order (class 0
  largest), so these are head/medium/tail by rank, independent of the imbalance ratio.

Both report each group's accuracy as the unweighted mean of its classes' per-class accuracies
(classes without test examples are skipped, as in OLTR). An empty group is NaN (OLTR reports 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ul_jax.metrics import _checks

__all__ = [
    "MANY_SHOT_THRESHOLD",
    "FEW_SHOT_THRESHOLD",
    "MISLAS_CLASS_RANGES",
    "topk_correct",
    "topk_accuracy",
    "accuracy",
    "per_class_accuracy",
    "mean_per_class_accuracy",
    "SHOT_GROUPS",
    "shot_groups",
    "shot_group_accuracy",
    "index_range_group_accuracy",
]

MANY_SHOT_THRESHOLD = 100  # many-shot: n_train > 100
FEW_SHOT_THRESHOLD = 20  # few-shot: n_train < 20; medium-shot: 20 <= n_train <= 100
SHOT_GROUPS = ("many", "medium", "few")  # the group indices of :func:`shot_groups`

# MiSLAS (Zhong et al., 2021) CIFAR-LT configs: half-open class-index ranges [start, stop).
MISLAS_CLASS_RANGES: Mapping[int, Mapping[str, tuple[int, int]]] = {
    10: {"many": (0, 3), "medium": (3, 7), "few": (7, 10)},
    100: {"many": (0, 36), "medium": (36, 71), "few": (71, 100)},
}


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    z = _checks.float_matrix(scores, "logits", min_cols=2)
    y = _checks.int_labels(labels, z.shape[0], z.shape[1])
    return z, y


def topk_correct(logits, labels, k: int = 1) -> np.ndarray:
    """Per-example top-k correctness ``(n,)`` bool (tie rule in the module docstring).

    Args:
      logits: ``(n, C)`` scores (logits or probabilities; only the order matters).
      labels: ``(n,)`` integers in ``[0, C)``.
      k: ``1 ≤ k ≤ C``.
    """
    z, y = _scores_labels(logits, labels)
    k = _checks.positive_int(k, "k")
    if k > z.shape[1]:
        raise ValueError(f"k must be <= num_classes={z.shape[1]}; got k={k}")
    z_y = z[np.arange(z.shape[0]), y][:, None]
    lower = np.arange(z.shape[1])[None, :] < y[:, None]
    rank = np.sum(z > z_y, axis=1) + np.sum((z == z_y) & lower, axis=1)
    return rank < k


def topk_accuracy(logits, labels, k: int = 1) -> float:
    """Top-k accuracy ``1/n Σ_i 1[y_i ∈ top-k(z_i)]`` as a fraction."""
    return float(np.mean(topk_correct(logits, labels, k)))


def accuracy(logits, labels, topk: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Top-k accuracies as ``{"top1": ..., "top5": ...}`` (keys ``f"top{k}"``)."""
    if len(topk) == 0:
        raise ValueError(f"topk must name at least one k; got topk={tuple(topk)}")
    return {f"top{k}": topk_accuracy(logits, labels, k) for k in topk}


def per_class_accuracy(logits, labels) -> np.ndarray:
    """Top-1 accuracy of each class, ``(C,)``: ``#{i: y_i = c, argmax z_i = c} / #{i: y_i = c}``.

    Classes with no example in ``labels`` are NaN. The mean over classes is
    :func:`mean_per_class_accuracy` (= ``sklearn.metrics.balanced_accuracy_score``).
    """
    z, y = _scores_labels(logits, labels)
    num_classes = z.shape[1]
    correct = topk_correct(z, y, 1)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    hits = np.bincount(y, weights=correct.astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1.0), np.nan)


def _class_acc_vector(per_class_acc, name: str = "per_class_acc") -> np.ndarray:
    acc = _checks.to_numpy(per_class_acc, name).astype(np.float64)
    if acc.ndim != 1 or acc.size < 2:
        raise ValueError(f"{name} must be 1-D (C,) with C >= 2; got {name}.shape={acc.shape}")
    finite = acc[~np.isnan(acc)]
    if np.any(np.isinf(acc)) or np.any((finite < 0) | (finite > 1)):
        raise ValueError(
            f"{name} must be NaN (class absent) or in [0, 1]; got {acc.tolist()[:10]}..."
        )
    return acc


def _group_mean(acc: np.ndarray, members: np.ndarray) -> float:
    vals = acc[members]
    vals = vals[~np.isnan(vals)]
    return float(np.mean(vals)) if vals.size else float("nan")


def mean_per_class_accuracy(per_class_acc) -> float:
    """Unweighted mean of per-class accuracies over classes present (NaN entries skipped)."""
    acc = _class_acc_vector(per_class_acc)
    return _group_mean(acc, np.ones(acc.shape, dtype=bool))


def shot_groups(
    train_class_counts,
    many_threshold: int = MANY_SHOT_THRESHOLD,
    few_threshold: int = FEW_SHOT_THRESHOLD,
) -> np.ndarray:
    """The many/medium/few-shot group of each class by its training count (OLTR convention).

    Args:
      train_class_counts: ``(C,)`` number of *training* images per class.

    Returns:
      ``(C,)`` int: the index into :data:`SHOT_GROUPS` — 0 many (``n_train > many_threshold``,
      100), 2 few (``n_train < few_threshold``, 20), 1 medium (the rest, ``20 ≤ n_train ≤ 100``).
      A balanced set puts every class in one group (CIFAR-10: all many).
    """
    counts = _checks.to_numpy(train_class_counts, "train_class_counts")
    if counts.ndim != 1:
        raise ValueError(f"train_class_counts must be 1-D (C,); got shape {counts.shape}")
    if np.any(counts < 0) or not np.all(np.mod(counts, 1) == 0):
        raise ValueError(
            f"train_class_counts must be non-negative integers; got {counts.tolist()[:10]}"
        )
    if few_threshold > many_threshold:
        raise ValueError(
            f"few_threshold={few_threshold} must be <= many_threshold={many_threshold}"
        )
    return np.where(counts > many_threshold, 0, np.where(counts < few_threshold, 2, 1)).astype(
        np.int32
    )


def shot_group_accuracy(
    per_class_acc,
    train_class_counts,
    many_threshold: int = MANY_SHOT_THRESHOLD,
    few_threshold: int = FEW_SHOT_THRESHOLD,
) -> dict[str, float]:
    """Many/medium/few-shot accuracy by training-class frequency (OLTR convention).

    many: ``n_train > many_threshold`` (100); few: ``n_train < few_threshold`` (20); medium: the
    rest (``20 ≤ n_train ≤ 100``). Each group's value is the mean per-class accuracy of its classes.

    Args:
      per_class_acc: ``(C,)`` from :func:`per_class_accuracy` (NaN = class absent from the test set).
      train_class_counts: ``(C,)`` number of *training* images per class.

    Returns:
      ``{"many", "medium", "few"}`` accuracies (NaN for an empty group) and
      ``{"num_many", "num_medium", "num_few"}`` class counts.
    """
    acc = _class_acc_vector(per_class_acc)
    counts = _checks.to_numpy(train_class_counts, "train_class_counts")
    if counts.shape != acc.shape:
        raise ValueError(
            f"train_class_counts.shape={counts.shape} must equal per_class_acc.shape={acc.shape}"
        )
    group = shot_groups(counts, many_threshold, few_threshold)
    many, medium, few = (group == g for g in range(len(SHOT_GROUPS)))
    return {
        "many": _group_mean(acc, many),
        "medium": _group_mean(acc, medium),
        "few": _group_mean(acc, few),
        "num_many": int(many.sum()),
        "num_medium": int(medium.sum()),
        "num_few": int(few.sum()),
    }


def index_range_group_accuracy(
    per_class_acc, ranges: Mapping[str, tuple[int, int]] | None = None
) -> dict[str, float]:
    """Group accuracies over half-open class-index ranges (MiSLAS CIFAR-LT convention).

    Args:
      per_class_acc: ``(C,)`` from :func:`per_class_accuracy`.
      ranges: ``{name: (start, stop)}``; ``None`` uses :data:`MISLAS_CLASS_RANGES` ``[C]``
        (defined for C = 10 and C = 100).

    Returns:
      ``{name: mean per-class accuracy over classes start..stop-1}`` (NaN if none present).
    """
    acc = _class_acc_vector(per_class_acc)
    num_classes = acc.size
    if ranges is None:
        if num_classes not in MISLAS_CLASS_RANGES:
            raise ValueError(
                f"no default MiSLAS ranges for C={num_classes} (defined for C in "
                f"{sorted(MISLAS_CLASS_RANGES)}); pass ranges explicitly"
            )
        ranges = MISLAS_CLASS_RANGES[num_classes]
    out = {}
    for name, (start, stop) in ranges.items():
        if not 0 <= start < stop <= num_classes:
            raise ValueError(
                f"range {name!r}=({start}, {stop}) must satisfy "
                f"0 <= start < stop <= C={num_classes}"
            )
        members = np.zeros(num_classes, dtype=bool)
        members[start:stop] = True
        out[name] = _group_mean(acc, members)
    return out
