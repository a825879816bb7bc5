"""Host-side ImageNet transforms on single images: NumPy for the geometry, Pillow for resizing.

* train: random-resized-crop to ``size×size`` (torchvision's sampler: area fraction
  ``s ~ U(scale)``, log-aspect ``log r ~ U(log ratio)``, up to 10 tries, else a center crop with
  the aspect clamped to ``ratio``), bilinear resize, then a horizontal flip with probability ½;
* eval: resize the shorter side to ``resize_size`` (256, aspect kept), center crop ``size`` (224).

All take ``(H, W, 3)`` uint8 and return uint8; normalization happens on device
(:func:`ul_jax.data.augment.normalize` with :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`).
Randomness comes from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "random_resized_crop_box",
    "resize",
    "center_crop",
    "resize_shorter_side",
    "imagenet_train_transform",
    "imagenet_eval_transform",
]

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image must be (H, W, C) with H, W >= 1; got shape {image.shape}")


def random_resized_crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)`` of a random crop with area fraction in ``scale`` and aspect ``w/h``
    in ``ratio`` (torchvision ``RandomResizedCrop.get_params``); always inside the image."""
    if not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1; got scale={scale}")
    if not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"ratio must satisfy 0 < lo <= hi; got ratio={ratio}")
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, max(1, int(round(width / ratio[0])))
    elif in_ratio > ratio[1]:
        h, w = height, max(1, int(round(height * ratio[1])))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resize(
    image: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Bilinear (antialiased) resize of ``image`` (or of its crop ``box = (top, left, h, w)``) to
    ``size = (H, W)``."""
    _check_image(image)
    pil_box = None
    if box is not None:
        top, left, h, w = box
        pil_box = (left, top, left + w, top + h)
    out = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR, box=pil_box)
    return np.asarray(out)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size×size`` window (top-left at ``((H−size)//2, (W−size)//2)``)."""
    _check_image(image)
    h, w = image.shape[:2]
    if size > h or size > w:
        raise ValueError(f"crop size {size} exceeds image shape {image.shape}")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def resize_shorter_side(image: np.ndarray, size: int) -> np.ndarray:
    """Resizes so that ``min(H, W) = size``; the other side is ``round(size·long/short)``."""
    _check_image(image)
    h, w = image.shape[:2]
    if h <= w:
        new = (size, max(size, int(round(size * w / h))))
    else:
        new = (max(size, int(round(size * h / w))), size)
    if new == (h, w):
        return image
    return resize(image, new)


def imagenet_train_transform(
    rng: np.random.Generator,
    image: np.ndarray,
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> np.ndarray:
    """Random-resized-crop to ``(size, size, 3)`` + horizontal flip (p = ½); uint8."""
    _check_image(image)
    box = random_resized_crop_box(rng, image.shape[0], image.shape[1], scale, ratio)
    out = resize(image, (size, size), box)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def imagenet_eval_transform(
    image: np.ndarray, size: int = 224, resize_size: int = 256
) -> np.ndarray:
    """Resize shorter side to ``resize_size`` then center crop ``(size, size, 3)``; uint8."""
    if resize_size < size:
        raise ValueError(f"resize_size={resize_size} must be >= size={size}")
    return np.ascontiguousarray(center_crop(resize_shorter_side(image, resize_size), size))
