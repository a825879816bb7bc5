"""Long-tailed subsampling exactly as LDAM-DRW (Cao et al., 2019, ``imbalance_cifar.py``).

With ``n_max`` examples in the largest class, imbalance ratio ``ρ = n_max / n_min`` and
``C`` classes (class ``c`` = label ``c``):

* ``exp``:  ``n_c = int(n_max · (1/ρ)^(c/(C−1)))`` — LDAM-DRW's
  ``int(img_max * (imb_factor ** (cls_idx / (cls_num - 1.0))))`` with ``imb_factor = 1/ρ``
  (the same float operations, so the same truncation);
* ``step``: the first ``C//2`` classes keep ``n_max``, the other ``C − C//2`` get
  ``int(n_max · (1/ρ))``. (LDAM-DRW's loop emits only ``2·(C//2)`` counts, i.e. drops the last
  class for odd ``C``; here every class gets a count.)

Which examples are kept is a seeded random subset of each class
(``np.random.default_rng(seed)``, one permutation per class in label order); the returned
indices are sorted, so the kept examples stay in dataset order. Only the train split is
subsampled; the test split stays balanced.

CIFAR-10 (``n_max = 5000``), ``exp``: ρ=100 keeps 12,406 examples (5000, 2997, 1796, 1077, 645,
387, 232, 139, 83, 50); ρ=50 → 13,996; ρ=10 → 20,431. CIFAR-100 (``n_max = 500``), ρ=100 → 10,847.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ul_jax.data.dataset import ArrayDataset
from ul_jax.losses import validate_labels

__all__ = ["long_tailed_counts", "long_tailed_indices", "make_long_tailed"]

ImbalanceKind = Literal["exp", "step"]


def long_tailed_counts(
    n_max: int, num_classes: int, imbalance_ratio: float, kind: ImbalanceKind = "exp"
) -> list[int]:
    """Per-class example counts ``[n_0, ..., n_{C−1}]`` (see the module docstring).

    Args:
      n_max: examples kept in class 0 (the per-class size of the balanced train set), ≥ 1.
      num_classes: C ≥ 2.
      imbalance_ratio: ρ ≥ 1 (ρ = 1: balanced).
      kind: ``"exp"`` or ``"step"``.

    Raises:
      ValueError: bad argument, or a ρ so large that some class keeps 0 examples.
    """
    if isinstance(n_max, bool) or int(n_max) != n_max or n_max < 1:
        raise ValueError(f"n_max must be a positive integer; got n_max={n_max}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got num_classes={num_classes}")
    ratio = float(imbalance_ratio)
    if not math.isfinite(ratio) or ratio < 1.0:
        raise ValueError(
            f"imbalance_ratio must be a finite number >= 1; got imbalance_ratio={imbalance_ratio}"
        )
    n_max, num_classes = int(n_max), int(num_classes)
    imb_factor = 1.0 / ratio
    if kind == "exp":
        counts = [
            int(n_max * (imb_factor ** (c / (num_classes - 1.0)))) for c in range(num_classes)
        ]
    elif kind == "step":
        half = num_classes // 2
        counts = [n_max] * half + [int(n_max * imb_factor)] * (num_classes - half)
    else:
        raise ValueError(f"kind must be 'exp' or 'step'; got kind={kind!r}")
    empty = [c for c, n in enumerate(counts) if n < 1]
    if empty:
        raise ValueError(
            f"imbalance_ratio={imbalance_ratio} with n_max={n_max} leaves class {empty[0]} "
            f"(and {len(empty) - 1} more) with 0 examples ({kind} profile); "
            f"use imbalance_ratio <= {n_max}"
        )
    return counts


def long_tailed_indices(
    labels: np.ndarray,
    num_classes: int,
    imbalance_ratio: float,
    kind: ImbalanceKind = "exp",
    seed: int = 0,
    n_max: int | None = None,
) -> np.ndarray:
    """Sorted indices of a seeded long-tailed subset of a labelled set.

    Args:
      labels: ``(n,)`` integer labels in ``[0, num_classes)``.
      num_classes: C.
      imbalance_ratio, kind: as :func:`long_tailed_counts`.
      seed: selects which examples of each class are kept.
      n_max: default: the smallest class count (the per-class size of a balanced set).

    Returns:
      ``(Σ_c n_c,)`` int64 indices into ``labels``, ascending.
    """
    labels = validate_labels(labels, num_classes)
    have = np.bincount(labels, minlength=num_classes)
    if n_max is None:
        n_max = int(have.min())
        if n_max == 0:
            raise ValueError(f"class {int(np.argmin(have))} has no examples; cannot derive n_max")
    counts = long_tailed_counts(n_max, num_classes, imbalance_ratio, kind)
    short = [c for c in range(num_classes) if have[c] < counts[c]]
    if short:
        c = short[0]
        raise ValueError(
            f"class {c} has {have[c]} examples but the {kind} profile with n_max={n_max}, "
            f"imbalance_ratio={imbalance_ratio} asks for {counts[c]}"
        )
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(np.flatnonzero(labels == c))[: counts[c]] for c in range(num_classes)]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def make_long_tailed(
    dataset: ArrayDataset,
    imbalance_ratio: float,
    kind: ImbalanceKind = "exp",
    seed: int = 0,
    n_max: int | None = None,
) -> ArrayDataset:
    """The long-tailed subset of a (train) :class:`ArrayDataset`, named ``<name>_lt_<kind>_<ρ>``."""
    idx = long_tailed_indices(
        dataset.labels, dataset.num_classes, imbalance_ratio, kind, seed, n_max
    )
    return dataset.subset(idx, name=f"{dataset.name}_lt_{kind}_{imbalance_ratio:g}")
