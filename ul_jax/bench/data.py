"""Throughput of the input pipelines.

CIFAR (``--dataset cifar10``): images/s of the train pipeline — :func:`ul_jax.data.train_batches`
(epoch permutation, host gather of uint8 images), :func:`ul_jax.data.prefetch_to_device` (global
``jax.Array`` sharded over the ``"data"`` mesh) and :func:`ul_jax.data.cifar_train_transform`
under ``jit`` (pad-crop, flip, normalize to float32) — after ``--warmup`` steps (compilation
excluded), blocking on every output. Reported next to a baseline from the same run: the host
gather alone.

ImageNet-100 (``--dataset imagenet100-synthetic``): writes ``--records`` random JPEGs of
ImageNet-like sizes as a tfds-prepared ``imagenet2012`` in a temporary directory
(:func:`ul_jax.data.imagenet.write_synthetic_imagenet2012`), opens it with
:func:`ul_jax.data.make_imagenet100_loader` (timing the label scan and the cached index), and
measures decoded + augmented (random-resized-crop + flip, uint8) train images/s on the host of
the grain loader with one thread (per core), with ``cpu count`` threads and with each
``--workers`` count of worker processes, next to the thread-pool loader it replaced
(:class:`LegacyThreadPoolLoader`, kept here only as the baseline) with one and ``cpu count``
threads, all in the same run.

    python -m launch.bench data                       # offline CIFAR-10 archive (or --source)
    python -m launch.bench data --source synthetic    # random uint8 CIFAR-shaped data
    python -m launch.bench data --dataset imagenet100-synthetic --records 512 --workers 2
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ul_jax import data
from ul_jax.data import imagenet
from ul_jax.data.image_folder import decode_image
from ul_jax.data.pipeline import BatchLayout, steps_per_epoch, train_index_batches
from ul_jax.data.transforms import imagenet_train_transform

DATASETS = ("cifar10", "imagenet100-synthetic")


def _load(source: str, data_dir: str | None):
    if source == "synthetic":
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 50_000).astype(np.int32)
        return images, labels
    ds = data.load_dataset("cifar10", "train", source=source, data_dir=data_dir)
    return ds.images, ds.labels


def data_benchmark(
    source: str = "image_folder",
    batch_size: int = 128,
    steps: int | None = None,
    warmup: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    dataset: str = "cifar10",
    records: int = 512,
    workers: Sequence[int] = (),
    image_size: int = 224,
) -> dict:
    """Images/s of the train input pipeline of ``dataset``: CIFAR-10 on ``source``
    (image_folder | tfds | synthetic; ``steps``/``warmup`` default 200/20), or the ImageNet-100
    loaders on ``records`` synthetic JPEGs (:func:`imagenet_benchmark`; 8/2)."""
    if dataset == "imagenet100-synthetic":
        return imagenet_benchmark(
            records=records,
            batch_size=batch_size,
            steps=8 if steps is None else steps,
            warmup=2 if warmup is None else warmup,
            workers=workers,
            image_size=image_size,
            seed=seed,
        )
    if dataset != "cifar10":
        raise ValueError(f"dataset must be one of {DATASETS}; got dataset={dataset!r}")
    steps = 200 if steps is None else steps
    warmup = 20 if warmup is None else warmup
    t0 = time.perf_counter()
    images, labels = _load(source, data_dir)
    load_s = time.perf_counter() - t0
    mean, std = data.channel_stats(images)
    layout = data.batch_layout(batch_size)
    augment = jax.jit(lambda k, x: data.cifar_train_transform(k, x, mean, std))

    # baseline in the same run: the host-side part alone (epoch permutation + uint8 gather)
    t0 = time.perf_counter()
    for batch in data.train_batches(images, labels, layout, seed, start_step=0, num_steps=steps):
        pass
    host_s = time.perf_counter() - t0

    batches = data.prefetch_to_device(
        data.train_batches(images, labels, layout, seed, start_step=0, num_steps=warmup + steps)
    )
    for step, batch in enumerate(batches):
        if step == warmup:
            start = time.perf_counter()
        x = augment(data.augment_key(seed, step), batch["image"])
        x.block_until_ready()
        batch["label"].block_until_ready()
    elapsed = time.perf_counter() - start
    return {
        "source": source,
        "global_batch_size": batch_size,
        "timed_steps": steps,
        "images_per_s": steps * batch_size / elapsed,
        "ms_per_batch": 1e3 * elapsed / steps,
        "baseline_host_gather_images_per_s": steps * batch_size / host_s,
        "dataset_load_s": load_s,
        "devices": [str(d) for d in jax.devices()],
    }


# ----------------------------------------------------------------------------- ImageNet-100
class LegacyThreadPoolLoader:
    """The hand-written ImageNet loader that :class:`ul_jax.data.ImageNetLoader` (grain)
    replaced, kept only as this benchmark's baseline: per-example jobs (decode +
    random-resized-crop + flip with ``default_rng([seed, epoch, source index])``) in a thread
    pool, ``prefetch`` batches ahead, in the order of :func:`ul_jax.data.train_index_batches`."""

    def __init__(
        self,
        source: Sequence[Any],
        indices: np.ndarray,
        *,
        seed: int = 0,
        image_size: int = 224,
        num_threads: int = 1,
        prefetch: int = 2,
    ):
        self.source, self.indices = source, np.asarray(indices, np.int64)
        self.seed, self.image_size = int(seed), int(image_size)
        self.num_threads, self.prefetch = int(num_threads), max(1, int(prefetch))

    def load_example(self, position: int, epoch: int) -> tuple[np.ndarray, int]:
        """Decoded, augmented example at dataset ``position`` in ``epoch``."""
        src = int(self.indices[position])
        item = self.source[src]
        image = decode_image(bytes(item["image"]), f"record {src}")
        rng = np.random.default_rng([self.seed, int(epoch), src])
        return imagenet_train_transform(rng, image, self.image_size), int(item["label"])

    def _assemble(self, jobs: list) -> dict[str, np.ndarray]:
        s = self.image_size
        images = np.zeros((len(jobs), s, s, 3), np.uint8)
        labels = np.zeros(len(jobs), np.int32)
        for j, job in enumerate(jobs):
            images[j], labels[j] = job.result()
        return {"image": images, "label": labels}

    def train_batches(
        self, layout: BatchLayout, start_step: int = 0, num_steps: int | None = None
    ) -> Iterator[dict[str, np.ndarray]]:
        """Host train batches from ``start_step``."""
        n = len(self.indices)
        spe = steps_per_epoch(n, layout.global_batch_size)
        batches = train_index_batches(n, layout, self.seed, start_step, num_steps)
        with ThreadPoolExecutor(self.num_threads) as pool:
            inflight: collections.deque = collections.deque()
            for step, positions in zip(range(start_step, 1 << 62), batches):
                jobs = [pool.submit(self.load_example, int(p), step // spe) for p in positions]
                inflight.append(jobs)
                if len(inflight) > self.prefetch:
                    yield self._assemble(inflight.popleft())
            while inflight:
                yield self._assemble(inflight.popleft())


def _images_per_s(batches: Iterator[dict], warmup: int, steps: int, batch_size: int) -> float:
    """Images/s of ``steps`` batches after ``warmup`` untimed ones (start-up excluded)."""
    it = iter(batches)
    try:
        for _ in range(warmup):
            next(it)
        t0 = time.perf_counter()
        for _ in range(steps):
            next(it)
        return steps * batch_size / (time.perf_counter() - t0)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


def imagenet_benchmark(
    records: int = 512,
    batch_size: int = 128,
    steps: int = 8,
    warmup: int = 2,
    workers: Sequence[int] = (),
    image_size: int = 224,
    seed: int = 0,
) -> dict:
    """Decoded + augmented ImageNet train images/s of the grain loader (1 thread, ``cpu count``
    threads, each of ``workers`` processes) next to :class:`LegacyThreadPoolLoader` (1 and
    ``cpu count`` threads), on ``records`` synthetic JPEGs (see the module docstring).
    ``workers`` defaults to ``(cpu count,)``."""
    cpus = os.cpu_count() or 1
    workers = tuple(int(w) for w in workers) or (cpus,)
    if records < batch_size:
        raise ValueError(f"records={records} must be >= batch_size={batch_size}")
    layout = data.batch_layout(batch_size, process_count=1, process_index=0, local_device_count=1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ul_jax_imagenet_bench_") as tmp:
        t0 = time.perf_counter()
        root = imagenet.write_synthetic_imagenet2012(
            tmp, {"train": records}, seed=seed, label_range=imagenet.IMAGENET100_NUM_CLASSES
        )
        write_s = time.perf_counter() - t0
        record_bytes = sum(f.stat().st_size for f in Path(root).glob("*.array_record*"))
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        grain_loader = data.make_imagenet100_loader(
            "train", train=True, data_dir=tmp, seed=seed, image_size=image_size, cache_dir=cache
        )
        scan_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        data.make_imagenet100_loader("train", train=True, data_dir=tmp, cache_dir=cache)
        cached_s = time.perf_counter() - t0

        def grain_run(threads: int, procs: int) -> float:
            loader = data.ImageNetLoader(
                grain_loader.source,
                grain_loader.indices,
                train=True,
                seed=seed,
                image_size=image_size,
                num_threads=threads,
                num_workers=procs,
            )
            return _images_per_s(loader.train_batches(layout), warmup, steps, batch_size)

        def legacy_run(threads: int) -> float:
            loader = LegacyThreadPoolLoader(
                grain_loader.source,
                grain_loader.indices,
                seed=seed,
                image_size=image_size,
                num_threads=threads,
            )
            return _images_per_s(loader.train_batches(layout), warmup, steps, batch_size)

        rates = {
            "legacy_threads_1": legacy_run(1),
            f"legacy_threads_{cpus}": legacy_run(cpus),
            "grain_workers_0_threads_1": grain_run(1, 0),
            f"grain_workers_0_threads_{cpus}": grain_run(cpus, 0),
        }
        for w in workers:
            rates[f"grain_workers_{w}_threads_1"] = grain_run(1, w)
    base = rates["legacy_threads_1"]
    return {
        "dataset": "imagenet100-synthetic",
        "records": records,
        "mean_record_kib": record_bytes / records / 1024,
        "image_size": image_size,
        "global_batch_size": batch_size,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "images_per_s": rates,
        "ratio_to_legacy_threads_1": {k: v / base for k, v in rates.items()},
        "write_records_s": write_s,
        "index_scan_s": scan_s,
        "index_cached_s": cached_s,
        "cpu_count": cpus,
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(os.getloadavg()),
    }
