"""In-memory image classification datasets: :class:`ArrayDataset`, channel statistics, class subsets."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ul_jax.losses import validate_labels

__all__ = ["ArrayDataset", "channel_stats", "select_classes", "split_validation"]


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
    """A labelled image set held in host memory.

    Attributes:
      name: dataset name (``"cifar10"``, ``"cifar10_lt_exp_100"``, ``"digits_far_ood"``, ...).
      split: split name (``"train"``, ``"test"``, ...).
      images: ``(n, H, W, 3)`` uint8, pixel values 0..255, RGB.
      labels: ``(n,)`` int32 in ``[0, num_classes)``.
      class_names: label ``c`` is ``class_names[c]``.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        images, labels = self.images, np.asarray(self.labels)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"{self.name}/{self.split}: images must be uint8 (n, H, W, 3); got "
                f"images.shape={images.shape} dtype={images.dtype}"
            )
        if labels.shape != (images.shape[0],):
            raise ValueError(
                f"{self.name}/{self.split}: labels.shape={labels.shape} must be "
                f"(images.shape[0],)=({images.shape[0]},)"
            )
        object.__setattr__(self, "class_names", tuple(self.class_names))
        labels = validate_labels(
            labels, len(self.class_names), name=f"{self.name}/{self.split} labels"
        )
        object.__setattr__(self, "labels", labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def class_counts(self) -> np.ndarray:
        """``(num_classes,)`` int64 number of examples per class."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def subset(self, indices: np.ndarray, name: str | None = None) -> ArrayDataset:
        """The examples at ``indices`` (in that order), same classes."""
        indices = np.asarray(indices)
        return ArrayDataset(
            name=name or self.name,
            split=self.split,
            images=self.images[indices],
            labels=self.labels[indices],
            class_names=self.class_names,
        )


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation over all pixels, in 0..255 units.

    ``mean_k = 1/(nHW) Σ x_{·,·,·,k}``, ``std_k = sqrt(1/(nHW) Σ x² − mean_k²)``, accumulated in
    float64 in chunks of ``chunk`` images (no float copy of the whole set).

    Args:
      images: ``(n, H, W, C)`` any real dtype, n ≥ 1.

    Returns:
      ``(mean, std)``, each ``(C,)`` float64.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (n, H, W, C) array; got shape {images.shape}")
    c = images.shape[-1]
    total = np.zeros(c, np.float64)
    total_sq = np.zeros(c, np.float64)
    for start in range(0, images.shape[0], chunk):
        x = images[start : start + chunk].reshape(-1, c).astype(np.float64)
        total += x.sum(axis=0)
        total_sq += np.einsum("ij,ij->j", x, x)
    count = images.shape[0] * images.shape[1] * images.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean, std


def select_classes(
    dataset: ArrayDataset, classes: Sequence[int], name: str | None = None
) -> ArrayDataset:
    """Keeps the examples of ``classes`` and relabels class ``classes[j]`` as ``j``.

    Example order is preserved. Used for class-split near-OOD sets (e.g. CIFAR-10 classes 0–5
    in-distribution, 6–9 out-of-distribution).
    """
    classes = [int(c) for c in classes]
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes; got classes={classes}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct; got classes={classes}")
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if bad:
        raise ValueError(
            f"classes {bad} out of range [0, {dataset.num_classes}) for {dataset.name}"
        )
    lut = np.full(dataset.num_classes, -1, np.int64)
    lut[classes] = np.arange(len(classes))
    new = lut[dataset.labels]
    keep = np.flatnonzero(new >= 0)
    names = tuple(dataset.class_names[c] for c in classes)
    return ArrayDataset(
        name=name or dataset.name,
        split=dataset.split,
        images=dataset.images[keep],
        labels=new[keep].astype(np.int32),
        class_names=names,
    )


def split_validation(
    ds: ArrayDataset, per_class: int, seed: int
) -> tuple[ArrayDataset, ArrayDataset]:
    """A class-balanced validation set held out of a training set: ``(train_rest, validation)``.

    From every class ``c`` the first ``per_class`` indices of a seeded permutation of that class's
    examples (``np.random.default_rng([seed, c])``) go to the validation set, the others stay in
    the training set (original order kept in both). Hyper-parameters are chosen on the validation
    set; the test set is only used for the final numbers. Long-tailed subsets are drawn *after*
    this split from ``train_rest`` (so the validation set stays balanced, like the test set, and
    never overlaps the training images). Raises ``ValueError`` naming ``per_class`` if a class has
    fewer than ``per_class + 1`` examples.
    """
    if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
        raise ValueError(f"validation per_class must be a positive integer; got {per_class!r}")
    counts = ds.class_counts()
    if counts.min() <= per_class:
        c = int(np.argmin(counts))
        raise ValueError(
            f"{ds.name}/{ds.split}: data.validation_per_class={per_class} leaves no training "
            f"example of class {c} ({int(counts[c])} examples)"
        )
    held = []
    for c in range(ds.num_classes):
        idx = np.flatnonzero(ds.labels == c)
        perm = np.random.default_rng([int(seed), c]).permutation(idx.size)
        held.append(idx[perm[: int(per_class)]])
    held_idx = np.sort(np.concatenate(held))
    keep = np.ones(len(ds), bool)
    keep[held_idx] = False
    train = ds.subset(np.flatnonzero(keep))
    val = dataclasses.replace(ds.subset(held_idx), split="validation")
    return train, val
