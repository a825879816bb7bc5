"""ImageNet-2012 / ImageNet-100 as a ``grain`` pipeline over tfds array_record files (no TensorFlow).

ImageNet-100 here is the exact selection "labels 0..99 of tfds ``imagenet2012``": tfds labels
are the 1,000 WordNet IDs in sorted order, so these are the 100 smallest WNIDs, ``n01440764``
(tench) to ``n01855672`` (goose), with their original labels 0..99 (label order unchanged).
Train: all examples of those classes in ``train`` (about 126k); eval: those of ``validation``
(5,000). (Other papers' "ImageNet-100" — e.g. CMC's random 100 classes — is a different set.)
Preparing ``imagenet2012`` for tfds is described in the README ("ImageNet-100").

Records. ``tfds.data_source(..., deserialize_method=RAW_BYTES)`` gives random access to the
serialized ``tf.Example`` s; :class:`ParsedRecords` parses them with tfds's NumPy parser, so the
JPEG stays encoded until it is needed and a label scan decodes no image.

Index. The ImageNet-100 positions (label in :data:`IMAGENET100_CLASSES`) come from one label scan
of the split (1.28 M records for ``train``), cached as ``.npy`` under
``<cache dir>/imagenet_index/`` keyed by the dataset version, split, shard lengths, number of
records and the class list (another class list is another entry; no path, so a copied or shared
entry is valid on every host). With several processes
(``jax.process_count() > 1``) only process 0 scans on a miss and sends the index to the others
over the distributed runtime; each writes its own cache entry.

Pipeline (:class:`ImageNetLoader`), all ``grain.MapDataset`` s, so every element is a pure
function of its index:

* examples: position ``i`` of the index → record → decoded ``(H, W, 3)`` uint8 image and label;
* train: the examples repeated over epochs, example ``q = epoch·n + i`` augmented by a
  ``grain`` ``RandomMap`` (random-resized-crop + flip, :mod:`ul_jax.data.transforms`) whose
  generator grain derives from ``(seed, q)`` alone (a Philox seeded with ``seed``, its counter
  set from ``q``) — one stream per (seed, epoch, example), independent of the batch size, host
  count, thread and worker count; the order is that of :mod:`ul_jax.data.pipeline` (epoch ``e``
  visits ``default_rng([seed, e]).permutation(n)``, global step ``k`` is batch ``k mod S`` of
  epoch ``k div S``), so host batch ``k`` is
  ``train_dataset(layout)[k]``, a pure function of ``(seed, k)``: a resume from step ``k``
  yields exactly what an uninterrupted run yields from there, with no iterator state;
* eval: resize + center crop, dataset order, padded to whole global batches (``mask``/``index``
  as in :mod:`ul_jax.data.pipeline`);
* per-process slices: the global stream is cut into host-sized batches and process ``i`` of
  ``P`` takes every ``P``-th one starting at ``i``, i.e. rows
  ``[i·B/P, (i+1)·B/P)`` of every global batch (:attr:`BatchLayout.host_slice`), so the global
  batch is the same for any number of hosts;
* iteration: ``num_threads`` threads per process build batches ahead
  (``grain.ReadOptions``); ``num_workers > 0`` adds that many worker processes
  (``mp_prefetch``: each builds whole batches, the output order is unchanged), ``0`` keeps
  everything in this process. Output is uint8; normalize on device with
  ``IMAGENET_MEAN``/``IMAGENET_STD``.

:func:`write_synthetic_imagenet2012` writes a tfds-prepared ``imagenet2012`` of random JPEGs of
ImageNet-like sizes (the benchmark and the tests read it through the same path as the real one).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grain
import numpy as np

from ul_jax.data import _cache
from ul_jax.data.image_folder import decode_image
from ul_jax.data.pipeline import BatchLayout, epoch_permutation, num_eval_batches, steps_per_epoch
from ul_jax.data.registry import DATASETS
from ul_jax.data.transforms import imagenet_eval_transform, imagenet_train_transform

__all__ = [
    "IMAGENET100_NUM_CLASSES",
    "IMAGENET100_CLASSES",
    "IMAGENET100_WNID_RANGE",
    "ParsedRecords",
    "open_imagenet2012",
    "scan_labels",
    "class_subset_indices",
    "index_cache_entry",
    "imagenet100_indices",
    "ImageNetLoader",
    "make_imagenet100_loader",
    "write_synthetic_imagenet2012",
]

IMAGENET100_NUM_CLASSES = DATASETS["imagenet100"].num_classes
IMAGENET100_CLASSES: tuple[int, ...] = tuple(range(IMAGENET100_NUM_CLASSES))
IMAGENET100_WNID_RANGE = ("n01440764", "n01855672")
_log = logging.getLogger(__name__)


class ParsedRecords(Sequence):
    """Random access to serialized ``tf.Example`` records parsed with NumPy only.

    ``records[i]`` must be the serialized bytes; item ``i`` is
    ``{"image": encoded bytes, "label": int}`` (other features dropped). Picklable (the parser
    is rebuilt from ``features``), so ``grain`` worker processes can read it.
    """

    def __init__(
        self,
        records: Sequence[bytes],
        features: Any,
        image_key: str = "image",
        label_key: str = "label",
    ):
        self._records = records
        self._features = features
        self.dataset_info = getattr(records, "dataset_info", None)
        self._image_key = image_key
        self._label_key = label_key
        self._parser = self._make_parser()

    def _make_parser(self) -> Any:
        from tensorflow_datasets.core import example_parser

        return example_parser.ExampleParserNp(self._features.get_serialized_info())

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_parser"] = state["dataset_info"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._parser = self._make_parser()

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
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
    labels: np.ndarray, classes: Sequence[int] = IMAGENET100_CLASSES
) -> np.ndarray:
    """Ascending positions whose label is one of ``classes`` (labels are not renumbered)."""
    return np.flatnonzero(np.isin(np.asarray(labels), np.asarray(classes, np.int64))).astype(
        np.int64
    )


def index_cache_entry(
    cache_key: str,
    num_records: int,
    classes: Sequence[int],
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """The cache directory of the index of ``classes`` in a source of ``num_records`` records
    named ``cache_key``: ``<cache_dir>/imagenet_index/<sha256 of the three>``."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else _cache.default_cache_dir()
    text = f"{cache_key}|{int(num_records)}|{json.dumps([int(c) for c in classes])}"
    return base / "imagenet_index" / _cache.sha256_text(text)


def _broadcast_from_process_0(index: np.ndarray | None) -> np.ndarray:
    """Process 0's ``index`` on every process (all processes must call this together)."""
    from jax.experimental import multihost_utils

    n = int(multihost_utils.broadcast_one_to_all(np.int32(-1 if index is None else len(index))))
    if n < 0:
        raise RuntimeError("process 0 has no ImageNet index to broadcast")
    payload = np.zeros(n, np.int32) if index is None else np.asarray(index, np.int32)
    return np.asarray(multihost_utils.broadcast_one_to_all(payload), np.int64)


def imagenet100_indices(
    source: Sequence[Any],
    cache_key: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    classes: Sequence[int] = IMAGENET100_CLASSES,
    *,
    share_across_processes: bool = False,
) -> np.ndarray:
    """Positions of ``source`` whose label is in ``classes``, from the cache entry of
    ``cache_key`` (:func:`index_cache_entry`) or one label scan (:func:`scan_labels`), which is
    then cached. ``share_across_processes`` (every process must call it then): with
    ``jax.process_count() > 1`` only process 0 scans, the others receive its index."""
    import jax

    classes = tuple(int(c) for c in classes)
    entry = hit = None
    if cache_key is not None:
        entry = index_cache_entry(cache_key, len(source), classes, cache_dir)
        found = _cache.load_arrays(entry)
        if found is not None and found[1].get("classes") == list(classes):
            hit = found[0]["indices"]
    if share_across_processes and jax.process_count() > 1:
        from jax.experimental import multihost_utils

        misses = np.asarray(multihost_utils.process_allgather(np.int32(hit is None)))
        if not misses.any():
            return hit
        mine = None
        if jax.process_index() == 0:
            mine = hit if hit is not None else class_subset_indices(scan_labels(source), classes)
        idx = _broadcast_from_process_0(mine)
    else:
        if hit is not None:
            return hit
        idx = class_subset_indices(scan_labels(source), classes)
    if entry is not None and hit is None:
        meta = {"cache_key": cache_key, "num_records": len(source), "classes": list(classes)}
        _cache.save_arrays(entry, {"indices": idx}, meta)
    return idx


# ------------------------------------------------------------------------ grain pipeline parts
class _Examples(Sequence):
    """Item ``i``: record ``indices[i]`` of ``source`` plus its position ``"src"``."""

    def __init__(self, source: Sequence[Any], indices: np.ndarray):
        self.source, self.indices = source, indices

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> dict[str, Any]:  # type: ignore[override]
        src = int(self.indices[int(i)])
        item = self.source[src]
        return {"image": item["image"], "label": int(item["label"]), "src": src}


class _Decode(grain.transforms.Map):
    """Encoded bytes (or an array) → ``(H, W, 3)`` uint8; errors name the record."""

    def map(self, item: dict[str, Any]) -> dict[str, Any]:
        image = item["image"]
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = decode_image(bytes(image), f"record {item['src']}")
        image = np.asarray(image, np.uint8)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        return {"image": image, "label": np.int32(item["label"])}


@dataclasses.dataclass(frozen=True)
class _TrainCrop(grain.transforms.RandomMap):
    """Random-resized-crop to ``size`` + flip with the per-example generator of ``grain``."""

    size: int

    def random_map(self, ex: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        return {
            "image": imagenet_train_transform(rng, ex["image"], self.size),
            "label": ex["label"],
        }


@dataclasses.dataclass(frozen=True)
class _EvalCrop(grain.transforms.Map):
    """Resize the shorter side to ``resize_size`` and center crop ``size``."""

    size: int
    resize_size: int

    def map(self, ex: dict[str, Any]) -> dict[str, Any]:
        image = imagenet_eval_transform(ex["image"], self.size, self.resize_size)
        return {"image": image, "label": ex["label"]}


class _MarkReal(grain.transforms.MapWithIndex):
    """Adds ``mask = True`` and the dataset position ``index`` (eval)."""

    def map_with_index(self, index: int, ex: dict[str, Any]) -> dict[str, Any]:
        return {**ex, "mask": np.bool_(True), "index": np.int64(index)}


class _EpochOrder(grain.MapDataset):
    """The infinite global train stream: element ``p = k·B + r`` is row ``r`` of global batch
    ``k``, i.e. ``parent[e·n + perm_e[(k mod S)·B + r]]`` with ``e = k div S``, ``S = n div B``
    and ``perm_e = default_rng([seed, e]).permutation(n)`` (:mod:`ul_jax.data.pipeline`)."""

    def __init__(self, parent: grain.MapDataset, num_examples: int, global_batch: int, seed: int):
        super().__init__(parent)
        self._n, self._b, self._seed = int(num_examples), int(global_batch), int(seed)
        self._spe = steps_per_epoch(self._n, self._b)
        self._perm: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))

    def __len__(self) -> int:
        return sys.maxsize

    def _permutation(self, epoch: int) -> np.ndarray:
        cached_epoch, perm = self._perm  # one tuple read: safe across reader threads
        if cached_epoch != epoch:
            perm = epoch_permutation(self._n, self._seed, epoch)
            self._perm = (epoch, perm)
        return perm

    def example(self, p: int) -> int:
        """``e·n + i``: the repeated-example index of stream position ``p``."""
        step, row = divmod(int(p), self._b)
        epoch, k = divmod(step, self._spe)
        return epoch * self._n + int(self._permutation(epoch)[k * self._b + row])

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return self.slice(index)
        return self._parent[self.example(index)]

    def __str__(self) -> str:
        return f"EpochOrder(n={self._n}, global_batch={self._b}, seed={self._seed})"


def _absl_flags_parsed() -> None:
    """grain reads its absl flags when it starts worker processes; outside an absl app (tests,
    notebooks, ``launch.bench``) nothing parsed them, so use their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _iterate(ds: grain.IterDataset) -> Iterator[dict[str, np.ndarray]]:
    """Iterates ``ds`` and closes its iterator (threads, worker processes) when done or dropped."""
    it = iter(ds)
    try:
        yield from it
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


class ImageNetLoader:
    """Batches of decoded, transformed ImageNet images from a random-access source, with grain.

    Args:
      source: sequence whose item ``i`` is ``{"image": encoded bytes or (H, W, 3) uint8, "label": int}``
        (e.g. :func:`open_imagenet2012`); picklable if ``num_workers > 0``.
      indices: the positions of ``source`` that form the dataset (default: all), e.g.
        :func:`imagenet100_indices`.
      train: random-resized-crop + flip if True, else resize + center crop.
      seed: base seed of the epoch order and the per-example augmentation (``0 <= seed < 2**63``).
      image_size, resize_size: 224 and 256 by default.
      num_threads: threads per process building batches (default: ``min(cpu count, 16)`` with
        ``num_workers = 0``, else ``max(1, cpu count // num_workers)``).
      num_workers: worker processes (``grain`` ``mp_prefetch``); 0 = everything in this process.
      prefetch: batches buffered ahead per process (at least ``num_threads``).
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
        num_workers: int = 0,
        prefetch: int = 2,
    ):
        if int(num_workers) < 0 or (num_threads is not None and int(num_threads) < 0):
            raise ValueError(
                f"num_workers and num_threads must be >= 0; got num_workers={num_workers}, "
                f"num_threads={num_threads}"
            )
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0; got seed={seed}")
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
        self.num_workers = int(num_workers)
        cpus = os.cpu_count() or 1
        if num_threads is None:
            num_threads = min(cpus, 16) if self.num_workers == 0 else max(1, cpus // num_workers)
        self.num_threads = int(num_threads)
        self.prefetch = max(1, int(prefetch))

    def __len__(self) -> int:
        return int(self.indices.size)

    def examples(self) -> grain.MapDataset:
        """Decoded examples ``{"image": (H, W, 3) uint8, "label": int32}`` in index order."""
        return grain.MapDataset.source(_Examples(self.source, self.indices)).map(_Decode())

    def train_dataset(
        self, layout: BatchLayout, start_step: int = 0, num_steps: int | None = None
    ) -> grain.MapDataset:
        """This process's host batches ``{"image": (b, S, S, 3) uint8, "label": (b,) int32}`` of
        global steps ``start_step, …`` (infinite unless ``num_steps``): element ``j`` is step
        ``start_step + j``."""
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0; got start_step={start_step}")
        repeated = self.examples().repeat()
        if self.train:
            per_example = repeated.random_map(_TrainCrop(self.image_size), seed=self.seed)
        else:
            per_example = repeated.map(_EvalCrop(self.image_size, self.resize_size))
        stream = _EpochOrder(per_example, len(self), layout.global_batch_size, self.seed)
        host = stream.batch(layout.host_batch_size)[layout.process_index :: layout.process_count]
        stop = None if num_steps is None else start_step + int(num_steps)
        return host[start_step:stop]

    def eval_dataset(self, layout: BatchLayout) -> grain.MapDataset:
        """This process's padded eval batches (``"image"``, ``"label"``, ``"mask"`` (b,) bool,
        ``"index"`` (b,) int64; padding rows: mask False, index −1, zero image, label 0)."""
        s, n, b = self.image_size, len(self), layout.global_batch_size
        real = self.examples().map(_EvalCrop(s, self.resize_size)).map_with_index(_MarkReal())
        pad = num_eval_batches(n, b) * b - n
        parts = [real]
        if pad:
            blank = {
                "image": np.zeros((s, s, 3), np.uint8),
                "label": np.int32(0),
                "mask": np.bool_(False),
                "index": np.int64(-1),
            }
            parts.append(grain.MapDataset.source([blank]).repeat(pad))
        padded = grain.MapDataset.concatenate(parts) if len(parts) > 1 else real
        return padded.batch(layout.host_batch_size)[layout.process_index :: layout.process_count]

    def _iter(self, ds: grain.MapDataset) -> Iterator[dict[str, np.ndarray]]:
        read = grain.ReadOptions(
            num_threads=self.num_threads,
            prefetch_buffer_size=max(self.prefetch, self.num_threads),
        )
        it = ds.to_iter_dataset(read)
        if self.num_workers > 0:
            _absl_flags_parsed()
            it = it.mp_prefetch(
                grain.MultiprocessingOptions(
                    num_workers=self.num_workers, per_worker_buffer_size=self.prefetch
                )
            )
        return _iterate(it)

    def train_batches(
        self, layout: BatchLayout, start_step: int = 0, num_steps: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Iterates :meth:`train_dataset` with the loader's threads and workers."""
        return self._iter(self.train_dataset(layout, start_step, num_steps))

    def eval_batches(self, layout: BatchLayout) -> Iterator[dict[str, np.ndarray]]:
        """Iterates :meth:`eval_dataset` with the loader's threads and workers."""
        return self._iter(self.eval_dataset(layout))


def make_imagenet100_loader(
    split: str,
    *,
    train: bool,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int = 224,
    resize_size: int = 256,
    num_threads: int | None = None,
    num_workers: int = 0,
    cache_dir: str | os.PathLike | None = None,
) -> ImageNetLoader:
    """ImageNet-100 (labels 0..99 of tfds ``imagenet2012``) ``split`` as an :class:`ImageNetLoader`.

    ``split``: ``"train"`` or ``"validation"``. The first call scans every record's label once
    (no image decoding; process 0 only when there are several) and caches the kept positions
    under ``cache_dir`` (default ``$UL_JAX_CACHE_DIR`` or ``~/.cache/ul_jax``). Every process
    must call it (the index may be broadcast).
    """
    source = open_imagenet2012(split, data_dir)
    info = source.dataset_info
    version = getattr(info, "version", "?")
    shards = None
    try:
        shards = list(info.splits[split].shard_lengths)
    except (AttributeError, KeyError, TypeError, ValueError):  # e.g. "train[:10%]"
        _log.debug("no shard lengths for imagenet2012/%s; keyed by the record count", split)
    # no path in the key: the same prepared version has the same record order on every host
    key = f"imagenet2012|{version}|{split}|shards={shards}"
    indices = imagenet100_indices(source, key, cache_dir, share_across_processes=True)
    return ImageNetLoader(
        source,
        indices,
        train=train,
        seed=seed,
        image_size=image_size,
        resize_size=resize_size,
        num_threads=num_threads,
        num_workers=num_workers,
    )


# -------------------------------------------------------------------------- synthetic records
# (height, width) of typical ImageNet photos and their rough frequencies; the rest is drawn
# from [200, 1000]² (ImageNet's mean is about 400×350, ~110 KB per JPEG; the synthetic images
# below average ~100 KiB at quality 90).
_IMAGENET_SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (500, 500))
_IMAGENET_SIZE_P = (0.40, 0.15, 0.15, 0.05, 0.10)


def _synthetic_size(rng: np.random.Generator) -> tuple[int, int]:
    k = rng.choice(len(_IMAGENET_SIZES) + 1, p=(*_IMAGENET_SIZE_P, 1 - sum(_IMAGENET_SIZE_P)))
    if k < len(_IMAGENET_SIZES):
        return _IMAGENET_SIZES[k]
    return int(rng.integers(200, 1001)), int(rng.integers(200, 1001))


def _synthetic_jpeg(rng: np.random.Generator, height: int, width: int, quality: int) -> bytes:
    """A smooth random colour field plus pixel noise (σ = 16: JPEG sizes like photos'), encoded."""
    from PIL import Image

    coarse = rng.integers(0, 256, (max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    field = np.asarray(
        Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.int16
    )
    noisy = np.clip(field + rng.normal(0, 16, field.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_synthetic_imagenet2012(
    data_dir: str | os.PathLike,
    splits: dict[str, int],
    *,
    seed: int = 0,
    label_range: int = 1000,
    sizes: Sequence[tuple[int, int]] | None = None,
    quality: int = 90,
) -> Path:
    """Writes a tfds-prepared ``imagenet2012`` (array_record, the real features) of random JPEGs
    under ``data_dir`` and returns its version directory; ``tfds.data_source("imagenet2012",
    data_dir=data_dir)`` and :func:`make_imagenet100_loader` read it like the real one.

    Args:
      splits: records per split, e.g. ``{"train": 512, "validation": 64}``.
      label_range: labels are uniform in ``[0, label_range)``.
      sizes: ``(H, W)`` cycled over the records (default: ImageNet-like sizes at random).
    """
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter

    builder = tfds.builder("imagenet2012", data_dir=str(data_dir), file_format="array_record")
    root = Path(builder.data_dir)
    root.mkdir(parents=True, exist_ok=True)
    features = builder.info.features
    rng = np.random.default_rng(seed)
    infos = []
    for split, count in splits.items():
        template = tfds.core.ShardedFileTemplate(
            data_dir=builder.data_dir,
            dataset_name="imagenet2012",
            split=split,
            filetype_suffix="array_record",
        )
        path = root / f"imagenet2012-{split}.array_record-00000-of-00001"
        writer = ArrayRecordWriter(str(path), "group_size:1")
        for i in range(int(count)):
            h, w = sizes[i % len(sizes)] if sizes else _synthetic_size(rng)
            example = {
                "image": _synthetic_jpeg(rng, h, w, quality),
                "label": int(rng.integers(0, label_range)),
                "file_name": f"synthetic_{split}_{i}.JPEG",
            }
            writer.write(features.serialize_example(example))
        writer.close()
        infos.append(
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=[int(count)],
                num_bytes=path.stat().st_size,
                filename_template=template,
            )
        )
    builder.info.set_splits(tfds.core.SplitDict(infos))
    builder.info.write_to_directory(builder.data_dir)
    return root
