"""Run the reproduction suite: ``python -m launch.reproduce --suite cpu --out workdirs/cpu
[--only NAME ...] [--seeds 0 1] [--tables_only] [--fig_dir DIR] [--docs FILE]``.

Trains (resuming) and evaluates every unfinished run of the suite (``ul_jax/paper/suites.py``),
skipping finished ones, then writes the tables, figures and results JSON (``figures/reproduction/``)
and the results sections of ``docs/REPRODUCTION.md``. ``--tables_only`` only does the latter from
the runs already in ``--out``. Everything is done by :func:`ul_jax.paper.runner.reproduce`. Exit
codes: 0 done, 1 a run failed, 2 a bad command line or suite, 75 interrupted (``SIGTERM``; rerun
to resume).
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from launch._flags import parse
from ul_jax.paper import runner
from ul_jax.paper.suites import SUITES

PROG = "python -m launch.reproduce"


def _flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("suite", "cpu", " | ".join(SUITES), flag_values=fv)
    flags.DEFINE_string(
        "out", None, "directory of the runs (OUT/<run>/seed<k>)", required=True, flag_values=fv
    )
    flags.DEFINE_multi_string("only", None, "run only these runs", flag_values=fv)
    flags.DEFINE_multi_integer(
        "seeds",
        None,
        "seeds to train (default 0); tables always cover every seed on disk",
        flag_values=fv,
    )
    flags.DEFINE_boolean("tables_only", False, "no training: tables/figures/docs", flag_values=fv)
    flags.DEFINE_string("fig_dir", None, "default: <repo>/figures/reproduction", flag_values=fv)
    flags.DEFINE_string("docs", str(runner.DOCS), "results document to update", flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    a = _flags()
    parse(a, argv, PROG, __doc__, lists=("only", "seeds"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return runner.reproduce(
        a.suite,
        a.out,
        seeds=a.seeds,
        only=a.only,
        tables_only=a.tables_only,
        fig_dir=a.fig_dir,
        docs=a.docs,
        prog=PROG,
    )


if __name__ == "__main__":
    sys.exit(main())
