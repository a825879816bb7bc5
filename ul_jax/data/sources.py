"""One entry point, :func:`load_dataset`, for every in-memory dataset, chosen by ``source``.

The datasets, their classes, splits and allowed sources are the table of
:mod:`ul_jax.data.registry` (``cifar10``, ``cifar100``, ``svhn_cropped``, ``digits``,
``digits_far_ood``, ``cifar10_split_id``, ``cifar10_split_near_ood``); any other tfds name also
loads with ``source="tfds"``. How each source serves them:

* ``tfds`` / ``image_folder``: CIFAR-10 (image_folder: ``<data_dir>/cifar10.tar.gz``, the offline
  JPEG copy), CIFAR-100 and SVHN (not available offline here).
* ``digits``: sklearn's real 8×8 handwritten digits, resized RGB — ``digits`` is a seeded
  stratified 75/25 train/test split, ``digits_far_ood`` all 1,797 digits as 32×32 RGB, an offline
  far-OOD set for CIFAR-10 (digits, like SVHN — but not SVHN).
* class subsets (registry ``base``/``classes``): ``cifar10_split_id`` = CIFAR-10 classes 0–5,
  labels 0–5, the in-distribution half of a near-OOD class split; ``cifar10_split_near_ood`` =
  classes 6–9 relabelled 0–3, the near-OOD half.

Streamed datasets (``imagenet100``, from ``imagenet2012``) do not fit in memory: see
:mod:`ul_jax.data.imagenet`.

``image_folder`` resolves ``name`` to ``path`` if given, else to the first existing of
``<data_dir>/<name>.tar.gz``, ``.tgz``, ``.tar``, ``<data_dir>/<name>/`` with ``data_dir``
defaulting to ``$UL_JAX_DATA_DIR`` or ``<repo>/../shared/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ul_jax.data import _cache
from ul_jax.data.dataset import ArrayDataset, select_classes
from ul_jax.data.digits import load_digits
from ul_jax.data.image_folder import load_image_folder, missing_path_error
from ul_jax.data.long_tail import make_long_tailed
from ul_jax.data.registry import DATASETS, SOURCES, DatasetSpec
from ul_jax.data.tfds_source import load_tfds

__all__ = [
    "SOURCES",
    "DIGITS_NAMES",
    "NEAR_OOD_ID_CLASSES",
    "NEAR_OOD_OOD_CLASSES",
    "resolve_image_folder",
    "load_dataset",
]

DIGITS_NAMES = tuple(n for n, s in DATASETS.items() if "digits" in s.sources)
NEAR_OOD_ID_CLASSES = DATASETS["cifar10_split_id"].classes
NEAR_OOD_OOD_CLASSES = DATASETS["cifar10_split_near_ood"].classes


def resolve_image_folder(
    name: str, data_dir: str | os.PathLike | None = None, path: str | os.PathLike | None = None
) -> Path:
    """The archive or directory of dataset ``name`` (see the module docstring)."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise missing_path_error(p)
        return p
    base = Path(data_dir).expanduser() if data_dir is not None else _cache.default_data_dir()
    candidates = [base / f"{name}.tar.gz", base / f"{name}.tgz", base / f"{name}.tar", base / name]
    for c in candidates:
        if c.exists():
            return c
    missing = "" if base.is_dir() else f" ({base} does not exist)"
    raise FileNotFoundError(
        f"no image folder for dataset {name!r}: none of {[str(c) for c in candidates]} "
        f"exists{missing}. Put an ImageFolder archive (split/class_name/image) there, or give "
        "the directory that holds it as data.data_dir (--config.data.data_dir=DIR; data_dir= "
        f"or path= of load_dataset) or ${_cache.ENV_DATA_DIR} (default <repo>/../shared/data, "
        "which has cifar10.tar.gz on the project's machines). CIFAR-100 and SVHN are not "
        "available offline: use source='tfds' with the dataset prepared beforehand on a "
        f"machine with network (`tfds build {name} --file_format=array_record`; ul_jax never "
        "downloads)."
    )


def _load_base(
    name: str, split: str, source: str, data_dir, path, image_size, cache: bool, cache_dir
) -> ArrayDataset:
    if source == "tfds":
        if image_size is not None:
            raise ValueError(
                "image_size is not supported with source='tfds' (images keep their size)"
            )
        return load_tfds(name, split, data_dir=data_dir, cache=cache, cache_dir=cache_dir)
    folder = resolve_image_folder(name, data_dir, path)
    images, labels, class_names = load_image_folder(
        folder, split, image_size=image_size, cache=cache, cache_dir=cache_dir
    )
    return ArrayDataset(name, split, images, labels, class_names)


def load_dataset(
    name: str,
    split: str,
    *,
    source: str = "tfds",
    data_dir: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    image_size: int | None = None,
    seed: int = 0,
    imbalance_ratio: float | None = None,
    imbalance_kind: str = "exp",
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ArrayDataset:
    """Loads ``split`` of dataset ``name`` from ``source`` into memory.

    Args:
      name: see the module docstring.
      split: ``"train"`` / ``"test"`` (tfds split strings work with ``source="tfds"``; digits
        also accept ``"all"``).
      source: ``"tfds"``, ``"image_folder"`` or ``"digits"`` (required for the digits names).
      data_dir: tfds data_dir, or the folder holding image-folder archives.
      path: explicit archive/directory for ``source="image_folder"``.
      image_size: digits: output side (default 16 for ``digits``, 32 for ``digits_far_ood``);
        image_folder: optional resize; tfds: not supported.
      seed: digits split seed and long-tailed subset seed.
      imbalance_ratio: if given, the *train* split is subsampled to the LDAM-DRW long-tailed
        profile ``imbalance_kind`` (``"exp"``/``"step"``); other splits stay balanced.
      cache, cache_dir: decoded-array cache (image_folder and tfds).

    Returns:
      :class:`ArrayDataset` (uint8 ``(n, H, W, 3)`` images, int32 labels).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}; got source={source!r}")
    spec = DATASETS.get(name)
    _check_source(name, source, spec)
    if source == "digits":
        ds = _load_digits(spec, split, image_size, seed)
    elif spec is not None and spec.base is not None:
        base = _load_base(spec.base, split, source, data_dir, path, image_size, cache, cache_dir)
        want = DATASETS[spec.base].num_classes
        if base.num_classes != want:
            raise ValueError(
                f"{name} needs {spec.base} ({want} classes); the source has {base.num_classes}"
            )
        ds = select_classes(base, spec.classes, name=name)
    else:
        ds = _load_base(name, split, source, data_dir, path, image_size, cache, cache_dir)
    if imbalance_ratio is not None and split == "train":
        ds = make_long_tailed(ds, imbalance_ratio, imbalance_kind, seed)  # type: ignore[arg-type]
    return ds


def _check_source(name: str, source: str, spec: DatasetSpec | None) -> None:
    """``source`` must be one of the registry's sources of ``name`` (unregistered names: any
    source but ``digits``); streamed datasets have their own loader."""
    if (name in DIGITS_NAMES) != (source == "digits"):
        raise ValueError(
            f"dataset {name!r} with source={source!r}: the digits datasets {DIGITS_NAMES} need "
            "source='digits', and source='digits' serves only those"
        )
    if spec is None:
        return
    if spec.streamed:
        raise ValueError(
            f"dataset {name!r} is streamed, it does not fit in memory: use its "
            "loader (ul_jax.data.make_imagenet100_loader), not load_dataset"
        )
    if source not in spec.sources:
        raise ValueError(
            f"dataset {name!r} cannot be loaded with source={source!r}; its sources: {spec.sources}"
        )


def _load_digits(spec: DatasetSpec, split: str, image_size: int | None, seed: int) -> ArrayDataset:
    size = image_size or spec.image_size
    if spec.name == "digits":
        return load_digits(split, image_size=size, seed=seed)
    # digits_far_ood: every sklearn digit, whatever evaluation split is asked for
    if split not in spec.splits:
        raise ValueError(
            f"{spec.name} is an evaluation set: split must be one of {spec.splits}; got {split!r}"
        )
    ds = load_digits("all", image_size=size, seed=seed, name=spec.name)
    return ArrayDataset(ds.name, split, ds.images, ds.labels, ds.class_names)
