"""scikit-learn's bundled real handwritten digits as a small RGB image dataset (offline demo).

``sklearn.datasets.load_digits``: 1,797 real 8×8 grayscale scans of handwritten digits, values
0..16, 10 classes (about 180 each). Converted to uint8 by ``round(v·255/16)``, resized with
Pillow's bilinear filter to ``image_size × image_size`` and repeated to 3 channels. White
digits on a black background.

Split: stratified and seeded: for each class ``c`` (in label order) a permutation from
``np.random.default_rng(seed)`` puts the first ``round(test_fraction·n_c)`` examples in ``test``
and the rest in ``train``; indices are kept in dataset order. ``split="all"`` returns all 1,797.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from ul_jax.data.dataset import ArrayDataset

__all__ = ["DIGITS_CLASS_NAMES", "digits_arrays", "digits_split_indices", "load_digits"]

DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))


@functools.lru_cache(maxsize=8)
def _digits_arrays_cached(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits

    raw = _sk_load_digits()
    gray = np.rint(raw.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # (1797, 8, 8)
    if image_size != 8:
        gray = np.stack(
            [
                np.asarray(
                    Image.fromarray(g).resize((image_size, image_size), Image.Resampling.BILINEAR)
                )
                for g in gray
            ]
        )
    images = np.repeat(gray[..., None], 3, axis=-1)
    images.setflags(write=False)
    labels = raw.target.astype(np.int32)
    labels.setflags(write=False)
    return images, labels


def digits_arrays(image_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: ``(1797, S, S, 3)`` uint8 and ``(1797,)`` int32 (read-only arrays)."""
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer; got image_size={image_size}")
    return _digits_arrays_cached(int(image_size))


def digits_split_indices(
    labels: np.ndarray, split: str, seed: int = 0, test_fraction: float = 0.25
) -> np.ndarray:
    """Sorted indices of ``split`` (``"train"``/``"test"``/``"all"``) of the seeded stratified split."""
    if split == "all":
        return np.arange(len(labels))
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train', 'test' or 'all'; got split={split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got test_fraction={test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[: int(round(test_fraction * idx.size))])
    is_test = np.zeros(len(labels), bool)
    is_test[np.concatenate(test)] = True
    return np.flatnonzero(is_test if split == "test" else ~is_test)


def load_digits(
    split: str,
    *,
    image_size: int = 16,
    seed: int = 0,
    test_fraction: float = 0.25,
    name: str = "digits",
) -> ArrayDataset:
    """The sklearn digits as an :class:`ArrayDataset` of ``image_size²`` RGB images."""
    images, labels = digits_arrays(image_size)
    idx = digits_split_indices(labels, split, seed, test_fraction)
    return ArrayDataset(
        name=name,
        split=split,
        images=images[idx],
        labels=labels[idx],
        class_names=DIGITS_CLASS_NAMES,
    )
