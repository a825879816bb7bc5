"""On-device augmentation for in-memory datasets (CIFAR, SVHN, digits): pure, jit-able JAX.

The train transform is the standard CIFAR one: zero-pad each side by ``p = 4`` pixels, take a
random ``H×W`` crop of the ``(H+2p)×(W+2p)`` padded image (offsets uniform in ``{0..2p}²``), flip
horizontally with probability ½, then normalize per channel, ``(x − mean_k) / std_k`` with
``mean``/``std`` in 0..255 pixel units. It runs on a uint8 batch and returns float32; randomness
comes only from the explicit key, so the output is a deterministic function of ``(key, images)``.
Random draws have shape ``(B,)`` over the *global* batch: with JAX's default partitionable
threefry they are the same whether the batch is one array or sharded over devices and hosts.

Use :func:`augment_key` to derive the per-step key from ``(seed, step)`` so a resumed run
reproduces the augmentation of an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "CIFAR_PADDING",
    "augment_key",
    "normalize",
    "crop_and_flip",
    "sample_crop_flip",
    "random_crop_flip",
    "cifar_train_transform",
    "cifar_eval_transform",
]

CIFAR_PADDING = 4


def augment_key(seed: int, step: int | Array) -> Array:
    """The augmentation key of global step ``step``: ``fold_in(key(seed), step)``."""
    return jax.random.fold_in(jax.random.key(seed), step)


def _check_images(images: Array) -> None:
    if jnp.ndim(images) != 4:
        raise ValueError(f"images must be (B, H, W, C); got images.shape={jnp.shape(images)}")


def normalize(images: Array, mean, std) -> Array:
    """``(x − mean) / std`` per channel, as float32.

    Args:
      images: ``(..., C)`` any dtype (uint8 pixels 0..255).
      mean, std: ``(C,)`` in the same units as the pixels (e.g. 0..255), std > 0.

    Returns:
      ``images.shape`` float32.
    """
    c = jnp.shape(images)[-1]
    if not isinstance(mean, jax.Array):
        mean = np.asarray(mean, np.float32)
    if not isinstance(std, jax.Array):
        std = np.asarray(std, np.float32)
    if jnp.shape(mean) != (c,) or jnp.shape(std) != (c,):
        raise ValueError(
            f"mean/std must have shape ({c},) for images.shape={jnp.shape(images)}; got "
            f"mean.shape={jnp.shape(mean)}, std.shape={jnp.shape(std)}"
        )
    if not isinstance(std, jax.core.Tracer) and np.any(~(np.asarray(std) > 0)):
        raise ValueError(f"std must be > 0; got std={np.asarray(std).tolist()}")
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (jnp.asarray(images, jnp.float32) - mean) * (1.0 / std)


def crop_and_flip(
    images: Array, offsets: Array, flips: Array, padding: int = CIFAR_PADDING
) -> Array:
    """Zero-pads by ``padding``, crops at ``offsets`` and flips where ``flips``.

    Args:
      images: ``(B, H, W, C)``.
      offsets: ``(B, 2)`` integer ``(dy, dx)`` in ``[0, 2·padding]``: output pixel ``(i, j)`` is
        padded pixel ``(i + dy, j + dx)``, i.e. input pixel ``(i + dy − p, j + dx − p)`` or 0
        outside the image. ``(p, p)`` is the identity crop.
      flips: ``(B,)`` bool; flipped rows are reversed along W *after* cropping.
      padding: p ≥ 0.

    Returns:
      ``(B, H, W, C)``, dtype of ``images``.
    """
    _check_images(images)
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got padding={padding}")
    b, h, w, c = jnp.shape(images)
    if jnp.shape(offsets) != (b, 2) or jnp.shape(flips) != (b,):
        raise ValueError(
            f"offsets must be ({b}, 2) and flips ({b},) for images.shape={jnp.shape(images)}; "
            f"got offsets.shape={jnp.shape(offsets)}, flips.shape={jnp.shape(flips)}"
        )
    p = padding
    padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
    offsets = jnp.clip(jnp.asarray(offsets, jnp.int32), 0, 2 * p)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))

    cropped = jax.vmap(crop)(padded, offsets)
    return jnp.where(jnp.asarray(flips)[:, None, None, None], cropped[:, :, ::-1, :], cropped)


def sample_crop_flip(
    key: Array, batch_size: int, padding: int = CIFAR_PADDING
) -> tuple[Array, Array]:
    """Draws ``offsets (B, 2)`` uniform in ``{0..2p}`` and ``flips (B,)`` Bernoulli(½)."""
    k_off, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_off, (batch_size, 2), 0, 2 * padding + 1, dtype=jnp.int32)
    flips = jax.random.bernoulli(k_flip, 0.5, (batch_size,))
    return offsets, flips


def random_crop_flip(key: Array, images: Array, padding: int = CIFAR_PADDING) -> Array:
    """Random pad-crop + horizontal flip of a ``(B, H, W, C)`` batch (dtype preserved)."""
    _check_images(images)
    offsets, flips = sample_crop_flip(key, jnp.shape(images)[0], padding)
    return crop_and_flip(images, offsets, flips, padding)


def cifar_train_transform(
    key: Array, images: Array, mean, std, padding: int = CIFAR_PADDING
) -> Array:
    """uint8 ``(B, H, W, 3)`` → float32 normalized, randomly cropped and flipped; jit-able."""
    return normalize(random_crop_flip(key, images, padding), mean, std)


def cifar_eval_transform(images: Array, mean, std) -> Array:
    """uint8 ``(B, H, W, 3)`` → float32 normalized (no augmentation)."""
    return normalize(images, mean, std)
