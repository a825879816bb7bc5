"""Runs of a suite as separate processes: ``python -m launch.reproduce --jobs N``.

:func:`run_parallel` runs the pending (run, seed) pairs of a suite in up to ``N`` child processes
at a time, each ``python -m ul_jax.paper.jobs --run JSON --seed K --out DIR`` (:func:`main`:
:func:`ul_jax.paper.runner.run_one` on the one run — train, resuming, then evaluate — with the
same status files and skip rules as the sequential runner). Each child gets its own share of the
machine:

* **CPU cores**: the parent's allowed cores (``os.sched_getaffinity``) split into ``N``
  contiguous, disjoint slices; a child pins itself to its slice (``os.sched_setaffinity``, from
  ``UL_JAX_JOB_CORES``) before JAX starts, so XLA:CPU sizes its thread pool to the slice
  instead of oversubscribing;
* **accelerators**: when ``CUDA_VISIBLE_DEVICES`` names at least ``N`` devices, child slot ``i``
  sees only device ``i`` (one device per run).

A child's output goes to ``OUT/<run>/seed<k>/reproduce.log`` (appended). Two children never get
the same (run, seed), and the work-directory lock refuses a second writer anyway. ``SIGTERM`` to
the parent is passed to every child (each checkpoints and exits 75); the parent then stops
starting new ones and returns. Nothing here imports JAX: the parent only schedules.

Numerics: a run is a function of its config, but XLA:CPU's results also depend on the number of
threads it uses (the order of its parallel reductions), so a run pinned to 1 core is equal to the
same run on 2 cores only to float32 rounding at first, and the difference can grow over training.
Measured on the 2-core development machine (digits demo config, 4 runs × 150 steps): ``--jobs 2``
took 51.3 s against 56.2 s for ``--jobs 1`` (1.10× aggregate, 1,498 vs 1,367 training img/s,
compile and evaluation included) and final test accuracies differed by up to 1.3 pts between the
two (e.g. 92.7 vs 94.0 % for UL+PAL); a 12-step tiny run agrees to 1e-4 (tests). Compare runs
made with the same number of cores per run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ul_jax.paper.executors import run_from_json, run_to_json
from ul_jax.paper.results import FINISHED, read_status, run_dir
from ul_jax.paper.suites import Run

_log = logging.getLogger(__name__)

__all__ = ["core_slices", "main", "run_parallel"]

LOG_FILE = "reproduce.log"
AFFINITY_ENV = "UL_JAX_JOB_CORES"  # the child pins itself to these cores before JAX starts
EXIT_INTERRUPTED = 75


def core_slices(cores: Sequence[int], jobs: int) -> list[tuple[int, ...]]:
    """``cores`` split into ``min(jobs, len(cores))`` contiguous, disjoint, near-equal slices
    (the first ones one core larger when it does not divide); every core in exactly one.

    Raises:
      ValueError: ``jobs < 1`` or no cores.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1; got {jobs}")
    cores = sorted(cores)
    if not cores:
        raise ValueError("no CPU cores available to this process")
    k = min(jobs, len(cores))
    q, r = divmod(len(cores), k)
    out, i = [], 0
    for j in range(k):
        n = q + (1 if j < r else 0)
        out.append(tuple(cores[i : i + n]))
        i += n
    return out


def _child_env(slot: int, jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    devices = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(devices) >= jobs:
        env["CUDA_VISIBLE_DEVICES"] = devices[slot]
    env.setdefault("UL_JAX_PROGRESS", "log")  # a log file, not a terminal
    return env


def _pending(runs: Sequence[Run], out: Path, seeds: Sequence[int]) -> list[tuple[Run, int]]:
    todo = []
    for run in runs:
        for seed in seeds:
            st = read_status(run_dir(out, run, seed))
            if st is not None and st.get("status") in FINISHED:
                continue
            todo.append((run, seed))
    return todo


def run_parallel(
    runs: Sequence[Run], out: str | Path, seeds: Sequence[int], jobs: int
) -> dict[str, list]:
    """Runs every unfinished (run, seed) in up to ``jobs`` pinned child processes (module
    docstring); returns ``{"ran", "skipped", "failed", "interrupted"}`` lists of
    ``(run name, seed)`` as :func:`ul_jax.paper.runner.run_suite` does."""
    out = Path(out)
    slices = core_slices(sorted(os.sched_getaffinity(0)), jobs)
    jobs = len(slices)
    todo = _pending(runs, out, seeds)
    pending_names = {(r.name, s) for r, s in todo}
    done: dict[str, list] = {
        "ran": [],
        "skipped": [(r.name, s) for r in runs for s in seeds if (r.name, s) not in pending_names],
        "failed": [],
        "interrupted": [],
    }
    free = list(range(jobs))
    live: dict[int, tuple[subprocess.Popen, Run, int, Any]] = {}
    stopping = {"flag": False}

    def on_term(signum, frame):
        stopping["flag"] = True
        for p, *_ in live.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while todo or live:
            while todo and free and not stopping["flag"]:
                slot = free.pop(0)
                run, seed = todo.pop(0)
                wd = run_dir(out, run, seed)
                wd.mkdir(parents=True, exist_ok=True)
                log = open(wd / LOG_FILE, "ab")  # closed when the child ends
                cmd = [sys.executable, "-m", "ul_jax.paper.jobs", "--run", run_to_json(run)]
                cmd += ["--seed", str(seed), "--out", str(out)]
                cores = slices[slot]
                env = _child_env(slot, jobs)
                env[AFFINITY_ENV] = ",".join(map(str, cores))
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                _log.info(
                    "job %d: %s seed %d on cores %s (pid %d)", slot, run.name, seed, cores, p.pid
                )
                live[slot] = (p, run, seed, log)
            if stopping["flag"]:
                todo.clear()
            time.sleep(0.2)
            for slot, (p, run, seed, log) in list(live.items()):
                rc = p.poll()
                if rc is None:
                    continue
                log.close()
                del live[slot]
                free.append(slot)
                st = read_status(run_dir(out, run, seed)) or {}
                if rc == EXIT_INTERRUPTED or st.get("status") == "interrupted":
                    done["interrupted"].append((run.name, seed))
                    stopping["flag"] = True  # as the sequential runner: stop the suite
                elif rc != 0 or st.get("status") == "failed":
                    done["failed"].append((run.name, seed))
                else:
                    done["ran"].append((run.name, seed))
                _log.info(
                    "job %d: %s seed %d exited %d (%s)", slot, run.name, seed, rc, st.get("status")
                )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return done


def main(argv: Sequence[str] | None = None) -> int:
    """One child: ``--run JSON --seed K --out DIR`` → :func:`ul_jax.paper.runner.run_seed`
    (skip if finished, else train/evaluate, writing the status file). Exit 0 ran or skipped,
    1 failed, 75 interrupted."""
    cores = os.environ.get(AFFINITY_ENV, "").strip()
    if cores:  # before JAX starts: XLA:CPU sizes its thread pool to the allowed cores
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})
    from ul_jax.console import apply_cpu_defaults

    apply_cpu_defaults()  # as launch/__init__.py does, before JAX starts
    ap = argparse.ArgumentParser(prog="python -m ul_jax.paper.jobs")
    ap.add_argument("--run", required=True, help="the Run as JSON")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger().setLevel(logging.INFO)  # absl may have claimed the root logger
    from ul_jax.paper.runner import run_seed

    _log.info(
        "job %s seed %d pinned to cores %s", json.loads(a.run)["name"], a.seed, cores or "all"
    )

    outcome = run_seed(run_from_json(a.run), a.seed, Path(a.out))
    return {"failed": 1, "interrupted": EXIT_INTERRUPTED}.get(outcome, 0)


if __name__ == "__main__":
    sys.exit(main())
