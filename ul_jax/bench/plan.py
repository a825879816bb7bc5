"""The scale plan (``python -m launch.bench plan``): what the compiler says a paper config needs.

For a training config and a device count, :func:`compile_plan` lowers and compiles the *real*
train step (:func:`ul_jax.train.jit_train_step`, the one training runs) over a 1-D data mesh and
reads back, per device:

* memory — ``compiled.memory_analysis()``: arguments, outputs, aliased (donated) bytes,
  temporaries; ``peak ≈ arguments + outputs − aliased + temporaries`` (the live-buffer bound XLA
  reports; on the CPU backend it is the CPU program's, which fuses and lays out differently from
  a GPU/TPU program: a planning figure, not a guarantee);
* FLOPs and bytes accessed per step — ``compiled.cost_analysis()``;
* the collectives in the optimized HLO (:func:`collectives`): kind, count, bytes, and what they
  carry (BatchNorm statistics forward/backward, or the parameter gradients + metrics).

:func:`predict` turns one plan into step / epoch / run time on a named accelerator
(:data:`ACCELERATORS`, public data-sheet figures, cited) at a stated model-FLOP utilization:
``t_step = max(FLOPs / (peak · MFU), bytes / HBM bandwidth) + t_allreduce`` with the ring
all-reduce ``2(n−1)/n · bytes / link bandwidth`` added without overlap (conservative).
:func:`max_batch_per_device` fits peak memory linearly in the per-device batch from two compiles
and solves for the largest batch that fits a card.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from ul_jax.console import fmt_duration

__all__ = [
    "ACCELERATORS",
    "Accelerator",
    "collectives",
    "compile_plan",
    "max_batch_per_device",
    "predict",
]


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """Public peak figures of one accelerator (dense, no sparsity), per chip/GPU.

    ``peak_f32`` is the peak at JAX's *default* matmul/conv precision for float32 inputs:
    TF32 tensor cores on NVIDIA Ampere/Hopper, one bf16 MXU pass on TPU.
    """

    name: str
    peak_bf16: float  # FLOP/s
    peak_f32: float  # FLOP/s at default precision
    hbm_bytes: float
    hbm_bw: float  # bytes/s
    link_bw: float  # bytes/s per device for the gradient all-reduce
    source: str


GiB = 1024**3
ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        Accelerator(
            "A100-SXM4-80GB",
            312e12,
            156e12,
            80e9,
            2.039e12,
            600e9,
            "NVIDIA A100 Tensor Core GPU datasheet (BF16 312 TFLOPS, TF32 156 TFLOPS dense, "
            "HBM2e 2,039 GB/s, NVLink 600 GB/s)",
        ),
        Accelerator(
            "H100-SXM5-80GB",
            989e12,
            494.7e12,
            80e9,
            3.35e12,
            900e9,
            "NVIDIA H100 Tensor Core GPU datasheet (BF16 989 TFLOPS, TF32 494.7 TFLOPS dense, "
            "HBM3 3.35 TB/s, NVLink 900 GB/s)",
        ),
        Accelerator(
            "H200-SXM-141GB",
            989e12,
            494.7e12,
            141e9,
            4.8e12,
            900e9,
            "NVIDIA H200 Tensor Core GPU datasheet (BF16 989 TFLOPS, TF32 494.7 TFLOPS dense, "
            "HBM3e 4.8 TB/s, 141 GB, NVLink 900 GB/s)",
        ),
        Accelerator(
            "TPU-v4",
            275e12,
            275e12,
            32 * GiB,
            1.2e12,
            1.1e15 / 4096,
            "cloud.google.com/tpu/docs/v4 (275 TFLOPS bf16 per chip, 32 GiB HBM2 at 1,200 GB/s, "
            "all-reduce bandwidth 1.1 PB/s per 4,096-chip pod)",
        ),
        Accelerator(
            "TPU-v5e",
            197e12,
            197e12,
            16e9,
            819e9,
            1600e9 / 8,
            "cloud.google.com/tpu/docs/v5e (197 TFLOPS bf16, 16 GB HBM2 at 819 GB/s, "
            "ICI 1,600 Gbps per chip)",
        ),
    )
}

_DTYPE_BYTES = {
    "pred": 1,
    "s8": 1,
    "u8": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
}
_KINDS = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")
_COLLECTIVE = re.compile(
    r"^\s*%?\S+ = (\(.*?\)|\S+) (" + "|".join(_KINDS) + r")(?:-start)?\((.*)$", re.M
)
_SHAPE = re.compile(r"\b(" + "|".join(_DTYPE_BYTES) + r")\[([\d,]*)\]")


def _shape_bytes(shape_text: str) -> int:
    total = 0
    for dt, dims in _SHAPE.findall(shape_text):
        n = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
        total += n * _DTYPE_BYTES[dt]
    return total


def _role(op_name: str) -> str:
    """What a collective carries, from its ``op_name`` metadata: BatchNorm statistics
    (forward: ``jvp``; backward: ``transpose(jvp``) when every fused reduction is a norm's, else
    the gradients (and the step's metrics, which XLA combines with them)."""
    parts = [p for p in re.split(r"[:()/]", op_name) if p]
    norm_only = all(
        not p.startswith(("conv", "dot", "Dense", "head", "loss", "efr")) for p in parts
    ) and any(("BatchNorm" in p or p.startswith(("bn", "norm"))) for p in parts)
    if not norm_only:
        return "gradients+metrics"
    return "bn_stats_backward" if "transpose(" in op_name else "bn_stats_forward"


def collectives(hlo_text: str) -> list[dict[str, Any]]:
    """The collectives of an optimized HLO module (``compiled.as_text()``), in program order:
    ``{"kind", "bytes" (result size, all operands), "operands", "role"}``. ``-start``/``-done``
    async pairs count once (the ``-start``)."""
    out = []
    for m in _COLLECTIVE.finditer(hlo_text):
        shape, kind, rest = m.groups()
        op = re.search(r'op_name="([^"]*)"', rest)
        out.append(
            {
                "kind": kind,
                "bytes": _shape_bytes(shape),
                "operands": max(len(_SHAPE.findall(shape)), 1),
                "role": _role(op.group(1)) if op else "unknown",
            }
        )
    return out


def _cost(compiled) -> dict[str, float]:
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return {}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return {k: float(cost[k]) for k in ("flops", "bytes accessed") if k in (cost or {})}


def compile_plan(config, devices: Sequence[Any]) -> dict[str, Any]:
    """Compiles the train step of ``config`` (global batch ``config.batch_size``) over a data
    mesh of ``devices`` and returns its per-device memory, cost and collectives (see the module
    docstring). Nothing is executed: the state and batch are abstract shapes."""
    from ul_jax import data as D
    from ul_jax import train as T

    n = len(devices)
    batch = int(config.batch_size)
    if batch % n:
        raise ValueError(f"batch_size={batch} must be divisible by the {n} devices of the plan")
    mesh = D.data_mesh(list(devices))
    num_classes = T.NUM_CLASSES[config.data.name]
    size = int(config.data.image_size or 32)
    model = T.build_model_from_config(config, num_classes)
    tx, sched = T.build_optimizer_from_config(config, total_steps=1000, steps_per_epoch=100)
    cfg = T.step_config_from(config, types.SimpleNamespace(mean=(0.0,) * 3, std=(1.0,) * 3))
    state = jax.eval_shape(lambda: T.jit_init_state(model, tx, 0, (size, size, 3), mesh))
    replicated, sharded = T.step.mesh_shardings(mesh)
    state = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), state
    )
    batch_spec = {
        "image": jax.ShapeDtypeStruct((batch, size, size, 3), np.uint8, sharding=sharded),
        "label": jax.ShapeDtypeStruct((batch,), np.int32, sharding=sharded),
    }
    step = T.jit_train_step(model, tx, sched, cfg, mesh, seed=0)
    compiled = step.lower(state, batch_spec).compile()
    mem = compiled.memory_analysis()
    m = {
        k: int(getattr(mem, f"{k}_size_in_bytes", 0) or 0)
        for k in ("argument", "output", "alias", "temp")
    }
    m["peak"] = m["argument"] + m["output"] - m["alias"] + m["temp"]
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    colls = collectives(compiled.as_text())
    by_role: dict[str, dict[str, int]] = {}
    for c in colls:
        r = by_role.setdefault(c["role"], {"count": 0, "bytes": 0})
        r["count"] += 1
        r["bytes"] += c["bytes"]
    cost = _cost(compiled)
    return {
        "devices": n,
        "batch": batch,
        "batch_per_device": batch // n,
        "arch": config.model.arch,
        "dtype": config.model.dtype,
        "image_size": size,
        "params": params,
        "memory_bytes": m,
        "flops": cost.get("flops"),
        "bytes_accessed": cost.get("bytes accessed"),
        "collectives": by_role,
        "allreduce_bytes": sum(c["bytes"] for c in colls if c["kind"] == "all-reduce"),
    }


def predict(
    plan: dict[str, Any],
    acc: Accelerator,
    *,
    mfu: float,
    train_images: int,
    epochs: int,
) -> dict[str, float]:
    """Step / epoch / run seconds of ``plan`` (its per-device FLOPs and bytes, its collectives)
    on ``plan["devices"]`` copies of ``acc`` at model-FLOP utilization ``mfu``."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1]; got {mfu}")
    peak = acc.peak_bf16 if plan["dtype"] == "bfloat16" else acc.peak_f32
    t_compute = (plan["flops"] or 0.0) / (peak * mfu)
    t_memory = (plan["bytes_accessed"] or 0.0) / acc.hbm_bw
    n = plan["devices"]
    t_comm = 2 * (n - 1) / n * plan["allreduce_bytes"] / acc.link_bw if n > 1 else 0.0
    step = max(t_compute, t_memory) + t_comm
    steps_per_epoch = train_images // plan["batch"]
    return {
        "step_s": step,
        "compute_s": t_compute,
        "memory_s": t_memory,
        "comm_s": t_comm,
        "epoch_s": step * steps_per_epoch,
        "run_s": step * steps_per_epoch * epochs,
        "bound": "compute" if t_compute >= t_memory else "memory",
    }


def max_batch_per_device(
    b1: int, peak1: float, b2: int, peak2: float, capacity: float, headroom: float = 0.9
) -> int:
    """The largest per-device batch whose peak memory, linear in the batch through the two
    measured points ``(b1, peak1)``, ``(b2, peak2)``, fits ``headroom · capacity`` bytes
    (0 if not even the fixed part fits)."""
    if b1 == b2:
        raise ValueError(f"two different batch sizes are needed; got b1 = b2 = {b1}")
    slope = (peak2 - peak1) / (b2 - b1)
    fixed = peak1 - slope * b1
    room = headroom * capacity - fixed
    if room <= 0:
        return 0
    if slope <= 0:
        raise ValueError(
            f"peak memory does not grow with the batch ({peak1} at {b1}, {peak2} at {b2})"
        )
    return int(room // slope)


# the paper's configs: (label, config, training images, epochs)
PAPER_PLAN = (
    ("CIFAR-10 / ResNet-18", "configs/paper/fig2.py:cifar10,ul_pal", 50_000, 200),
    ("CIFAR-100 / ResNet-34", "configs/paper/fig2.py:cifar100,ul_pal", 50_000, 200),
    ("ImageNet-100 / ResNet-50", "configs/paper/fig2.py:imagenet100,ul_pal", 126_689, 100),
)


def scale_plan(
    entries: Sequence[tuple[str, str, int, int]] = PAPER_PLAN,
    *,
    device_counts: Sequence[int] = (1, 8),
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    mfu: float = 0.4,
    overrides: dict[str, Any] | None = None,
    log=print,
) -> dict[str, Any]:
    """:func:`compile_plan` of every ``(config, dtype, device count)`` of ``entries`` on the
    local devices (force several CPU devices with
    ``XLA_FLAGS=--xla_force_host_platform_device_count=8``), the :func:`predict` of each on
    every accelerator of :data:`ACCELERATORS`, and the largest per-device batch fitting each
    card, fitted through the per-device batches of the smallest and largest device count."""
    from ul_jax.config import load_config_file

    devs = jax.devices()
    if max(device_counts) > len(devs):
        raise ValueError(
            f"the plan needs {max(device_counts)} devices, {len(devs)} are visible; on a CPU set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={max(device_counts)}"
        )
    rows = []
    for label, spec, images, epochs in entries:
        for dtype in dtypes:
            plans = []
            for n in device_counts:
                c = load_config_file(spec, {**(overrides or {}), "model.dtype": dtype})
                log(f"plan: {label} {dtype} on {n} device(s) (batch {c.batch_size}) ...")
                p = compile_plan(c, devs[:n])
                p["predict"] = {
                    a.name: predict(p, a, mfu=mfu, train_images=images, epochs=epochs)
                    for a in ACCELERATORS.values()
                }
                plans.append(p)
            lo, hi = plans[-1], plans[0]  # smallest / largest per-device batch
            fit = {}
            if lo["batch_per_device"] != hi["batch_per_device"]:
                for a in ACCELERATORS.values():
                    fit[a.name] = max_batch_per_device(
                        lo["batch_per_device"],
                        lo["memory_bytes"]["peak"],
                        hi["batch_per_device"],
                        hi["memory_bytes"]["peak"],
                        a.hbm_bytes,
                    )
            rows.append(
                {
                    "label": label,
                    "config": spec,
                    "train_images": images,
                    "epochs": epochs,
                    "dtype": dtype,
                    "plans": plans,
                    "max_batch_per_device": fit,
                }
            )
    return {
        "backend": jax.default_backend(),
        "device_kind": devs[0].device_kind,
        "jax": jax.__version__,
        "mfu": mfu,
        "accelerators": {a.name: dataclasses.asdict(a) for a in ACCELERATORS.values()},
        "rows": rows,
    }


def plan_markdown(plan: dict[str, Any]) -> str:
    """The tables of ``docs/SCALE.md`` from :func:`scale_plan`'s result."""
    accs = list(plan["accelerators"])
    lines = [
        f"Compiled on `{plan['backend']}` ({plan['device_kind']}), jax {plan['jax']}; memory "
        f"and FLOPs are per device; predictions at MFU = {plan['mfu']:.0%}.",
        "",
        "### What the compiler says (per device)",
        "",
        "| config | dtype | devices | batch / device | params | peak memory (GiB) | "
        "arguments / temporaries (GiB) | GFLOP / step | all-reduces: BN fwd / BN bwd / "
        "gradients (count) | gradient all-reduce (MiB) |",
        "|" + "---|" * 10,
    ]
    for r in plan["rows"]:
        for p in r["plans"]:
            m, cl = p["memory_bytes"], p["collectives"]
            cnt = " / ".join(
                str(cl.get(k, {}).get("count", 0))
                for k in ("bn_stats_forward", "bn_stats_backward", "gradients+metrics")
            )
            g = cl.get("gradients+metrics", {}).get("bytes", 0) / 2**20
            lines.append(
                f"| {r['label']} | {r['dtype']} | {p['devices']} | {p['batch_per_device']} | "
                f"{p['params'] / 1e6:.2f} M | {m['peak'] / GiB:.2f} | "
                f"{m['argument'] / GiB:.2f} / {m['temp'] / GiB:.2f} | "
                f"{(p['flops'] or 0) / 1e9:.1f} | {cnt} | {g:.1f} |"
            )
    lines += [
        "",
        "### Predicted whole-run time (paper epochs; step = max(compute, HBM) + all-reduce)",
        "",
        "| config | dtype | devices | " + " | ".join(accs) + " |",
        "|" + "---|" * (3 + len(accs)),
    ]
    for r in plan["rows"]:
        for p in r["plans"]:
            cells = []
            for a in accs:
                q = p["predict"][a]
                cells.append(
                    f"{fmt_duration(q['run_s'], 'decimal')} ({q['step_s'] * 1e3:.1f} ms/step, {q['bound']})"
                )
            lines.append(
                f"| {r['label']} ({r['epochs']} ep) | {r['dtype']} | {p['devices']} | "
                + " | ".join(cells)
                + " |"
            )
    lines += [
        "",
        "### Largest batch per device that fits (90 % of the card's memory, linear fit)",
        "",
        "| config | dtype | " + " | ".join(accs) + " |",
        "|" + "---|" * (2 + len(accs)),
    ]
    for r in plan["rows"]:
        fit = r["max_batch_per_device"]
        lines.append(
            f"| {r['label']} | {r['dtype']} | "
            + " | ".join(str(fit.get(a, "—")) for a in accs)
            + " |"
        )
    lines += ["", "Sources of the accelerator figures:", ""]
    lines += [f"* {a}: {v['source']}" for a, v in plan["accelerators"].items()]
    return "\n".join(lines) + "\n"


def plan_benchmark(
    device_counts: Sequence[int] = (1, 8),
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    mfu: float = 0.4,
    markdown: str | None = None,
    entries: Sequence[tuple[str, str, int, int]] = PAPER_PLAN,
) -> dict[str, Any]:
    """:func:`scale_plan` of ``entries``; with ``markdown``, its tables replace the generated
    block of that file (between ``<!-- BEGIN plan -->`` / ``<!-- END plan -->``, appended if
    absent)."""
    plan = scale_plan(entries, device_counts=device_counts, dtypes=dtypes, mfu=mfu)
    if markdown:
        from pathlib import Path

        from ul_jax.io import write_text_atomic

        path = Path(markdown)
        text = path.read_text() if path.exists() else "# Scale plan\n"
        b, e = "<!-- BEGIN plan -->", "<!-- END plan -->"
        block = f"{b}\n{plan_markdown(plan)}{e}"
        if b in text and e in text:
            text = text[: text.index(b)] + block + text[text.index(e) + len(e) :]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        write_text_atomic(path, text)
    return plan
