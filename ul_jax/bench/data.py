"""Throughput of the CIFAR input pipeline: host gather → device (sharded) → jitted augmentation.

Measures images/s of the train pipeline — :func:`ul_jax.data.train_batches` (epoch permutation,
host gather of uint8 images), :func:`ul_jax.data.prefetch_to_device` (global ``jax.Array``
sharded over the ``"data"`` mesh) and :func:`ul_jax.data.cifar_train_transform` under ``jit``
(pad-crop, flip, normalize to float32) — after ``--warmup`` steps (compilation excluded), blocking
on every output. Reported next to a baseline from the same run: the host gather alone.

    python -m launch.bench data                       # offline CIFAR-10 archive (or --source)
    python -m launch.bench data --source synthetic    # random uint8 CIFAR-shaped data
"""

from __future__ import annotations

import time

import jax
import numpy as np

from ul_jax import data


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
    steps: int = 200,
    warmup: int = 20,
    seed: int = 0,
    data_dir: str | None = None,
) -> dict:
    """Images/s of the train input pipeline on ``source`` (image_folder | tfds | synthetic)."""
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
