"""Run the reproduction suite: ``python -m launch.reproduce --suite cpu --out workdirs/cpu
[--only NAME ...] [--seeds 0 1] [--tables_only] [--fig_dir DIR] [--docs FILE]``.

Trains (resuming) and evaluates every unfinished run of ``configs/<suite>/suite.py``, skipping
finished ones, then writes the tables, figures and results JSON (``figures/reproduction/``) and
the results sections of ``docs/REPRODUCTION.md``. ``--tables_only`` only does the latter from the
runs already in ``--out``. Everything is done by :mod:`ul_jax.reproduce`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ul_jax import reproduce


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog="python -m launch.reproduce",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--suite", default="cpu", help="cpu | cpu_step | paper")
  p.add_argument("--out", required=True, help="directory of the runs (OUT/<run>/seed<k>)")
  p.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these runs")
  p.add_argument("--seeds", nargs="+", type=int, default=None,
                 help="seeds to train (default 0); tables always cover every seed on disk")
  p.add_argument("--tables_only", action="store_true", help="no training: tables/figures/docs")
  p.add_argument("--fig_dir", default=None, help="default: <repo>/figures/reproduction")
  p.add_argument("--docs", default=str(reproduce.REPO_ROOT / "docs" / "REPRODUCTION.md"))
  args = p.parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  try:
    runs = reproduce.load_suite(args.suite)
    name, report_runs = reproduce.report_suite(args.suite)
    if args.tables_only:
      seeds = reproduce.seeds_on_disk(report_runs, args.out, args.seeds or ())
      rep = reproduce.report(report_runs, args.out, seeds=seeds or [0], suite=name,
                             fig_dir=args.fig_dir, docs=args.docs)
      failed = []
    else:
      out = reproduce.run_suite(runs, args.out, seeds=args.seeds or [0], suite=name,
                                fig_dir=args.fig_dir, docs=args.docs, only=args.only,
                                report_runs=report_runs)
      rep, failed = out["report"], out["failed"]
      print(f"ran {len(out['ran'])}, skipped {len(out['skipped'])} (finished), "
            f"failed {len(failed)}, interrupted {len(out['interrupted'])}")
  except ValueError as e:
    p.exit(2, f"{p.prog}: error: {e}\n")
  for claim, sec in rep["claims"].items():
    print(f"{claim}: {sec['verdict']}")
  if not args.tables_only and out["interrupted"]:
    return 75                 # preempted (SIGTERM): rerun the same command to resume
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
