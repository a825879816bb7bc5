"""Two processes × two CPU devices on 127.0.0.1 (``jax.distributed`` + gloo collectives), as two
hosts would run ``python -m launch.train``:

* checkpoint and restore: every checkpoint save compares the replicated state of both processes
  (each logs the digest it agreed on); the digests match, and match the restored checkpoint;
* a peer killed with SIGKILL (either one), or frozen with SIGSTOP: the survivor exits non-zero
  within a bounded time (a failed collective: at once; a silent peer: the runtime's heartbeat
  timeout, ``UL_JAX_HEARTBEAT_TIMEOUT_S``) with a message saying a peer died — no hang;
* SIGTERM to one process only: both stop at the same step with one checkpoint, exit 75, and the
  rerun ends bit-identical to an uninterrupted two-process run.

All slow (each launch costs ~10 s of start-up and compilation per process pair)."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ul_jax.train import read_jsonl, restore_checkpoint
from ul_jax.train.checkpoint import fingerprint_digest, state_fingerprint

REPO = Path(__file__).resolve().parents[1]
TOTAL = 100
OVERRIDES = [
    "--config.data.image_size=8",
    "--config.data.crop_padding=1",
    "--config.model.width_multiplier=0.25",
    "--config.batch_size=64",
    "--config.eval_batch_size=128",
    f"--config.num_train_steps={TOTAL}",
    "--config.log_every=5",
    "--config.eval_every=50",
    "--config.checkpoint_every=25",
    "--config.keep_checkpoints=5",
]
HEARTBEAT_S = 10
BOUND_S = 120
DIGEST = re.compile(
    r"checkpoint (\d+): the state is identical on all 2 processes "
    r"\(fingerprint ([0-9a-f]{16})\)"
)

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_pair(workdir: Path, extra=(), cache: Path | None = None) -> list[subprocess.Popen]:
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "launch.train",
        "--config",
        "configs/digits.py:ul_pal",
        "--workdir",
        str(workdir),
        *OVERRIDES,
        *extra,
    ]
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "UL_JAX_DISTRIBUTED": "1",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "UL_JAX_NUM_PROCESSES": "2",
            "UL_JAX_PROCESS_ID": str(pid),
            "UL_JAX_HEARTBEAT_TIMEOUT_S": str(HEARTBEAT_S),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        }
        if cache is not None:
            env.update(
                JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
            )
        procs.append(
            subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
        )
    return procs


def _finish_pair(procs, timeout=300) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, err))
    return out


def _digests(stderr: str) -> dict[int, str]:
    return {int(step): d for step, d in DIGEST.findall(stderr)}


def _wait_for_lines(procs, workdir: Path, n: int, timeout=240):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if any(p.poll() is not None for p in procs):
            errs = [p.stderr.read()[-2000:] for p in procs if p.poll() is not None]
            for p in procs:
                p.kill()
            pytest.fail(f"a process ended before the interruption: {errs}")
        if len(read_jsonl(workdir / "metrics.jsonl")) >= n:
            return
        time.sleep(0.01)
    for p in procs:
        p.kill()
    pytest.fail(f"fewer than {n} metrics lines after {timeout} s")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A two-process run stopped at step 50, then resumed by two new processes to the end."""
    root = tmp_path_factory.mktemp("mp")
    work, cache = root / "ref", root / "xla_cache"
    first = _finish_pair(_start_pair(work, ["--until_step", "50"], cache))
    second = _finish_pair(_start_pair(work, [], cache))
    for rc, err in first + second:
        assert rc == 0, err[-3000:]
    return work, cache, first, second


def test_processes_hold_identical_replicas_through_checkpoint_and_restore(reference):
    work, _, first, second = reference
    d0, d1 = _digests(first[0][1]), _digests(first[1][1])
    assert sorted(d0) == [25, 50] and d0 == d1  # agreed at every save, both sides
    e0, e1 = _digests(second[0][1]), _digests(second[1][1])
    assert sorted(e0) == [75, 100] and e0 == e1
    assert "resumed from" in second[0][1] and "at step 50 of 100" in second[0][1]
    # the digest both processes agreed on at the end is the one of the checkpoint's bytes
    _, state, _ = restore_checkpoint(work)
    assert int(state.step) == TOTAL
    assert fingerprint_digest(state_fingerprint(state))[:16] == e0[TOTAL]
    rows = read_jsonl(work / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(5, TOTAL + 1, 5))  # once each, process 0


@pytest.mark.parametrize("victim", [1, 0], ids=["kill_process_1", "kill_process_0"])
def test_survivor_of_a_killed_peer_exits_within_bounded_time(victim, reference, tmp_path):
    _, cache, _, _ = reference
    work = tmp_path / "run"
    procs = _start_pair(work, cache=cache)
    _wait_for_lines(procs, work, 8)
    procs[victim].send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    survivor = procs[1 - victim]
    try:
        _, err = survivor.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        survivor.kill()
        pytest.fail(f"process {1 - victim} still running {BOUND_S} s after its peer died")
    elapsed = time.monotonic() - t0
    procs[victim].wait()
    assert survivor.returncode != 0
    assert elapsed < BOUND_S
    # either the failed collective (exit 1, our message) or the runtime's heartbeat verdict
    assert (
        "another process probably died" in err
        or "Terminating process because the JAX distributed service detected fatal errors" in err
    ), err[-3000:]


def test_survivor_of_a_frozen_peer_is_stopped_by_the_heartbeat_timeout(reference, tmp_path):
    _, cache, _, _ = reference
    work = tmp_path / "run"
    procs = _start_pair(work, cache=cache)
    _wait_for_lines(procs, work, 8)
    procs[1].send_signal(signal.SIGSTOP)  # alive, sockets open, silent: a hung host
    t0 = time.monotonic()
    try:
        _, err = procs[0].communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        pytest.fail(f"process 0 still running {BOUND_S} s after process 1 froze")
    finally:
        procs[1].kill()
        procs[1].wait()
    elapsed = time.monotonic() - t0
    assert procs[0].returncode != 0
    assert HEARTBEAT_S / 2 < elapsed < BOUND_S
    assert "stopped sending heartbeats" in err or "heartbeat timeout" in err, err[-3000:]


def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_exactly(reference, tmp_path):
    ref, cache, _, _ = reference
    work = tmp_path / "run"
    procs = _start_pair(work, cache=cache)
    _wait_for_lines(procs, work, 7)  # past the checkpoint at step 25
    procs[1].send_signal(signal.SIGTERM)  # the preemption notice reaches one host only
    results = _finish_pair(procs, timeout=BOUND_S)
    steps = []
    for pid, (rc, err) in enumerate(results):
        assert rc == 75, err[-3000:]
        m = re.search(rf"process {pid}/2: preempted at step (\d+), checkpoint written", err)
        assert m, err[-3000:]
        steps.append(int(m.group(1)))
    assert steps[0] == steps[1] and 35 <= steps[0] < TOTAL
    step = steps[0]
    assert f"saved checkpoint {work / 'checkpoints' / str(step)}" in results[0][1]
    assert (work / "checkpoints" / str(step)).is_dir()

    for rc, err in _finish_pair(_start_pair(work, cache=cache)):
        assert rc == 0, err[-3000:]
    _, a, _ = restore_checkpoint(ref)
    _, b, _ = restore_checkpoint(work)
    assert fingerprint_digest(state_fingerprint(a)) == fingerprint_digest(state_fingerprint(b))
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    assert strip(read_jsonl(work / "metrics.jsonl")) == strip(read_jsonl(ref / "metrics.jsonl"))
