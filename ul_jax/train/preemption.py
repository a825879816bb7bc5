"""Preemption: ``SIGTERM`` (the notice of preemptible VMs, Kubernetes, SLURM) becomes "stop at
the next step boundary"; the loop then saves a checkpoint of that step and returns
``{"step": k, "preempted": True, ...}`` (``python -m launch.train`` exits with code 75).
"""

from __future__ import annotations

import signal
import threading

import jax

__all__ = ["PreemptionWatch"]


class PreemptionWatch:
    """Turns ``SIGTERM`` into "stop at the next step boundary".

    Single process: a Python handler (installed while :func:`train_and_evaluate` runs, main
    thread only; the previous handler is restored) sets a flag that stays set for the rest of
    the process, so a later call in the same process (a suite of runs) stops at once too.
    Multi-process: JAX's preemption service (started by ``jax.distributed.initialize``) receives
    the signal on any process and
    :func:`jax.experimental.multihost_utils.reached_preemption_sync_point` makes every process
    stop at the same step."""

    received = False  # a SIGTERM arrived in this process (single-process mode)

    def __init__(self):
        self._old = None
        self._multi = jax.process_count() > 1
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    @staticmethod
    def _handle(signum, frame):
        PreemptionWatch.received = True

    def pending(self) -> bool:
        """A single-process preemption notice that arrived before the first step."""
        return not self._multi and PreemptionWatch.received

    def reached(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils

            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:  # preemption service disabled: no SIGTERM handling
                self._multi = False
                return False
        return PreemptionWatch.received

    def close(self):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None
