"""Benchmarks behind ``python -m launch.bench`` (speed is measured here, never in tests).

Modules:
  ufm    -- ``ufm_benchmark``: the Fig. 1 workload end to end, a closed-form curve vs the
            simulated one, dense autodiff vs the structured gradients of :mod:`ul_jax.ufm`.
  train  -- ``train_benchmark``: img/s and FLOP utilization of the jitted train step of a
            training config (model, optimizer and step built exactly as training builds them).
  data   -- ``data_benchmark``: img/s of the CIFAR input pipeline (host gather → device →
            jitted augmentation), or of the ImageNet-100 grain loader next to the thread-pool
            loader it replaced, on synthetic JPEG records (``--dataset imagenet100-synthetic``).
  plan   -- ``plan_benchmark``: the scale plan of the paper configs from the compiler (memory,
            FLOPs, collectives per device on 1 and 8 devices; predicted run time per
            accelerator; largest batch per device) → ``docs/SCALE.md``.
  profile -- ``profile_benchmark``: where the train step's time goes (a jax.profiler trace of
            the compiled step, each executed HLO instruction attributed to conv forward / input /
            filter gradient per stage, BatchNorm, layout copies, ...) → ``docs/PROFILE.md``.
  device_check -- ``device_check``: the prepared accelerator check (versions, benchmarks with
            MFU, the digits demo, budgeted CIFAR-10 training runs; ``launch.device_check``).

Each figure is reported next to a baseline measured in the same run (these machines are noisy),
with the device it ran on. :func:`run` runs one of them by name and prints / writes its numbers.
"""

from __future__ import annotations

import json
import time

import jax

__all__ = ["SUITES", "best_time", "run"]

SUITES = ("ufm", "train", "data", "plan", "profile")


def best_time(fn, *args, repeats: int = 3) -> float:
    """Best wall time in seconds of ``fn(*args)`` over ``repeats`` calls after one warm-up call,
    blocking on the outputs."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def run(suite: str, *args, json_path: str | None = None, **kwargs) -> dict:
    """Runs benchmark ``suite`` (one of :data:`SUITES`) with ``args`` / ``kwargs``, prints its
    numbers as JSON and, with ``json_path``, also writes them to that file. Returns them."""
    if suite == "ufm":
        from ul_jax.bench.ufm import ufm_benchmark as fn
    elif suite == "train":
        from ul_jax.bench.train import train_benchmark as fn
    elif suite == "data":
        from ul_jax.bench.data import data_benchmark as fn
    elif suite == "plan":
        from ul_jax.bench.plan import plan_benchmark as fn
    elif suite == "profile":
        from ul_jax.bench.profile import profile_benchmark as fn
    else:
        raise ValueError(f"benchmark must be one of {SUITES}; got {suite!r}")
    out = fn(*args, **kwargs)
    print(json.dumps(out, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=2)
    return out
