"""Compare evaluated runs: ``python -m launch.report RUN_OR_EVAL_JSON ... [--markdown]``.

Each argument is a work directory (its ``eval.json`` is read) or an eval JSON file written by
``python -m launch.evaluate`` (e.g. ``RUN/eval_step5000.json``). Prints one row per run — labelled
by its directory, config variant / loss / head / EFR λ, data and step — with top-1, many/medium/
few, ECE and, per OOD set, FPR95 / AUROC / AUPR as ``MSP / energy / feature norm`` (all in %),
the layout of the paper's Tables 2 and 3. ``--markdown`` prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys

from ul_jax.evaluation import format_report, load_eval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="work directory (reads RUN/eval.json) or eval JSON file")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    try:
        results = [load_eval(r) for r in args.runs]
    except (FileNotFoundError, ValueError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    print(format_report(results, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
