"""What every ``launch/`` command shares, without the training stack: the one-line errors and
exit codes, the number, time and file-list formats of the summaries they print, and the
XLA:CPU defaults applied before JAX starts (:func:`apply_cpu_defaults`).

Imports only the standard library and absl, so ``python -m launch.dynamics --help`` or
``import ul_jax.eval`` does not load :mod:`ul_jax.train` (tested).

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
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from absl import app, flags

__all__ = [
    "CPU_DEFAULTS_ENV",
    "CPU_FAST_FLAGS",
    "DEBUG_ENV",
    "apply_cpu_defaults",
    "EXIT_CODES",
    "EXIT_DIVERGED",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PREEMPTED",
    "EXIT_USAGE",
    "debug_requested",
    "error_message",
    "exit_code_for",
    "fmt_duration",
    "fmt_pct",
    "fmt_rate",
    "fmt_sig",
    "format_files",
    "is_expected_error",
    "one_line_errors",
    "parse_flags",
    "report_error",
]

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
    2, an error class with an ``exit_code`` attribute that code (``NonFiniteError``: 3), Ctrl-C
    130, anything else 1."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(getattr(e, "exit_code", None), int):  # NonFiniteError: EXIT_DIVERGED
        return int(e.exit_code)
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


def parse_flags(
    argv: list[str],
    prog: str = "python -m launch.train",
    *,
    config_help: Callable[[], str] | None = None,
) -> list[str]:
    """absl's flag parsing for ``absl.app.run``, with one line ``PROG: error: ...`` and exit code
    2 for a bad command line (with ``--debug`` / ``UL_JAX_DEBUG=1``: the traceback), and, given
    ``config_help`` (the text of the config's fields), ``--config_help``, which needs no other
    flag."""
    if config_help is not None and "--config_help" in argv[1:]:
        print(config_help())
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError) as e:
        if debug_requested(any(_is_debug_flag(a) for a in argv[1:])):
            traceback.print_exc()
        else:
            hint = "--config_help lists them" if config_help is not None else "see the config file"
            report_error(prog, _flag_error(e, argv, hint))
        sys.exit(EXIT_USAGE)


# ---------------------------------------------------------------------------------------------
# number, time and file-list formats of the summaries
# ---------------------------------------------------------------------------------------------
def _number(x: Any) -> float | None:
    """``x`` as a finite float, else ``None``."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt_pct(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.98222 → "98.22 %"``; ``"–"`` for a missing/NaN value."""
    v = _number(x)
    return "–" if v is None else f"{100 * v:.{digits}f} %"


def fmt_sig(x: Any, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits: ``-0.056669 → "-0.05667"``; ``"–"`` if missing,
    ``"nan"``/``"inf"`` as such."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{v:.{digits}g}"


def fmt_duration(seconds: float, style: str = "text") -> str:
    """The one duration formatter: ``style="text"`` ``35.2 s``, ``4 min 07 s``, ``2 h 03 min``
    (summaries); ``"clock"`` ``0:09:43`` (a progress line's ETA); ``"decimal"`` ``45.1 s``,
    ``3.8 min``, ``1.5 h`` (tables of predicted times). Non-finite: ``?``."""
    if style not in ("text", "clock", "decimal"):
        raise ValueError(f"style must be 'text', 'clock' or 'decimal'; got {style!r}")
    if not math.isfinite(seconds):
        return "?"
    if style == "clock":
        s = int(round(seconds))
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if style == "decimal":
        if seconds >= 3600:
            return f"{seconds / 3600:.1f} h"
        return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def fmt_rate(images_per_sec: float) -> str:
    """``14,480 img/s`` (3 significant digits below 100)."""
    if images_per_sec >= 100:
        return f"{images_per_sec:,.0f} img/s"
    return f"{images_per_sec:.3g} img/s"


def format_files(directory: str | Path, files: Sequence[tuple[str, str]], title: str) -> list[str]:
    """``TITLE DIRECTORY:`` then one aligned line per ``(name, what)``."""
    if not files:
        return []
    width = max(len(name) for name, _ in files)
    return [f"{title} {directory}:"] + [f"  {name:<{width}}  {what}" for name, what in files]


# ---------------------------------------------------------------------------------------------
# before JAX starts (launch/__init__.py, child processes of a suite)
# ---------------------------------------------------------------------------------------------
CPU_FAST_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",)
CPU_DEFAULTS_ENV = "UL_JAX_XLA_CPU_DEFAULTS"


def apply_cpu_defaults(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Appends each flag of :data:`CPU_FAST_FLAGS` whose name ``XLA_FLAGS`` does not mention yet
    (a user's own setting wins) unless ``UL_JAX_XLA_CPU_DEFAULTS`` is ``0``/``false``/``no``/
    ``off``. Returns the flags added. Takes effect only if JAX has not started its backend."""
    if environ.get(CPU_DEFAULTS_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        return []
    xla = environ.get("XLA_FLAGS", "")
    added = [f for f in CPU_FAST_FLAGS if f.split("=")[0] not in xla]
    if added:
        environ["XLA_FLAGS"] = " ".join([xla, *added]).strip()
    return added
