"""OOD test sets: :data:`OOD_SETS` (derived from the dataset registry) and their loader.

Every dataset of :mod:`ul_jax.data.registry` with an :class:`~ul_jax.data.registry.OODRole` is an
OOD set, plus ``uniform_noise`` (synthetic, no real data, a sanity check). The sets carry honest
names: ``digits_far_ood`` is sklearn's handwritten digits, an offline *stand-in* for SVHN, not
SVHN; only ``svhn_cropped`` (tfds) is SVHN. A set that shares images or classes with the run's
data (``digits_far_ood`` for a digits run, ``cifar10`` for a CIFAR-10 run, ...) is refused by
:func:`check_ood_names`. For the digits demo the offline far-OOD set is ``cifar10`` (the CIFAR-10
test split resized to the run's size); there is no near-OOD set for digits (the training stack has
no digits class-split dataset), whereas CIFAR runs trained on ``cifar10_split_id`` have
``cifar10_split_near_ood``.

:func:`load_ood_images` loads a set at the run's input size: images of another size are resized
with Pillow's bilinear filter (:func:`resize_images`, the loaders' own ``image_size`` resize) and
the returned info records ``native_size`` / ``resized``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ul_jax.data.registry import DATASETS
from ul_jax.data.sources import load_dataset

__all__ = [
    "OODSet",
    "OOD_SETS",
    "UNIFORM_NOISE_SIZE",
    "UNIFORM_NOISE_SEED",
    "check_ood_names",
    "usable_ood_sets",
    "resize_images",
    "load_ood_images",
]

UNIFORM_NOISE_SIZE = 2000
UNIFORM_NOISE_SEED = 0


@dataclasses.dataclass(frozen=True)
class OODSet:
    """An OOD test set: how to load it and with which runs it must not be used."""

    name: str
    description: str
    sources: tuple[str, ...]  # loaders allowed, in order of preference
    split: str
    follow_run_source: bool = False  # prefer the run's own data.source if it is allowed
    overlaps: tuple[str, ...] = ()  # run data.name values this set shares images/classes with
    overlap_reason: str = ""


def _from_registry() -> dict[str, OODSet]:
    out = {}
    for name, spec in DATASETS.items():
        role = spec.ood
        if role is not None:
            out[name] = OODSet(
                name,
                role.description,
                spec.sources,
                role.split,
                follow_run_source=role.follow_run_source,
                overlaps=role.not_for,
                overlap_reason=role.reason,
            )
    return out


_REGISTERED = _from_registry()
_PAPER_SET = "svhn_cropped"  # the paper's OOD set leads every listing of valid names

OOD_SETS: dict[str, OODSet] = {
    **{n: s for n, s in _REGISTERED.items() if n == _PAPER_SET},
    **{n: s for n, s in _REGISTERED.items() if n != _PAPER_SET},
    "uniform_noise": OODSet(
        "uniform_noise",
        f"synthetic: {UNIFORM_NOISE_SIZE:,} images of i.i.d. uniform pixels 0..255 "
        f"(numpy default_rng({UNIFORM_NOISE_SEED})) at the run's input size; no real data, "
        "a sanity check",
        ("synthetic",),
        "test",
    ),
}


def usable_ood_sets(dataset: str) -> tuple[str, ...]:
    """The OOD sets that may be used for a run trained on ``dataset`` (its ``data.name``)."""
    return tuple(k for k, s in OOD_SETS.items() if dataset not in s.overlaps)


def check_ood_names(names: Iterable[str], dataset: str | None = None) -> tuple[str, ...]:
    """Validates OOD set names (and, given the run's ``data.name``, that none overlaps it).

    Returns the names, de-duplicated in order. Raises ``ValueError`` listing the valid names.
    """
    out: list[str] = []
    for n in names:
        if n not in OOD_SETS:
            raise ValueError(f"unknown OOD set {n!r}; valid OOD sets: {', '.join(OOD_SETS)}")
        spec = OOD_SETS[n]
        if dataset is not None and dataset in spec.overlaps:
            raise ValueError(
                f"OOD set {n!r} cannot be used for a run trained on {dataset!r}: "
                f"{spec.overlap_reason}. Usable here: "
                f"{', '.join(usable_ood_sets(dataset))}"
            )
        if n not in out:
            out.append(n)
    return tuple(out)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(n, h, w, 3)`` uint8 → ``(n, H, W, 3)`` uint8 with Pillow's bilinear filter (the resize of
    the image-folder and digits loaders); returned unchanged if already ``size``."""
    h, w = int(size[0]), int(size[1])
    if images.shape[1:3] == (h, w):
        return images
    out = np.empty((images.shape[0], h, w, images.shape[3]), np.uint8)
    for i, im in enumerate(images):
        out[i] = np.asarray(Image.fromarray(im).resize((w, h), Image.Resampling.BILINEAR))
    return out


def _ood_source(spec: OODSet, config, source: str | None, data_dir) -> tuple[str, Any]:
    """The loader of ``spec``: ``source`` if the set can load from it, else the run's own
    ``data.source`` for the CIFAR-10 sets, else the set's first choice. ``data_dir`` defaults to
    the run's when the loader is the run's."""
    run_source = config.data.source if config is not None else None
    if source is not None and source in spec.sources:
        pass
    elif spec.follow_run_source and run_source in spec.sources:
        source = run_source
    else:
        source = spec.sources[0]
    if data_dir is None and config is not None and source == run_source:
        data_dir = config.data.data_dir
    return source, data_dir


def _load_native(spec: OODSet, src: str, ddir, h: int, w: int) -> np.ndarray:
    """The set's images as its loader yields them (digits: generated at the run's size)."""
    if src == "synthetic":
        rng = np.random.default_rng(UNIFORM_NOISE_SEED)
        return rng.integers(0, 256, size=(UNIFORM_NOISE_SIZE, h, w, 3), dtype=np.uint8)
    if src == "digits":
        # generated from the 8x8 originals straight at the run's size (as the ID digits are)
        return load_dataset(spec.name, spec.split, source="digits", image_size=h).images
    try:
        return load_dataset(spec.name, spec.split, source=src, data_dir=ddir).images
    except (OSError, ImportError, KeyError) as e:  # KeyError: tfds, an unprepared variant
        others = [x for x in spec.sources if x != src]
        hint = f"; try ood_source={others[0]!r}" if others else ""
        raise FileNotFoundError(
            f"OOD set {spec.name!r} is not available with source={src!r} "
            f"(data_dir={ddir}): {type(e).__name__}: {e}{hint}"
        ) from e


def load_ood_images(
    name: str, image_shape: Sequence[int], *, config=None, source: str | None = None, data_dir=None
) -> tuple[np.ndarray, dict]:
    """Loads OOD set ``name`` as uint8 ``(n, H, W, 3)`` at the run's ``image_shape = (H, W, 3)``.

    Args:
      name: a key of :data:`OOD_SETS`.
      image_shape: the run's input shape; other sizes are resized (:func:`resize_images`).
      config: the run's config: picks the loader (``cifar10*`` follow the run's ``data.source``)
        and ``data_dir`` (when the loader is the run's).
      source, data_dir: override the loader (for sets that can use it; ``digits_far_ood`` and
        ``uniform_noise`` have one fixed loader) and its data directory.

    Returns:
      ``(images, info)`` with ``info`` = name, description, source, split, num_examples,
      native_size, resized, image_shape.
    """
    (name,) = check_ood_names([name])
    spec = OOD_SETS[name]
    h, w = int(image_shape[0]), int(image_shape[1])
    src, ddir = _ood_source(spec, config, source, data_dir)
    images = np.asarray(_load_native(spec, src, ddir, h, w))
    native = [int(images.shape[1]), int(images.shape[2])]
    images = resize_images(images, (h, w))
    info = {
        "name": name,
        "description": spec.description,
        "source": src,
        "split": spec.split,
        "num_examples": int(images.shape[0]),
        "native_size": native,
        "resized": native != [h, w],
        "image_shape": [h, w, 3],
    }
    return images, info
