"""The suite runner: train → evaluate every run of a suite, then :func:`ul_jax.paper.report.report`.

:func:`run_suite` runs every :class:`~ul_jax.paper.suites.Run` of a suite
(:data:`ul_jax.paper.suites.SUITES`) for every seed in ``OUT/<run>/seed<k>/``:
:func:`ul_jax.train.train_and_evaluate` (which resumes from the run's latest checkpoint) and then
:func:`ul_jax.eval.evaluate_run` with the run's OOD sets. The outcome goes to
``OUT/<run>/seed<k>/reproduce_status.json``:

* ``complete``: trained to the last step and evaluated (``eval.json``);
* ``nonfinite``: the loop stopped with :class:`ul_jax.train.NonFiniteError` (the Fig. 19
  outcome); the step, the non-finite quantities and the last good checkpoint are recorded and the
  run is not evaluated.

Runs with one of these statuses are skipped by later invocations, so a suite can span sessions;
an interrupted run (preempted, killed, a crash) has no status and is resumed from its checkpoint.
A run that raises anything else is recorded as ``failed`` (retried next time) and the suite
continues. :func:`reproduce` is the whole of ``python -m launch.reproduce``.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ul_jax.config import REPO_ROOT, load_config_file
from ul_jax.io import write_json_atomic
from ul_jax.paper.executors import Executor, make_executor
from ul_jax.paper.report import report
from ul_jax.paper.results import (
    FINISHED,
    STATUS_FILE,
    json_default,
    read_status,
    run_dir,
    seeds_on_disk,
)
from ul_jax.paper.suites import SUITES, Run

_log = logging.getLogger(__name__)

DOCS = REPO_ROOT / "docs" / "REPRODUCTION.md"
PROG = "python -m launch.reproduce"


# --------------------------------------------------------------------------------------------
# suites and configs
# --------------------------------------------------------------------------------------------
def load_suite(name: str) -> tuple[Run, ...]:
    """The runs of ``--suite name`` (:data:`ul_jax.paper.suites.SUITES`)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    runs = tuple(SUITES[name][0])
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ValueError(f"suite {name!r} has duplicate run names")
    return runs


def report_suite(name: str) -> tuple[str, tuple[Run, ...]]:
    """``(report name, runs)`` whose tables ``--suite name`` regenerates. ``cpu`` / ``cpu_step``
    / ``cpu_long`` report together as ``cpu`` (``REPORT_RUNS``); the second pass (``cpu_sweep``
    / ``cpu_scale`` / ``cpu_long2``, every knob chosen on a validation split) reports as
    ``cpu2`` (``REPORT2_RUNS``); ``paper`` reports its own runs."""
    load_suite(name)
    _, report_name, report_runs = SUITES[name]
    return report_name, tuple(report_runs)


def load_config(spec: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None):
    """``"configs/cpu/cifar10.py:ce,full"`` → the ConfigDict, with ``overrides`` and ``seed``."""
    return load_config_file(spec, overrides, seed)


def _write_status(workdir: Path, status: Mapping) -> None:
    write_json_atomic(
        Path(workdir) / STATUS_FILE, status, indent=1, allow_nan=True, default=json_default
    )


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def run_one(run: Run, seed: int, out: Path) -> dict:
    """Trains (resuming) and evaluates one run/seed; returns and writes its status."""
    from ul_jax.eval import evaluate_run
    from ul_jax.train import NonFiniteError, train_and_evaluate

    workdir = run_dir(out, run, seed)
    config = load_config(run.config, run.overrides, seed)
    total = int(config.num_train_steps)
    status: dict[str, Any] = {
        "run": run.name,
        "seed": seed,
        "config": run.config,
        "overrides": dict(run.overrides),
        "ood": list(run.ood),
    }
    t0 = time.perf_counter()
    try:
        res = train_and_evaluate(config, workdir)
    except NonFiniteError as e:
        status.update(
            status="nonfinite",
            step=int(e.step),
            quantities=list(e.quantities),
            last_good_checkpoint=str(e.checkpoint) if e.checkpoint else None,
            train_seconds=time.perf_counter() - t0,
        )
        _write_status(workdir, status)
        return status
    status["train_seconds"] = time.perf_counter() - t0
    if res.get("preempted"):
        status.update(status="interrupted", step=int(res["step"]))
        return status  # no status file: the next invocation resumes it
    t1 = time.perf_counter()
    ev = evaluate_run(workdir, ood=run.ood, plots=True)
    status.update(
        status="complete",
        step=int(res["step"]),
        total_steps=total,
        eval_seconds=time.perf_counter() - t1,
        top1=ev["classification"]["top1"],
    )
    _write_status(workdir, status)
    return status


def run_seed(run: Run, seed: int, out: Path) -> str:
    """Runs one unfinished (run, seed) unless finished; returns ``skipped`` / ``failed`` /
    ``interrupted`` / ``ran``."""
    wd = run_dir(out, run, seed)
    st = read_status(wd)
    if st is not None and st.get("status") in FINISHED:
        _log.info("skip %s seed %d: %s", run.name, seed, st["status"])
        return "skipped"
    _log.info("run %s seed %d (%s) in %s", run.name, seed, run.config, wd)
    try:
        st = run_one(run, seed, out)
    except Exception as e:
        _log.error("run %s seed %d failed: %s", run.name, seed, e)
        _write_status(
            wd,
            {
                "run": run.name,
                "seed": seed,
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            },
        )
        return "failed"
    _log.info(
        "%s seed %d: %s",
        run.name,
        seed,
        {k: st.get(k) for k in ("status", "step", "top1", "train_seconds")},
    )
    if st.get("status") == "interrupted":
        # SIGTERM (preemption): the run checkpointed; stop the whole suite here, since every
        # later run would be interrupted at its first step too. The next invocation resumes.
        _log.warning(
            "suite stopped: %s seed %d was interrupted at step %s", run.name, seed, st.get("step")
        )
        return "interrupted"
    return "ran"


def run_suite(
    runs: Sequence[Run],
    out: str | Path,
    *,
    seeds: Sequence[int] = (0,),
    suite: str = "suite",
    fig_dir: str | Path | None = None,
    docs: str | Path | None = None,
    only: Iterable[str] | None = None,
    report_runs: Sequence[Run] | None = None,
    jobs: int = 1,
    executor: Executor | None = None,
) -> dict:
    """Runs every unfinished (run, seed) through ``executor`` (default: one after another in
    this process, or ``jobs > 1`` pinned child processes; :mod:`ul_jax.paper.executors`), then
    :func:`report` over ``report_runs`` (default ``runs``) and every seed found on disk. A run
    interrupted by SIGTERM stops the suite (it resumes on the next invocation). Jobs submitted
    without waiting (``--executor slurm``) are not reported on: ``report`` is ``None`` then,
    and ``--tables_only`` writes the tables once they finished. Returns ``{"ran": [...],
    "skipped": [...], "failed": [...], "interrupted": [...], "submitted": [...], "report":
    ...}``."""
    out = Path(out)
    selected = _select(runs, only)
    ex = executor if executor is not None else make_executor(jobs)
    done = ex.run(selected, out, seeds)
    if done.get("submitted") and not (done["ran"] or done["failed"]):
        return {**done, "report": None}
    report_runs = tuple(report_runs) if report_runs is not None else tuple(runs)
    rep = report(
        report_runs,
        out,
        seeds=seeds_on_disk(report_runs, out, seeds),
        suite=suite,
        fig_dir=fig_dir,
        docs=docs,
    )
    return {**done, "report": rep}


def _select(runs: Sequence[Run], only: Iterable[str] | None) -> list[Run]:
    if not only:
        return list(runs)
    only = list(only)
    known = {r.name for r in runs}
    bad = [n for n in only if n not in known]
    if bad:
        raise ValueError(f"unknown run(s) {bad}; the suite has {sorted(known)}")
    return [r for r in runs if r.name in only]


# --------------------------------------------------------------------------------------------
# the command line's job
# --------------------------------------------------------------------------------------------
def reproduce(
    suite: str,
    out: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    only: Sequence[str] | None = None,
    tables_only: bool = False,
    fig_dir: str | Path | None = None,
    docs: str | Path | None = DOCS,
    prog: str = PROG,
    jobs: int = 1,
    executor: Executor | None = None,
) -> int:
    """``python -m launch.reproduce``: runs the unfinished runs of ``suite`` and writes its
    report (``tables_only``: only the report, over every seed on disk), prints the summary and
    one verdict line per claim, and returns the exit code: 0 done, 1 a run failed, 2 a bad suite
    or run name (``PROG: error: ...`` on stderr), 75 interrupted (SIGTERM; rerun to resume)."""
    res = {"failed": [], "interrupted": []}
    try:
        runs = load_suite(suite)
        name, report_runs = report_suite(suite)
        if tables_only:
            found = seeds_on_disk(report_runs, out, seeds or ()) or [0]
            rep = report(report_runs, out, seeds=found, suite=name, fig_dir=fig_dir, docs=docs)
        else:
            res = run_suite(
                runs,
                out,
                seeds=seeds or [0],
                suite=name,
                fig_dir=fig_dir,
                docs=docs,
                only=only,
                report_runs=report_runs,
                jobs=jobs,
                executor=executor,
            )
            rep = res["report"]
            print(
                f"ran {len(res['ran'])}, skipped {len(res['skipped'])} (finished), "
                f"failed {len(res['failed'])}, interrupted {len(res['interrupted'])}"
                + (f", submitted {len(res['submitted'])}" if res.get("submitted") else "")
            )
            if rep is None:
                print(
                    f"{len(res['submitted'])} job(s) submitted or still queued: follow them with "
                    f"{prog} --suite {suite} --out {out} --status; once they finished, "
                    f"{prog} --suite {suite} --out {out} --tables_only writes the tables"
                )
                return 0
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    for claim, sec in rep["claims"].items():
        print(f"{claim}: {sec['verdict']}")
    if res["interrupted"]:
        return 75  # preempted (SIGTERM): rerun the same command to resume
    return 1 if res["failed"] else 0
