"""Benchmarks: ``python -m launch.bench ufm [--steps N] [--dtype float32|float64] [--json F]``,
``python -m launch.bench train [--model resnet18] [--batch 128] [--dtype float32|bfloat16]
[--variant ul_pal]``, ``python -m launch.bench data [--source synthetic] [--batch-size 128]
[--dataset imagenet100-synthetic --records 512 --workers 2]`` or
``python -m launch.bench plan [--devices 1 --devices 8] [--mfu 0.4] [--markdown docs/SCALE.md]``,
``python -m launch.bench profile [--models resnet18 --models resnet8:0.5] [--batch 128]
[--markdown docs/PROFILE.md]`` (where the train step's time goes, from a jax.profiler trace)
(the compiler's memory / FLOP / collective plan of the paper configs; on a CPU the largest
``--devices`` is forced with ``--xla_force_host_platform_device_count``).

Speed is only measured here, never in tests. Each figure is reported next to a baseline measured
in the same run (these machines are noisy), with the device it ran on. Everything is done by
:mod:`ul_jax.bench`; ``train`` times the train step of ``configs/common.py``'s config of
``--variant`` (CIFAR-10 shapes) with ``--model`` / ``--batch`` / ``--dtype`` set.
"""

import os
import sys

from absl import flags

from configs import common
from configs.dynamics import fig1
from launch._flags import HELP_FLAGS, error, parse, plain
from ul_jax import bench
from ul_jax.layers import NORM_IMPLS

I, S, E = flags.DEFINE_integer, flags.DEFINE_string, flags.DEFINE_enum
F, MI, ML = flags.DEFINE_float, flags.DEFINE_multi_integer, flags.DEFINE_multi_enum
MS = flags.DEFINE_multi_string
SUITE_FLAGS = {  # suite → (define, name, default, [enum values,] help); all also have --json
    "ufm": [
        (I, "steps", 50_000, "GD steps of the Fig. 1 workload"),
        (E, "dtype", "float64", ["float32", "float64"], "compute dtype"),
    ],
    "train": [
        (S, "model", "resnet18", "model.arch"),
        (F, "width", 1.0, "model.width_multiplier (the CPU suite's model: resnet8, 0.5)"),
        (I, "batch", 128, "global batch size"),
        (I, "steps", 5, "timed train steps"),
        (E, "dtype", "float32", ["float32", "bfloat16"], "model.dtype"),
        (E, "variant", "ul_pal", common.VARIANTS, "config variant (configs/common.py)"),
        (E, "norm", "auto", list(NORM_IMPLS), "model.norm_impl (BatchNorm implementation)"),
        (
            E,
            "baseline",
            None,
            ["torch"],
            "also time the same step in eager PyTorch (the bench extra) and print the ratio",
        ),
    ],
    "data": [
        (
            E,
            "dataset",
            "cifar10",
            ["cifar10", "imagenet100-synthetic"],
            "CIFAR-10 pipeline, or the ImageNet-100 loaders (grain vs the old thread pool) on "
            "synthetic JPEG records",
        ),
        (
            E,
            "source",
            "image_folder",
            ["image_folder", "tfds", "synthetic"],
            "CIFAR-10 loader, or random uint8 CIFAR-shaped data",
        ),
        (S, "data-dir", None, "data directory of the loader"),
        (I, "batch-size", 128, "global batch size"),
        (I, "steps", None, "timed steps (default: 200 for cifar10, 8 for imagenet100-synthetic)"),
        (I, "warmup", None, "untimed steps first (default: 20, or 2)"),
        (I, "seed", 0, "data and augment seed"),
        (I, "records", 512, "imagenet100-synthetic: JPEG records written"),
        (
            MI,
            "workers",
            None,
            "imagenet100-synthetic: grain worker counts (repeat; default: cpu count)",
        ),
        (I, "image-size", 224, "imagenet100-synthetic: crop size"),
    ],
    "profile": [
        (MS, "models", ["resnet18", "resnet8:0.5"], "ARCH[:WIDTH] to profile (repeat the flag)"),
        (I, "batch", 128, "global batch size"),
        (I, "steps", 5, "profiled train steps"),
        (E, "dtype", "float32", ["float32", "bfloat16"], "model.dtype"),
        (E, "variant", "ul_pal", common.VARIANTS, "config variant (configs/common.py)"),
        (E, "norm", "auto", list(NORM_IMPLS), "model.norm_impl (BatchNorm implementation)"),
        (S, "markdown", None, "write the table into this file (e.g. docs/PROFILE.md)"),
    ],
    "plan": [
        (MI, "devices", [1, 8], "device counts to compile for (repeat the flag)"),
        (ML, "dtypes", ["float32", "bfloat16"], ["float32", "bfloat16"], "model.dtype values"),
        (F, "mfu", 0.4, "assumed model-FLOP utilization of the predictions"),
        (S, "markdown", None, "write the tables into this file (e.g. docs/SCALE.md)"),
    ],
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: python -m launch.bench {{{'|'.join(bench.SUITES)}}} [flags]"
    if argv and argv[0] in HELP_FLAGS:
        print(
            f"{usage}\n\n{plain(__doc__)}\n\nflags of a suite: python -m launch.bench SUITE --help"
        )
        return 0
    if not argv or argv[0] not in bench.SUITES:
        print(usage, file=sys.stderr)
        return 2
    suite, fv, prog = argv[0], flags.FlagValues(), f"python -m launch.bench {argv[0]}"
    for define, name, *rest in SUITE_FLAGS[suite]:
        define(name, *rest, flag_values=fv)
    S("json", None, "also write the numbers to this file", flag_values=fv)
    parse(fv, argv[1:], prog, __doc__)
    kw = {name.replace("-", "_"): fv[name].value for _, name, *_ in SUITE_FLAGS[suite]}
    if suite == "ufm":
        kw["fig1_config"] = fig1.get_config()
    elif suite == "train":
        c = kw["config"] = common.apply_variant(common.base_config(), kw.pop("variant"))
        c.model.arch, c.model.dtype = kw.pop("model"), kw.pop("dtype")
        c.model.width_multiplier, c.model.norm_impl = kw.pop("width"), kw.pop("norm")
        c.batch_size = kw.pop("batch")
    elif suite == "data":
        kw["workers"] = tuple(kw["workers"] or ())
    elif suite == "profile":
        kw["models"] = tuple(kw["models"])
    elif suite == "plan":
        kw["device_counts"], kw["dtypes"] = tuple(kw.pop("devices")), tuple(kw["dtypes"])
        xla = os.environ.get("XLA_FLAGS", "")
        if "xla_force_host_platform_device_count" not in xla:  # CPU only; before jax starts
            n = max(kw["device_counts"])
            os.environ["XLA_FLAGS"] = f"{xla} --xla_force_host_platform_device_count={n}".strip()
    try:
        bench.run(suite, json_path=fv.json, **kw)
    except ValueError as e:
        error(prog, e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
