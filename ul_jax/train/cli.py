"""The training command behind ``python -m launch.train --config configs/X.py[:variant] --workdir
DIR [--config.field=value ...] [--until_step K] [--skip_nonfinite N]``.

``launch/train.py`` defines the flags and calls :func:`parse_flags` and :func:`main` of this
module. ``python -m launch.train --config_help`` lists every config field (type, default, allowed
values, meaning; from the schema :mod:`ul_jax.config`).

Resumes automatically from the newest usable checkpoint in ``--workdir`` (see
``docs/RELIABILITY.md``).

Exit codes:

====  =====================================================================================
0     finished (or stopped at ``--until_step`` with a checkpoint)
1     an error (bad config, no usable checkpoint, a failed or dead peer process, ...); for a
      work directory in use by another run, not writable, or a full disk: one line, no traceback
3     diverged: a non-finite loss / gradient / update (:class:`ul_jax.train.NonFiniteError`);
      the message names the step, the quantities and the last good checkpoint
75    preempted: ``SIGTERM`` arrived, a checkpoint of the current step was written; rerun the
      same command to resume (``EX_TEMPFAIL``: a scheduler may requeue on it)
====  =====================================================================================

Multi-host: run the same command in every process with ``UL_JAX_DISTRIBUTED=1``, which calls
``jax.distributed.initialize()`` before anything touches a device. JAX detects SLURM, Open MPI,
mpi4py, Kubernetes and Cloud TPU clusters by itself; elsewhere set ``JAX_COORDINATOR_ADDRESS``
(``host:port`` of process 0) plus ``UL_JAX_NUM_PROCESSES`` and ``UL_JAX_PROCESS_ID`` (passed as
``num_processes`` / ``process_id``). ``--workdir`` must be a directory all processes share: every
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
from collections.abc import Sequence
from typing import Any

from absl import app, logging

from ul_jax.config import describe_fields

__all__ = [
    "DISTRIBUTED_TIMEOUTS",
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_PREEMPTED",
    "distributed_kwargs",
    "main",
    "parse_flags",
]

EXIT_ERROR = 1
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75

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


def _flush_and_exit(code: int) -> None:
    """Exits now, without the runtime's shutdown barrier (which waits for every peer)."""
    for h in std_logging.getLogger().handlers + [logging.get_absl_handler()]:
        h.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def parse_flags(argv):
    """absl's flag parsing, plus a one-line error for a ``--config.<field>`` override of a field
    the config does not have (ml_collections raises a bare ``AttributeError`` there), and
    ``--config_help`` (which needs no other flag)."""
    if "--config_help" in argv[1:]:
        print(describe_fields())
        sys.exit(0)
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as e:
        inner = e
        while isinstance(inner, BaseException) and inner.args:
            inner = inner.args[0]
        detail = " ".join(str(inner).split())  # "'lrr' Did you mean "lr" instead of "lrr"?"
        key = detail.split("'")[1] if detail.count("'") >= 2 else ""
        overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        named = [o for o in overrides if o.rsplit(".", 1)[-1] == key] or overrides
        sys.stderr.write(
            f"FATAL Flags parsing error: {', '.join(named)}: the config has no field "
            f"{detail} (see configs/common.py)\n"
        )
        sys.exit(1)


def main(
    argv: Sequence[str],
    config: Any,
    workdir: str,
    *,
    until_step: int | None = None,
    skip_nonfinite: int = 0,
) -> None:
    """The body of ``python -m launch.train`` after flag parsing (``argv``: what absl left).

    Initializes the distributed runtime if ``UL_JAX_DISTRIBUTED`` is set, runs
    :func:`ul_jax.train.train_and_evaluate` and exits with the codes of the module docstring
    (returns normally for 0)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {list(argv[1:])}")
    logging.get_absl_handler().addFilter(_QuietOrbax())
    import jax

    if os.environ.get("UL_JAX_DISTRIBUTED", "") not in ("", "0"):
        jax.distributed.initialize(**distributed_kwargs())
    from ul_jax.train import NonFiniteError, train_and_evaluate
    from ul_jax.train.checkpoint import CheckpointDiskFullError
    from ul_jax.train.lock import (
        WorkdirLockedError,
        WorkdirLockLostError,
        WorkdirNotWritableError,
    )

    multi = jax.process_count() > 1
    logging.info(
        "process %d/%d, %d local / %d global devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].device_kind,
    )
    try:
        out = train_and_evaluate(
            config, workdir, until_step=until_step, skip_nonfinite=skip_nonfinite
        )
    except NonFiniteError:
        # the loop logged the error (step, quantities, last good checkpoint); every process saw it
        sys.exit(EXIT_DIVERGED)
    except (
        WorkdirLockedError,
        WorkdirLockLostError,
        WorkdirNotWritableError,
        NotADirectoryError,
        CheckpointDiskFullError,
    ) as e:
        # the work directory cannot be (or is no longer) this run's: one line says why
        logging.error("%s: %s", type(e).__name__, e)
        if multi:
            _flush_and_exit(EXIT_ERROR)
        sys.exit(EXIT_ERROR)
    except Exception:
        if not multi:
            raise
        logging.exception(
            "process %d/%d failed (if the error is about a collective or the "
            "distributed service, another process probably died: see its log); "
            "exiting with code %d",
            jax.process_index(),
            jax.process_count(),
            EXIT_ERROR,
        )
        _flush_and_exit(EXIT_ERROR)
    if out.get("preempted"):
        logging.warning(
            "process %d/%d: preempted at step %d, checkpoint written; exiting with code "
            "%d (rerun the same command to resume)",
            jax.process_index(),
            jax.process_count(),
            out["step"],
            EXIT_PREEMPTED,
        )
        sys.exit(EXIT_PREEMPTED)
    if jax.process_index() == 0:
        logging.info("final: %s", {k: v for k, v in out.items() if not k.startswith("perf/")})
