"""Batching, per-host sharding, resumable epoch order, padded eval, and device placement.

Layout. A global batch of ``B`` examples is split evenly over ``P = jax.process_count()`` hosts
(host ``i`` owns rows ``[i·B/P, (i+1)·B/P)`` of every global batch) and then over each host's
``D`` local devices; ``B`` must be divisible by ``P·D`` (:func:`batch_layout`). Each host gathers
only its own rows.

Train order. Epoch ``e`` visits the examples in the order
``np.random.default_rng([seed, e]).permutation(n)``; global step ``k`` is batch
``k mod S`` of epoch ``k div S`` with ``S = n div B`` steps per epoch (the last ``n mod B``
examples of each epoch's permutation are not used in that epoch; they differ between epochs).
So the batch at step ``k`` is a pure function of ``(seed, k)`` (and n, B, the host's index):
:func:`train_index_batches` started at ``start_step=k`` yields exactly what an uninterrupted run
yields from step ``k`` on, with no iterator state to checkpoint.

Eval order. ``ceil(n/B)`` global batches in dataset order; the last one is padded: padding rows
carry ``mask = False``, ``index = −1``, zero images and label 0. Every example appears exactly
once with ``mask = True`` over all hosts; every host yields the same number of batches (needed
for collectives). Reduce with ``Σ mask·metric / Σ mask``.

Device placement. :func:`to_global_array` turns each host's batch into one global
``jax.Array`` sharded along the batch axis over a 1-D ``"data"`` mesh of all devices
(``jax.make_array_from_process_local_data`` with ``NamedSharding(mesh, P("data"))``).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "BatchLayout",
    "batch_layout",
    "epoch_permutation",
    "steps_per_epoch",
    "num_eval_batches",
    "train_index_batches",
    "eval_index_batches",
    "train_batches",
    "eval_batches",
    "data_mesh",
    "data_sharding",
    "to_global_array",
    "prefetch_to_device",
]

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class BatchLayout:
    """How a global batch maps onto hosts and devices (see :func:`batch_layout`)."""

    global_batch_size: int
    process_count: int
    process_index: int
    local_device_count: int

    @property
    def host_batch_size(self) -> int:
        return self.global_batch_size // self.process_count

    @property
    def device_batch_size(self) -> int:
        return self.host_batch_size // self.local_device_count

    @property
    def host_slice(self) -> slice:
        """This host's rows of a global batch."""
        start = self.process_index * self.host_batch_size
        return slice(start, start + self.host_batch_size)


def batch_layout(
    global_batch_size: int,
    *,
    process_count: int | None = None,
    process_index: int | None = None,
    local_device_count: int | None = None,
) -> BatchLayout:
    """Splits ``global_batch_size`` over hosts and their local devices.

    Defaults come from ``jax.process_count()``, ``jax.process_index()`` and
    ``jax.local_device_count()``; pass them explicitly to simulate other hosts.

    Raises:
      ValueError: ``global_batch_size`` not divisible by ``process_count × local devices``
        (the message names the batch size and the device count).
    """
    pc = jax.process_count() if process_count is None else int(process_count)
    pi = jax.process_index() if process_index is None else int(process_index)
    ld = jax.local_device_count() if local_device_count is None else int(local_device_count)
    if pc < 1 or ld < 1 or not 0 <= pi < pc:
        raise ValueError(
            f"need process_count >= 1, local_device_count >= 1 and 0 <= process_index < "
            f"process_count; got {pc}, {ld}, {pi}"
        )
    if isinstance(global_batch_size, bool) or int(global_batch_size) != global_batch_size:
        raise ValueError(f"global_batch_size must be an integer; got {global_batch_size!r}")
    b = int(global_batch_size)
    if b < 1 or b % (pc * ld):
        raise ValueError(
            f"global_batch_size={b} must be a positive multiple of process_count × local devices "
            f"= {pc} × {ld} = {pc * ld} devices"
        )
    return BatchLayout(b, pc, pi, ld)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """``np.random.default_rng([seed, epoch]).permutation(num_examples)`` (seed, epoch ≥ 0)."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0; got seed={seed}, epoch={epoch}")
    return np.random.default_rng([int(seed), int(epoch)]).permutation(int(num_examples))


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
    """``num_examples // global_batch_size`` (≥ 1; full batches only)."""
    if num_examples < global_batch_size:
        raise ValueError(
            f"num_examples={num_examples} is smaller than global_batch_size={global_batch_size}; "
            "a train epoch needs at least one full batch"
        )
    return num_examples // global_batch_size


def num_eval_batches(num_examples: int, global_batch_size: int) -> int:
    """``ceil(num_examples / global_batch_size)``."""
    return -(-int(num_examples) // int(global_batch_size))


def train_index_batches(
    num_examples: int,
    layout: BatchLayout,
    seed: int,
    start_step: int = 0,
    num_steps: int | None = None,
) -> Iterator[np.ndarray]:
    """This host's example indices for global steps ``start_step, start_step+1, ...``.

    Yields ``(host_batch_size,)`` int64 arrays; infinite unless ``num_steps`` is given.
    """
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0; got start_step={start_step}")
    spe = steps_per_epoch(num_examples, layout.global_batch_size)
    b = layout.global_batch_size
    cached_epoch, perm = -1, None
    steps = (
        itertools.count(start_step)
        if num_steps is None
        else range(start_step, start_step + num_steps)
    )
    for step in steps:
        epoch, pos = divmod(step, spe)
        if epoch != cached_epoch:
            cached_epoch, perm = epoch, epoch_permutation(num_examples, seed, epoch)
        yield perm[pos * b : (pos + 1) * b][layout.host_slice]


def eval_index_batches(
    num_examples: int, layout: BatchLayout
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This host's ``(indices, mask)`` for each padded eval batch (index −1 where mask is False)."""
    b = layout.global_batch_size
    for k in range(num_eval_batches(num_examples, b)):
        idx = np.arange(k * b, (k + 1) * b, dtype=np.int64)[layout.host_slice]
        mask = idx < num_examples
        yield np.where(mask, idx, -1), mask


def train_batches(
    images: np.ndarray,
    labels: np.ndarray,
    layout: BatchLayout,
    seed: int,
    start_step: int = 0,
    num_steps: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Host batches ``{"image": (b, H, W, C) uint8, "label": (b,) int32}`` of an in-memory set,
    in the order of :func:`train_index_batches` (augmentation happens on device)."""
    if len(images) != len(labels):
        raise ValueError(f"len(images)={len(images)} != len(labels)={len(labels)}")
    for idx in train_index_batches(len(images), layout, seed, start_step, num_steps):
        yield {"image": images[idx], "label": labels[idx]}


def eval_batches(
    images: np.ndarray, labels: np.ndarray, layout: BatchLayout
) -> Iterator[dict[str, np.ndarray]]:
    """Padded host eval batches ``{"image", "label", "mask" (b,) bool, "index" (b,) int64}``."""
    if len(images) != len(labels):
        raise ValueError(f"len(images)={len(images)} != len(labels)={len(labels)}")
    for idx, mask in eval_index_batches(len(images), layout):
        safe = np.where(mask, idx, 0)
        img = images[safe]
        lab = labels[safe]
        if not mask.all():
            img[~mask] = 0
            lab = np.where(mask, lab, 0).astype(labels.dtype)
        yield {"image": img, "label": lab, "mask": mask, "index": idx}


def data_mesh(devices: Iterable[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices of all hosts)."""
    devs = np.asarray(list(jax.devices() if devices is None else devices))
    return Mesh(devs, (DATA_AXIS,))


def data_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Batch-axis sharding ``NamedSharding(mesh, P("data"))``."""
    return NamedSharding(mesh if mesh is not None else data_mesh(), PartitionSpec(DATA_AXIS))


def to_global_array(host_batch: Any, mesh: Mesh | None = None) -> Any:
    """Puts a pytree of host arrays (leading axis = this host's rows) on the devices as global
    ``jax.Array`` s of leading size ``host rows × process_count``, sharded over ``"data"``.

    Raises:
      ValueError: a leaf's leading size is not divisible by this host's device count in the mesh.
    """
    sharding = data_sharding(mesh)
    n_local = len(sharding.mesh.local_devices)

    def put(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % n_local:
            raise ValueError(
                f"host batch size {x.shape[0] if x.ndim else 'scalar'} (leaf shape {x.shape}) "
                f"is not divisible by the {n_local} local devices of the data mesh"
            )
        global_shape = (x.shape[0] * jax.process_count(), *x.shape[1:])
        return jax.make_array_from_process_local_data(sharding, x, global_shape)

    return jax.tree.map(put, host_batch)


def prefetch_to_device(
    batches: Iterable[Any], size: int = 2, mesh: Mesh | None = None
) -> Iterator[Any]:
    """Iterates ``to_global_array(batch)`` keeping ``size`` batches in flight (transfers are
    asynchronous, so the next batches copy while the current step runs)."""
    if size < 1:
        raise ValueError(f"size must be >= 1; got size={size}")
    queue: collections.deque = collections.deque()
    it = iter(batches)
    for batch in it:
        queue.append(to_global_array(batch, mesh))
        if len(queue) >= size:
            break
    while queue:
        yield queue.popleft()
        nxt = next(it, None)
        if nxt is not None:
            queue.append(to_global_array(nxt, mesh))
