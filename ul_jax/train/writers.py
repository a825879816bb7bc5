"""Metric writers: JSON lines (always) and TensorBoard event files (tensorboardX, no TensorFlow).

``WORKDIR/metrics.jsonl`` holds one JSON object per logged step, ``{"step": k, "train/loss": ...,
"eval/accuracy": ...}``, in increasing step order. Non-finite numbers are written as ``null``
(strict JSON). On resume from step ``k`` the file is first truncated to the lines with
``step <= k`` (lines written after the last checkpoint by an interrupted run are dropped), so no
step is ever duplicated.

TensorBoard: :class:`EventFileWriter` writes scalar summaries to ``WORKDIR/tensorboard`` through
``tensorboardX`` (numpy + protobuf only; ``pip install -e '.[viz]'`` adds ``tensorboard`` to view
them: ``tensorboard --logdir WORKDIR``). Every start from step ``k`` (``k = 0``: a fresh start)
opens a new event file that begins with a ``SessionLog.START`` at step ``k + 1``
(tensorboardX's ``purge_step``), which makes TensorBoard drop the orphaned points with steps > k
that an interrupted earlier run left in the same directory. Non-finite values, bools and lists
are not written there (``metrics.jsonl`` has them). Events are written synchronously, in the
caller's thread, and flushed at every :meth:`EventFileWriter.write`: a write that fails (a full
disk) raises there — tensorboardX's ``SummaryWriter`` writes from a thread that dies on such an
error, after which its queue fills and the training loop would block forever.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.summary import scalar as scalar_summary

from ul_jax.io import read_jsonl, write_text_atomic

__all__ = ["EventFileWriter", "JsonlWriter", "MetricWriter", "read_jsonl"]


# --------------------------------------------------------------------------------------------
# JSON lines
# --------------------------------------------------------------------------------------------
def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlWriter:
    """Appends ``{"step": k, **metrics}`` lines; ``resume_step`` truncates lines with step > it."""

    def __init__(self, path: str | os.PathLike, resume_step: int = 0):
        self.path = Path(path)
        kept = [r for r in read_jsonl(self.path) if int(r.get("step", -1)) <= resume_step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self.last_step = max((int(r["step"]) for r in kept), default=-1)
        self._f = open(self.path, "a")

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if step <= self.last_step:
            raise ValueError(
                f"metrics step {step} is not after the last written step "
                f"{self.last_step} of {self.path}"
            )
        row = {"step": int(step), **{k: _clean(v) for k, v in metrics.items()}}
        self._f.write(json.dumps(row) + "\n")
        self._f.flush()
        self.last_step = step

    def close(self) -> None:
        self._f.close()


# --------------------------------------------------------------------------------------------
# TensorBoard event files, through tensorboardX
# --------------------------------------------------------------------------------------------
def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite real numbers of ``metrics`` (no bools, lists, strings or non-finite values)."""
    out = {}
    for k, v in metrics.items():
        v = _clean(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class EventFileWriter:
    """Scalar summaries in a new ``events.out.tfevents.*`` file in ``logdir`` (tensorboardX).

    The file starts with a ``SessionLog.START`` at step ``resume_step + 1`` (tensorboardX's
    ``purge_step``), which makes TensorBoard drop the points with steps > ``resume_step`` of
    earlier files in ``logdir``. Each writer gets its own file, also when two start in the same
    second of the same process (tensorboardX names files by the second only).
    """

    def __init__(self, logdir: str | os.PathLike, resume_step: int = 0):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        suffix, n = f".{os.getpid()}", 0
        while any(self.logdir.glob(f"events.out.tfevents.*{suffix}")):
            n += 1
            suffix = f".{os.getpid()}.{n}"
        self._w = EventsWriter(str(self.logdir / "events"), suffix)  # + a file_version event
        now, purge = time.time(), resume_step + 1
        self._w.write_event(Event(wall_time=now, step=purge, file_version="brain.Event:2"))
        self._w.write_event(
            Event(wall_time=now, step=purge, session_log=SessionLog(status=SessionLog.START))
        )
        self._w.flush()

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        """Adds the finite real numbers of ``scalars`` at ``step`` (the others are left out)."""
        now = time.time()
        for tag, value in _scalars(scalars).items():
            self._w.write_event(
                Event(wall_time=now, step=int(step), summary=scalar_summary(tag, value))
            )
        self._w.flush()

    def close(self) -> None:
        """Writes every pending event and closes the file."""
        self._w.close()


# --------------------------------------------------------------------------------------------
class MetricWriter:
    """JSONL + TensorBoard in ``workdir`` on process 0; a no-op elsewhere (``enabled=False``)."""

    def __init__(
        self,
        workdir: str | os.PathLike,
        resume_step: int = 0,
        enabled: bool = True,
        tensorboard: bool = True,
    ):
        self.enabled = enabled
        self.jsonl = self.events = None
        if enabled:
            self.jsonl = JsonlWriter(Path(workdir) / "metrics.jsonl", resume_step)
            if tensorboard:
                self.events = EventFileWriter(Path(workdir) / "tensorboard", resume_step)

    def write(self, step: int, metrics: Mapping[str, Any]) -> None:
        if self.enabled:
            self.jsonl.write(step, metrics)
            if self.events is not None:
                self.events.write(step, metrics)

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.events is not None:
                self.events.close()
