"""Run the reproduction suite: ``python -m launch.reproduce --suite cpu --out workdirs/cpu
[--only NAME ...] [--seeds 0 1] [--jobs N | --executor slurm --slurm_...] [--tables_only |
--status] [--fig_dir DIR] [--docs FILE]``.

Trains (resuming) and evaluates every unfinished run of the suite (``ul_jax/paper/suites.py``),
skipping finished ones, then writes the tables, figures and results JSON (``figures/reproduction/``)
and the results sections of ``docs/REPRODUCTION.md``. ``--tables_only`` only does the latter from
the runs already in ``--out``; ``--status`` only prints every run × seed's state
(:func:`ul_jax.paper.status.format_status_table`) and changes nothing. Everything is done by :func:`ul_jax.paper.runner.reproduce`; at the
end, :func:`ul_jax.paper.summary_text.format_suite_summary` lists every run's state (complete,
non-finite, failed with its error, not finished) and where the results JSON, figures and document
went. ``--executor slurm`` submits every unfinished run × seed as a SLURM job through submitit
(``pip install -e '.[cluster]'``; :mod:`ul_jax.paper.executors`) and returns (``--wait``: waits
and then reports); ``--executor submitit_local`` runs the same jobs through submitit's local
executor. Exit codes: 0 done, 1 a run failed (or an error, one line; ``--debug``: its traceback), 2 a
bad command line or suite, 75 interrupted (``SIGTERM``; rerun to resume), 130 Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
import time

from absl import flags

from launch._flags import define_debug, parse
from ul_jax.console import EXIT_USAGE, one_line_errors
from ul_jax.paper import runner
from ul_jax.paper.executors import SlurmOptions, make_executor, parse_extra
from ul_jax.paper.results import seeds_on_disk
from ul_jax.paper.status import format_status_table
from ul_jax.paper.suites import SUITES
from ul_jax.paper.summary_text import format_suite_summary

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
    flags.DEFINE_integer(
        "jobs",
        1,
        "runs at once, each in its own process pinned to its share of the CPU cores (and to its"
        " own GPU when CUDA_VISIBLE_DEVICES lists enough); 1: one after another in this process",
        lower_bound=1,
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "executor",
        "local",
        ["local", "slurm", "submitit_local"],
        "local: this machine (--jobs); slurm: one SLURM job per run x seed through submitit;"
        " submitit_local: the same jobs as subprocesses here",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "wait", False, "--executor slurm: wait for the jobs, then write the report", flag_values=fv
    )
    flags.DEFINE_string("slurm_partition", None, "SLURM partition", flag_values=fv)
    flags.DEFINE_integer("slurm_time_min", 240, "time limit of one job (minutes)", flag_values=fv)
    flags.DEFINE_integer("slurm_gpus_per_run", 1, "GPUs per run", flag_values=fv)
    flags.DEFINE_integer("slurm_cpus_per_run", 8, "CPUs per run", flag_values=fv)
    flags.DEFINE_integer("slurm_mem_gb", None, "memory per run (GB)", flag_values=fv)
    flags.DEFINE_string("slurm_account", None, "SLURM account", flag_values=fv)
    flags.DEFINE_string("slurm_qos", None, "SLURM QOS", flag_values=fv)
    flags.DEFINE_string("slurm_constraint", None, "SLURM constraint", flag_values=fv)
    flags.DEFINE_integer(
        "slurm_signal_delay_s",
        120,
        "seconds before the time limit at which a run checkpoints and is requeued",
        flag_values=fv,
    )
    flags.DEFINE_integer(
        "slurm_max_requeues", 10, "requeues after a time limit (preemptions do not count)",
        flag_values=fv,
    )  # fmt: skip
    flags.DEFINE_multi_string(
        "slurm_setup", None, "shell line run before each job (module load, venv)", flag_values=fv
    )
    flags.DEFINE_multi_string(
        "slurm_extra", None, "further #SBATCH --KEY=VALUE, as KEY=VALUE", flag_values=fv
    )
    flags.DEFINE_boolean(
        "status",
        False,
        "only print every run x seed's state (complete / non-finite / failed / running / partial"
        " / not started), last validation and test top-1 and wall time; touches nothing",
        flag_values=fv,
    )
    flags.DEFINE_string("fig_dir", None, "default: <repo>/figures/reproduction", flag_values=fv)
    flags.DEFINE_string("docs", str(runner.DOCS), "results document to update", flag_values=fv)
    define_debug(fv)
    return fv


def _executor(a: flags.FlagValues):
    """The executor the flags ask for (:func:`ul_jax.paper.executors.make_executor`)."""
    opts = None
    if a.executor != "local":
        opts = SlurmOptions(
            partition=a.slurm_partition,
            time_min=a.slurm_time_min,
            gpus_per_run=a.slurm_gpus_per_run,
            cpus_per_run=a.slurm_cpus_per_run,
            mem_gb=a.slurm_mem_gb,
            account=a.slurm_account,
            qos=a.slurm_qos,
            constraint=a.slurm_constraint,
            signal_delay_s=a.slurm_signal_delay_s,
            max_requeues=a.slurm_max_requeues,
            setup=tuple(a.slurm_setup or ()),
            extra=parse_extra(a.slurm_extra),
        )
    return make_executor(a.jobs, a.executor, opts, wait=a.wait)


def main(argv: list[str] | None = None) -> int:
    a = _flags()
    parse(a, argv, PROG, __doc__, lists=("only", "seeds"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    since = time.time()  # the summary lists the figures written from here on
    if a.status:
        with one_line_errors(PROG, debug=a.debug):
            try:
                runs = runner._select(runner.load_suite(a.suite), a.only)
            except ValueError as e:
                print(f"{PROG}: error: {e}", file=sys.stderr)
                return 2
            seeds = seeds_on_disk(runs, a.out, a.seeds or [0])
            print(f"suite {a.suite} in {a.out}:\n")
            print(format_status_table(runs, a.out, seeds))
        return 0
    with one_line_errors(PROG, debug=a.debug):
        try:
            executor = _executor(a)
        except ValueError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        code = runner.reproduce(
            a.suite,
            a.out,
            seeds=a.seeds,
            only=a.only,
            tables_only=a.tables_only,
            fig_dir=a.fig_dir,
            docs=a.docs,
            prog=PROG,
            jobs=a.jobs,
            executor=executor,
        )
        if code != EXIT_USAGE:
            kw = dict(seeds=a.seeds, only=a.only, fig_dir=a.fig_dir, docs=a.docs, since=since)
            text = format_suite_summary(a.suite, a.out, tables_only=a.tables_only, **kw)
            print(f"\n{text}")
    return code


if __name__ == "__main__":
    sys.exit(main())
