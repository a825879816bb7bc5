"""The prepared device check: ``python -m launch.device_check --budget SECONDS --out DIR``.

On whatever accelerator is present (a CPU too), within the budget: the device and software
versions; the train-step benchmark of CIFAR-10 / ResNet-18 and ImageNet-100 / ResNet-50 (224 px) in
bfloat16 and float32 with MFU against the card's data-sheet peak; the digits demo; CIFAR-10 /
ResNet-18 with CE, UL+PAL and UL+PAL+EFR for as many epochs as the rest of the budget allows, each
evaluated. Everything lands under ``--out`` with ``summary.json`` (rewritten after every phase).
The phases and the planning: :mod:`ul_jax.bench.device_check`. Override config fields of the
benchmark / digits / training runs with ``--bench_set``, ``--digits_set``, ``--train_set``
(``FIELD=VALUE``, repeatable), e.g. a tiny check on a CPU::

    python -m launch.device_check --budget 120 --out /tmp/dc --bench cifar10:resnet8 \\
        --bench_dtypes float32 --bench_steps 2 --train_arch resnet8 --variants ce \\
        --train_set data.train_per_class=50 --train_set model.width_multiplier=0.25
"""

import sys

from absl import flags

from launch._flags import define_debug, error, parse

_DOC = __doc__


def _fields(values: list[str], name: str) -> dict:
    out = {}
    for v in values or ():
        key, eq, val = v.partition("=")
        if not eq or not key:
            raise ValueError(f"--{name} must be FIELD=VALUE; got {v!r}")
        out[key.strip()] = _literal(val.strip())
    return out


def _literal(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = "python -m launch.device_check"
    fv = flags.FlagValues()
    F, I, S = flags.DEFINE_float, flags.DEFINE_integer, flags.DEFINE_string
    ML, MS, B = flags.DEFINE_multi_enum, flags.DEFINE_multi_string, flags.DEFINE_bool
    F("budget", None, "wall-clock budget in seconds (required)", flag_values=fv)
    S("out", None, "output folder (required): summary.json, bench.json, runs, logs", flag_values=fv)
    MS(
        "bench",
        ["cifar10:resnet18", "imagenet100:resnet50"],
        "DATASET:ARCH items to benchmark",
        flag_values=fv,
    )
    ML(
        "bench_dtypes",
        ["bfloat16", "float32"],
        ["bfloat16", "float32"],
        "benchmark dtypes",
        flag_values=fv,
    )
    I("bench_batch", 256, "global batch of the benchmark", flag_values=fv)
    I("bench_steps", 20, "timed steps per benchmark", flag_values=fv)
    F("bench_share", 0.3, "fraction of the budget in which benchmarks may start", flag_values=fv)
    B("digits", True, "run the digits demo", flag_values=fv)
    S("train_dataset", "cifar10", "dataset of the training runs", flag_values=fv)
    S("train_arch", "resnet18", "model.arch of the training runs", flag_values=fv)
    S(
        "train_dtype",
        None,
        "model.dtype of the training runs (default: bfloat16 on an accelerator, float32 on a CPU)",
        flag_values=fv,
    )
    I("train_batch", 256, "global batch of the training runs", flag_values=fv)
    MS("variants", ["ce", "ul_pal", "ul_pal_efr"], "config variants to train", flag_values=fv)
    S("data_dir", None, "directory of the offline ImageFolder archives", flag_values=fv)
    for n in ("bench_set", "digits_set", "train_set"):
        MS(n, [], "config FIELD=VALUE override (repeatable)", flag_values=fv)
    define_debug(fv)
    parse(fv, argv, prog, _DOC, lists=("bench", "bench_dtypes", "variants"))
    if fv.budget is None or fv.out is None:
        error(prog, "--budget SECONDS and --out DIR are required")
    try:
        overrides = {n: _fields(fv[n].value, n) for n in ("bench_set", "digits_set", "train_set")}
    except ValueError as e:
        error(prog, e)
    from ul_jax.bench.device_check import device_check, format_summary
    from ul_jax.console import one_line_errors

    with one_line_errors(prog, debug=fv.debug):
        summary = device_check(
            fv.budget,
            fv.out,
            bench=tuple(fv.bench),
            bench_dtypes=tuple(fv.bench_dtypes),
            bench_batch=fv.bench_batch,
            bench_steps=fv.bench_steps,
            bench_overrides=overrides["bench_set"],
            bench_share=fv.bench_share,
            digits=fv.digits,
            digits_overrides=overrides["digits_set"],
            train_dataset=fv.train_dataset,
            train_arch=fv.train_arch,
            train_dtype=fv.train_dtype,
            train_batch=fv.train_batch,
            variants=tuple(fv.variants),
            train_overrides=overrides["train_set"],
            data_dir=fv.data_dir,
        )
    print(format_summary(summary))
    print(f"summary: {fv.out}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
