"""One writer per work directory: ``WORKDIR/writer.lock``.

A training run (process 0 of a multi-host run) holds the lock from before it writes anything
until it ends — normally, by an exception or after a ``SIGTERM`` — so that a second launch of the
same command (a re-queued job while the first still runs, a second terminal) fails at once,
naming the holder, instead of writing ``metrics.jsonl``, TensorBoard events and checkpoints into
the same folder. Evaluation and reporting read a work directory without the lock (checkpoints,
``config.json`` and ``metrics.jsonl`` lines are committed atomically: a reader never sees a
half-written file).

The lock file is JSON: ``host``, ``pid``, ``start_time`` (UTC) and ``heartbeat`` (a Unix time the
holder refreshes every ``UL_JAX_LOCK_HEARTBEAT_S`` seconds, default 30, from a daemon thread),
plus the holder's boot id, process start ticks (Linux), command line and a random ``token``.

* **Taking it**: ``open(O_CREAT | O_EXCL)`` — exactly one of any number of concurrent launches
  creates the file.
* **A live holder**: :class:`WorkdirLockedError` with one line naming host, PID and start time.
* **A stale holder** is taken over, with a warning naming it and why: on the same host (same
  hostname and boot id) its PID is gone, a zombie, or now another process (start ticks differ);
  the host was rebooted since (other boot id); on another host its heartbeat is older than
  ``UL_JAX_LOCK_STALE_S`` seconds (default 300); a lock file that cannot be parsed and is older
  than 10 s (a holder killed between creating and writing it). Take-overs are serialized by a
  second ``O_EXCL`` file (``writer.lock.takeover``): the taker re-reads the lock, checks it is
  still the stale one it judged, and replaces it by an atomic ``rename`` of a complete new lock
  file, so two launches that find the same stale lock cannot both take it.
* **Losing it**: the heartbeat thread re-reads the file before each refresh; if it names another
  holder (this run was judged stale — e.g. its host was frozen longer than the timeout — and
  another run took over), :meth:`WorkdirLock.check` raises :class:`WorkdirLockLostError` and
  the loop stops before its next write.
* **Releasing**: the file is deleted if it still holds this run's token.

What it cannot do (see ``docs/RELIABILITY.md``): it relies on ``O_EXCL`` create and atomic
``rename`` (true on local POSIX filesystems and NFSv3+; not on some object-store or FUSE mounts);
"same host" is decided by hostname and boot id, so containers that share a hostname, a boot id
and the work directory but not a PID namespace can see each other's live PIDs as gone; across
hosts it trusts wall clocks to agree to well within the stale timeout; a holder that loses the
lock notices within one heartbeat interval, not at once.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from absl import logging

__all__ = [
    "LOCK_FILE",
    "WorkdirLock",
    "WorkdirLockedError",
    "WorkdirLockLostError",
    "WorkdirNotWritableError",
    "lock_holder",
    "lock_settings",
]

LOCK_FILE = "writer.lock"
HEARTBEAT_ENV, STALE_ENV = "UL_JAX_LOCK_HEARTBEAT_S", "UL_JAX_LOCK_STALE_S"
DEFAULT_HEARTBEAT_S, DEFAULT_STALE_S = 30.0, 300.0
CREATE_GRACE_S = 10.0  # an unparsable lock (or take-over) file younger than this is being written

_LIVE_TOKENS: set[str] = set()  # tokens of the locks this process holds now


class WorkdirLockedError(RuntimeError):
    """Another live run holds the work directory's lock. Attributes: ``path``, ``holder``."""

    def __init__(self, message: str, path: Path | None = None, holder: dict | None = None):
        super().__init__(message)
        self.path, self.holder = path, holder


class WorkdirLockLostError(RuntimeError):
    """This run's lock was taken over by another run (this run had been judged stale)."""


class WorkdirNotWritableError(PermissionError):
    """The work directory (or the parent it must be created in) cannot be written."""


def lock_settings(environ=os.environ) -> tuple[float, float]:
    """``(heartbeat_s, stale_s)`` from ``UL_JAX_LOCK_HEARTBEAT_S`` / ``UL_JAX_LOCK_STALE_S``.

    Raises:
      ValueError: a value that is not a number > 0, or a stale timeout not above two heartbeats.
    """
    out = []
    for env, default in ((HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S), (STALE_ENV, DEFAULT_STALE_S)):
        raw = environ.get(env, "")
        try:
            value = float(raw) if raw else default
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise ValueError(f"{env} must be a number of seconds > 0; got {env}={raw!r}")
        out.append(value)
    if out[1] <= 2 * out[0]:
        raise ValueError(
            f"{STALE_ENV}={out[1]:g} must exceed two heartbeats ({HEARTBEAT_ENV}={out[0]:g})"
        )
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------
# the holder's identity
# ---------------------------------------------------------------------------------------------
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start ticks since boot)`` of ``pid`` from ``/proc`` (``None`` elsewhere)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # after "pid (comm)": state is field 3
    try:
        return fields[0], int(fields[19])  # starttime is field 22
    except (IndexError, ValueError):
        return None


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _new_record(token: str, heartbeat_s: float, stale_s: float) -> dict[str, Any]:
    now, stat = time.time(), _proc_stat(os.getpid())
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_time": _utc(now),
        "started": now,
        "heartbeat": now,
        "heartbeat_s": heartbeat_s,
        "stale_s": stale_s,
        "boot_id": _boot_id(),
        "pid_start_ticks": stat[1] if stat else None,
        "command": " ".join(sys.argv)[:1000],
        "token": token,
    }


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=1) + "\n").encode()


def _read(path: Path) -> tuple[bytes | None, dict | None, float]:
    """``(raw bytes, parsed record or None, mtime)``; ``(None, None, 0)`` if there is no file."""
    try:
        with open(path, "rb") as f:
            raw, mtime = f.read(), os.fstat(f.fileno()).st_mtime
    except FileNotFoundError:
        return None, None, 0.0
    try:
        record = json.loads(raw)
        if not (
            isinstance(record, dict)
            and isinstance(record.get("pid"), int)
            and record["pid"] > 0
            and isinstance(record.get("host"), str)
            and isinstance(record.get("heartbeat"), (int, float))
        ):
            record = None
    except (ValueError, UnicodeDecodeError):
        record = None
    return raw, record, mtime


def _describe(record: dict | None) -> str:
    if record is None:
        return "an unreadable lock file"
    return f"host {record['host']}, PID {record['pid']}, started {record.get('start_time', '?')}"


def _stale_reason(record: dict | None, mtime: float, stale_s: float) -> str | None:
    """Why the holder is certainly gone (``None``: it may be alive)."""
    now = time.time()
    if record is None:
        age = now - mtime
        return (
            f"the lock file cannot be parsed and is {age:.0f} s old"
            if age > CREATE_GRACE_S
            else None
        )
    pid = record["pid"]
    same_host = record["host"] == socket.gethostname()
    boot = record.get("boot_id") or ""
    if same_host and boot and _boot_id() and boot != _boot_id():
        return "this host was rebooted since"
    if same_host:
        if pid == os.getpid():
            return None if record.get("token") in _LIVE_TOKENS else "left by this process"
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"PID {pid} is no longer running on this host"
        except PermissionError:
            pass  # alive, another user's
        stat = _proc_stat(pid)
        if stat is not None:
            if stat[0] in ("Z", "X"):
                return f"PID {pid} has exited (a zombie)"
            ticks = record.get("pid_start_ticks")
            if isinstance(ticks, int) and stat[1] != ticks:
                return f"PID {pid} now belongs to another process"
        return None
    beat = max(float(record["heartbeat"]), mtime)
    if now - beat > stale_s:
        return f"its last heartbeat is {now - beat:.0f} s old (limit {stale_s:g} s)"
    return None


def lock_holder(workdir: str | Path, stale_s: float | None = None) -> dict | None:
    """The lock record (``host``, ``pid``, ``start_time``, ``started``, ...) of the run that holds
    ``WORKDIR/writer.lock`` now, or ``None`` when there is no lock or its holder is certainly gone
    (the take-over rules of the module docstring). Reads only; never takes or removes a lock."""
    _, record, mtime = _read(Path(workdir) / LOCK_FILE)
    if record is None:
        return None
    if stale_s is None:
        stale_s = lock_settings()[1]
    return None if _stale_reason(record, mtime, stale_s) else record


def _write_replace(path: Path, record: dict[str, Any]) -> None:
    """Replaces ``path`` with a complete file holding ``record`` (atomic ``rename``)."""
    tmp = path.with_name(f"{path.name}.{record['token']}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, _encode(record))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _create(path: Path, record: dict[str, Any]) -> None:
    """Creates ``path`` holding ``record``; ``FileExistsError`` if it exists (``O_EXCL``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, _encode(record))  # one small write: readers see it whole in practice
        os.fsync(fd)
    finally:
        os.close(fd)


def _not_writable(path: Path, e: OSError) -> WorkdirNotWritableError:
    return WorkdirNotWritableError(
        f"--workdir {path.parent} is not writable ({e.strerror}): a run writes its lock, "
        "checkpoints and metrics there; fix its permissions or use another --workdir"
    )


# ---------------------------------------------------------------------------------------------
class WorkdirLock:
    """The single-writer lock of a work directory (see the module docstring).

    Use :meth:`acquire`; call :meth:`check` before writing (raises once the lock was lost) and
    :meth:`release` at the end (idempotent).
    """

    def __init__(self, path: Path, record: dict[str, Any], heartbeat_s: float):
        self.path, self.record, self.heartbeat_s = path, record, heartbeat_s
        self.lost: str | None = None
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._warned = False
        _LIVE_TOKENS.add(record["token"])
        self._thread = threading.Thread(
            target=self._beat, name=f"ul_jax-lock-heartbeat-{path.parent.name}", daemon=True
        )
        self._thread.start()

    @property
    def token(self) -> str:
        return self.record["token"]

    @classmethod
    def acquire(
        cls,
        workdir: str | os.PathLike,
        heartbeat_s: float | None = None,
        stale_s: float | None = None,
    ) -> WorkdirLock:
        """Takes ``workdir/writer.lock`` (``workdir`` must exist).

        Raises:
          WorkdirLockedError: a live run holds it (one line: host, PID, start time, what to do).
          WorkdirNotWritableError: the lock file cannot be created (read-only directory).
        """
        env_beat, env_stale = lock_settings()
        heartbeat_s = env_beat if heartbeat_s is None else heartbeat_s
        stale_s = env_stale if stale_s is None else stale_s
        path = Path(workdir).absolute() / LOCK_FILE
        for _ in range(200):
            record = _new_record(uuid.uuid4().hex, heartbeat_s, stale_s)
            try:
                _create(path, record)
                return cls(path, record, heartbeat_s)
            except FileExistsError:
                pass
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise _not_writable(path, e) from None
                raise
            raw, holder, mtime = _read(path)
            if raw is None:
                continue  # released meanwhile: try to create it again
            reason = _stale_reason(holder, mtime, stale_s)
            if reason is None:
                raise _locked_error(path, holder, mtime, stale_s)
            try:
                taken = _take_over(path, raw, record)
            except OSError as e:
                if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise _not_writable(path, e) from None
                raise
            if taken:
                logging.warning(
                    "taking over the stale lock %s of %s: %s", path, _describe(holder), reason
                )
                for tmp in path.parent.glob(f"{path.name}.*.tmp"):  # of dead holders and takers
                    if tmp.name != f"{path.name}.{record['token']}.tmp":
                        with contextlib.suppress(OSError):
                            tmp.unlink()
                return cls(path, record, heartbeat_s)
            time.sleep(0.02)  # another launch is taking it over: look again
        raise WorkdirLockedError(
            f"--workdir {path.parent} is contended: could not take {path} (other launches keep "
            "taking it); use one launch per work directory",
            path,
        )

    def check(self) -> None:
        """Raises :class:`WorkdirLockLostError` if another run has taken the lock over."""
        if self.lost is not None:
            raise WorkdirLockLostError(self.lost)

    def refresh(self) -> None:
        """Writes a new heartbeat (or records that the lock was lost)."""
        with self._mutex:
            if self.lost is not None or self._stop.is_set():
                return
            try:
                raw, holder, _ = _read(self.path)
                self.record["heartbeat"] = time.time()
                if raw is None:  # deleted by hand while this run holds it: re-create it
                    try:
                        _create(self.path, self.record)
                        logging.warning("lock file %s was deleted; re-created it", self.path)
                    except FileExistsError:
                        pass  # someone else created it: the next beat reads who
                    return
                if holder is None or holder.get("token") != self.token:
                    self.lost = (
                        f"lost the lock {self.path}: it now names {_describe(holder)}, which took "
                        "it over as stale (this run's heartbeat was too old); stopping before "
                        "writing anything more. Check that only one run uses this --workdir"
                    )
                    logging.error("%s", self.lost)
                    return
                _write_replace(self.path, self.record)
            except OSError as e:  # e.g. a full disk: keep the old heartbeat, try again later
                if not self._warned:
                    logging.warning("cannot refresh the lock %s: %s", self.path, e)
                    self._warned = True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self.refresh()

    def release(self) -> None:
        """Stops the heartbeat and deletes the lock file if it still names this run."""
        if self._stop.is_set():
            return
        with self._mutex:
            self._stop.set()
        self._thread.join()
        _LIVE_TOKENS.discard(self.token)
        _, holder, _ = _read(self.path)
        if holder is not None and holder.get("token") == self.token:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class NoLock:
    """What processes other than 0 hold (process 0 holds the work directory's lock)."""

    lost = None

    def check(self) -> None:
        pass

    def release(self) -> None:
        pass


def _take_over(path: Path, seen: bytes, record: dict[str, Any]) -> bool:
    """Replaces the stale lock ``seen`` by ``record``; ``False`` if the lock changed meanwhile or
    another launch is taking it over right now."""
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if _guard_abandoned(guard):  # left by a taker killed mid-way
            with contextlib.suppress(FileNotFoundError):
                guard.unlink()
        return False
    try:
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        os.close(fd)
        raw, _, _ = _read(path)
        if raw != seen:
            return False
        _write_replace(path, record)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()


def _guard_abandoned(guard: Path) -> bool:
    """The take-over file ``guard`` was left by a launch that died: its PID is gone (same host),
    or it is older than :data:`CREATE_GRACE_S`."""
    try:
        text, age = guard.read_text(), time.time() - guard.stat().st_mtime
    except FileNotFoundError:
        return False
    host, _, pid = text.strip().partition(" ")
    if host == socket.gethostname() and pid.isdigit() and int(pid) > 0:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return age > CREATE_GRACE_S


def _locked_error(path: Path, holder: dict | None, mtime: float, stale_s: float):
    workdir = path.parent
    if holder is None:
        return WorkdirLockedError(
            f"--workdir {workdir} is being locked by another launch right now ({path} is being "
            "written); use one launch per work directory",
            path,
        )
    age = max(0.0, time.time() - max(float(holder["heartbeat"]), mtime))
    who = (
        f"--workdir {workdir} is in use by another run: {_describe(holder)} (lock file {path}, "
        f"last heartbeat {age:.0f} s ago)"
    )
    if holder["host"] == socket.gethostname():
        advice = f"Wait for it to end or stop it (kill {holder['pid']}), or use another --workdir"
    else:
        advice = (
            "Wait for it to end or stop it, or use another --workdir; the lock is taken over "
            f"once its heartbeat is older than {stale_s:g} s ({STALE_ENV})"
        )
    return WorkdirLockedError(f"{who}. {advice}", path, holder)
