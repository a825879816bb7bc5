"""ImageNet-2012 / ImageNet-100, streamed from tfds array_record files without TensorFlow.

ImageNet-100 here is the exact selection "labels 0..99 of tfds ``imagenet2012``": tfds labels
are the 1,000 WordNet IDs in sorted order, so these are the 100 smallest WNIDs, ``n01440764``
(tench) to ``n01855672`` (goose), with their original labels 0..99 (label order unchanged).
Train: all examples of those classes in ``train`` (about 126k); eval: those of ``validation``
(5,000). (Other papers' "ImageNet-100" — e.g. CMC's random 100 classes — is a different set.)

Loader (deliberately thin):

* records are read with ``tfds.data_source(..., deserialize_method=RAW_BYTES)`` and parsed with
  tfds's NumPy ``tf.Example`` parser (:class:`ParsedRecords`): the JPEG stays encoded until a
  worker needs it, and scanning labels does not decode images;
* the ImageNet-100 index (positions with label < 100) is computed once by that label scan and
  cached as ``.npy``;
* batch order and sharding are those of :mod:`ul_jax.data.pipeline` (same resume semantics:
  batch ``k`` is a function of ``(seed, k)``); each example's augmentation uses
  ``np.random.default_rng([seed, epoch, source_index])``, independent of thread scheduling,
  host count and batch size;
* decode + transform (:mod:`ul_jax.data.transforms`) run in a thread pool (Pillow releases the
  GIL while decoding and resizing), ``prefetch`` batches ahead. Output is uint8; normalize on
  device with ``IMAGENET_MEAN``/``IMAGENET_STD``.

grain and tf.data are not used (neither is a dependency); on a many-core host, raise
``num_threads``.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ul_jax.data import _cache
from ul_jax.data.image_folder import decode_image
from ul_jax.data.pipeline import (
    BatchLayout,
    eval_index_batches,
    steps_per_epoch,
    train_index_batches,
)
from ul_jax.data.registry import DATASETS
from ul_jax.data.transforms import imagenet_eval_transform, imagenet_train_transform

__all__ = [
    "IMAGENET100_NUM_CLASSES",
    "IMAGENET100_WNID_RANGE",
    "ParsedRecords",
    "open_imagenet2012",
    "scan_labels",
    "class_subset_indices",
    "imagenet100_indices",
    "ImageNetLoader",
    "make_imagenet100_loader",
]

IMAGENET100_NUM_CLASSES = DATASETS["imagenet100"].num_classes
IMAGENET100_WNID_RANGE = ("n01440764", "n01855672")


class ParsedRecords(Sequence):
    """Random access to serialized ``tf.Example`` records parsed with NumPy only.

    ``records[i]`` must be the serialized bytes; item ``i`` is
    ``{"image": encoded bytes, "label": int}`` (other features dropped).
    """

    def __init__(
        self, records: Sequence[bytes], features, image_key: str = "image", label_key: str = "label"
    ):
        from tensorflow_datasets.core import example_parser

        self._records = records
        self.dataset_info = getattr(records, "dataset_info", None)
        self._parser = example_parser.ExampleParserNp(features.get_serialized_info())
        self._image_key = image_key
        self._label_key = label_key

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i):  # type: ignore[override]
        ex = self._parser.parse_example(self._records[int(i)])
        return {"image": ex[self._image_key], "label": int(ex[self._label_key])}


def open_imagenet2012(split: str, data_dir: str | os.PathLike | None = None) -> ParsedRecords:
    """``imagenet2012`` ``split`` (``"train"``/``"validation"``) as :class:`ParsedRecords`."""
    import tensorflow_datasets as tfds

    from ul_jax.data.tfds_source import open_data_source

    ds = open_data_source(
        "imagenet2012", split, data_dir, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES
    )
    return ParsedRecords(ds, ds.dataset_info.features)


def scan_labels(source: Sequence[Any]) -> np.ndarray:
    """``(len(source),)`` int64 labels of every item (``item["label"]``)."""
    return np.fromiter((int(source[i]["label"]) for i in range(len(source))), np.int64, len(source))


def class_subset_indices(
    labels: np.ndarray, num_classes: int = IMAGENET100_NUM_CLASSES
) -> np.ndarray:
    """Ascending positions whose label is ``< num_classes``."""
    return np.flatnonzero(np.asarray(labels) < num_classes).astype(np.int64)


def imagenet100_indices(
    source: Sequence[Any],
    cache_key: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_classes: int = IMAGENET100_NUM_CLASSES,
) -> np.ndarray:
    """Positions of ``source`` with label < ``num_classes`` (cached under ``cache_key`` if given)."""
    entry = None
    if cache_key is not None:
        base = Path(cache_dir).expanduser() if cache_dir is not None else _cache.default_cache_dir()
        entry = (
            base / "imagenet_index" / _cache.sha256_text(f"{cache_key}|{len(source)}|{num_classes}")
        )
        hit = _cache.load_arrays(entry)
        if hit is not None:
            return hit[0]["indices"]
    idx = class_subset_indices(scan_labels(source), num_classes)
    if entry is not None:
        _cache.save_arrays(
            entry, {"indices": idx}, {"cache_key": cache_key, "num_classes": num_classes}
        )
    return idx


class ImageNetLoader:
    """Batches of decoded, transformed ImageNet images from a random-access source.

    Args:
      source: sequence whose item ``i`` is ``{"image": encoded bytes or (H, W, 3) uint8, "label": int}``
        (e.g. :func:`open_imagenet2012`).
      indices: the positions of ``source`` that form the dataset (default: all), e.g.
        :func:`imagenet100_indices`.
      train: random-resized-crop + flip if True, else resize + center crop.
      seed: base seed of the epoch order and the per-example augmentation.
      image_size, resize_size: 224 and 256 by default.
      num_threads: decode/transform threads (default ``os.cpu_count()``).
      prefetch: batches decoded ahead.
    """

    def __init__(
        self,
        source: Sequence[Any],
        indices: np.ndarray | None = None,
        *,
        train: bool,
        seed: int = 0,
        image_size: int = 224,
        resize_size: int = 256,
        num_threads: int | None = None,
        prefetch: int = 2,
    ):
        self.source = source
        self.indices = (
            np.arange(len(source), dtype=np.int64)
            if indices is None
            else np.asarray(indices, np.int64)
        )
        self.train = train
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.resize_size = int(resize_size)
        self.num_threads = num_threads or os.cpu_count() or 1
        self.prefetch = max(1, int(prefetch))

    def __len__(self) -> int:
        return int(self.indices.size)

    def load_example(self, position: int, epoch: int | None) -> tuple[np.ndarray, int]:
        """Decoded, transformed example at dataset ``position`` (augmented iff ``epoch`` is given)."""
        src = int(self.indices[position])
        item = self.source[src]
        image = item["image"]
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = decode_image(bytes(image), f"record {src}")
        image = np.asarray(image, np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        if epoch is None:
            out = imagenet_eval_transform(image, self.image_size, self.resize_size)
        else:
            rng = np.random.default_rng([self.seed, int(epoch), src])
            out = imagenet_train_transform(rng, image, self.image_size)
        return out, int(item["label"])

    def _submit(self, pool, positions: np.ndarray, mask: np.ndarray | None, epoch: int | None):
        valid = np.ones(len(positions), bool) if mask is None else mask
        jobs = [
            pool.submit(self.load_example, int(p), epoch) if ok else None
            for p, ok in zip(positions, valid)
        ]
        return positions, mask, jobs

    def _assemble(self, positions: np.ndarray, mask: np.ndarray | None, jobs: list) -> dict:
        s = self.image_size
        images = np.zeros((len(positions), s, s, 3), np.uint8)
        labels = np.zeros(len(positions), np.int32)
        for j, job in enumerate(jobs):
            if job is not None:
                images[j], labels[j] = job.result()
        out = {"image": images, "label": labels}
        if mask is not None:
            out["mask"] = mask
            out["index"] = positions
        return out

    def _run(
        self, plan: Iterator[tuple[np.ndarray, np.ndarray | None, int | None]]
    ) -> Iterator[dict]:
        # Per-example jobs are submitted from this (consumer) thread only, so pool threads never
        # wait on each other; ``prefetch`` batches stay queued ahead of the one being yielded.
        with ThreadPoolExecutor(self.num_threads) as pool:
            inflight: collections.deque = collections.deque()
            for positions, mask, epoch in plan:
                inflight.append(self._submit(pool, positions, mask, epoch))
                if len(inflight) > self.prefetch:
                    yield self._assemble(*inflight.popleft())
            while inflight:
                yield self._assemble(*inflight.popleft())

    def train_batches(
        self, layout: BatchLayout, start_step: int = 0, num_steps: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Host batches ``{"image": (b, S, S, 3) uint8, "label": (b,) int32}`` from ``start_step``."""
        spe = steps_per_epoch(len(self), layout.global_batch_size)
        index_batches = train_index_batches(len(self), layout, self.seed, start_step, num_steps)
        plan = (
            (pos, None, step // spe if self.train else None)
            for step, pos in zip(range(start_step, 1 << 62), index_batches)
        )
        return self._run(plan)

    def eval_batches(self, layout: BatchLayout) -> Iterator[dict[str, np.ndarray]]:
        """Padded host eval batches with ``"mask"`` and ``"index"`` (see :mod:`.pipeline`)."""
        plan = ((p, m, None) for p, m in eval_index_batches(len(self), layout))
        return self._run(plan)


def make_imagenet100_loader(
    split: str,
    *,
    train: bool,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int = 224,
    resize_size: int = 256,
    num_threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ImageNetLoader:
    """ImageNet-100 (labels 0..99 of tfds ``imagenet2012``) ``split`` as an :class:`ImageNetLoader`.

    ``split``: ``"train"`` or ``"validation"``. The first call scans every record's label once
    (no image decoding) and caches the kept positions.
    """
    source = open_imagenet2012(split, data_dir)
    info = source.dataset_info
    key = f"imagenet2012|{getattr(info, 'version', '?')}|{split}|{getattr(info, 'data_dir', data_dir)}"
    indices = imagenet100_indices(source, cache_key=key, cache_dir=cache_dir)
    return ImageNetLoader(
        source,
        indices,
        train=train,
        seed=seed,
        image_size=image_size,
        resize_size=resize_size,
        num_threads=num_threads,
    )
