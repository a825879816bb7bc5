"""Evaluate a trained run: ``python -m launch.evaluate --workdir RUN [--step K] [--ood NAME ...]
[--batch_size B] [--out_dir DIR] [--ood_source SRC] [--ood_data_dir DIR] [--no_plots]``.

Prints a readable table and writes ``eval.json`` (``eval_step<K>.json`` with ``--step``), a
reliability diagram and the ID-vs-OOD histograms into the work directory (or ``--out_dir``), then
lists those files and the next commands. Everything is done by :func:`ul_jax.eval.evaluate_run`;
see its module docstring for the metrics and :data:`ul_jax.eval.CONVENTIONS` for their
definitions. Errors are one line (``--debug``: the traceback); exit codes 0, 1 (an error), 2 (a
bad command line, or a work directory / OOD set that cannot be used), see
:mod:`ul_jax.console`.
"""

from __future__ import annotations

import sys

from absl import flags

from launch._flags import define_debug, parse
from ul_jax.console import one_line_errors
from ul_jax.eval import OOD_SETS, evaluate_run, format_eval, format_eval_outputs

PROG = "python -m launch.evaluate"


def _flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string(
        "workdir", None, "work directory of python -m launch.train", required=True, flag_values=fv
    )
    flags.DEFINE_integer("step", None, "checkpoint step (default: latest)", flag_values=fv)
    flags.DEFINE_multi_string(
        "ood", [], "OOD set(s) to score against the test set (see above)", flag_values=fv
    )
    flags.DEFINE_integer(
        "batch_size", None, "eval batch size (default: the run's eval_batch_size)", flag_values=fv
    )
    flags.DEFINE_string("out_dir", None, "output directory (default: --workdir)", flag_values=fv)
    flags.DEFINE_enum(
        "ood_source",
        None,
        ["tfds", "image_folder"],
        "loader of the OOD sets (default: per set, see ul_jax.data.ood)",
        flag_values=fv,
    )
    flags.DEFINE_string("ood_data_dir", None, "data directory of the OOD loader", flag_values=fv)
    flags.DEFINE_boolean("no_plots", False, "skip the PNG figures", flag_values=fv)
    define_debug(fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    fv = _flags()
    sets = "\n".join(f"  {k:24s} {s.description}" for k, s in OOD_SETS.items())
    parse(fv, argv, PROG, f"{__doc__}\nOOD sets (--ood):\n{sets}", lists=("ood",))
    with one_line_errors(PROG, debug=fv.debug, usage_errors=(FileNotFoundError, ValueError)):
        result = evaluate_run(
            fv.workdir,
            step=fv.step,
            ood=fv.ood,
            batch_size=fv.batch_size,
            out_dir=fv.out_dir,
            ood_source=fv.ood_source,
            ood_data_dir=fv.ood_data_dir,
            plots=not fv.no_plots,
        )
    print(format_eval(result))
    print(f"\n{format_eval_outputs(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
