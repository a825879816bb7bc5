"""The training command behind ``python -m launch.train --config configs/X.py[:variant] --workdir
DIR [--config.field=value ...] [--until_step K] [--skip_nonfinite N] [--debug]``. The error
handling and exit codes every ``launch/`` command shares live in :mod:`ul_jax.console`
(re-exported here).

``launch/train.py`` defines the flags and calls :func:`parse_flags` and :func:`main` of this
module. ``python -m launch.train --config_help`` lists every config field (type, default, allowed
values, meaning; from the schema :mod:`ul_jax.config`).

Resumes automatically from the newest usable checkpoint in ``--workdir`` (see
``docs/RELIABILITY.md``). At the end it prints a summary (:mod:`ul_jax.train.summary_text`): the
final metrics, wall time, throughput, the files of the work directory and the next command.

Errors and exit codes: :mod:`ul_jax.console` (one line per expected error, ``--debug`` for
the traceback; 0 done, 1 an error, 2 a bad command line, 3 diverged, 75 preempted, 130 Ctrl-C).

Multi-host: run the same command in every process with ``UL_JAX_DISTRIBUTED`` set
(:func:`init_distributed`), which calls ``jax.distributed.initialize`` before anything touches a
device. ``UL_JAX_DISTRIBUTED=auto`` calls it with no arguments: JAX detects the cluster (Cloud TPU
pods, SLURM, Open MPI, mpi4py, Kubernetes) and uses its own timeouts. ``UL_JAX_DISTRIBUTED=1``
also lets JAX detect what it can, and passes ul_jax's timeouts below and, if set,
``UL_JAX_NUM_PROCESSES`` / ``UL_JAX_PROCESS_ID`` (as ``num_processes`` / ``process_id``); with
``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0) this starts any set of processes, e.g. on
one machine over loopback. Unset, empty or ``0``: a single process; any other value is a usage
error (exit 2) naming the variable. ``--workdir`` must be a directory all processes share: every
process takes part in checkpointing, only process 0 writes metrics and ``config.json``.
Timeouts of the distributed runtime (seconds; environment variables):
``UL_JAX_INIT_TIMEOUT_S`` (300: waiting for all processes to connect),
``UL_JAX_HEARTBEAT_TIMEOUT_S`` (60: a process that sent no heartbeat for this long is declared
dead and every other process is terminated by the runtime — the bound on a hang in a collective
whose peer died), ``UL_JAX_SHUTDOWN_TIMEOUT_S`` (60: waiting for the others at exit). A process
whose training raises in a multi-process run logs the error and exits at once with code 1 (it does
not wait in the shutdown barrier for peers that may be dead).
"""

from __future__ import annotations

import logging as std_logging
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any

from absl import app, logging

from ul_jax.config import describe_fields
from ul_jax.console import (  # noqa: F401  (re-exported: every command shares them)
    DEBUG_ENV,
    EXIT_CODES,
    EXIT_DIVERGED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PREEMPTED,
    EXIT_USAGE,
    debug_requested,
    error_message,
    exit_code_for,
    is_expected_error,
    one_line_errors,
    report_error,
)
from ul_jax.console import parse_flags as _parse_flags

__all__ = [
    "DEBUG_ENV",
    "DISTRIBUTED_TIMEOUTS",
    "DISTRIBUTED_MODES",
    "init_distributed",
    "EXIT_CODES",
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_PREEMPTED",
    "EXIT_USAGE",
    "debug_requested",
    "distributed_kwargs",
    "error_message",
    "exit_code_for",
    "is_expected_error",
    "main",
    "one_line_errors",
    "parse_flags",
    "report_error",
]

PROG = "python -m launch.train"
# (jax.distributed.initialize argument, environment variable, default seconds)
DISTRIBUTED_TIMEOUTS = (
    ("initialization_timeout", "UL_JAX_INIT_TIMEOUT_S", 300),
    ("heartbeat_timeout_seconds", "UL_JAX_HEARTBEAT_TIMEOUT_S", 60),
    ("shutdown_timeout_seconds", "UL_JAX_SHUTDOWN_TIMEOUT_S", 60),
)


class _QuietOrbax(std_logging.Filter):
    """Drops orbax's per-save INFO chatter (warnings and errors still show)."""

    def filter(self, record):
        return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


class _DiskFullNoise(std_logging.Filter):
    """Drops orbax's background-thread error reports of a full disk (each with a traceback):
    the main thread then raises :class:`ul_jax.train.checkpoint.CheckpointDiskFullError`, which
    is printed as the one line that says what happened and what to do. ``--debug`` /
    ``UL_JAX_DEBUG=1`` keeps them."""

    _MARKS = ("No space left on device", "RESOURCE_EXHAUSTED", "Disk quota exceeded")

    def filter(self, record):
        if record.levelno < std_logging.ERROR or "/orbax/" not in record.pathname:
            return True
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text += " " + str(record.exc_info[1])
        return not any(m in text for m in self._MARKS)


def _quiet_closed_loop_hook(previous):
    """A ``sys.unraisablehook`` that drops ``RuntimeError('Event loop is closed')``: TensorStore's
    write callbacks that arrive after orbax closed its event loop, which happens when a save
    fails (a full disk). They say nothing the one-line error does not; ``--debug`` keeps them."""

    def hook(unraisable):
        e = unraisable.exc_value
        if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
            return
        previous(unraisable)

    return hook


def distributed_kwargs(environ=os.environ) -> dict:
    """Arguments of ``jax.distributed.initialize`` from the ``UL_JAX_*`` environment variables."""
    kw = {
        k: int(environ[e])
        for k, e in (("num_processes", "UL_JAX_NUM_PROCESSES"), ("process_id", "UL_JAX_PROCESS_ID"))
        if e in environ
    }
    for arg, env, default in DISTRIBUTED_TIMEOUTS:
        value = environ.get(env, str(default))
        try:
            seconds = int(value)
        except ValueError:
            raise app.UsageError(f"{env} must be a whole number of seconds; got {env}={value!r}")
        if seconds < 1:
            raise app.UsageError(f"{env} must be >= 1; got {env}={value!r}")
        kw[arg] = seconds
    return kw


DISTRIBUTED_MODES = ("", "0", "1", "auto")


def init_distributed(environ: Mapping[str, str] = os.environ) -> bool:
    """Starts JAX's distributed runtime as ``UL_JAX_DISTRIBUTED`` says (module docstring):
    ``auto`` → ``jax.distributed.initialize()``, ``1`` → with :func:`distributed_kwargs`, unset
    / empty / ``0`` → nothing. Returns whether it initialized.

    Raises:
      app.UsageError: another value of ``UL_JAX_DISTRIBUTED``, or a bad timeout variable.
    """
    mode = environ.get("UL_JAX_DISTRIBUTED", "").strip().lower()
    if mode not in DISTRIBUTED_MODES:
        raise app.UsageError(
            "UL_JAX_DISTRIBUTED must be 'auto' (JAX detects the cluster), '1' (with the "
            "UL_JAX_* settings) or '0'/unset (one process); got "
            f"UL_JAX_DISTRIBUTED={environ['UL_JAX_DISTRIBUTED']!r}"
        )
    if mode in ("", "0"):
        return False
    import jax

    jax.distributed.initialize(**({} if mode == "auto" else distributed_kwargs(environ)))
    return True


def _flush_and_exit(code: int) -> None:
    """Exits now, without the runtime's shutdown barrier (which waits for every peer)."""
    for h in std_logging.getLogger().handlers + [logging.get_absl_handler()]:
        h.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parse_flags(argv: list[str], prog: str = PROG, *, config_help: bool = True) -> list[str]:
    """:func:`ul_jax.console.parse_flags` with ``launch.train``'s name."""
    return _parse_flags(argv, prog, config_help=describe_fields if config_help else None)


# ---------------------------------------------------------------------------------------------
# python -m launch.train
# ---------------------------------------------------------------------------------------------
def main(
    argv: Sequence[str],
    config: Any,
    workdir: str,
    *,
    until_step: int | None = None,
    skip_nonfinite: int = 0,
    debug: bool = False,
) -> None:
    """The body of ``python -m launch.train`` after flag parsing (``argv``: what absl left).

    Initializes the distributed runtime if ``UL_JAX_DISTRIBUTED`` is set, runs
    :func:`ul_jax.train.train_and_evaluate`, prints the summary (process 0) and exits with the
    codes of the module docstring (returns normally for 0)."""
    with one_line_errors(PROG, debug=debug):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        logging.get_absl_handler().addFilter(_QuietOrbax())
        if not debug_requested(debug):
            logging.get_absl_handler().addFilter(_DiskFullNoise())
            sys.unraisablehook = _quiet_closed_loop_hook(sys.unraisablehook)
        from ul_jax.train.precision import apply_deterministic_ops

        apply_deterministic_ops(config)  # before JAX starts a backend
        import jax

        init_distributed()
    from ul_jax.train import NonFiniteError, train_and_evaluate
    from ul_jax.train.summary_text import format_train_summary

    multi = jax.process_count() > 1
    who = f"process {jax.process_index()}/{jax.process_count()}"
    if multi:
        logging.info(
            "%s, %d local / %d global devices (%s)",
            who,
            jax.local_device_count(),
            jax.device_count(),
            jax.devices()[0].device_kind,
        )
    t0 = time.perf_counter()
    try:
        with one_line_errors(f"{PROG} ({who})" if multi else PROG, debug=debug):
            try:
                out = train_and_evaluate(
                    config, workdir, until_step=until_step, skip_nonfinite=skip_nonfinite
                )
            except NonFiniteError:
                # the loop logged the error (step, quantities, last good checkpoint); every
                # process saw it
                if debug_requested(debug):
                    traceback.print_exc()
                raise SystemExit(EXIT_DIVERGED) from None
    except SystemExit as e:
        if multi and e.code == EXIT_ERROR:
            _flush_and_exit(EXIT_ERROR)  # a peer may be dead: no shutdown barrier
        raise
    except Exception:
        if not multi:
            raise
        logging.exception(
            "%s failed (if the error is about a collective or the distributed service, another "
            "process probably died: see its log); exiting with code %d",
            who,
            EXIT_ERROR,
        )
        _flush_and_exit(EXIT_ERROR)
    if out.get("preempted"):
        logging.warning(
            "%s: preempted at step %d, checkpoint written; exiting with code %d (rerun the same "
            "command to resume)",
            who,
            out["step"],
            EXIT_PREEMPTED,
        )
        sys.exit(EXIT_PREEMPTED)
    if jax.process_index() == 0:
        print(format_train_summary(out, workdir, wall_seconds=time.perf_counter() - t0))
        sys.stdout.flush()
