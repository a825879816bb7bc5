"""Throughput of the jitted ResNet train step (``train_benchmark``); wired into
``python -m launch.bench`` by its owner. Speed is measured here, never in tests.

What is timed: :func:`ul_jax.train.jit_train_step` (on-device pad-crop + flip of a uint8 batch,
forward, backward, SGD update, the non-finite guard and the Fig. 19 metrics) on synthetic
CIFAR-shaped data over the 1-D mesh of all local devices, ``steps`` steps after one warm-up
(compile) step, blocking at the end. Next to it, from the same run: the eval (forward) step, and
the ceiling, the best FLOP/s of a large square matmul in the same dtype. FLOPs per step are XLA's
own count (``compiled.cost_analysis()["flops"]``), so the utilization is
``flops/step ÷ step time ÷ matmul FLOP/s``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["best_time", "matmul_ceiling", "train_benchmark"]


def best_time(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_ceiling(n: int = 2048, dtype: str = "float32", repeats: int = 3) -> float:
    """Best FLOP/s of an ``n×n @ n×n`` matmul (``2n³`` FLOPs) on the default device."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(k1, (n, n), jnp.dtype(dtype))
    b = jax.random.normal(k2, (n, n), jnp.dtype(dtype))
    t = best_time(jax.jit(jnp.matmul), a, b, repeats=repeats)
    return 2.0 * n**3 / t


def _flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def train_benchmark(arch: str = "resnet18", batch: int = 64, steps: int = 5,
                    dtype: str = "float32", *, head: str = "pal", image_size: int = 32,
                    num_classes: int = 10, matmul_n: int = 2048) -> dict:
    """Images/s of the jitted train step of ``arch`` at global ``batch`` in compute ``dtype``.

    Returns a dict: device, backend, device count, compile seconds, train step seconds and
    img/s, eval img/s, XLA FLOPs per train step, achieved and matmul-ceiling FLOP/s and their
    ratio (``utilization``).
    """
    from ul_jax import data as D
    from ul_jax.models import build_model
    from ul_jax.objectives import make_optimizer
    from ul_jax.train.step import StepConfig, jit_eval_step, jit_init_state, jit_train_step

    if steps < 1:
        raise ValueError(f"steps must be >= 1; got steps={steps}")
    mesh = D.data_mesh(jax.local_devices())
    if batch % mesh.size:
        raise ValueError(f"batch={batch} must be divisible by the {mesh.size} local devices")
    model = build_model(arch, num_classes, head=head, final_relu=head == "linear",
                        dtype=jnp.dtype(dtype))
    tx, sched = make_optimizer(learning_rate=0.1, total_steps=steps + 1, momentum=0.9,
                               weight_decay=5e-4)
    cfg = StepConfig(loss="ul" if head != "linear" else "ce", mean=(125.0,) * 3,
                     std=(63.0,) * 3, augment="crop_flip", crop_padding=4)
    rng = np.random.default_rng(0)
    host = {"image": rng.integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8),
            "label": rng.integers(0, num_classes, batch).astype(np.int32)}
    batch_arr = D.to_global_array(host, mesh)
    eval_batch = D.to_global_array({**host, "mask": np.ones(batch, bool)}, mesh)

    state = jit_init_state(model, tx, 0, (image_size, image_size, 3), mesh)
    step = jit_train_step(model, tx, sched, cfg, mesh, seed=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch_arr).compile()
    compile_s = time.perf_counter() - t0
    flops = _flops(compiled)

    state, m = compiled(state, batch_arr)       # warm-up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, batch_arr)
    jax.block_until_ready((state, m))
    step_s = (time.perf_counter() - t0) / steps

    eval_fn = jit_eval_step(model, cfg, mesh)
    eval_s = best_time(eval_fn, state, eval_batch, repeats=max(1, min(steps, 3)))

    ceiling = matmul_ceiling(matmul_n, dtype)
    achieved = flops / step_s if flops else None
    return {
        "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
        "devices": mesh.size, "arch": arch, "head": head, "batch": batch, "steps": steps,
        "dtype": dtype, "image_size": image_size,
        "compile_s": compile_s,
        "train_step_s": step_s, "train_images_per_sec": batch / step_s,
        "eval_images_per_sec": batch / eval_s,
        "flops_per_train_step": flops,
        "achieved_flops_per_sec": achieved,
        f"matmul_{matmul_n}_flops_per_sec": ceiling,
        "utilization": achieved / ceiling if achieved else None,
        "nonfinite": int(m["nonfinite"]),
    }
