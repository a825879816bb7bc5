"""Compare evaluated runs: ``python -m launch.report RUN_OR_EVAL_JSON ... [--markdown]``.

Each argument is a work directory (its ``eval.json`` is read) or an eval JSON file written by
``python -m launch.evaluate`` (e.g. ``RUN/eval_step5000.json``). Prints one row per run — labelled
by its directory, config variant / loss / head / EFR λ, data and step — with top-1, many/medium/
few, ECE and, per OOD set, FPR95 / AUROC / AUPR as ``MSP / energy / feature norm`` (all in %),
the layout of the paper's Tables 2 and 3. ``--markdown`` prints a markdown table.
"""

from __future__ import annotations

import sys

from absl import flags

from launch._flags import error, parse
from ul_jax.eval import format_report, load_eval

PROG = "python -m launch.report"


def main(argv: list[str] | None = None) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_boolean("markdown", False, "print a markdown table", flag_values=fv)
    runs = parse(fv, argv, PROG, __doc__, positional="RUN")
    try:
        results = [load_eval(r) for r in runs]
    except (FileNotFoundError, ValueError) as e:
        error(PROG, e)
    print(format_report(results, markdown=fv.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
