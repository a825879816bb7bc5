"""Faults of shared clusters around the work directory (docs/RELIABILITY.md §7):

* one writer per work directory: a second launch fails at once naming the holder; a lock left by
  a killed run (dead PID on this host, old heartbeat of another host, ...) is taken over and the
  take-over logged; concurrent launches racing for a free or a stale lock: exactly one wins; a
  run whose lock was taken over stops; the lock is released at the end, on an error and after
  ``SIGTERM``;
* a full disk while a checkpoint is written (a write hook raising ``ENOSPC`` inside orbax's
  background commit; a real tmpfs too where it can be mounted): one line naming the checkpoint
  and the space needed, the previous checkpoint usable, a rerun with space resumes from it and
  ends bit-identical to an uninterrupted run;
* a work directory that is a file, under a file, under a read-only parent, or read-only: a clear
  error before any data is loaded or anything compiled, and nothing written.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _faults import WINDOW_DIR_ENV, WINDOW_ENV, read_only
from helpers import TINY_CLI_OVERRIDES, tiny_config

from ul_jax.train import lock as ullock
from ul_jax.train import read_jsonl, restore_checkpoint, train_and_evaluate
from ul_jax.train.checkpoint import CheckpointDiskFullError, checkpoint_steps
from ul_jax.train.lock import (
    LOCK_FILE,
    WorkdirLock,
    WorkdirLockedError,
    WorkdirLockLostError,
    WorkdirNotWritableError,
)

REPO = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning"),
]


@pytest.fixture
def absl_warnings(caplog):
    caplog.set_level(logging.WARNING, logger="absl")
    return caplog


def _record(**fields) -> dict:
    now = time.time()
    base = {
        "host": HOST,
        "pid": os.getpid(),
        "start_time": "2026-01-01 00:00:00 UTC",
        "started": now,
        "heartbeat": now,
        "token": "f" * 32,
    }
    return {**base, **fields}


def _write_lock(workdir: Path, record: dict | bytes) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    path.write_bytes(record if isinstance(record, bytes) else json.dumps(record).encode())
    if isinstance(record, dict):  # the file was last written at its heartbeat
        os.utime(path, (record["heartbeat"], record["heartbeat"]))
    return path


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def no_compile(monkeypatch):
    """Fails the test if training gets as far as loading data or compiling."""
    from ul_jax.train import loop

    def forbidden(*a, **kw):
        raise AssertionError("got past the work directory checks")

    monkeypatch.setattr(loop, "load_train_data", forbidden)
    monkeypatch.setattr(loop, "compile_run", forbidden)


# ---------------------------------------------------------------------------------------------
# the lock
# ---------------------------------------------------------------------------------------------
def test_a_live_holder_refuses_a_second_run_before_anything_is_written(tmp_path, no_compile):
    work = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ticks = ullock._proc_stat(holder.pid)
        path = _write_lock(
            work, _record(pid=holder.pid, pid_start_ticks=ticks[1] if ticks else None)
        )
        before = path.read_bytes()
        with pytest.raises(WorkdirLockedError) as e:
            train_and_evaluate(tiny_config(), work)
        msg = str(e.value)
        assert "\n" not in msg
        assert msg.startswith(
            f"--workdir {work} is in use by another run: host {HOST}, PID {holder.pid}, "
            f"started 2026-01-01 00:00:00 UTC (lock file {path}, last heartbeat "
        )
        assert msg.endswith(
            f"Wait for it to end or stop it (kill {holder.pid}), or use another --workdir"
        )
        assert path.read_bytes() == before  # not touched, not released by the refused run
        assert sorted(p.name for p in work.iterdir()) == [LOCK_FILE]  # nothing else written
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_of_another_host_is_held_until_its_heartbeat_is_stale(tmp_path, monkeypatch):
    work = tmp_path / "run"
    _write_lock(work, _record(host="node-b", pid=4242, heartbeat=time.time() - 100))
    with pytest.raises(WorkdirLockedError) as e:
        WorkdirLock.acquire(work, stale_s=300)
    assert "host node-b, PID 4242" in str(e.value)
    assert "the lock is taken over once its heartbeat is older than 300 s" in str(e.value)
    assert "UL_JAX_LOCK_STALE_S" in str(e.value)
    monkeypatch.setenv("UL_JAX_LOCK_STALE_S", "90")
    with WorkdirLock.acquire(work) as lk:  # 100 s > 90 s: stale
        assert lk.record["host"] == HOST and lk.record["pid"] == os.getpid()


@pytest.mark.parametrize(
    "case",
    ["dead_pid", "zombie", "pid_reused", "rebooted", "other_host_old", "unreadable_old", "leaked"],
)
def test_a_stale_lock_is_taken_over_and_the_take_over_logged(tmp_path, case, absl_warnings):
    work = tmp_path / "run"
    zombie = None
    if case == "dead_pid":
        rec, why = _record(pid=_dead_pid()), "is no longer running on this host"
    elif case == "zombie":
        zombie = subprocess.Popen([sys.executable, "-c", "pass"])
        while ullock._proc_stat(zombie.pid)[0] != "Z":  # exited, not yet reaped
            time.sleep(0.01)
        rec, why = _record(pid=zombie.pid), "has exited (a zombie)"
    elif case == "pid_reused":  # our parent is alive, but started at other ticks
        rec, why = _record(pid=os.getppid(), pid_start_ticks=1), "now belongs to another process"
    elif case == "rebooted":
        rec, why = _record(pid=os.getppid(), boot_id="another-boot"), "rebooted since"
    elif case == "other_host_old":
        rec, why = _record(host="node-b", heartbeat=time.time() - 1000), "s old (limit 300 s)"
    elif case == "unreadable_old":
        rec, why = b'{"host": "no', "cannot be parsed"
    else:  # a lock of this very process that no live WorkdirLock holds
        rec, why = _record(), "left by this process"
    path = _write_lock(work, rec)
    if case == "unreadable_old":
        os.utime(path, (time.time() - 60, time.time() - 60))
    try:
        with WorkdirLock.acquire(work, stale_s=300) as lk:
            held = json.loads(path.read_text())
            assert held["token"] == lk.token and held["pid"] == os.getpid()
            assert held["host"] == HOST and held["start_time"].endswith(" UTC")
            assert not (work / (LOCK_FILE + ".takeover")).exists()
        assert not path.exists()  # released
    finally:
        if zombie is not None:
            zombie.wait()
    msgs = [r.getMessage() for r in absl_warnings.records]
    line = next(m for m in msgs if m.startswith("taking over the stale lock"))
    assert str(path) in line and why in line


def test_unreadable_young_lock_is_being_created_not_stale(tmp_path):
    _write_lock(tmp_path / "run", b"")
    with pytest.raises(WorkdirLockedError, match="is being locked by another launch right now"):
        WorkdirLock.acquire(tmp_path / "run")


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with WorkdirLock.acquire(tmp_path) as first:
        with pytest.raises(WorkdirLockedError, match=f"PID {os.getpid()}"):
            WorkdirLock.acquire(tmp_path)
        first.check()
    assert not (tmp_path / LOCK_FILE).exists()


def test_heartbeat_is_refreshed_and_a_taken_over_lock_is_noticed(tmp_path):
    lk = WorkdirLock.acquire(tmp_path, heartbeat_s=0.05, stale_s=1)
    path = tmp_path / LOCK_FILE
    first = json.loads(path.read_text())["heartbeat"]
    t0 = time.monotonic()
    while json.loads(path.read_text())["heartbeat"] == first and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    assert json.loads(path.read_text())["heartbeat"] > first
    lk.check()
    other = _record(host="node-b", pid=4242, token="0" * 32)  # another run took it over
    tmp = tmp_path / "other"
    tmp.write_text(json.dumps(other))
    os.replace(tmp, path)
    t0 = time.monotonic()
    while lk.lost is None and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    with pytest.raises(WorkdirLockLostError, match="it now names host node-b, PID 4242"):
        lk.check()
    lk.release()
    assert json.loads(path.read_text())["token"] == "0" * 32  # the new holder's lock is kept


def test_a_run_that_lost_its_lock_stops_before_its_next_write(tmp_path, monkeypatch):
    """A run whose lock another run took over (e.g. this one was frozen longer than the stale
    timeout) stops at its next log/eval/checkpoint step without writing it."""
    from ul_jax.train import loop

    real = loop._Loop.run

    def run(self, state, start, p):
        self.lock.lost = "lost the lock (test)"
        return real(self, state, start, p)

    monkeypatch.setattr(loop._Loop, "run", run)
    work = tmp_path / "run"
    with pytest.raises(WorkdirLockLostError, match="lost the lock"):
        train_and_evaluate(tiny_config(), work)
    assert read_jsonl(work / "metrics.jsonl") == [] and checkpoint_steps(work) == []


_RACER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("ul_lock", sys.argv[1])
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
start = float(sys.argv[3])
time.sleep(max(0.0, start - time.time() - 0.05))
while time.time() < start:
    pass
try:
    lk = m.WorkdirLock.acquire(sys.argv[2], heartbeat_s=0.05, stale_s=1)
except m.WorkdirLockedError as e:
    print("LOCKED", e, flush=True)
else:
    print("WON", lk.token, flush=True)
    time.sleep(8)  # longer than any racer can lag behind
    lk.release()
"""


@pytest.mark.parametrize("stale", [False, True], ids=["free", "stale"])
def test_concurrent_launches_exactly_one_takes_the_lock(tmp_path, stale):
    work = tmp_path / "run"
    work.mkdir()
    if stale:
        _write_lock(work, _record(pid=_dead_pid()))
    start = time.time() + 3  # every racer is imported and waiting by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, ullock.__file__, str(work), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=60) for p in racers]
    firsts = [o.strip().split(" ")[0] for o, _ in outs]
    assert sorted(firsts) == ["LOCKED"] * 5 + ["WON"], outs
    assert not (work / LOCK_FILE).exists()  # the winner released it
    assert sorted(p.name for p in work.iterdir()) == []  # no take-over or temporary file left


# ---------------------------------------------------------------------------------------------
# the lock through the CLI: a second launch, SIGTERM, resume
# ---------------------------------------------------------------------------------------------
def _cli(work: Path, window: Path | None = None, spec: str = "", cache: Path | None = None):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if cache is not None:
        env.update(
            JAX_COMPILATION_CACHE_DIR=str(cache),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    if window is not None:
        window.mkdir(parents=True, exist_ok=True)
        env.update({WINDOW_ENV: spec, WINDOW_DIR_ENV: str(window)})
    args = ["--config", "configs/digits.py:ul_pal", "--workdir", str(work), *TINY_CLI_OVERRIDES]
    return subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "_faults.py"), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_entered(proc: subprocess.Popen, window: Path, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while not (window / "entered").exists():
        if proc.poll() is not None:
            pytest.fail(f"ended (rc {proc.returncode}) first: {proc.stderr.read()[-3000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the window was never entered")
        time.sleep(0.01)


def test_cli_second_launch_fails_at_once_and_sigterm_releases_the_lock(tmp_path):
    work, window, cache = tmp_path / "run", tmp_path / "window", tmp_path / "xla_cache"
    first = _cli(work, window, "eval:6", cache)  # holds in the evaluation of step 6
    try:
        _wait_entered(first, window)
        logged = read_jsonl(work / "metrics.jsonl")
        second = _cli(work, cache=cache)
        _, err = second.communicate(timeout=300)
        assert second.returncode == 1, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert "Traceback" not in err
        assert (
            f"WorkdirLockedError: --workdir {work} is in use by another run: host {HOST}, " in last
        )
        assert f"PID {first.pid}, started " in last and " UTC (lock file " in last
        assert f"(kill {first.pid}), or use another --workdir" in last
        assert read_jsonl(work / "metrics.jsonl") == logged  # the refused run wrote nothing
        _, state, _ = restore_checkpoint(work)  # readers (evaluation) need no lock
        assert int(state.step) == 4 and [r["step"] for r in logged] == [2, 4]
        first.send_signal(signal.SIGTERM)  # while it waits in the window
        (window / "release").touch()
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 75, err[-3000:]
    assert not (work / LOCK_FILE).exists()  # released on the SIGTERM exit path
    third = _cli(work, cache=cache)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err[-3000:]
    assert "resumed from" in err and "taking over" not in err
    assert [r["step"] for r in read_jsonl(work / "metrics.jsonl")] == [2, 4, 6, 8, 10, 12]
    assert not (work / LOCK_FILE).exists()


def test_cli_kill_9_leaves_a_stale_lock_that_the_rerun_takes_over(tmp_path):
    work, window = tmp_path / "run", tmp_path / "window"
    first = _cli(work, window, "eval:6")
    _wait_entered(first, window)
    holder = json.loads((work / LOCK_FILE).read_text())
    assert holder["pid"] == first.pid and holder["host"] == HOST
    t0 = time.monotonic()
    while checkpoint_steps(work) != [4] and time.monotonic() - t0 < 60:  # committed in the
        time.sleep(0.01)  # background meanwhile
    first.kill()
    first.wait()
    rerun = _cli(work)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert f"taking over the stale lock {work / LOCK_FILE} of host {HOST}, PID {first.pid}" in err
    assert f"PID {first.pid} is no longer running on this host" in err
    assert f"resumed from {work / 'checkpoints' / '4'} at step 4" in err
    assert not (work / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------------
# a full disk
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    work = tmp_path_factory.mktemp("full_disk") / "reference"
    train_and_evaluate(tiny_config(), work)
    return work


def _strip_perf(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _assert_same_final(a: Path, b: Path) -> None:
    _, sa, _ = restore_checkpoint(a)
    _, sb, _ = restore_checkpoint(b)
    la, lb = jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)
    assert len(la) == len(lb) and int(sa.step) == int(sb.step) == 12
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))
    ra, rb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert [r["step"] for r in rb] == [2, 4, 6, 8, 10, 12]
    assert _strip_perf(ra) == _strip_perf(rb)


def _state_bytes(work: Path) -> int:
    _, state, _ = restore_checkpoint(work)
    return sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(state))


def _fmt(n: int) -> str:
    from ul_jax.train.checkpoint import _size

    return _size(n)


@pytest.mark.parametrize("failing", [8, 4], ids=["later", "first"])
def test_checkpoint_save_out_of_space_stops_naming_path_and_size_then_resumes(
    tmp_path, monkeypatch, uninterrupted, failing, absl_warnings
):
    """ENOSPC raised inside orbax's background commit of a checkpoint (where a real full disk
    surfaces too: orbax reports it at the next save or wait): a later one, or the first."""
    from orbax.checkpoint._src.path import atomicity

    real = atomicity.AtomicRenameTemporaryPath.finalize

    async def finalize(self, *a, **kw):
        if self._final_path.name == str(failing):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self._tmp_path))
        return await real(self, *a, **kw)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", finalize)
    work = tmp_path / "run"
    with pytest.raises(CheckpointDiskFullError) as e:
        train_and_evaluate(tiny_config(), work)
    monkeypatch.undo()
    ckpts = work / "checkpoints"
    msg = str(e.value)
    assert "\n" not in msg and e.value.errno == errno.ENOSPC
    assert not [p for p in ckpts.iterdir() if "tmp" in p.name]  # the failed save is cleaned up
    assert not (work / LOCK_FILE).exists()  # released on the error
    head = f"no space left on device writing checkpoint {ckpts / str(failing)}: it needs about "
    if failing == 8:
        du = sum(p.lstat().st_blocks * 512 for p in [ckpts / "4", *(ckpts / "4").rglob("*")])
        assert du > _state_bytes(uninterrupted)  # the arrays plus orbax's files
        assert msg.startswith(f"{head}{_fmt(du)} (the disk usage of checkpoint 4), ")
        assert msg.endswith(
            f" free; the previous checkpoint {ckpts / '4'} is intact: free space and rerun the "
            "same command to resume from it"
        )
        assert checkpoint_steps(work) == [4]
        _, state, _ = restore_checkpoint(work)  # usable: restores, its fingerprint verified
        assert int(state.step) == 4
    else:  # the first checkpoint is written synchronously: the log has not got past it
        assert msg.startswith(
            f"{head}{_fmt(_state_bytes(uninterrupted))} (the train state's arrays), "
        )
        assert msg.endswith(
            " free; no checkpoint had been written yet: free space and rerun the same command "
            "(it starts from step 0)"
        )
        assert checkpoint_steps(work) == []
        assert [r["step"] for r in read_jsonl(work / "metrics.jsonl")] == [2, 4]

    out = train_and_evaluate(tiny_config(), work)  # "space freed": the rerun goes on
    assert out["step"] == 12
    msgs = [r.getMessage() for r in absl_warnings.records]
    if failing == 4:
        assert any("holds no checkpoint" in m and "starting from step 0" in m for m in msgs)
    _assert_same_final(uninterrupted, work)


def test_cli_out_of_space_is_one_line(tmp_path):
    """The CLI prints the error as one line (no traceback) and exits 1; the ENOSPC comes from
    the write of the arrays (TensorStore), as on a real full disk."""
    hook = (
        "import os, sys, runpy\n"
        "sys.path.insert(0, os.getcwd())\n"
        "import orbax.checkpoint as ocp\n"
        "real = ocp.CheckpointManager.save\n"
        "def save(self, step, *a, **kw):\n"
        "    if step == 8:\n"
        "        raise ValueError(\"RESOURCE_EXHAUSTED: Error writing 'params/0': Failed to \"\n"
        '            "write 340468 bytes to file 8: No space left on device "\n'
        "            \"[os_error_code='28']\")\n"
        "    return real(self, step, *a, **kw)\n"
        "ocp.CheckpointManager.save = save\n"
        "sys.argv = ['launch/train.py', *sys.argv[1:]]\n"
        "runpy.run_module('launch.train', run_name='__main__', alter_sys=True)\n"
    )
    work = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    args = ["--config", "configs/digits.py:ul_pal", "--workdir", str(work), *TINY_CLI_OVERRIDES]
    p = subprocess.run(
        [sys.executable, "-c", hook, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert (
        f"CheckpointDiskFullError: no space left on device writing checkpoint "
        f"{work / 'checkpoints' / '8'}: it needs about " in last
    )
    assert f"the previous checkpoint {work / 'checkpoints' / '4'} is intact" in last
    assert not (work / LOCK_FILE).exists()


def _mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def test_a_real_full_tmpfs_then_more_space_resumes(tmp_path, uninterrupted):
    """The same on a real small tmpfs (root only; skipped where it cannot be mounted): the
    checkpoint that does not fit fails with the one-line error, the one before restores, and
    after growing the filesystem the rerun ends bit-identical to the uninterrupted run."""
    mnt = tmp_path / "tmpfs"
    need = _state_bytes(uninterrupted)
    one = sum(p.stat().st_blocks * 512 for p in (uninterrupted / "checkpoints" / "4").rglob("*"))
    if not _mount_tmpfs(mnt, str(2 * one + 96_000)):  # two checkpoints and the logs fit
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        work = mnt / "run"
        c = tiny_config(**{"keep_checkpoints": 5, "tensorboard": False})
        with pytest.raises(CheckpointDiskFullError) as e:
            train_and_evaluate(c, work)
        failed = e.value.path
        assert failed.parent == work / "checkpoints" and e.value.needed > need
        assert failed.name in ("8", "12")  # the first checkpoint fits
        assert e.value.previous == work / "checkpoints" / str(int(failed.name) - 4)
        assert checkpoint_steps(work)[-1] == int(failed.name) - 4
        assert not [p for p in (work / "checkpoints").iterdir() if "tmp" in p.name]
        _, state, _ = restore_checkpoint(work)
        assert int(state.step) == int(failed.name) - 4
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        assert train_and_evaluate(c, work)["step"] == 12
        _, sa, _ = restore_checkpoint(uninterrupted)
        _, sb, _ = restore_checkpoint(work)
        for x, y in zip(jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)):
            assert np.array_equal(np.asarray(x), np.asarray(y))
        rows = read_jsonl(work / "metrics.jsonl")
        assert _strip_perf(rows) == _strip_perf(read_jsonl(uninterrupted / "metrics.jsonl"))
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---------------------------------------------------------------------------------------------
# the work directory path
# ---------------------------------------------------------------------------------------------
def test_workdir_path_errors_come_before_any_compilation(tmp_path, no_compile):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="exists and is not a directory"):
        train_and_evaluate(tiny_config(), tmp_path / "file")
    with pytest.raises(NotADirectoryError) as e:
        train_and_evaluate(tiny_config(), tmp_path / "file" / "sub" / "run")
    assert str(e.value) == (
        f"cannot create --workdir {tmp_path / 'file' / 'sub' / 'run'}: {tmp_path / 'file'} is "
        "a file, not a directory"
    )
    (tmp_path / "ro").mkdir()
    with read_only(tmp_path / "ro"):
        with pytest.raises(WorkdirNotWritableError) as e:
            train_and_evaluate(tiny_config(), tmp_path / "ro" / "missing" / "run")
    assert str(e.value) == (
        f"cannot create --workdir {tmp_path / 'ro' / 'missing' / 'run'}: {tmp_path / 'ro'} is "
        "not writable (Permission denied); create the directory with the right permissions or "
        "use another --workdir"
    )
    assert list((tmp_path / "ro").iterdir()) == []
    (tmp_path / "rw").mkdir()
    with read_only(tmp_path / "rw"):
        with pytest.raises(WorkdirNotWritableError) as e:
            train_and_evaluate(tiny_config(), tmp_path / "rw")
    assert str(e.value) == (
        f"--workdir {tmp_path / 'rw'} is not writable (permission denied): a run writes its "
        "lock, checkpoints and metrics there; fix its permissions or use another --workdir"
    )
    assert list((tmp_path / "rw").iterdir()) == []
    # a missing parent that can be created is created (mkdir -p), and locked
    with pytest.raises(AssertionError, match="got past the work directory checks"):
        train_and_evaluate(tiny_config(), tmp_path / "new" / "parent" / "run")
    assert (tmp_path / "new" / "parent" / "run").is_dir()
    assert not (tmp_path / "new" / "parent" / "run" / LOCK_FILE).exists()  # released


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
def test_a_really_read_only_workdir_without_simulation(tmp_path, no_compile):
    (tmp_path / "rw").mkdir()
    (tmp_path / "rw").chmod(0o500)
    try:
        with pytest.raises(WorkdirNotWritableError, match="is not writable"):
            train_and_evaluate(tiny_config(), tmp_path / "rw")
    finally:
        (tmp_path / "rw").chmod(0o700)


def test_lock_settings_are_checked(monkeypatch):
    monkeypatch.setenv("UL_JAX_LOCK_HEARTBEAT_S", "abc")
    with pytest.raises(ValueError, match="UL_JAX_LOCK_HEARTBEAT_S must be a number"):
        ullock.lock_settings()
    monkeypatch.setenv("UL_JAX_LOCK_HEARTBEAT_S", "60")
    monkeypatch.setenv("UL_JAX_LOCK_STALE_S", "100")
    with pytest.raises(ValueError, match="must exceed two heartbeats"):
        ullock.lock_settings()


@pytest.mark.slow
def test_two_processes_both_stop_when_process_0_cannot_take_the_lock(tmp_path):
    """Multi-process: process 0 is refused the lock (a live holder); process 1 learns it from
    the all-gather and stops too, before compiling — both exit 1 with one line each."""
    work = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        ticks = ullock._proc_stat(holder.pid)
        _write_lock(work, _record(pid=holder.pid, pid_start_ticks=ticks[1] if ticks else None))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        args = ["--config", "configs/digits.py:ul_pal", "--workdir", str(work)]
        procs = []
        for pid in range(2):
            env = {
                **os.environ,
                "JAX_PLATFORMS": "cpu",
                "UL_JAX_DISTRIBUTED": "1",
                "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                "UL_JAX_NUM_PROCESSES": "2",
                "UL_JAX_PROCESS_ID": str(pid),
                "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "launch.train", *args, *TINY_CLI_OVERRIDES],
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        holder.kill()
        holder.wait()
    assert [p.returncode for p in procs] == [1, 1], errs
    lines = [e.strip().splitlines()[-1] for e in errs]
    assert (
        f"WorkdirLockedError: --workdir {work} is in use by another run: host {HOST}, "
        in (lines[0])
    )
    assert f"PID {holder.pid}" in lines[0]
    assert lines[1].endswith(
        f"WorkdirLockedError: process 0 could not take the lock of --workdir {work} (its log "
        "says why)"
    )
    assert sorted(p.name for p in work.iterdir()) == [LOCK_FILE]  # nothing written


@pytest.mark.parametrize("room", [0.5, 1.5])
def test_cli_on_a_real_full_tmpfs_prints_one_line_and_never_hangs(tmp_path, uninterrupted, room):
    """``python -m launch.train`` into a real small tmpfs (skipped where none can be mounted):
    whichever write meets the full disk first — a checkpoint, ``metrics.jsonl``, the TensorBoard
    events — the command ends (no hang: TensorBoard events are written in the caller's thread)
    with the one-line error and no traceback (orbax's background-thread reports and TensorStore's
    'Event loop is closed' callbacks are dropped unless ``--debug``)."""
    mnt = tmp_path / "tmpfs"
    one = sum(p.stat().st_blocks * 512 for p in (uninterrupted / "checkpoints" / "4").rglob("*"))
    if not _mount_tmpfs(mnt, str(int(room * one) + 64_000)):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        env.pop("XLA_FLAGS", None)
        env.pop("UL_JAX_DEBUG", None)
        args = ["--config", "configs/digits.py:ul_pal", "--workdir", str(mnt / "run")]
        p = subprocess.run(
            [sys.executable, "-m", "launch.train", *args, *TINY_CLI_OVERRIDES],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "Event loop is closed" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m launch.train: error: ")
    assert "CheckpointDiskFullError" in last or "No space left on device" in last, last
