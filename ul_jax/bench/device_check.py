"""The prepared device check (``python -m launch.device_check --budget SECONDS --out DIR``).

Everything a short loan of an accelerator should measure, in one command that keeps to a wall-clock
budget and leaves one folder behind (``OUT/summary.json`` is rewritten after every phase, so a
check cut short still reports what it finished):

1. **environment** — the device kind, platform and count, the software versions, the card's
   public peak figures when it is one of :data:`ul_jax.bench.plan.ACCELERATORS`;
2. **bench** — :func:`ul_jax.bench.train.train_benchmark` of each ``DATASET:ARCH`` item (default
   CIFAR-10 / ResNet-18 at 32 px and ImageNet-100 / ResNet-50 at 224 px) in each dtype (bfloat16
   and float32): img/s, compile seconds, XLA's FLOPs per step and the model-FLOP utilization
   ``MFU = FLOPs/step ÷ step time ÷ peak`` against the card's data-sheet peak for that dtype
   (bf16, or float32 at JAX's default precision: TF32 on NVIDIA), and ``utilization`` against the
   best matmul measured in the same run (the only ceiling on a CPU);
3. **digits** — the CPU demo ``configs/digits.py`` through ``python -m launch.train``;
4. **train** — ``python -m launch.train --config configs/cifar10.py:VARIANT`` for CE, UL+PAL and
   UL+PAL+EFR (default), each with an equal share of what is left of the budget. The number of
   epochs is planned from the benchmark of the same model, batch and dtype: per epoch
   ``N_train / train img/s + N_test / eval img/s`` (an evaluation every epoch), after an overhead
   of process start, data loading and two compilations; when not even one epoch fits, a fraction
   of an epoch (``num_train_steps``) with one evaluation at the end. Each run is a subprocess with
   a hard deadline: at its share's end it gets ``SIGTERM`` (the training loop writes a checkpoint
   and exits 75, :mod:`ul_jax.train.preemption`), and the run is reported as ``partial``.

A phase that does not fit in what is left is recorded as ``skipped`` with the reason, never run
past the budget; a phase that fails is recorded with its error and the check goes on. Data is
never downloaded: the training runs read the offline ImageFolder archives (``--data_dir``,
``$UL_JAX_DATA_DIR`` or ``<repo>/../shared/data``) and are skipped, with the reason, when there is
none.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ul_jax.config import REPO_ROOT
from ul_jax.io import write_json_atomic

__all__ = [
    "DEFAULT_BENCH",
    "DEFAULT_VARIANTS",
    "device_check",
    "environment",
    "format_summary",
    "match_accelerator",
    "plan_training",
    "planned_seconds",
]

DEFAULT_BENCH = ("cifar10:resnet18", "imagenet100:resnet50")
DEFAULT_VARIANTS = ("ce", "ul_pal", "ul_pal_efr")
_TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "digits": 1_347}
_TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "digits": 450}
_GRACE_S = 60.0  # after SIGTERM: time to write the checkpoint before SIGKILL
_STARTUP_S = 20.0  # process start, imports, data loading (planning estimate)
_MIN_BENCH_S = 10.0  # a benchmark item does not start with less left than this


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------
def match_accelerator(device_kind: str):
    """The :class:`ul_jax.bench.plan.Accelerator` whose name matches JAX's ``device_kind``
    (``"NVIDIA H100 80GB HBM3"`` → H100, ``"TPU v5 lite"`` → TPU-v5e), or ``None``."""
    from ul_jax.bench.plan import ACCELERATORS

    kind = device_kind.upper().replace("-", " ")
    keys = {
        "A100": "A100-SXM4-80GB",
        "H100": "H100-SXM5-80GB",
        "H200": "H200-SXM-141GB",
        "TPU V4": "TPU-v4",
        "TPU V5 LITE": "TPU-v5e",
        "TPU V5E": "TPU-v5e",
    }
    for key, name in keys.items():
        if key in kind:
            return ACCELERATORS[name]
    return None


def environment() -> dict[str, Any]:
    """The device (kind, platform, count, process count), the card's public figures when known,
    and the versions of Python and the libraries the run depends on."""
    import importlib.metadata as md

    import jax

    dev = jax.devices()[0]
    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "numpy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    for pkg in ("jax-cuda12-plugin", "jax-cuda12-pjrt", "libtpu"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    acc = match_accelerator(dev.device_kind)
    return {
        "device_kind": dev.device_kind,
        "platform": dev.platform,
        "devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "processes": jax.process_count(),
        "host_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "accelerator": None
        if acc is None
        else {
            "name": acc.name,
            "peak_bf16": acc.peak_bf16,
            "peak_f32": acc.peak_f32,
            "hbm_bytes": acc.hbm_bytes,
            "source": acc.source,
        },
    }


# ---------------------------------------------------------------------------------------------
# benchmark
# ---------------------------------------------------------------------------------------------
def _bench_config(item: str, batch: int, dtype: str, overrides: Mapping[str, Any]):
    """``"DATASET:ARCH"`` → the ``configs/DATASET.py:ul_pal`` config with that arch/batch/dtype."""
    from ul_jax.config import load_config_file

    dataset, sep, arch = item.partition(":")
    if not sep or not dataset or not arch:
        raise ValueError(f"bench item must be DATASET:ARCH (e.g. cifar10:resnet18); got {item!r}")
    path = REPO_ROOT / "configs" / f"{dataset}.py"
    if not path.is_file():
        raise ValueError(f"bench item {item!r}: no config file {path}")
    fields = {"model.arch": arch, "batch_size": batch, "model.dtype": dtype, **overrides}
    return load_config_file(f"{path}:ul_pal", fields)


def _bench_one(item: str, batch: int, dtype: str, steps: int, overrides, peaks) -> dict:
    from ul_jax.bench.train import train_benchmark

    r = train_benchmark(_bench_config(item, batch, dtype, overrides), steps, matmul_n=2048)
    peak = None if peaks is None else peaks["peak_bf16" if dtype == "bfloat16" else "peak_f32"]
    flops = r["flops_per_train_step"]
    r["item"] = item
    r["mfu"] = flops / r["train_step_s"] / (peak * r["devices"]) if (flops and peak) else None
    r["mfu_peak_flops_per_sec"] = peak
    return r


# ---------------------------------------------------------------------------------------------
# planning a training run into a time share
# ---------------------------------------------------------------------------------------------
def plan_training(
    seconds: float,
    *,
    train_images: int,
    test_images: int,
    batch: int,
    train_img_s: float | None,
    eval_img_s: float | None,
    compile_s: float | None,
    slowdown: float = 1.0,
) -> dict[str, Any]:
    """How much training fits in ``seconds``: ``{"num_epochs": E}`` (E ≥ 1 whole epochs, each
    with one evaluation), or ``{"num_train_steps": K, "eval_every": K}`` (a fraction of an epoch,
    one evaluation at the end) when not one epoch fits, or ``{"num_epochs": 1}`` without a
    throughput measurement (the deadline then bounds the run). ``slowdown`` (≥ 1) scales the
    estimated cost of an epoch: measured ÷ planned seconds of an earlier run of the same check
    (checkpoints, logging and input-pipeline stalls the benchmark does not see). Also returns
    the estimate it rests on."""
    if not train_img_s:
        return {
            "num_epochs": 1,
            "estimate": "no benchmark of this model: one epoch, deadline-bound",
        }
    overhead = _STARTUP_S + 2 * (compile_s or 0.0)
    usable = max(0.0, 0.9 * seconds - overhead)
    eval_s = slowdown * test_images / (eval_img_s or train_img_s * 3)
    per_epoch = slowdown * train_images / train_img_s + eval_s
    epochs = int(usable // per_epoch)
    note = (
        f"{usable:.0f} s usable after {overhead:.0f} s overhead; {per_epoch:.1f} s per epoch "
        f"({train_img_s:.0f} img/s train, {eval_s:.1f} s per evaluation, slowdown "
        f"{slowdown:.2f})"
    )
    if epochs >= 1:
        return {"num_epochs": epochs, "estimate": note}
    steps = max(1, int(max(0.0, usable - eval_s) * train_img_s // batch))
    return {"num_train_steps": steps, "eval_every": steps, "estimate": note}


def planned_seconds(
    plan: Mapping[str, Any],
    *,
    train_images: int,
    batch: int,
    test_images: int,
    train_img_s: float,
    eval_img_s: float | None,
    compile_s: float | None,
) -> float:
    """The seconds :func:`plan_training` expected ``plan`` to take (slowdown 1)."""
    eval_s = test_images / (eval_img_s or train_img_s * 3)
    if "num_train_steps" in plan:
        work = plan["num_train_steps"] * batch / train_img_s + eval_s
    else:
        work = plan["num_epochs"] * (train_images / train_img_s + eval_s)
    return _STARTUP_S + 2 * (compile_s or 0.0) + work


def _run_cli(argv: Sequence[str], log: Path, timeout_s: float, env: Mapping[str, str]) -> dict:
    """Runs ``python -m launch.X ...`` from the repository root with a hard deadline: SIGTERM
    at ``timeout_s`` (the training loop checkpoints and exits 75), SIGKILL ``_GRACE_S`` later."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, *argv], cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT, env=env
        )
        timed_out = False
        try:
            rc = proc.wait(timeout=max(1.0, timeout_s))
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=_GRACE_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    return {"rc": rc, "seconds": time.monotonic() - t0, "stopped_by_budget": timed_out}


def _status(r: Mapping[str, Any]) -> str:
    if r["rc"] == 0:
        return "complete"
    if r["stopped_by_budget"]:
        return "partial (stopped by the budget)"
    return f"failed (exit {r['rc']})"


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def _final_metrics(workdir: Path) -> dict[str, Any]:
    """The last training row and the last evaluation row of ``workdir/metrics.jsonl``."""
    path = workdir / "metrics.jsonl"
    out: dict[str, Any] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "train/epoch" in row:
            out["epoch"] = row["train/epoch"]
        if "eval/accuracy" in row:
            out["step"] = row.get("step")
            out["test_accuracy"] = row["eval/accuracy"]
            if "eval/ece" in row:
                out["test_ece"] = row["eval/ece"]
        if "perf/images_per_sec" in row:
            out["last_train_images_per_sec"] = row["perf/images_per_sec"]
            out["last_step"] = row.get("step")
    return out


def _overrides_argv(fields: Mapping[str, Any]) -> list[str]:
    return [f"--config.{k}={v}" for k, v in fields.items()]


# ---------------------------------------------------------------------------------------------
# the check
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Check:
    """The state the phases of :func:`device_check` share: where to write, the deadline, the
    child processes' environment and the summary (rewritten by :meth:`save`)."""

    out: Path
    t_start: float
    deadline: float
    env: dict[str, str]
    summary: dict[str, Any]

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        self.summary["elapsed_s"] = time.monotonic() - self.t_start
        write_json_atomic(self.out / "summary.json", self.summary, indent=1, allow_nan=True)


def _bench_phase(
    ck: _Check,
    items: Sequence[tuple[str, str]],
    *,
    bench_end: float,
    bench_share: float,
    train_item: str,
    train_batch: int,
    bench_batch: int,
    bench_steps: int,
    bench_overrides: Mapping[str, Any],
    peaks,
) -> None:
    """Benchmarks each ``(item, dtype)`` while the bench share of the budget lasts; a failing
    item is recorded with its error and does not stop the check."""
    for item, dtype in items:
        row: dict[str, Any] = {"item": item, "dtype": dtype}
        if time.monotonic() >= bench_end:
            row["skipped"] = f"the bench share of the budget ({bench_share:.0%}) is spent"
        elif ck.left() < _MIN_BENCH_S:
            row["skipped"] = f"{ck.left():.1f} s left of the budget (< {_MIN_BENCH_S:.0f} s)"
        else:
            try:
                batch = train_batch if item == train_item else bench_batch
                row.update(
                    _bench_one(item, batch, dtype, bench_steps, dict(bench_overrides), peaks)
                )
            except Exception as e:  # a failing benchmark must not stop the check
                row["error"] = f"{type(e).__name__}: {e}"
        ck.summary["bench"].append(row)
        write_json_atomic(ck.out / "bench.json", ck.summary["bench"], indent=1, allow_nan=True)
        ck.save()


def _digits_phase(ck: _Check, overrides: Mapping[str, Any], runs_follow: bool) -> None:
    """The digits demo through ``launch.train`` (at most half of what is left when training
    runs follow, at most 10 min)."""
    if ck.left() < 2 * _STARTUP_S:
        ck.summary["digits"] = {"skipped": f"{ck.left():.0f} s left of the budget"}
    else:
        wd = ck.out / "digits"
        argv = [
            "-m",
            "launch.train",
            "--config",
            str(REPO_ROOT / "configs" / "digits.py"),
            "--workdir",
            str(wd),
            *_overrides_argv(dict(overrides)),
        ]
        limit = min(ck.left() / (2 if runs_follow else 1), 600)
        r = _run_cli(argv, ck.out / "digits.log", limit, ck.env)
        r.update(_final_metrics(wd))
        r["status"] = _status(r)
        if r["rc"] != 0:
            r["log_tail"] = _tail(ck.out / "digits.log")
        ck.summary["digits"] = r
    ck.save()


def _train_one(ck: _Check, name: str, variant: str, cfg: dict, share: float, dataset: str) -> dict:
    """One training run of the check through ``launch.train`` with a hard deadline; returns
    the runner's record (exit code, seconds, whether the budget stopped it) and final metrics."""
    wd = ck.out / name
    argv = [
        "-m",
        "launch.train",
        "--config",
        f"{REPO_ROOT / 'configs' / f'{dataset}.py'}:{variant}",
        "--workdir",
        str(wd),
        *_overrides_argv(cfg),
    ]
    r = {"command": "python " + " ".join(argv)}
    r.update(_run_cli(argv, ck.out / f"{name}.log", max(1.0, share - _GRACE_S * 0.25), ck.env))
    r.update(_final_metrics(wd))
    return r


def _train_phase(
    ck: _Check,
    variants: Sequence[str],
    *,
    dataset: str,
    arch: str,
    dtype: str,
    batch: int,
    train_item: str,
    overrides: Mapping[str, Any],
    data_dir: str | None,
) -> None:
    """The training runs, each given an equal share of what is left, its epochs planned from
    the benchmark (:func:`plan_training`) and recalibrated on the measured time of earlier
    runs; skipped (with the reason) without the offline data or the time."""
    from ul_jax.data.sources import resolve_image_folder

    try:
        data_found = resolve_image_folder(dataset, data_dir)
    except FileNotFoundError:
        data_found = None
    ck.summary["train_data"] = None if data_found is None else str(data_found)
    ref = next(
        (
            b
            for b in ck.summary["bench"]
            if b["item"] == train_item and b["dtype"] == dtype and "train_images_per_sec" in b
        ),
        None,
    )
    fields = dict(overrides)
    per_class = int(fields.get("data.train_per_class", 0) or 0)
    n_train = per_class * 10 if per_class else _TRAIN_IMAGES[dataset]
    speeds = {} if ref is None else {
        "train_img_s": ref["train_images_per_sec"],
        "eval_img_s": ref["eval_images_per_sec"],
        "compile_s": ref["compile_s"],
    }  # fmt: skip
    slowdown = 1.0
    for k, variant in enumerate(variants):
        name = f"{dataset}_{arch}_{variant}"
        row: dict[str, Any] = {"name": name, "variant": variant}
        share = ck.left() / (len(variants) - k)
        if data_found is None:
            row["skipped"] = (
                f"no offline {dataset} archive (looked in --data_dir, $UL_JAX_DATA_DIR, "
                "<repo>/../shared/data); ul_jax never downloads"
            )
        elif share < _STARTUP_S + 10:
            row["skipped"] = f"{ck.left():.0f} s left of the budget for {len(variants) - k} run(s)"
        else:
            sizes = dict(train_images=n_train, test_images=_TEST_IMAGES[dataset], batch=batch)
            plan = plan_training(
                share,
                **sizes,
                train_img_s=speeds.get("train_img_s"),
                eval_img_s=speeds.get("eval_img_s"),
                compile_s=speeds.get("compile_s"),
                slowdown=slowdown,
            )
            row["plan"] = plan
            cfg = {
                "model.arch": arch,
                "model.dtype": dtype,
                "batch_size": batch,
                **{k2: v for k2, v in plan.items() if k2 != "estimate"},
                **fields,
            }
            r = _train_one(ck, name, variant, cfg, share, dataset)
            row.update(r)
            if ref and r["rc"] == 0:  # calibrate the next plans on this run's measured time
                slowdown = max(1.0, r["seconds"] / planned_seconds(plan, **sizes, **speeds))
            elif r["stopped_by_budget"]:
                slowdown *= 1.5
            row["status"] = _status(r)
            if r["rc"] != 0 and not r["stopped_by_budget"]:
                row["log_tail"] = _tail(ck.out / f"{name}.log")
        ck.summary["train"].append(row)
        ck.save()


def device_check(
    budget_s: float,
    out: str | Path,
    *,
    bench: Sequence[str] = DEFAULT_BENCH,
    bench_dtypes: Sequence[str] = ("bfloat16", "float32"),
    bench_batch: int = 256,
    bench_steps: int = 20,
    bench_overrides: Mapping[str, Any] | None = None,
    bench_share: float = 0.3,
    digits: bool = True,
    digits_overrides: Mapping[str, Any] | None = None,
    train_dataset: str = "cifar10",
    train_arch: str = "resnet18",
    train_dtype: str | None = None,
    train_batch: int = 256,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    train_overrides: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Runs the phases of the module docstring (:func:`_bench_phase`, :func:`_digits_phase`,
    :func:`_train_phase`) within ``budget_s`` seconds of wall time, writing ``out/summary.json``
    (returned) after each, the benchmark numbers to ``out/bench.json`` and each training run to
    ``out/<name>/`` (work directory) and ``out/<name>.log``.

    ``train_dtype`` None: bfloat16 on an accelerator, float32 on a CPU. ``bench_share``: the
    fraction of the budget the benchmark phase may start items in. ``*_overrides``: config
    fields (``{"model.width_multiplier": 0.25}``) set on the benchmark / digits / training
    configs, for a small check on a CPU."""
    import jax

    t_start = time.monotonic()
    if budget_s <= 0:
        raise ValueError(f"budget must be > 0 seconds; got {budget_s}")
    if not 0 < bench_share <= 1:
        raise ValueError(f"bench_share must be in (0, 1]; got {bench_share}")
    if train_dataset not in _TRAIN_IMAGES:
        raise ValueError(
            f"train_dataset must be one of {sorted(_TRAIN_IMAGES)}; got {train_dataset!r}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("UL_JAX_PROGRESS", "log")
    if data_dir:
        env["UL_JAX_DATA_DIR"] = str(data_dir)
    summary: dict[str, Any] = {
        "budget_s": float(budget_s),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "environment": environment(),
        "bench": [],
        "digits": None,
        "train": [],
    }
    if train_dtype is None:
        train_dtype = "bfloat16" if jax.default_backend() != "cpu" else "float32"
    summary["train_dtype"] = train_dtype
    ck = _Check(out, t_start, t_start + float(budget_s), env, summary)
    ck.save()

    items = [(i, d) for i in bench for d in bench_dtypes]
    train_item = f"{train_dataset}:{train_arch}"
    if train_item not in bench:  # the training plan needs this model's throughput
        items.append((train_item, train_dtype))
    _bench_phase(
        ck,
        items,
        bench_end=t_start + bench_share * budget_s,
        bench_share=bench_share,
        train_item=train_item,
        train_batch=train_batch,
        bench_batch=bench_batch,
        bench_steps=bench_steps,
        bench_overrides=bench_overrides or {},
        peaks=summary["environment"]["accelerator"],
    )
    if digits:
        _digits_phase(ck, digits_overrides or {}, runs_follow=bool(variants))
    _train_phase(
        ck,
        variants,
        dataset=train_dataset,
        arch=train_arch,
        dtype=train_dtype,
        batch=train_batch,
        train_item=train_item,
        overrides=train_overrides or {},
        data_dir=data_dir,
    )
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    summary["within_budget"] = time.monotonic() - t_start <= budget_s + _GRACE_S
    ck.save()
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few lines for the terminal: device, benchmark img/s and MFU, the runs' accuracies."""
    env = summary["environment"]
    lines = [
        f"device: {env['device_kind']} × {env['devices']} ({env['platform']}), "
        f"jax {env['versions'].get('jax')}; {summary.get('elapsed_s', 0):.0f} s of "
        f"{summary['budget_s']:.0f} s budget"
    ]
    for b in summary["bench"]:
        head = f"  bench {b['item']} {b['dtype']}:"
        if "train_images_per_sec" in b:
            mfu = "" if b.get("mfu") is None else f", MFU {100 * b['mfu']:.1f} %"
            lines.append(
                f"{head} {b['train_images_per_sec']:,.0f} img/s train, "
                f"{b['eval_images_per_sec']:,.0f} img/s eval{mfu}, "
                f"{100 * (b['utilization'] or math.nan):.0f} % of matmul"
            )
        else:
            lines.append(f"{head} {b.get('skipped') or b.get('error')}")
    d = summary.get("digits")
    if d:
        acc = d.get("test_accuracy")
        lines.append(
            "  digits: "
            + (d["skipped"] if "skipped" in d else f"{d['status']}, {d['seconds']:.0f} s")
            + ("" if acc is None else f", test accuracy {100 * acc:.2f} %")
        )
    for t in summary["train"]:
        if "skipped" in t:
            lines.append(f"  {t['name']}: skipped: {t['skipped']}")
            continue
        acc = t.get("test_accuracy")
        lines.append(
            f"  {t['name']}: {t['status']}, {t['seconds']:.0f} s, epoch "
            f"{t.get('epoch') or 0:.2f}"
            + ("" if acc is None else f", test accuracy {100 * acc:.2f} %")
        )
    return "\n".join(lines)
