"""The training command behind ``python -m launch.train --config configs/X.py[:variant] --workdir
DIR [--config.field=value ...] [--until_step K] [--skip_nonfinite N] [--debug]``, and the error
handling and exit codes every ``launch/`` command shares.

``launch/train.py`` defines the flags and calls :func:`parse_flags` and :func:`main` of this
module. ``python -m launch.train --config_help`` lists every config field (type, default, allowed
values, meaning; from the schema :mod:`ul_jax.config`).

Resumes automatically from the newest usable checkpoint in ``--workdir`` (see
``docs/RELIABILITY.md``). At the end it prints a summary (:mod:`ul_jax.train.summary_text`): the
final metrics, wall time, throughput, the files of the work directory and the next command.

**Errors.** An error a command expects (:func:`is_expected_error`: a bad config value, data not
found, no usable or a damaged checkpoint, a locked or unwritable work directory, a full disk, a
bad flag) is printed as one line, ``python -m launch.X: error: WHAT`` (the value or path and how
to fix it are in ``WHAT``), without a traceback; ``--debug`` or ``UL_JAX_DEBUG=1`` prints the
traceback instead (same exit code). Anything else is a bug: its traceback, exit code 1.

Exit codes (:data:`EXIT_CODES`; every ``launch/`` command):

====  =====================================================================================
0     done (train: finished, or stopped at ``--until_step`` with a checkpoint)
1     an error, named in one line: a bad config value, data not found, no usable or a damaged
      checkpoint, a work directory in use by another run or not writable, a full disk, a failed
      or dead peer process (its log has the traceback); an unexpected error (traceback)
2     a bad command line: an unknown or malformed flag or ``--config.<field>`` override, a
      missing required flag, a config file or variant that does not load, a bad ``UL_JAX_*``
      setting; for ``evaluate``, ``report``, ``plot``: also a path or name given on the
      command line that cannot be used (no such work directory, no ``eval.json``, ...)
3     train: diverged, a non-finite loss / gradient / update (:class:`ul_jax.train.NonFiniteError`);
      the message names the step, the quantities and the last good checkpoint
75    preempted: ``SIGTERM`` arrived, a checkpoint of the current step was written; rerun the
      same command to resume (``EX_TEMPFAIL``: a scheduler may requeue on it)
130   interrupted by Ctrl-C (``SIGINT``); train: rerun the same command to resume from the last
      checkpoint
====  =====================================================================================

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

import contextlib
import errno
import logging as std_logging
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

from absl import app, flags, logging

from ul_jax.config import describe_fields

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
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 75
EXIT_INTERRUPTED = 130
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done",
    EXIT_ERROR: "an error, named in one line (an unexpected one: its traceback)",
    EXIT_USAGE: "a bad command line",
    EXIT_DIVERGED: "diverged (train)",
    EXIT_PREEMPTED: "preempted by SIGTERM, checkpoint written: rerun to resume",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C",
}
DEBUG_ENV = "UL_JAX_DEBUG"
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_EXPECTED_BUILTINS = (
    ValueError,  # a bad config value / argument (the message names it)
    FileNotFoundError,  # data, a config file, a work directory
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)

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


# ---------------------------------------------------------------------------------------------
# errors and exit codes (every launch/ command)
# ---------------------------------------------------------------------------------------------
def debug_requested(flag: bool = False, environ: Mapping[str, str] = os.environ) -> bool:
    """``--debug`` (``flag``) or ``UL_JAX_DEBUG`` set to anything but ``""``/``0``/``false``."""
    value = environ.get(DEBUG_ENV, "").strip().lower()
    return bool(flag) or value not in ("", "0", "false", "no", "off")


def is_expected_error(e: BaseException) -> bool:
    """Whether ``e`` is an error a command reports in one line: one of ul_jax's named errors
    (its class is defined in ``ul_jax``: a locked work directory, a damaged checkpoint, ...), a
    bad value (``ValueError``: config fields, arguments), a missing or unusable path
    (``FileNotFoundError``, ``NotADirectoryError``, ``PermissionError``, ...), a full disk
    (``OSError`` ``ENOSPC`` / ``EDQUOT``), a bad command line or Ctrl-C."""
    if isinstance(e, (KeyboardInterrupt, app.UsageError, flags.Error)):
        return True
    if type(e).__module__.split(".")[0] == "ul_jax" or isinstance(e, _EXPECTED_BUILTINS):
        return True
    return isinstance(e, OSError) and e.errno in _DISK_FULL


def exit_code_for(e: BaseException, usage_errors: tuple[type[BaseException], ...] = ()) -> int:
    """The exit code of an expected error (module docstring): ``usage_errors`` (and bad flags)
    2, ``NonFiniteError`` 3, Ctrl-C 130, anything else 1."""
    from ul_jax.train.loop import NonFiniteError

    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(e, NonFiniteError):
        return EXIT_DIVERGED
    if isinstance(e, (app.UsageError, flags.Error)) or (
        usage_errors and isinstance(e, usage_errors)
    ):
        return EXIT_USAGE
    return EXIT_ERROR


def error_message(e: BaseException) -> str:
    """``e`` as one line: the class name for ul_jax's own errors (``WorkdirLockedError: ...``),
    the bare message for Python's (``ValueError``, ``FileNotFoundError``), a remedy for a full
    disk that does not carry one."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.errno in _DISK_FULL and "rerun" not in text:
        text += "; free space (or raise the quota) and rerun the same command"
    if type(e).__module__ in ("builtins", "absl.app", "absl.flags._exceptions"):
        return text
    return f"{type(e).__name__}: {text}"


def report_error(prog: str, e: BaseException | str, stream: TextIO | None = None) -> None:
    """Writes ``PROG: error: MESSAGE`` (one line, :func:`error_message`) to ``stream`` (stderr)."""
    stream = sys.stderr if stream is None else stream
    message = e if isinstance(e, str) else error_message(e)
    stream.write(f"{prog}: error: {' '.join(message.split())}\n")
    stream.flush()


@contextlib.contextmanager
def one_line_errors(
    prog: str, *, debug: bool = False, usage_errors: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Runs the ``with`` body; an expected error (:func:`is_expected_error`) becomes one line on
    stderr (:func:`report_error`; with ``debug`` / ``UL_JAX_DEBUG=1``: its traceback) and
    ``SystemExit`` with its code (:func:`exit_code_for`). Other errors propagate unchanged."""
    try:
        yield
    except (KeyboardInterrupt, Exception) as e:
        if not is_expected_error(e):
            raise
        code = exit_code_for(e, usage_errors)
        if debug_requested(debug):
            traceback.print_exc()
        else:
            report_error(prog, e)
        raise SystemExit(code) from None


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


def _flag_error(e: BaseException, argv: Sequence[str], hint: str) -> str:
    """One line for a flag-parsing error: the override of a field the config does not have
    (ml_collections raises a bare ``AttributeError``/``KeyError``), or absl's message."""
    if isinstance(e, flags.Error):
        return " ".join(str(e).split())
    inner = e
    while isinstance(inner, BaseException) and inner.args:
        inner = inner.args[0]
    detail = " ".join(str(inner).split())  # "'lrr' Did you mean "lr" instead of "lrr"?"
    key = detail.split("'")[1] if detail.count("'") >= 2 else ""
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
    named = [o for o in overrides if o.rsplit(".", 1)[-1] == key] or overrides
    return f"{', '.join(named)}: the config has no field {detail} ({hint})"


def _is_debug_flag(arg: str) -> bool:
    """``--debug`` or ``--debug=true`` (absl's spellings of the boolean flag set)."""
    name, eq, value = arg.partition("=")
    return name == "--debug" and (not eq or value.lower() in ("true", "1", "yes"))


def parse_flags(argv: list[str], prog: str = PROG, *, config_help: bool = True) -> list[str]:
    """absl's flag parsing for ``absl.app.run``, with one line ``PROG: error: ...`` and exit code
    2 for a bad command line (with ``--debug`` / ``UL_JAX_DEBUG=1``: the traceback), and (if
    ``config_help``: the training config) ``--config_help``, which needs no other flag."""
    if config_help and "--config_help" in argv[1:]:
        print(describe_fields())
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError) as e:
        if debug_requested(any(_is_debug_flag(a) for a in argv[1:])):
            traceback.print_exc()
        else:
            hint = "--config_help lists them" if config_help else "see the config file"
            report_error(prog, _flag_error(e, argv, hint))
        sys.exit(EXIT_USAGE)


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
