"""Progress of a training run on the console: a tqdm bar on an interactive terminal, and the
arithmetic of its rate and ETA.

* :func:`use_progress_bar` decides: a bar only when stderr is a terminal (``isatty()``), unless
  ``UL_JAX_PROGRESS`` says otherwise (``bar`` / ``1``: always, ``log`` / ``0``: never, ``auto``:
  the default). Log files and cluster logs (not a terminal) keep the loop's console line at every
  log step; with a bar, only the evaluation steps' lines are logged (above the bar).
* :class:`WallRate` and :func:`eta_seconds`: the ETA divides the remaining steps by the
  *wall-clock* steps per second since the first log line, so evaluation and checkpoint time are
  included (a run that evaluates every epoch gets an ETA that counts its evaluations), and the
  compilation before the first log line is not.
* :class:`ProgressBar`: the bar over the run's steps (``tqdm``), on stderr; while it is shown,
  the log lines of absl's and Python logging's console handlers are written above it instead of
  through it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["PROGRESS_ENV", "ProgressBar", "WallRate", "eta_seconds", "use_progress_bar"]

PROGRESS_ENV = "UL_JAX_PROGRESS"
_ALWAYS, _NEVER = ("bar", "1", "true", "yes", "on"), ("log", "0", "false", "no", "off")
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def use_progress_bar(stream: Any = None, environ: Mapping[str, str] = os.environ) -> bool:
    """Whether to show a progress bar on ``stream`` (default ``sys.stderr``): ``$UL_JAX_PROGRESS``
    if set (``bar``/``1`` or ``log``/``0``), else whether ``stream`` is an interactive terminal.

    Raises:
      ValueError: an unknown ``UL_JAX_PROGRESS`` value.
    """
    setting = environ.get(PROGRESS_ENV, "auto").strip().lower()
    if setting in _ALWAYS:
        return True
    if setting in _NEVER:
        return False
    if setting not in ("", "auto"):
        raise ValueError(
            f"{PROGRESS_ENV} must be one of auto, bar (1), log (0); "
            f"got {PROGRESS_ENV}={environ[PROGRESS_ENV]!r}"
        )
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def eta_seconds(remaining_steps: int, steps_per_sec: float) -> float:
    """Seconds for ``remaining_steps`` at ``steps_per_sec`` (0 when none remain; NaN while the
    rate is unknown)."""
    if remaining_steps <= 0:
        return 0.0
    if not (math.isfinite(steps_per_sec) and steps_per_sec > 0):
        return math.nan
    return remaining_steps / steps_per_sec


@dataclasses.dataclass
class WallRate:
    """Wall-clock steps per second since the first :meth:`mark` (the first log line, after
    compilation); everything between — training, evaluation, checkpoints — counts."""

    step0: int | None = None
    t0: float = math.nan

    def mark(self, step: int, now: float) -> None:
        """Starts the clock at ``(step, now)``; later calls do nothing."""
        if self.step0 is None:
            self.step0, self.t0 = step, now

    def steps_per_sec(self, step: int, now: float) -> float:
        """``(step − step0) / (now − t0)``; NaN before a step after the mark."""
        if self.step0 is None or step <= self.step0 or not now > self.t0:
            return math.nan
        return (step - self.step0) / (now - self.t0)

    def eta(self, step: int, stop: int, now: float) -> float:
        """Seconds to ``stop`` at the wall-clock rate (see :func:`eta_seconds`)."""
        return eta_seconds(stop - step, self.steps_per_sec(step, now))


class _LinesAboveBar:
    """The stream of absl's handler while a bar is shown: each log line clears the bar, is
    written, and the bar is drawn again below it."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def write(self, text: str) -> int:
        from tqdm import tqdm

        with tqdm.external_write_mode(file=self.stream):
            n = self.stream.write(text)
            self.stream.flush()
        return n

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class ProgressBar:
    """A tqdm bar over steps ``start … total`` on ``file`` (default stderr); :meth:`update` at log
    steps (when the host has the metrics, so the bar never runs ahead of the device)."""

    def __init__(self, start: int, total: int, *, file: TextIO | None = None, desc: str = "train"):
        from absl import logging as absl_logging
        from tqdm import tqdm

        self._file = sys.stderr if file is None else file
        self._bar = tqdm(
            total=total,
            initial=start,
            desc=desc,
            unit="step",
            file=self._file,
            dynamic_ncols=True,
            bar_format=BAR_FORMAT,
            mininterval=0.0,
        )
        # absl's handler and Python logging's console handlers (logging.basicConfig) that write
        # where the bar is: their lines go above it
        handlers = [absl_logging.get_absl_handler().python_handler, *logging.getLogger().handlers]
        self._patched = [
            h
            for h in dict.fromkeys(handlers)
            if isinstance(h, logging.StreamHandler) and h.stream is self._file
        ]
        for h in self._patched:
            h.stream = _LinesAboveBar(self._file)

    def update(self, step: int, postfix: str) -> None:
        """Moves the bar to ``step`` with ``postfix`` (rate, ETA, metrics) after the counts."""
        self._bar.n = step
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """Leaves the bar's last state on the terminal and gives the log handlers their stream
        back."""
        for h in self._patched:
            h.stream = self._file
        self._patched = []
        self._bar.close()
