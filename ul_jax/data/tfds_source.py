"""TensorFlow Datasets sources, without TensorFlow where possible.

* ``tfds.data_source(name, split=..., data_dir=..., download=False)`` reads array_record-prepared
  datasets with random access and decodes in NumPy/Pillow: no TensorFlow needed (accelerator
  images). This is the default.
* If the dataset was prepared in the TFRecord format (random access unsupported) and TensorFlow
  is installed (``pip install -e '.[tf]'``), ``tfds.load(..., batch_size=-1)`` reads it instead.

Datasets are never downloaded implicitly: an unprepared dataset raises ``FileNotFoundError``
naming the dataset, split and data_dir, with the command that prepares it.

Small datasets (``cifar10``, ``cifar100``, ``svhn_cropped``) are read whole into memory
(:func:`load_tfds`) and the decoded arrays cached like :mod:`ul_jax.data.image_folder` (key:
name, version, split, data_dir and number of examples). ``imagenet2012`` is streamed, see
:mod:`ul_jax.data.imagenet`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from ul_jax.data import _cache
from ul_jax.data.dataset import ArrayDataset
from ul_jax.losses import validate_labels

__all__ = [
    "IN_MEMORY_TFDS_NAMES",
    "DatasetFormatError",
    "tensorflow_available",
    "open_data_source",
    "load_tfds",
]


class DatasetFormatError(RuntimeError):
    """A prepared tfds dataset that cannot be read here (TFRecord without TensorFlow, a split
    that fails to open); the message names the dataset, the directory and the fix."""


IN_MEMORY_TFDS_NAMES = ("cifar10", "cifar100", "svhn_cropped")
_CACHE_FORMAT = 1


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _prepare_hint(name: str, data_dir: str | None) -> str:
    dd = f" --data_dir={data_dir}" if data_dir else ""
    return (
        f"prepare it on a machine with network access with `tfds build {name}{dd} "
        f"--file_format=array_record` (ImageNet needs its tars downloaded by hand into "
        f"<data_dir>/downloads/manual, see the tfds imagenet2012 docs), or point data.data_dir "
        "(--config.data.data_dir=DIR) or $TFDS_DATA_DIR to where it is prepared"
    )


def _not_prepared(name: str, split: str, data_dir: str | None, cause: Exception) -> Exception:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # unknown name, bad data_dir
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ValueError(f"tfds dataset {name!r} cannot be opened: {first}")
    where = str(builder.data_dir)
    if not (Path(where) / "dataset_info.json").exists():
        return FileNotFoundError(
            f"tfds dataset {name!r} (split {split!r}) is not prepared in {where!r}; "
            + _prepare_hint(name, data_dir)
        )
    first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    if isinstance(cause, NotImplementedError):
        return DatasetFormatError(
            f"tfds dataset {name!r} in {where!r} is prepared as TFRecord, which needs TensorFlow "
            "(pip install -e '.[tf]'); without TensorFlow re-prepare it with "
            f"`tfds build {name} --file_format=array_record`. Cause: {first}"
        )
    kind = ValueError if isinstance(cause, ValueError) else DatasetFormatError  # unknown split
    return kind(f"cannot read tfds dataset {name!r} split {split!r} from {where!r}: {first}")


@contextlib.contextmanager
def _quiet_absl():
    """absl logging at ERROR for the duration (tfds logs its own warnings before an error
    that :func:`open_data_source` turns into one line)."""
    import logging

    absl_logger = logging.getLogger("absl")
    old = absl_logger.level  # restored exactly (NOTSET stays NOTSET: the root's level applies)
    absl_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        absl_logger.setLevel(old)


def open_data_source(
    name: str, split: str, data_dir: str | os.PathLike | None = None, **kwargs: Any
):
    """``tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)`` with
    clear errors (see the module docstring). Raises ``NotImplementedError`` only for a
    TFRecord-prepared dataset when TensorFlow is installed (callers then use ``tfds.load``)."""
    import tensorflow_datasets as tfds

    data_dir = None if data_dir is None else str(data_dir)
    try:
        with _quiet_absl():  # tfds warns about the empty folders of an unprepared dataset
            return tfds.data_source(name, split=split, data_dir=data_dir, download=False, **kwargs)
    except NotImplementedError as e:
        err = _not_prepared(name, split, data_dir, e)
        if isinstance(err, RuntimeError) and tensorflow_available():
            raise
        # not prepared: tfds's error claims a TFRecord dataset "already prepared" there (it
        # looks at the version folder only), which misleads; the message says what tfds found
        raise err from (None if isinstance(err, FileNotFoundError) else e)
    except (FileNotFoundError, AssertionError, ValueError, OSError, KeyError) as e:
        # KeyError: tfds's default data_dir with an empty version folder ("splits is empty")
        err = _not_prepared(name, split, data_dir, e)
        raise err from (None if isinstance(err, FileNotFoundError) else e)


def _read_source(ds, image_key: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    n = len(ds)
    images = None
    labels = np.empty(n, np.int64)
    for i in range(n):
        ex = ds[i]
        img = np.asarray(ex[image_key])
        if images is None:
            images = np.empty((n, *img.shape), np.uint8)
        if img.shape != images.shape[1:]:
            raise ValueError(
                f"example {i} has image shape {img.shape}, expected {images.shape[1:]}"
            )
        images[i] = img
        labels[i] = int(ex[label_key])
    if images is None:
        raise ValueError("the split is empty")
    return images, labels


def _read_with_tf(name: str, split: str, data_dir, image_key: str, label_key: str):
    import tensorflow_datasets as tfds

    data = tfds.as_numpy(
        tfds.load(name, split=split, data_dir=data_dir, batch_size=-1, download=False)
    )
    return np.asarray(data[image_key], np.uint8), np.asarray(data[label_key], np.int64)


def load_tfds(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    image_key: str = "image",
    label_key: str = "label",
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ArrayDataset:
    """Reads a small tfds image classification split into memory.

    Args:
      name: ``cifar10``, ``cifar100``, ``svhn_cropped`` (any tfds name with equally sized
        ``(H, W, 3)`` uint8 images and a ClassLabel works); ``imagenet2012`` is refused (use
        :func:`ul_jax.data.imagenet.ImageNetLoader`).
      split: tfds split string (``"train"``, ``"test"``, ``"train[:10%]"``, ...).
      data_dir: tfds data directory (default: tfds's, i.e. ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      cache: cache the decoded arrays as ``.npy`` under ``cache_dir``.

    Returns:
      :class:`ArrayDataset` named ``name`` with the ClassLabel's class names.
    """
    if name.startswith("imagenet2012"):
        raise ValueError(
            f"{name!r} does not fit in memory; stream it with ul_jax.data.imagenet.ImageNetLoader"
        )
    data_dir = None if data_dir is None else str(data_dir)
    try:
        ds = open_data_source(name, split, data_dir)
    except NotImplementedError:  # TFRecord-prepared and TensorFlow present
        ds = None
    if ds is not None:
        info = ds.dataset_info
    else:
        import tensorflow_datasets as tfds

        info = tfds.builder(name, data_dir=data_dir).info
    label_feature = info.features[label_key]
    class_names = tuple(label_feature.names)

    entry = None
    if cache:
        n = len(ds) if ds is not None else -1
        key = _cache.sha256_text(
            f"tfds|{name}|{info.version}|{split}|{info.data_dir}|{n}|{image_key}|{label_key}|v{_CACHE_FORMAT}"
        )
        base = Path(cache_dir).expanduser() if cache_dir is not None else _cache.default_cache_dir()
        entry = base / "tfds" / key
        hit = _cache.load_arrays(entry)
        if hit is not None and (n < 0 or hit[1].get("num_examples") == n):
            arrays, _ = hit
            return ArrayDataset(name, split, arrays["images"], arrays["labels"], class_names)

    if ds is not None:
        images, labels = _read_source(ds, image_key, label_key)
    else:
        images, labels = _read_with_tf(name, split, data_dir, image_key, label_key)
    labels = validate_labels(labels, len(class_names), name=f"{name}/{split} labels")
    if entry is not None:
        _cache.save_arrays(
            entry,
            {"images": images, "labels": labels},
            {
                "tfds_name": name,
                "split": split,
                "version": str(info.version),
                "num_examples": int(len(labels)),
            },
        )
    return ArrayDataset(name, split, images, labels, class_names)
