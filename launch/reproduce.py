"""Run the reproduction suite: ``python -m launch.reproduce --suite cpu --out workdirs/cpu
[--only NAME ...] [--seeds 0 1] [--tables_only] [--fig_dir DIR] [--docs FILE]``.

Trains (resuming) and evaluates every unfinished run of ``configs/<suite>/suite.py``, skipping
finished ones, then writes the tables, figures and results JSON (``figures/reproduction/``) and
the results sections of ``docs/REPRODUCTION.md``. ``--tables_only`` only does the latter from the
runs already in ``--out``. Everything is done by :mod:`ul_jax.reproduce`. Exit codes: 0 done,
1 a run failed, 2 a bad command line or suite, 75 interrupted (``SIGTERM``; rerun to resume).
"""

from __future__ import annotations

import logging
import sys

from absl import flags

from launch._flags import error, parse
from ul_jax import reproduce

PROG = "python -m launch.reproduce"


def _flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("suite", "cpu", "cpu | cpu_step | paper", flag_values=fv)
    flags.DEFINE_string("out", None, "directory of the runs (OUT/<run>/seed<k>)", required=True,
                        flag_values=fv)
    flags.DEFINE_multi_string("only", None, "run only these runs", flag_values=fv)
    flags.DEFINE_multi_integer("seeds", None, "seeds to train (default 0); tables always cover "
                               "every seed on disk", flag_values=fv)
    flags.DEFINE_boolean("tables_only", False, "no training: tables/figures/docs", flag_values=fv)
    flags.DEFINE_string("fig_dir", None, "default: <repo>/figures/reproduction", flag_values=fv)
    flags.DEFINE_string("docs", str(reproduce.REPO_ROOT / "docs" / "REPRODUCTION.md"),
                        "results document to update", flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    a = _flags()
    parse(a, argv, PROG, __doc__, lists=("only", "seeds"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = {"failed": [], "interrupted": []}
    try:
        runs = reproduce.load_suite(a.suite)
        name, report_runs = reproduce.report_suite(a.suite)
        if a.tables_only:
            seeds = reproduce.seeds_on_disk(report_runs, a.out, a.seeds or ()) or [0]
            rep = reproduce.report(report_runs, a.out, seeds=seeds, suite=name,
                                   fig_dir=a.fig_dir, docs=a.docs)
        else:
            out = reproduce.run_suite(runs, a.out, seeds=a.seeds or [0], suite=name,
                                      fig_dir=a.fig_dir, docs=a.docs, only=a.only,
                                      report_runs=report_runs)
            rep = out["report"]
            print(f"ran {len(out['ran'])}, skipped {len(out['skipped'])} (finished), "
                  f"failed {len(out['failed'])}, interrupted {len(out['interrupted'])}")
    except ValueError as e:
        error(PROG, e)
    for claim, sec in rep["claims"].items():
        print(f"{claim}: {sec['verdict']}")
    if out["interrupted"]:
        return 75                 # preempted (SIGTERM): rerun the same command to resume
    return 1 if out["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
