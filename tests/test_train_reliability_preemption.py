"""Preemption safety and determinism of ``python -m launch.train`` in real processes.

* two fresh processes of the same config and seed end bit-identical (parameters, optimizer
  state, BatchNorm statistics, every metrics.jsonl number);
* ``SIGKILL`` after a checkpoint, mid-way through the next interval, then a rerun with the same
  work directory: bit-identical to the uninterrupted run, every log step exactly once;
* ``SIGTERM`` (preemption notice): a checkpoint of the current step, exit code 75, and a rerun
  ends bit-identical too.

The runs: digits, ResNet-8 at width 1/4 on 8×8 images, 300 steps, checkpoints every 100 steps and
log lines every 7 (so checkpoints fall mid-way through a log interval: the resumed log line must
still average the steps since the previous line). The reference and the determinism twin compile
independently; the killed runs reuse the reference's persistent compilation cache (same
executables, faster start)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from ul_jax.train import read_jsonl, restore_checkpoint
from ul_jax.train.checkpoint import checkpoint_steps

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
TOTAL, CKPT_EVERY, LOG_EVERY, EVAL_EVERY = 300, 100, 7, 150
OVERRIDES = [
    "--config.data.image_size=8",
    "--config.data.crop_padding=1",
    "--config.model.width_multiplier=0.25",
    "--config.batch_size=64",
    "--config.eval_batch_size=128",
    f"--config.num_train_steps={TOTAL}",
    f"--config.log_every={LOG_EVERY}",
    f"--config.eval_every={EVAL_EVERY}",
    f"--config.checkpoint_every={CKPT_EVERY}",
    "--config.keep_checkpoints=5",
]
# metrics.jsonl lines: train logs every LOG_EVERY steps, evaluations every EVAL_EVERY, the end
LOG_STEPS = sorted(
    set(range(LOG_EVERY, TOTAL + 1, LOG_EVERY))
    | set(range(EVAL_EVERY, TOTAL + 1, EVAL_EVERY))
    | {TOTAL}
)
EXIT_PREEMPTED = 75


def _cmd(workdir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launch.train",
        "--config",
        "configs/digits.py:ul_pal",
        "--workdir",
        str(workdir),
        *OVERRIDES,
    ]


def _env(cache: Path | None) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    if cache is not None:
        env.update(
            JAX_COMPILATION_CACHE_DIR=str(cache),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
    return env


def _start(workdir: Path, cache: Path | None) -> subprocess.Popen:
    return subprocess.Popen(
        _cmd(workdir),
        cwd=REPO,
        env=_env(cache),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _committed_steps(workdir: Path) -> list[int]:
    return checkpoint_steps(workdir)


def _logged_steps(workdir: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(workdir / "metrics.jsonl")]


def _strip_perf(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _assert_same_run(a: Path, b: Path):
    """Bit-identical final train states and identical metrics.jsonl numbers."""
    _, sa, _ = restore_checkpoint(a)
    _, sb, _ = restore_checkpoint(b)
    assert int(sa.step) == int(sb.step) == TOTAL
    for name in ("params", "batch_stats", "opt_state", "prototypes"):
        la = jax.tree_util.tree_leaves_with_path(getattr(sa, name))
        lb = jax.tree_util.tree_leaves_with_path(getattr(sb, name))
        assert [p for p, _ in la] == [p for p, _ in lb]
        for (path, x), (_, y) in zip(la, lb):
            assert np.array_equal(np.asarray(x), np.asarray(y)), (name, jax.tree_util.keystr(path))
    ra, rb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == LOG_STEPS  # once each
    assert _strip_perf(ra) == _strip_perf(rb)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Two uninterrupted runs in fresh processes, started together and compiled independently;
    the first fills the compilation cache the interrupted runs use."""
    root = tmp_path_factory.mktemp("preempt")
    cache = root / "xla_cache"
    runs = {"a": _start(root / "a", cache), "b": _start(root / "b", None)}
    for name, proc in runs.items():
        rc, err = _finish(proc)
        assert rc == 0, f"run {name}: {err[-3000:]}"
    assert any(cache.iterdir())
    return root / "a", root / "b", cache


def test_same_config_and_seed_give_bit_identical_runs_in_two_processes(reference):
    a, b, _ = reference
    _assert_same_run(a, b)
    assert _committed_steps(a) == [100, 200, 300]


def _wait_for(
    proc: subprocess.Popen, workdir: Path, ckpt: int, min_logged: int, timeout: float = 240
) -> int:
    """Polls until checkpoint ``ckpt`` is committed and a metrics line at step >= min_logged
    exists; returns that line's step."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (rc {proc.returncode}) before it could be interrupted: "
                f"{proc.stderr.read()[-3000:]}"
            )
        if (workdir / "checkpoints" / str(ckpt)).is_dir():
            steps = _logged_steps(workdir)
            if steps and steps[-1] >= min_logged:
                return steps[-1]
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"no checkpoint {ckpt} and metrics line >= {min_logged} after {timeout} s")


def test_sigkill_mid_interval_then_rerun_is_bit_identical(reference, tmp_path):
    ref, _, cache = reference
    work = tmp_path / "killed"
    proc = _start(work, cache)
    seen = _wait_for(proc, work, CKPT_EVERY, CKPT_EVERY + LOG_EVERY)
    proc.send_signal(signal.SIGKILL)
    rc, _ = _finish(proc)
    assert rc == -signal.SIGKILL
    committed, logged = _committed_steps(work), _logged_steps(work)
    # killed after a checkpoint, mid-way through the next interval: lines past the last
    # checkpoint exist (they must be dropped and rewritten), the run did not finish
    assert committed and committed[-1] < logged[-1] < TOTAL, (committed, logged[-3:])
    assert logged[-1] >= seen > CKPT_EVERY
    resume_from = committed[-1]

    rc, err = _finish(_start(work, cache))
    assert rc == 0, err[-3000:]
    assert f"resumed from {work / 'checkpoints' / str(resume_from)} at step {resume_from}" in err
    _assert_same_run(ref, work)


def test_sigterm_saves_current_step_exits_75_and_rerun_is_bit_identical(reference, tmp_path):
    ref, _, cache = reference
    work = tmp_path / "preempted"
    proc = _start(work, cache)
    _wait_for(proc, work, CKPT_EVERY, CKPT_EVERY + 2 * LOG_EVERY)
    proc.send_signal(signal.SIGTERM)
    rc, err = _finish(proc, timeout=120)
    assert rc == EXIT_PREEMPTED, err[-3000:]
    line = next(ln for ln in err.splitlines() if "preempted (SIGTERM) at step" in ln)
    step = int(line.split("preempted (SIGTERM) at step ")[1].split()[0])
    assert CKPT_EVERY < step < TOTAL
    # the checkpoint of that very step was committed (no orbax temporary directory is left)
    assert _committed_steps(work)[-1] == step
    assert not [p for p in (work / "checkpoints").iterdir() if "tmp" in p.name]
    assert f"saved checkpoint {work / 'checkpoints' / str(step)}" in line
    assert "exiting with code 75" in err
    logged = _logged_steps(work)
    assert logged == [s for s in LOG_STEPS if s <= step]  # flushed, nothing past the step
    meta = json.loads((work / "checkpoints" / str(step) / "_CHECKPOINT_METADATA").read_text())
    carried = meta["custom_metadata"]["ul_jax"]["extra"]["interval"]
    assert len(carried) == step % LOG_EVERY  # the steps since the last train log line travel along

    rc, err = _finish(_start(work, cache))
    assert rc == 0, err[-3000:]
    assert f"resumed from {work / 'checkpoints' / str(step)} at step {step}" in err
    _assert_same_run(ref, work)


def test_sigterm_during_start_up_stops_before_training_and_stays_set(tmp_path):
    """In-process: a real SIGTERM, sent as soon as the loop's handler is installed (during data
    loading and compilation), stops the run before its first step; the notice stays set for the
    process (a later call returns at once); the previous handler is restored after each call."""
    import threading

    from helpers import tiny_config

    from ul_jax.train import preemption, train_and_evaluate

    original = signal.getsignal(signal.SIGTERM)

    def send_when_installed():
        t0 = time.monotonic()
        while signal.getsignal(signal.SIGTERM) is original and time.monotonic() - t0 < 60:
            time.sleep(0.0005)
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send_when_installed)
    sender.start()
    try:
        out = train_and_evaluate(tiny_config(), tmp_path / "a")
        sender.join()
        assert out == {"step": 0, "preempted": True}
        assert signal.getsignal(signal.SIGTERM) is original
        assert not _committed_steps(tmp_path / "a") and not _logged_steps(tmp_path / "a")
        assert train_and_evaluate(tiny_config(), tmp_path / "b") == {"step": 0, "preempted": True}
        assert signal.getsignal(signal.SIGTERM) is original
    finally:
        sender.join()
        preemption.PreemptionWatch.received = False  # the test process goes on
