"""Compare evaluated runs: ``python -m launch.report RUN_OR_EVAL_JSON ... [--markdown]``.

Each argument is a work directory (its ``eval.json`` is read) or an eval JSON file written by
``python -m launch.evaluate`` (e.g. ``RUN/eval_step5000.json``). Prints one row per run — labelled
by its directory, config variant / loss / head / EFR λ, data and step — with top-1, many/medium/
few, ECE and, per OOD set, FPR95 / AUROC / AUPR as ``MSP / energy / feature norm`` (all in %),
the layout of the paper's Tables 2 and 3. ``--markdown`` prints a markdown table. Errors are one
line (``--debug``: the traceback); exit codes 0, 1, 2 (a bad command line, or a run without an
eval JSON): :mod:`ul_jax.console`.
"""

from __future__ import annotations

import sys

from absl import flags

from launch._flags import define_debug, parse
from ul_jax.console import one_line_errors
from ul_jax.eval import format_report, load_eval

PROG = "python -m launch.report"


def main(argv: list[str] | None = None) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_boolean("markdown", False, "print a markdown table", flag_values=fv)
    define_debug(fv)
    runs = parse(fv, argv, PROG, __doc__, positional="RUN")
    with one_line_errors(PROG, debug=fv.debug, usage_errors=(FileNotFoundError, ValueError)):
        results = [load_eval(r) for r in runs]
    print(format_report(results, markdown=fv.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
