"""Metric writers: JSON lines (always) and TensorBoard event files (no TensorFlow needed).

``WORKDIR/metrics.jsonl`` holds one JSON object per logged step, ``{"step": k, "train/loss": ...,
"eval/accuracy": ...}``, in increasing step order. Non-finite numbers are written as ``null``
(strict JSON). On resume from step ``k`` the file is first truncated to the lines with
``step <= k`` (lines written after the last checkpoint by an interrupted run are dropped), so no
step is ever duplicated.

TensorBoard: :class:`EventFileWriter` writes the standard ``events.out.tfevents.*`` record format
(TFRecord framing with masked CRC-32C, ``Event``/``Summary`` protobufs with scalar
``simple_value`` s) encoded by hand here: neither TensorFlow, ``tensorboard`` nor ``tensorboardX``
is needed to write them (``tensorboard --logdir WORKDIR/tensorboard`` reads them). A resume
(and every fresh start) writes a ``SessionLog.START`` event at step ``k + 1``, which makes
TensorBoard drop the orphaned points with steps > k from an earlier run in the same directory.
"""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ul_jax.io import write_text_atomic

__all__ = [
    "JsonlWriter",
    "EventFileWriter",
    "MetricWriter",
    "read_jsonl",
    "crc32c",
    "read_event_file",
]


# --------------------------------------------------------------------------------------------
# JSON lines
# --------------------------------------------------------------------------------------------
def _clean(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All objects of a JSON-lines file (a torn last line, from a crash mid-write, is skipped)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


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
# TensorBoard event files (TFRecord of tensorflow.Event protos), hand-encoded
# --------------------------------------------------------------------------------------------
def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord uses; ``crc32c(b"123456789") == 0xE3069283``."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _event(
    wall_time: float,
    step: int,
    *,
    file_version: str | None = None,
    scalars: Mapping[str, float] | None = None,
    session_start: bool = False,
) -> bytes:
    msg = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(int(step))
    if file_version is not None:
        msg += _len_field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _len_field(1, _len_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", val))
            for tag, val in scalars.items()
        )
        msg += _len_field(5, values)  # Event.summary = 5
    if session_start:
        msg += _len_field(7, _field(1, 0) + _varint(1))  # Event.session_log = 7, status START
    return msg


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (
        header
        + struct.pack("<I", _masked_crc(header))
        + data
        + struct.pack("<I", _masked_crc(data))
    )


class EventFileWriter:
    """Scalar summaries in a new ``events.out.tfevents.<time>.<host>.<pid>`` file in ``logdir``."""

    def __init__(self, logdir: str | os.PathLike, resume_step: int = 0):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}"
        self.path, n = self.logdir / name, 0
        while self.path.exists():  # a second writer in the same second and process
            n += 1
            self.path = self.logdir / f"{name}.{n}"
        self._f = open(self.path, "xb")
        self._f.write(_record(_event(now, 0, file_version="brain.Event:2")))
        # TensorBoard drops earlier points with step >= a SessionLog.START's step.
        self._f.write(_record(_event(now, resume_step + 1, session_start=True)))
        self._f.flush()

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        vals = {
            k: float(_clean(v))
            for k, v in scalars.items()
            if isinstance(_clean(v), (int, float)) and not isinstance(_clean(v), bool)
        }
        if vals:
            self._f.write(_record(_event(time.time(), step, scalars=vals)))
            self._f.flush()

    def close(self) -> None:
        self._f.close()


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _parse_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out, i = [], 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _read_varint(buf, i)
        elif wire == 1:
            val, i = buf[i : i + 8], i + 8
        elif wire == 5:
            val, i = buf[i : i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            val, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((num, wire, val))
    return out


def read_event_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Decodes an event file written by :class:`EventFileWriter` (checking every CRC):
    ``[{"step", "wall_time", "scalars": {tag: value}, "session_start": bool, ...}]``."""
    data = Path(path).read_bytes()
    events, i = [], 0
    while i < len(data):
        header = data[i : i + 8]
        (n,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[i + 8 : i + 12])[0] != _masked_crc(header):
            raise ValueError(f"{path}: bad length CRC at byte {i}")
        body = data[i + 12 : i + 12 + n]
        if struct.unpack("<I", data[i + 12 + n : i + 16 + n])[0] != _masked_crc(body):
            raise ValueError(f"{path}: bad data CRC at byte {i}")
        i += 16 + n
        ev: dict[str, Any] = {"scalars": {}, "session_start": False, "step": 0}
        for num, _, val in _parse_fields(body):
            if num == 1:
                ev["wall_time"] = struct.unpack("<d", val)[0]
            elif num == 2:
                ev["step"] = val
            elif num == 3:
                ev["file_version"] = val.decode()
            elif num == 5:
                for vnum, _, value in _parse_fields(val):
                    if vnum == 1:
                        f = {k: v for k, _, v in _parse_fields(value)}
                        ev["scalars"][f[1].decode()] = struct.unpack("<f", f[2])[0]
            elif num == 7:
                ev["session_start"] = dict((k, v) for k, _, v in _parse_fields(val)).get(1) == 1
        events.append(ev)
    return events


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
