"""Where the runs of a suite execute: one interface, three executors.

An executor takes the suite's selected runs, ``OUT`` and the seeds, runs (or submits) every
unfinished (run, seed) — a finished one (``reproduce_status.json`` complete / non-finite) is
never run again — and returns ``{"ran", "skipped", "failed", "interrupted", "submitted"}``
lists of ``(run name, seed)``:

* :class:`InProcess` — one after another in this process (``--jobs 1``);
* :class:`Processes` — up to ``N`` pinned child processes at a time (``--jobs N``,
  :func:`ul_jax.paper.jobs.run_parallel`);
* :class:`Submitit` — one job per (run, seed) through `submitit <https://github.com/
  facebookincubator/submitit>`_: ``cluster="slurm"`` (``--executor slurm``) or its local
  executor, ``cluster="local"`` (``--executor submitit_local``: real subprocesses on this
  machine, the same code path; the tests use it).

Every path ends in :func:`ul_jax.paper.runner.run_seed` (train, resuming from the run's last
checkpoint, then evaluate, then write the status file), so output, resume and skip rules are the
same everywhere, and the work-directory lock refuses a second writer of one run folder.

**Submitit jobs.** The submitted callable is :class:`SuiteJob` (picklable: the run travels as
JSON). Its stdout/stderr and submitit's pickles go to ``OUT/<run>/seed<k>/submitit/``; the job id
to ``OUT/<run>/seed<k>/submitted.json`` (``--status`` shows it as ``submitted`` until the run
starts, and a later invocation does not submit a run whose job is still queued or running).
Preemption and time limits: SLURM (or the local controller) sends submitit's signal (``USR2``,
``signal_delay_s`` before the limit) or ``SIGTERM``; :class:`SuiteJob` turns either into the
training loop's "stop at the next step boundary" notice, so the loop writes a checkpoint of the
current step and returns; then submitit's own handler calls :meth:`SuiteJob.checkpoint` and
requeues the job, which resumes from that checkpoint. A run that *fails* (a config error, a crash)
is recorded as ``failed`` and its job raises, so submitit reports the job failed and never
requeues it (the next ``launch.reproduce`` invocation retries it once, as the other executors do).

Nothing here imports ``submitit`` (or JAX) unless a :class:`Submitit` executor is used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ul_jax.paper.results import FINISHED, read_status, run_dir
from ul_jax.paper.suites import Run

_log = logging.getLogger(__name__)

__all__ = [
    "CLUSTERS",
    "Executor",
    "InProcess",
    "Processes",
    "SlurmOptions",
    "Submitit",
    "SuiteJob",
    "make_executor",
    "read_submitted",
    "run_from_json",
    "run_to_json",
    "slurm_parameters",
]

SUBMITTED_FILE = "submitted.json"
SUBMITIT_DIR = "submitit"
CLUSTERS = ("slurm", "local")
# submitit job states in which a job may still write its run folder (not to be submitted twice)
_LIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING"}
)


def _empty() -> dict[str, list]:
    return {"ran": [], "skipped": [], "failed": [], "interrupted": [], "submitted": []}


class Executor(Protocol):
    """Runs (or submits) every unfinished (run, seed); see the module docstring."""

    def run(self, runs: Sequence[Run], out: Path, seeds: Sequence[int]) -> dict[str, list]: ...


# --------------------------------------------------------------------------------------------
# local executors
# --------------------------------------------------------------------------------------------
class InProcess:
    """One run after another in this process; an interrupted run (``SIGTERM``) stops the suite
    (every later run would be interrupted at its first step too; the next invocation resumes)."""

    def run(self, runs: Sequence[Run], out: Path, seeds: Sequence[int]) -> dict[str, list]:
        from ul_jax.paper.runner import run_seed

        done = _empty()
        for run in runs:
            for seed in seeds:
                outcome = run_seed(run, seed, Path(out))
                done[outcome].append((run.name, seed))
                if outcome == "interrupted":
                    return done
        return done


@dataclasses.dataclass(frozen=True)
class Processes:
    """Up to ``jobs`` runs at once, each in a child process pinned to its share of the cores
    (:func:`ul_jax.paper.jobs.run_parallel`)."""

    jobs: int

    def run(self, runs: Sequence[Run], out: Path, seeds: Sequence[int]) -> dict[str, list]:
        from ul_jax.paper.jobs import run_parallel

        return {**_empty(), **run_parallel(runs, out, seeds, self.jobs)}


# --------------------------------------------------------------------------------------------
# submitit
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SlurmOptions:
    """What one run asks of SLURM (``--slurm_*`` flags of ``launch.reproduce``).

    ``time_min`` is the job's limit; a run longer than that is stopped with a checkpoint
    ``signal_delay_s`` before it and requeued, at most ``max_requeues`` times for time limits
    (preemptions do not count). ``setup``: shell lines run before the job (``module load ...``,
    ``source .venv/bin/activate``). ``extra``: further ``#SBATCH --key=value`` lines."""

    partition: str | None = None
    time_min: int = 240
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    signal_delay_s: int = 120
    max_requeues: int = 10
    setup: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        for name in ("time_min", "cpus_per_run", "signal_delay_s"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--slurm_{name} must be >= 1; got {getattr(self, name)!r}")
        if self.gpus_per_run < 0:
            raise ValueError(f"--slurm_gpus_per_run must be >= 0; got {self.gpus_per_run!r}")
        if self.mem_gb is not None and self.mem_gb < 1:
            raise ValueError(f"--slurm_mem_gb must be >= 1; got {self.mem_gb!r}")
        if self.max_requeues < 0:
            raise ValueError(f"--slurm_max_requeues must be >= 0; got {self.max_requeues!r}")
        if self.signal_delay_s >= 60 * self.time_min:
            raise ValueError(
                f"--slurm_signal_delay_s ({self.signal_delay_s}) must be shorter than the job's "
                f"time limit (--slurm_time_min {self.time_min} = {60 * self.time_min} s)"
            )


def parse_extra(items: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``["mail-type=END", ...]`` → ``(("mail-type", "END"), ...)``.

    Raises:
      ValueError: an item without ``=`` or with an empty key.
    """
    out = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--slurm_extra takes KEY=VALUE; got {item!r}")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def slurm_parameters(opts: SlurmOptions, job_name: str) -> dict[str, Any]:
    """The keyword arguments of ``submitit.SlurmExecutor.update_parameters`` for one run: one
    node, one task, ``opts.gpus_per_run`` GPUs and ``opts.cpus_per_run`` CPUs, ``opts.time_min``
    minutes, submitit's preemption signal ``opts.signal_delay_s`` before the limit; options left
    ``None`` are not passed (the cluster's defaults apply)."""
    p: dict[str, Any] = {
        "job_name": job_name,
        "time": int(opts.time_min),
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": int(opts.cpus_per_run),
        "signal_delay_s": int(opts.signal_delay_s),
    }
    if opts.gpus_per_run:
        p["gpus_per_node"] = int(opts.gpus_per_run)
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(opts, key):
            p[key] = getattr(opts, key)
    if opts.mem_gb is not None:
        p["mem"] = f"{int(opts.mem_gb)}GB"
    if opts.setup:
        p["setup"] = list(opts.setup)
    if opts.extra:
        p["additional_parameters"] = dict(opts.extra)
    return p


def run_to_json(run: Run) -> str:
    """A :class:`Run` as JSON (it travels to child processes and submitit jobs)."""
    return json.dumps(dataclasses.asdict(run), default=list)


def run_from_json(text: str) -> Run:
    """The inverse of :func:`run_to_json`."""
    d = json.loads(text)
    for k in ("claims", "ood"):
        d[k] = tuple(d.get(k) or ())
    return Run(**d)


class SuiteJob:
    """The callable a submitit job runs: one (run, seed) through
    :func:`ul_jax.paper.runner.run_seed`; checkpointable (module docstring)."""

    def __init__(self, run_json: str, seed: int, out: str):
        self.run_json, self.seed, self.out = run_json, int(seed), str(out)

    def __call__(self) -> str:
        from ul_jax.console import apply_cpu_defaults

        apply_cpu_defaults()  # as launch/__init__.py does, before JAX starts
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger().setLevel(logging.INFO)
        from submitit.core.job_environment import JobEnvironment

        from ul_jax.paper.runner import run_seed
        from ul_jax.train.preemption import PreemptionWatch

        usr = JobEnvironment._usr_sig()
        requeue = signal.getsignal(usr)  # submitit's checkpoint-and-requeue handler

        def notice(signum, frame):  # the loop checkpoints at the next step boundary
            PreemptionWatch.received = True

        signal.signal(usr, notice)
        try:
            outcome = run_seed(run_from_json(self.run_json), self.seed, Path(self.out))
        finally:
            signal.signal(usr, requeue)
        if outcome == "interrupted" and callable(requeue):
            _log.info("interrupted with a checkpoint: handing over to submitit to requeue")
            requeue(usr, None)  # calls self.checkpoint(), requeues and exits the process
        if outcome == "failed":
            run = run_from_json(self.run_json)
            st = read_status(run_dir(Path(self.out), run, self.seed)) or {}
            raise RuntimeError(f"{run.name} seed {self.seed} failed: {st.get('error', '?')}")
        return outcome

    def checkpoint(self, *args: Any, **kwargs: Any):
        """submitit's hook before a requeue: the same job again (the training state is in the
        run folder's checkpoints, written when the notice arrived)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(SuiteJob(self.run_json, self.seed, self.out))


def read_submitted(workdir: str | Path) -> dict[str, Any] | None:
    """The ``submitted.json`` record of a run folder (executor, job id, time), or ``None``."""
    try:
        rec = json.loads((Path(workdir) / SUBMITTED_FILE).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _job(rec: Mapping[str, Any], folder: Path):
    import submitit

    cls = submitit.SlurmJob if rec.get("cluster") == "slurm" else submitit.LocalJob
    return cls(folder=folder, job_id=str(rec["job_id"]))


def _still_live(rec: Mapping[str, Any] | None, folder: Path) -> bool:
    """Whether the job recorded in ``rec`` may still write its run folder."""
    if not rec or "job_id" not in rec:
        return False
    if rec.get("cluster") == "local":  # job id = the local controller's PID on this host
        if rec.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(rec["job_id"]), 0)
        except (OSError, ValueError):
            return False
        return True
    try:
        return _job(rec, folder).state in _LIVE_STATES
    except Exception as e:  # sacct unreachable: do not submit twice
        _log.warning("could not query job %s (%s); assuming it is live", rec.get("job_id"), e)
        return True


@dataclasses.dataclass(frozen=True)
class Submitit:
    """One submitit job per unfinished (run, seed) (module docstring).

    ``wait``: block until every job ends and classify it from its status file (``ran`` /
    ``failed``; a job that died without one counts as ``failed``); otherwise return at once with
    the jobs under ``"submitted"`` (follow them with ``launch.reproduce --status``).
    ``timeout_min`` bounds a local job (the local controller sends the preemption signal
    ``signal_delay_s`` before it, as SLURM does)."""

    cluster: str = "slurm"
    slurm: SlurmOptions = dataclasses.field(default_factory=SlurmOptions)
    wait: bool = False
    poll_s: float = 5.0

    def __post_init__(self):
        if self.cluster not in CLUSTERS:
            raise ValueError(f"unknown submitit cluster {self.cluster!r}; known: {CLUSTERS}")

    def _executor(self, folder: Path, job_name: str):
        try:
            import submitit
        except ImportError as e:
            raise ValueError(
                "--executor slurm / submitit_local needs submitit: "
                "pip install -c constraints.txt -e '.[cluster]'"
            ) from e
        if self.cluster == "slurm":
            try:
                ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.slurm.max_requeues)
            except RuntimeError as e:  # submitit: 'Could not detect "srun"'
                raise ValueError(
                    f"--executor slurm: no SLURM here ({e}); submit from the cluster's login "
                    "node, or try the same path on this machine with --executor submitit_local"
                ) from e
            ex.update_parameters(**slurm_parameters(self.slurm, job_name))
        else:
            ex = submitit.LocalExecutor(folder=folder, max_num_timeout=self.slurm.max_requeues)
            ex.update_parameters(
                timeout_min=int(self.slurm.time_min), signal_delay_s=int(self.slurm.signal_delay_s)
            )
        return ex

    def submit(self, run: Run, seed: int, out: Path):
        """Submits one (run, seed) and records its job id; returns the submitit job."""
        wd = run_dir(out, run, seed)
        wd.mkdir(parents=True, exist_ok=True)
        folder = wd / SUBMITIT_DIR
        ex = self._executor(folder, f"{run.name}-s{seed}")
        job = ex.submit(SuiteJob(run_to_json(run), seed, str(out)))
        rec = {
            "cluster": self.cluster,
            "job_id": str(job.job_id),
            "host": socket.gethostname(),
            "submitted": time.time(),
            "folder": SUBMITIT_DIR,
        }
        (wd / SUBMITTED_FILE).write_text(json.dumps(rec, indent=1) + "\n")
        _log.info("submitted %s seed %d: %s job %s", run.name, seed, self.cluster, job.job_id)
        return job

    def run(self, runs: Sequence[Run], out: Path, seeds: Sequence[int]) -> dict[str, list]:
        out = Path(out)
        done = _empty()
        jobs = []
        for run in runs:
            for seed in seeds:
                wd = run_dir(out, run, seed)
                st = read_status(wd)
                if st is not None and st.get("status") in FINISHED:
                    done["skipped"].append((run.name, seed))
                    continue
                rec = read_submitted(wd)
                if _still_live(rec, wd / SUBMITIT_DIR):
                    _log.info("%s seed %d: job %s still live; not resubmitted", run.name, seed,
                              rec["job_id"])  # fmt: skip
                    done["submitted"].append((run.name, seed))
                    continue
                jobs.append((run, seed, self.submit(run, seed, out)))
        if not self.wait:
            done["submitted"] += [(r.name, s) for r, s, _ in jobs]
            return done
        while not all(j.done() for *_, j in jobs):
            time.sleep(self.poll_s)
        for run, seed, job in jobs:
            st = read_status(run_dir(out, run, seed)) or {}
            ok = st.get("status") in FINISHED
            done["ran" if ok else "failed"].append((run.name, seed))
            if not ok:
                _log.error("%s seed %d: job %s ended %s", run.name, seed, job.job_id, job.state)
        return done


def make_executor(
    jobs: int = 1,
    executor: str = "local",
    slurm: SlurmOptions | None = None,
    wait: bool = False,
) -> Executor:
    """``--executor local`` (``--jobs 1``: :class:`InProcess`, else :class:`Processes`),
    ``slurm`` or ``submitit_local`` (:class:`Submitit`, which always waits).

    Raises:
      ValueError: an unknown executor, or ``--jobs`` with a submitit executor.
    """
    if executor == "local":
        return InProcess() if jobs <= 1 else Processes(jobs)
    if executor not in ("slurm", "submitit_local"):
        raise ValueError(f"unknown --executor {executor!r}; known: local, slurm, submitit_local")
    if jobs > 1:
        raise ValueError(
            f"--jobs {jobs} is for --executor local; with {executor} every run is a job"
        )
    cluster = "slurm" if executor == "slurm" else "local"
    return Submitit(cluster, slurm or SlurmOptions(), wait=wait or cluster == "local")
