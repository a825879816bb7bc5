"""On-device CIFAR augmentation (crop/flip semantics, keys, normalization) and the NumPy
ImageNet transforms on small random images."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ul_jax.data import augment, transforms
from ul_jax.data.dataset import channel_stats


def _batch(b=16, h=8, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------ crop + flip semantics
def _tiny():
    return np.arange(1, 10, dtype=np.uint8).reshape(1, 3, 3, 1)  # [[1,2,3],[4,5,6],[7,8,9]]


@pytest.mark.parametrize(
    "offset, flip, expected",
    [
        ((1, 1), False, [[1, 2, 3], [4, 5, 6], [7, 8, 9]]),  # identity crop
        ((0, 0), False, [[0, 0, 0], [0, 1, 2], [0, 4, 5]]),
        ((2, 2), False, [[5, 6, 0], [8, 9, 0], [0, 0, 0]]),
        ((2, 0), False, [[0, 4, 5], [0, 7, 8], [0, 0, 0]]),
        ((1, 1), True, [[3, 2, 1], [6, 5, 4], [9, 8, 7]]),
        ((0, 2), True, [[0, 0, 0], [0, 3, 2], [0, 6, 5]]),  # crop first, then flip
    ],
)
def test_crop_and_flip_by_hand(offset, flip, expected):
    out = augment.crop_and_flip(_tiny(), np.array([offset]), np.array([flip]), padding=1)
    assert out.dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(out)[0, :, :, 0], np.array(expected))


def _all_candidates(img, p):
    """Every possible output (offset, flip) of pad-crop-flip of one (H, W, C) image."""
    h, w, _ = img.shape
    padded = np.pad(img, ((p, p), (p, p), (0, 0)))
    out = {}
    for dy in range(2 * p + 1):
        for dx in range(2 * p + 1):
            crop = padded[dy : dy + h, dx : dx + w]
            out[(dy, dx, False)] = crop
            out[(dy, dx, True)] = crop[:, ::-1]
    return out


def test_random_crop_flip_outputs_are_valid_and_cover_all_choices():
    p, n = 1, 1800
    img = (np.arange(4 * 4 * 3).reshape(4, 4, 3) + 10).astype(np.uint8)  # unique nonzero pixels
    images = np.broadcast_to(img, (n, 4, 4, 3))
    out = np.asarray(
        jax.jit(augment.random_crop_flip, static_argnums=2)(jax.random.key(0), images, p)
    )
    cands = _all_candidates(img, p)
    keys = list(cands)
    stack = np.stack([cands[k] for k in keys])  # (18, 4, 4, 3)
    match = np.all(out[:, None] == stack[None], axis=(2, 3, 4))  # (n, 18)
    assert np.all(match.sum(axis=1) == 1), (
        "every output must be exactly one pad-crop-flip of the input"
    )
    freq = match.sum(axis=0) / n
    assert np.all(freq > 0.5 / 18) and np.all(freq < 1.5 / 18), freq
    flipped = match[:, [i for i, k in enumerate(keys) if k[2]]].any(axis=1).mean()
    assert 0.45 < flipped < 0.55


def test_random_crop_flip_shapes_dtype_determinism():
    x = _batch()
    f = jax.jit(augment.random_crop_flip)
    a = f(jax.random.key(1), x)
    chex.assert_shape(a, x.shape)
    assert a.dtype == jnp.uint8
    np.testing.assert_array_equal(a, f(jax.random.key(1), x))
    np.testing.assert_array_equal(a, augment.random_crop_flip(jax.random.key(1), x))  # jit == eager
    assert not np.array_equal(a, f(jax.random.key(2), x))


def test_cifar_train_transform_float32_normalized():
    x = _batch(b=32, h=32, w=32)
    mean, std = np.array([120.0, 110.0, 100.0]), np.array([60.0, 61.0, 62.0])
    out = jax.jit(augment.cifar_train_transform)(augment.augment_key(0, 5), x, mean, std)
    chex.assert_shape(out, x.shape)
    assert out.dtype == jnp.float32
    # same key -> same offsets/flips as random_crop_flip, then normalization
    ref = augment.random_crop_flip(augment.augment_key(0, 5), x)
    np.testing.assert_allclose(
        out, (np.asarray(ref, np.float32) - mean) / std, rtol=1e-6, atol=1e-5
    )
    other = augment.cifar_train_transform(augment.augment_key(0, 6), x, mean, std)
    assert not np.allclose(out, other)


def test_augment_key_depends_on_seed_and_step():
    k = augment.augment_key
    assert np.array_equal(jax.random.key_data(k(0, 3)), jax.random.key_data(k(0, 3)))
    assert not np.array_equal(jax.random.key_data(k(0, 3)), jax.random.key_data(k(0, 4)))
    assert not np.array_equal(jax.random.key_data(k(0, 3)), jax.random.key_data(k(1, 3)))


def test_normalize_values_and_errors():
    x = np.array([[[[0, 128, 255]]]], np.uint8)
    out = augment.normalize(x, [0.0, 128.0, 255.0], [1.0, 2.0, 5.0])
    np.testing.assert_allclose(out, np.zeros((1, 1, 1, 3)))
    out = augment.normalize(x, [10.0, 0.0, 5.0], [2.0, 4.0, 50.0])
    np.testing.assert_allclose(out[0, 0, 0], [-5.0, 32.0, 5.0], rtol=1e-6)
    with pytest.raises(ValueError, match=r"mean/std must have shape \(3,\)"):
        augment.normalize(x, [0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="std must be > 0"):
        augment.normalize(x, [0.0] * 3, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="images.shape"):
        augment.random_crop_flip(jax.random.key(0), np.zeros((3, 3, 3), np.uint8))


def test_channel_stats_and_normalization():
    rng = np.random.default_rng(0)
    x = np.stack(
        [rng.normal(m, s, (50, 6, 6)).clip(0, 255) for m, s in [(100, 20), (150, 30), (60, 10)]], -1
    ).astype(np.uint8)
    mean, std = channel_stats(x, chunk=7)  # chunking must not change the result
    flat = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, flat.std(0), rtol=1e-9)
    z = np.asarray(augment.cifar_eval_transform(x, mean, std)).reshape(-1, 3)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-4)


# ------------------------------------------------------------------ ImageNet transforms
def test_random_resized_crop_box_bounds_area_ratio():
    rng = np.random.default_rng(0)
    for h, w in [(40, 60), (60, 40), (33, 33), (7, 100)]:
        for _ in range(300):
            top, left, ch, cw = transforms.random_resized_crop_box(rng, h, w)
            assert (
                0 <= top and 0 <= left and top + ch <= h and left + cw <= w and ch >= 1 and cw >= 1
            )
    rng = np.random.default_rng(1)
    fracs, ratios = [], []
    for _ in range(500):
        _, _, ch, cw = transforms.random_resized_crop_box(rng, 200, 200)
        fracs.append(ch * cw / 200**2)
        ratios.append(cw / ch)
    fracs, ratios = np.array(fracs), np.array(ratios)
    assert fracs.min() > 0.07 and fracs.max() <= 1.0 and fracs.max() > 0.8
    assert ratios.min() > 0.74 and ratios.max() < 1.35
    a = transforms.random_resized_crop_box(np.random.default_rng(5), 50, 70)
    assert a == transforms.random_resized_crop_box(np.random.default_rng(5), 50, 70)


def test_random_resized_crop_box_fallback_is_center_crop():
    # aspect 2 at full area never fits a square image -> fallback: full width, height W/2, centered
    box = transforms.random_resized_crop_box(
        np.random.default_rng(0), 40, 40, scale=(1.0, 1.0), ratio=(2.0, 2.0)
    )
    assert box == (10, 0, 20, 40)
    box = transforms.random_resized_crop_box(
        np.random.default_rng(0), 30, 40, scale=(1.0, 1.0), ratio=(1.0, 1.5)
    )
    assert box == (0, 0, 30, 40)  # the whole image already has an allowed aspect
    with pytest.raises(ValueError, match="scale"):
        transforms.random_resized_crop_box(np.random.default_rng(0), 4, 4, scale=(0.5, 0.2))


def test_imagenet_train_transform():
    img = np.random.default_rng(0).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    a = transforms.imagenet_train_transform(np.random.default_rng(3), img, size=16)
    assert a.shape == (16, 16, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(
        a, transforms.imagenet_train_transform(np.random.default_rng(3), img, size=16)
    )
    assert not np.array_equal(
        a, transforms.imagenet_train_transform(np.random.default_rng(4), img, size=16)
    )
    const = np.full((37, 51, 3), 77, np.uint8)
    assert np.all(
        transforms.imagenet_train_transform(np.random.default_rng(0), const, size=16) == 77
    )
    # the crop + flip: with scale=(1,1) and ratio = the image's aspect the crop is the whole image
    full = transforms.random_resized_crop_box(
        np.random.default_rng(0), 20, 30, scale=(1, 1), ratio=(1.5, 1.5)
    )
    assert full == (0, 0, 20, 30)
    img2 = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    flips = []
    for s in range(40):
        out = transforms.imagenet_train_transform(
            np.random.default_rng(s), img2, size=20, scale=(1, 1), ratio=(1.5, 1.5)
        )
        resized = transforms.resize(img2, (20, 20))
        assert np.array_equal(out, resized) or np.array_equal(out, resized[:, ::-1])
        flips.append(np.array_equal(out, resized[:, ::-1]))
    assert 0 < sum(flips) < 40


def test_resize_shorter_side_and_center_crop():
    assert transforms.resize_shorter_side(np.zeros((20, 30, 3), np.uint8), 16).shape == (16, 24, 3)
    assert transforms.resize_shorter_side(np.zeros((30, 20, 3), np.uint8), 16).shape == (24, 16, 3)
    img = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    np.testing.assert_array_equal(transforms.center_crop(img, 12), img[2:14, 6:18])
    # shorter side already 16: eval = exact center crop
    np.testing.assert_array_equal(
        transforms.imagenet_eval_transform(img, size=12, resize_size=16), img[2:14, 6:18]
    )
    out = transforms.imagenet_eval_transform(np.zeros((300, 500, 3), np.uint8))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    with pytest.raises(ValueError, match="crop size 20"):
        transforms.center_crop(img, 20)
    with pytest.raises(ValueError, match="resize_size=100"):
        transforms.imagenet_eval_transform(img, size=224, resize_size=100)
