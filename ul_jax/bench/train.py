"""Throughput of the jitted train step of a training config (``python -m launch.bench train``).
Speed is measured here, never in tests.

What is timed: :func:`ul_jax.train.jit_train_step` (on-device augmentation of a uint8 batch,
forward, backward, optimizer update, the non-finite guard and the Fig. 19 metrics) on synthetic
data shaped like the config's dataset, over the 1-D mesh of all local devices, ``steps`` steps
after one warm-up (compile) step, blocking at the end. The model, optimizer and step config are
built from the config by the same builders training uses (:mod:`ul_jax.train`), so a variant's
head, bias and final ReLU are exactly the trained ones. Next to it, from the same run: the eval
(forward) step, and the ceiling, the best FLOP/s of a large square matmul in the same dtype. FLOPs
per step are XLA's own count (``compiled.cost_analysis()["flops"]``), so the utilization is
``flops/step ÷ step time ÷ matmul FLOP/s``.
"""

from __future__ import annotations

import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from ul_jax.bench import best_time

__all__ = ["matmul_ceiling", "train_benchmark"]

# stand-in per-channel statistics of the synthetic uint8 images (the step only normalizes)
_MEAN, _STD = (125.0,) * 3, (63.0,) * 3


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


def synthetic_step(config, total_steps: int) -> types.SimpleNamespace:
    """The jitted train step of ``config`` (built as training builds it) over the mesh of all
    local devices, with its initial state and one random uint8 batch shaped like the config's
    dataset: ``mesh, model, cfg, host, batch, state, step, size``."""
    from ul_jax import data as D
    from ul_jax import train as T

    batch = config.batch_size
    mesh = D.data_mesh(jax.local_devices())
    if batch % mesh.size:
        raise ValueError(f"batch={batch} must be divisible by the {mesh.size} local devices")
    num_classes = T.NUM_CLASSES[config.data.name]
    size = config.data.image_size or 32
    model = T.build_model_from_config(config, num_classes)
    tx, sched = T.build_optimizer_from_config(config, total_steps=total_steps, steps_per_epoch=1)
    cfg = T.step_config_from(config, types.SimpleNamespace(mean=_MEAN, std=_STD))
    rng = np.random.default_rng(0)
    host = {
        "image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
        "label": rng.integers(0, num_classes, batch).astype(np.int32),
    }
    return types.SimpleNamespace(
        mesh=mesh,
        model=model,
        cfg=cfg,
        host=host,
        batch=D.to_global_array(host, mesh),
        state=T.jit_init_state(model, tx, config.seed, (size, size, 3), mesh),
        step=T.jit_train_step(model, tx, sched, cfg, mesh, seed=config.seed),
        size=size,
    )


def train_benchmark(
    config, steps: int = 5, *, matmul_n: int = 2048, baseline: str | None = None
) -> dict:
    """Images/s of the jitted train step of training ``config`` (``model.arch``, ``model.dtype``,
    ``head``, ``objective``, ``optimizer``, ``data.augment``) at global ``config.batch_size``.

    Returns a dict: device, backend, device count, compile seconds, train step seconds and
    img/s, eval img/s, XLA FLOPs per train step, achieved and matmul-ceiling FLOP/s and their
    ratio (``utilization``). ``baseline="torch"``: also the same step in eager PyTorch, timed
    in the same run (:mod:`ul_jax.bench.torch_baseline`), and ``ratio_to_torch`` = JAX img/s ÷
    PyTorch img/s.
    """
    if baseline not in (None, "torch"):
        raise ValueError(f"baseline must be None or 'torch'; got {baseline!r}")
    from ul_jax import data as D
    from ul_jax import train as T

    batch, dtype = config.batch_size, config.model.dtype
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got steps={steps}")
    b = synthetic_step(config, total_steps=steps + 1)
    mesh, model, state, step, batch_arr = b.mesh, b.model, b.state, b.step, b.batch
    eval_batch = D.to_global_array({**b.host, "mask": np.ones(batch, bool)}, mesh)
    cfg, size = b.cfg, b.size
    t0 = time.perf_counter()
    compiled = step.lower(state, batch_arr).compile()
    compile_s = time.perf_counter() - t0
    flops = _flops(compiled)

    state, m = compiled(state, batch_arr)  # warm-up
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, batch_arr)
    jax.block_until_ready((state, m))
    step_s = (time.perf_counter() - t0) / steps

    eval_fn = T.jit_eval_step(model, cfg, mesh)
    acc = T.init_eval_sums(*T.classifier_weights(state).shape[::-1], mesh)  # (C, p)
    eval_s = best_time(eval_fn, acc, state, eval_batch, repeats=max(1, min(steps, 3)))

    ceiling = matmul_ceiling(matmul_n, dtype)
    achieved = flops / step_s if flops else None
    extra = {}
    if baseline == "torch":
        from ul_jax.bench.torch_baseline import torch_train_benchmark

        n_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
        base = torch_train_benchmark(config, steps, flax_param_count=n_params)
        extra = {
            "baseline": base,
            "ratio_to_torch": (batch / step_s) / base["train_images_per_sec"],
        }
    return {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "devices": mesh.size,
        "arch": config.model.arch,
        "variant": config.get("variant"),
        "head": config.head.kind,
        "final_relu": config.model.final_relu,
        "batch": batch,
        "steps": steps,
        "dtype": dtype,
        "image_size": size,
        "compile_s": compile_s,
        "train_step_s": step_s,
        "train_images_per_sec": batch / step_s,
        "eval_images_per_sec": batch / eval_s,
        "flops_per_train_step": flops,
        "achieved_flops_per_sec": achieved,
        f"matmul_{matmul_n}_flops_per_sec": ceiling,
        "utilization": achieved / ceiling if achieved else None,
        "nonfinite": int(m["nonfinite"]),
        **extra,
    }
