"""The work-directory policy of a run: who may write it, then resume, fresh start, or refusal.

* :func:`claim_workdir` (first, before any data is read or anything compiled): a work directory
  path that is a file, has a file for a parent, or cannot be created or written (read-only
  directory or filesystem) is an error naming the path; then process 0 takes the single-writer
  lock ``WORKDIR/writer.lock`` (:mod:`ul_jax.train.lock`), and every process learns whether it
  got it.
* A work directory with checkpoints: the newest *usable* one is restored (after
  :func:`ul_jax.train.checkpoint.check_resume_config` and the shape and fingerprint checks of
  :meth:`ul_jax.train.checkpoint.Checkpointer.restore`); damaged ones are moved to
  ``WORKDIR/damaged_checkpoints/`` with a warning.
* No usable checkpoint: a fresh start, except over the files of an earlier run that had got
  further — damaged checkpoints only, a ``config.json`` that differs from this config, or
  ``metrics.jsonl`` lines past the first checkpoint step — which raises
  :class:`NoUsableCheckpointError` unless ``config.restart`` is true (then those files move to
  ``WORKDIR/previous_<time>/`` and the run starts from step 0). ``config.restart`` never
  discards a usable checkpoint.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

from ul_jax.config import get_field
from ul_jax.train.checkpoint import (
    CONFIG_FILE,
    Checkpointer,
    check_resume_config,
    checkpoint_steps,
    flatten_config,
    load_config,
    save_config,
    sync_processes,
)
from ul_jax.train.lock import NoLock, WorkdirLock, WorkdirLockedError, WorkdirNotWritableError
from ul_jax.train.writers import read_jsonl

__all__ = [
    "NoUsableCheckpointError",
    "DAMAGED_DIR",
    "RUN_FILES",
    "check_workdir_path",
    "claim_workdir",
    "prepare_workdir",
    "refuse_fresh_start",
    "start_or_resume",
]

DAMAGED_DIR = "damaged_checkpoints"
# Files of a run in its work directory (moved to previous_<time>/ by config.restart).
RUN_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", CONFIG_FILE, DAMAGED_DIR)


class NoUsableCheckpointError(RuntimeError):
    """The work directory holds an earlier run's files but no checkpoint that can be resumed,
    and ``config.restart`` is false: starting from step 0 there would silently discard them."""


_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def check_workdir_path(workdir: Path) -> None:
    """Creates ``workdir`` (and missing parents, as ``mkdir -p``) and checks it can be written.

    Raises:
      NotADirectoryError: ``workdir``, or one of its parents, is a file.
      WorkdirNotWritableError: it cannot be created (a read-only parent or filesystem), or it
        exists and is not writable.
      OSError: it cannot be created for another reason (named, with the path).
    """
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} exists and is not a directory")
    ancestor = workdir
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != workdir and not ancestor.is_dir():
        raise NotADirectoryError(
            f"cannot create --workdir {workdir}: {ancestor} is a file, not a directory"
        )
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in _NOT_WRITABLE:
            raise WorkdirNotWritableError(
                f"cannot create --workdir {workdir}: {ancestor} is not writable ({e.strerror}); "
                "create the directory with the right permissions or use another --workdir"
            ) from None
        raise OSError(
            e.errno, f"cannot create --workdir {workdir}: {e.strerror} ({e.filename})"
        ) from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(workdir).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "a read-only file system" if read_only else "permission denied"
        raise WorkdirNotWritableError(
            f"--workdir {workdir} is not writable ({why}): a run writes its lock, checkpoints "
            "and metrics there; fix its permissions or use another --workdir"
        )


def claim_workdir(workdir: Path) -> WorkdirLock | NoLock:
    """Checks and creates ``workdir`` (:func:`check_workdir_path`) and takes its single-writer
    lock on process 0 (the other processes get a :class:`ul_jax.train.lock.NoLock`); called
    before any data is read or anything compiled. Every process raises if process 0 did not get
    the lock.

    Raises:
      NotADirectoryError, WorkdirNotWritableError: see :func:`check_workdir_path`.
      WorkdirLockedError: a live run holds the lock (the message names its host, PID and start
        time).
    """
    check_workdir_path(workdir)
    lock: WorkdirLock | NoLock = NoLock()
    error: BaseException | None = None
    if jax.process_index() == 0:
        try:
            lock = WorkdirLock.acquire(workdir)
        except (WorkdirLockedError, OSError, ValueError) as e:
            error = e
    failed = error is not None
    if jax.process_count() > 1:  # every process learns whether process 0 got the lock
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray([int(failed)], np.int32))
        failed = bool(np.asarray(flags).ravel()[0])
    if error is not None:
        raise error
    if failed:
        raise WorkdirLockedError(
            f"process 0 could not take the lock of --workdir {workdir} (its log says why)"
        )
    return lock


def prepare_workdir(workdir: Path, config) -> dict[str, Any] | None:
    """Creates ``workdir`` and returns its stored ``config.json`` (``None`` if none); refuses a
    resume with other shapes before any data is loaded.

    Raises:
      NotADirectoryError: ``workdir`` is a file.
      ValueError: a corrupt ``config.json``, or shape fields that differ from a checkpointed run.
    """
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} exists and is not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    stored = load_config(workdir)  # a corrupt config.json fails here
    if checkpoint_steps(workdir):  # a resume: refuse a config of other shapes before loading data
        check_resume_config(stored, config)
    return stored


def refuse_fresh_start(workdir: Path, stored, config, first_ckpt: int) -> None:
    """Raises :class:`NoUsableCheckpointError` if there is nothing to resume, ``restart`` is off
    and a fresh start would discard an earlier run's progress (checked before compiling)."""
    if checkpoint_steps(workdir) or get_field(config, "restart"):
        return
    problem = _fresh_start_problem(workdir, stored, config, first_ckpt, [])
    if problem is not None:
        raise NoUsableCheckpointError(_refusal(problem, workdir))


def _agree(value: int, what: str) -> None:
    """Raises unless every process computed the same ``value`` (no-op with one process)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    values = np.asarray(multihost_utils.process_allgather(np.asarray([value], np.int64))).ravel()
    if len(set(values.tolist())) > 1:
        raise RuntimeError(
            f"processes disagree on {what}: {values.tolist()} (process order); "
            "is the work directory shared by all processes?"
        )


def _config_diff(stored: dict[str, Any], config) -> list[str]:
    old, new = flatten_config(stored), flatten_config(config)
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if k != "restart" and old.get(k) != new.get(k)
    ]


def _fresh_start_problem(workdir: Path, stored, config, first_ckpt: int, damaged) -> str | None:
    """Why starting from step 0 in ``workdir`` would discard an earlier run's progress (or
    ``None`` if it would not: nothing there, or a run of this config that stopped before its
    first checkpoint step)."""
    if damaged:
        return (
            "no usable checkpoint in "
            + str(workdir / "checkpoints")
            + ": "
            + "; ".join(f"{e.path} is damaged ({e.reason})" for e in damaged)
        )
    if stored is not None:
        diff = _config_diff(stored, config)
        if diff:
            return (
                f"{workdir} holds the config.json of another run and no checkpoint "
                f"(differing fields: {'; '.join(diff[:6])}{' ...' if len(diff) > 6 else ''})"
            )
    rows = read_jsonl(workdir / "metrics.jsonl")
    last = max((int(r.get("step", 0)) for r in rows), default=0)
    if last > first_ckpt:
        return (
            f"{workdir / 'metrics.jsonl'} reaches step {last}, past the first checkpoint step "
            f"{first_ckpt}, but {workdir / 'checkpoints'} holds no checkpoint (deleted or "
            "lost?)"
        )
    return None


def _refusal(problem: str, workdir: Path) -> str:
    return (
        f"refusing to start from step 0: {problem}. Pass --config.restart=True to move the "
        f"earlier run's files to {workdir}/previous_<time>/ and start over, or use a new "
        "--workdir"
    )


def _move_run_aside(workdir: Path) -> Path:
    """Moves :data:`RUN_FILES` (and ``config.resume_*.json``) to ``workdir/previous_<time>``
    (process 0; every process calls this)."""
    dest = workdir / time.strftime("previous_%Y%m%d-%H%M%S", time.gmtime())
    if jax.process_index() == 0:
        n = 0
        while dest.exists():
            n += 1
            dest = dest.with_name(dest.name.split(".")[0] + f".{n}")
        dest.mkdir(parents=True)
        names = [*RUN_FILES, *(p.name for p in workdir.glob("config.resume_*.json"))]
        for name in names:
            if (workdir / name).exists():
                shutil.move(str(workdir / name), str(dest / name))
    sync_processes("ul_jax_restart")
    return dest


def start_or_resume(config, workdir: Path, template, first_ckpt: int, total: int, is_main: bool):
    """``(checkpointer, state, start_step, extra)``: the newest usable checkpoint restored, or
    ``template`` at step 0 (see steps 4 of the module docstring)."""
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    restart = bool(get_field(config, "restart"))
    try:
        stored = load_config(workdir)
        changed, step, state, damaged = [], None, template, []
        if ckpt.all_steps():
            changed = check_resume_config(stored, config)  # before reading any array
            step, state, damaged = ckpt.restore_latest(template)
        _agree(-1 if step is None else step, "the checkpoint step to resume from")
        if step is not None:
            if damaged:
                moved = ckpt.move_aside([int(e.path.name) for e in damaged], workdir / DAMAGED_DIR)
                if is_main:
                    logging.warning(
                        "%s; falling back to %s (step %d). Moved the damaged checkpoint(s) to %s",
                        "; ".join(f"checkpoint {e.path} is damaged: {e.reason}" for e in damaged),
                        ckpt.path(step),
                        step,
                        ", ".join(map(str, moved)),
                    )
            start = int(jax.device_get(state.step))
            if start != step:
                raise ValueError(f"checkpoint {ckpt.path(step)} holds step {start}, not {step}")
            if is_main:
                if restart:
                    logging.warning(
                        "config.restart=True has no effect: %s holds the usable "
                        "checkpoint %s (use a new --workdir to start over)",
                        workdir,
                        ckpt.path(step),
                    )
                if changed:
                    logging.warning(
                        "resuming at step %d with changed config fields: %s",
                        start,
                        "; ".join(changed),
                    )
                    save_config(workdir, config, f"config.resume_{start}.json")
                logging.info("resumed from %s at step %d of %d", ckpt.path(step), start, total)
            return ckpt, state, start, ckpt.extra(step)

        problem = _fresh_start_problem(workdir, stored, config, first_ckpt, damaged)
        if problem is not None:
            if not restart:
                raise NoUsableCheckpointError(_refusal(problem, workdir))
            ckpt.close()
            dest = _move_run_aside(workdir)
            ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
            if is_main:
                logging.warning(
                    "config.restart=True: %s; moved the earlier run's files to %s "
                    "and starting from step 0",
                    problem,
                    dest,
                )
        elif is_main and (stored is not None or (workdir / "metrics.jsonl").exists()):
            logging.warning(
                "%s holds no checkpoint: the earlier run of this config stopped "
                "before its first checkpoint (step %d); starting from step 0",
                workdir,
                first_ckpt,
            )
        save_config(workdir, config)
        return ckpt, template, 0, {}
    except BaseException:
        ckpt.close()
        raise
