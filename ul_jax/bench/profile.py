"""Where the train step's time goes (``python -m launch.bench profile``).

A real profile, not a model of one: the train step of a config (:func:`ul_jax.train.jit_train_step`,
exactly the one training runs) is compiled, warmed up and run ``steps`` times under
``jax.profiler.trace``; the trace (XSpace protobuf) is read back with ``jax.profiler.ProfileData``
and every event whose name is an instruction of the compiled HLO module (on XLA:CPU, one event per
executed thunk: a fusion, a convolution, a copy …) is attributed through that instruction:

* its **kind** — a convolution (an instruction whose computation holds a ``convolution``) is
  *forward* when its JAX ``op_name`` metadata is not under ``transpose(…)``; under it, it is the
  *filter gradient* when its window is the activation (spatial window area > 9, i.e. larger than
  every 3×3 / 1×1 kernel of these models: true while the last stage's activations are larger
  than 3×3, e.g. 4×4 for 32 px CIFAR, 7×7 for 224 px ImageNet) and the *input gradient*
  otherwise; XLA drops the metadata of some convolutions: without it, a window larger than 3×3
  is a filter gradient and the rest is reported as "conv (no metadata)"; BatchNorm
  (``BatchNorm``, ``bn_init``, ``norm_proj`` in the module path) forward or backward; the head
  and loss; layout transposes and copies (``transpose``/``copy`` instructions); the on-device
  augmentation (``sample_crop_flip``, the PRNG); the non-finite guard (``is-finite``); the rest
  (the optimizer update, metrics, the elementwise ReLU/residual ops that XLA did not fuse into
  one of the above);
* its **stage** — the stem (``conv_init``/``bn_init``) or the ResNet stage of its block
  (``BasicBlock_k``/``BottleneckBlock_k`` → stage by the cumulative stage sizes).

Times are per step, summed over the threads that ran them (XLA:CPU may run independent thunks
concurrently, so the sum can exceed the wall time; both are reported). The attribution needs
synchronous thunks: with ul_jax's XLA:CPU default (``ul_jax.train.precision.apply_cpu_defaults``)
the convolutions run as asynchronous Eigen tasks whose trace events end at dispatch, so their
time shows as "not attributed"; ``UL_JAX_XLA_CPU_DEFAULTS=0`` profiles XLA's own default path,
where every convolution is a synchronous YNNPACK fusion.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

__all__ = [
    "classify",
    "parse_hlo",
    "profile_benchmark",
    "profile_table",
    "step_profile",
    "write_markdown",
]

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = (.*?) ([\w\-]+)\(")
_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_CALLS = re.compile(r"(?:calls|to_apply)=%?([\w.\-]+)")
_OPNAME = re.compile(r'op_name="([^"]+)"')
_WINDOW = re.compile(r"window=\{size=([\dx]+)")
_BLOCK = re.compile(r"(?:BasicBlock|BottleneckBlock)_(\d+)(?!\d)")
_PATH = re.compile(r"(?:BasicBlock|BottleneckBlock)_\d+|conv_init|bn_init")
_OPERANDS = re.compile(r"%([\w.\-]+)")

KINDS = (
    "conv forward",
    "conv (no metadata)",
    "conv input-grad",
    "conv filter-grad",
    "BatchNorm forward",
    "BatchNorm backward",
    "head + loss",
    "layout transposes / copies",
    "augmentation + PRNG",
    "non-finite guard",
    "optimizer, metrics, other",
)


def parse_hlo(text: str) -> dict[str, dict[str, Any]]:
    """Instructions of an HLO module's text: ``name → {"opcode", "op_name", "window_area"
    (of a convolution in it or in the computations it calls, else None), "conv": bool}``."""
    comps: dict[str, list[str]] = collections.defaultdict(list)
    current = None
    for line in text.splitlines():
        m = _COMP.match(line)
        if m and " = " not in line.split("{")[0]:
            current = m.group(1)
            continue
        if current is not None and _INSTR.match(line):
            comps[current].append(line)

    def conv_in(comp: str, depth: int = 0) -> tuple[int | None, str | None]:
        for line in comps.get(comp, ()):
            m = _INSTR.match(line)
            if m.group(3) == "convolution":
                w = _WINDOW.search(line)
                area = int(np.prod([int(v) for v in w.group(1).split("x")])) if w else 1
                on = _OPNAME.search(line)
                return area, on.group(1) if on else None
            c = _CALLS.search(line)
            if c and depth < 4:
                found = conv_in(c.group(1), depth + 1)
                if found[0] is not None:
                    return found
        return None, None

    def first_op_name(comp: str, depth: int = 0) -> str | None:
        lines = comps.get(comp, ())
        for line in reversed(lines):  # the root first
            on = _OPNAME.search(line)
            if on:
                return on.group(1)
        for line in lines:
            c = _CALLS.search(line)
            if c and depth < 4:
                found = first_op_name(c.group(1), depth + 1)
                if found:
                    return found
        return None

    out: dict[str, dict[str, Any]] = {}
    for lines in comps.values():
        for line in lines:
            m = _INSTR.match(line)
            name, opcode = m.group(1), m.group(3)
            on = _OPNAME.search(line)
            c = _CALLS.search(line)
            area, conv_op = (None, None)
            if opcode == "convolution":
                w = _WINDOW.search(line)
                area = int(np.prod([int(v) for v in w.group(1).split("x")])) if w else 1
            elif c:
                area, conv_op = conv_in(c.group(1))
            op_name = on.group(1) if on else None
            if area is not None and conv_op:
                op_name = op_name if op_name and "conv_general_dilated" in op_name else conv_op
            if op_name is None and c:
                op_name = first_op_name(c.group(1))
            args = line[m.end() :].split(")", 1)[0]
            out[name] = {
                "opcode": opcode,
                "op_name": op_name or "",
                "window_area": area,
                "conv": area is not None,
                "operands": _OPERANDS.findall(args),
            }
    for info in out.values():  # where in the model: its own op_name, else its operands'
        info["origin"] = _origin(info, out)
    return out


def _origin(info: Mapping[str, Any], instrs: Mapping[str, Mapping[str, Any]]) -> str:
    """The first module path (``BasicBlock_k`` …) in the op_name of ``info`` or, breadth-first
    up to three levels, of its operands (or in their names: parameters are named by their path).
    XLA drops the metadata of some instructions (e.g. the filter-gradient convolutions)."""
    if _PATH.search(info["op_name"]):
        return info["op_name"]
    frontier, seen = list(info.get("operands", ())), set()
    for _ in range(3):
        nxt = []
        for name in frontier:
            if name in seen:
                continue
            seen.add(name)
            if _PATH.search(name):
                return name
            other = instrs.get(name)
            if other is None:
                continue
            if _PATH.search(other["op_name"]):
                return other["op_name"]
            nxt.extend(other.get("operands", ()))
        frontier = nxt
    return ""


def classify(name: str, info: Mapping[str, Any], stage_sizes: Sequence[int]) -> tuple[str, str]:
    """``(kind, stage)`` of one executed instruction (module docstring)."""
    op = info.get("op_name", "")
    backward = "transpose(" in op
    bounds = np.cumsum(stage_sizes)
    origin = info.get("origin", op)
    m = _BLOCK.search(origin)
    if m:
        stage = f"stage {int(np.searchsorted(bounds, int(m.group(1)), side='right')) + 1}"
    elif "conv_init" in origin or "bn_init" in origin:
        stage = "stem"
    else:
        stage = "-"
    if info.get("conv"):
        if info["window_area"] > 9 and (backward or not op):
            return "conv filter-grad", stage
        if backward:
            return "conv input-grad", stage
        return ("conv forward" if op else "conv (no metadata)"), stage
    if name.startswith(("transpose", "copy", "wrapped_copy", "wrapped_transpose")) or info.get(
        "opcode"
    ) in ("copy", "transpose"):
        return "layout transposes / copies", stage
    if any(k in op for k in ("/BatchNorm", "/bn_init/", "/norm_proj/")):
        return ("BatchNorm backward" if backward else "BatchNorm forward"), stage
    if "/head/" in op or "take_along_axis" in op or "log_softmax" in op or "logsumexp" in op:
        return "head + loss", "-"
    if any(k in op for k in ("sample_crop_flip", "threefry", "_randint", "_bernoulli", "_uniform")):
        return "augmentation + PRNG", "-"
    if "is-finite" in name or "is_finite" in op:
        return "non-finite guard", "-"
    return "optimizer, metrics, other", stage


def step_profile(config, steps: int = 5, *, trace_dir: str | None = None) -> dict[str, Any]:
    """Profiles ``steps`` train steps of ``config`` (module docstring). Returns the wall time
    per step, the summed op time per step, and rows ``{"kind", "stage", "ms", "count"}`` per
    step."""
    from ul_jax.bench.train import synthetic_step

    if steps < 1:
        raise ValueError(f"steps must be >= 1; got steps={steps}")
    b = synthetic_step(config, total_steps=2 * steps + 4)
    batch, size, state, arr = config.batch_size, b.size, b.state, b.batch
    compiled = b.step.lower(state, arr).compile()
    for _ in range(2):
        state, m = compiled(state, arr)
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = compiled(state, arr)
    jax.block_until_ready((state, m))
    wall = (time.perf_counter() - t0) / steps

    instrs = parse_hlo(compiled.as_text())
    with tempfile.TemporaryDirectory() as tmp:
        where = trace_dir or tmp
        with jax.profiler.trace(where):
            for _ in range(steps):
                state, m = compiled(state, arr)
                jax.block_until_ready((state, m))
        files = sorted(glob.glob(f"{where}/**/*.xplane.pb", recursive=True))
        if not files:
            raise RuntimeError(f"jax.profiler.trace wrote no .xplane.pb under {where}")
        data = jax.profiler.ProfileData.from_file(files[-1])
        totals: dict[str, float] = collections.defaultdict(float)
        counts: dict[str, int] = collections.defaultdict(int)
        for plane in data.planes:
            for line in plane.lines:
                for ev in line.events:
                    if ev.name in instrs:
                        totals[ev.name] += ev.duration_ns
                        counts[ev.name] += 1
    stage_sizes = _stage_sizes(config.model.arch)
    rows: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0])
    for name, ns in totals.items():
        key = classify(name, instrs[name], stage_sizes)
        rows[key][0] += ns / 1e6 / steps
        rows[key][1] += counts[name] // steps
    op_ms = sum(v[0] for v in rows.values())
    return {
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "arch": config.model.arch,
        "width_multiplier": config.model.width_multiplier,
        "batch": batch,
        "image_size": size,
        "dtype": config.model.dtype,
        "steps": steps,
        "wall_ms_per_step": 1e3 * wall,
        "op_ms_per_step": op_ms,
        "images_per_sec": batch / wall,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "rows": [
            {"kind": k, "stage": s, "ms": v[0], "count": v[1]}
            for (k, s), v in sorted(rows.items(), key=lambda t: (KINDS.index(t[0][0]), t[0][1]))
        ],
    }


def _stage_sizes(arch: str) -> tuple[int, ...]:
    from ul_jax.models import ARCHS

    return tuple(ARCHS[arch]["stage_sizes"])


def profile_table(profiles: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one column pair (ms/step, share of op time) per profile; rows by kind, with the
    convolutions split by stage, then the totals."""
    keys: list[tuple[str, str]] = []
    for p in profiles:
        for r in p["rows"]:
            k = (r["kind"], r["stage"] if r["kind"].startswith("conv") else "")
            if k not in keys:
                keys.append(k)
    keys.sort(key=lambda k: (KINDS.index(k[0]), k[1]))
    head = "| part of the step | " + " | ".join(
        f"{p['arch']} ×{p['width_multiplier']:g}, B={p['batch']}: ms | share" for p in profiles
    )
    lines = [head + " |", "|---|" + "---:|---:|" * len(profiles)]
    for kind, stage in keys:
        cells = []
        for p in profiles:
            hits = [
                r["ms"]
                for r in p["rows"]
                if r["kind"] == kind and (not stage or r["stage"] == stage)
            ]
            ms = sum(hits)
            cells.append(f"{ms:.2f} | {100 * ms / p['op_ms_per_step']:.1f} %" if hits else "– | –")
        label = f"{kind} ({stage})" if stage else kind
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "| not attributed: wall − sum, when positive (asynchronous thunks, e.g. Eigen "
        "convolutions whose events end at dispatch) | "
        + " | ".join(
            f"{max(0.0, p['wall_ms_per_step'] - p['op_ms_per_step']):.2f} | "
            f"{100 * max(0.0, p['wall_ms_per_step'] / p['op_ms_per_step'] - 1):.1f} %"
            for p in profiles
        )
        + " |"
    )
    lines.append(
        "| **sum of op times** | "
        + " | ".join(f"**{p['op_ms_per_step']:.2f}** | 100 %" for p in profiles)
        + " |"
    )
    lines.append(
        "| wall time per step (img/s) | "
        + " | ".join(f"{p['wall_ms_per_step']:.2f} | ({p['images_per_sec']:.0f})" for p in profiles)
        + " |"
    )
    return "\n".join(lines)


def write_markdown(path: str | Path, profiles: Sequence[Mapping[str, Any]], command: str) -> None:
    """Replaces the ``<!-- BEGIN profile -->`` … ``<!-- END profile -->`` block of ``path``
    (appended if missing) with :func:`profile_table` and how it was made."""
    p0 = profiles[0]
    block = (
        f"Measured on `{p0['device']}` ({p0['backend']}), jax {jax.__version__}, "
        f"{p0['dtype']}, {p0['steps']} profiled steps each, XLA_FLAGS=`{p0.get('xla_flags') or ''}`,"
        f" by `{command}`.\n\n" + profile_table(profiles) + "\n"
    )
    b, e = "<!-- BEGIN profile -->", "<!-- END profile -->"
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    if b in text and e in text:
        text = text[: text.index(b) + len(b)] + "\n" + block + text[text.index(e) :]
    else:
        text = text.rstrip("\n") + f"\n\n{b}\n{block}{e}\n"
    path.write_text(text)


def profile_benchmark(
    models: Sequence[str] = ("resnet18", "resnet8:0.5"),
    batch: int = 128,
    steps: int = 5,
    dtype: str = "float32",
    variant: str = "ul_pal",
    norm: str = "auto",
    markdown: str | None = None,
) -> dict[str, Any]:
    """:func:`step_profile` of each ``ARCH[:WIDTH]`` in ``models`` (CIFAR-10 shapes, the
    ``configs/common.py`` config of ``variant``); with ``markdown``, the table goes into that
    file (:func:`write_markdown`)."""
    import sys

    from ul_jax.config import REPO_ROOT, load_config_file

    profiles = []
    for spec in models:
        arch, _, width = spec.partition(":")
        fields = {
            "model.arch": arch,
            "model.width_multiplier": float(width or 1.0),
            "batch_size": batch,
            "model.dtype": dtype,
            "model.norm_impl": norm,
        }
        config = load_config_file(f"{REPO_ROOT / 'configs' / 'cifar10.py'}:{variant}", fields)
        profiles.append(step_profile(config, steps))
    if markdown:
        command = "python -m launch.bench " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
        from ul_jax.train.precision import CPU_DEFAULTS_ENV

        if command and os.environ.get(CPU_DEFAULTS_ENV, "").strip().lower() in ("0", "false"):
            command = f"{CPU_DEFAULTS_ENV}=0 {command}"
        write_markdown(markdown, profiles, command or "python -m launch.bench profile")
    return {"profiles": profiles, "table": profile_table(profiles)}
