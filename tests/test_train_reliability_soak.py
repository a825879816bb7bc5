"""Kill at any moment: the digits run ``SIGKILL``-ed at seeded random moments and restarted each
time ends exactly as an uninterrupted run (docs/RELIABILITY.md §7).

The run: ``python -m launch.train`` on digits (ResNet-8 at width 1/4, 8×8 images), 160 steps,
log lines every 3 steps, evaluations every 10, checkpoints every 4 (the last 2 kept), so
checkpoints fall mid-way through log intervals and old checkpoints are deleted as the run goes.
Each of the ``UL_JAX_SOAK_KILLS`` kills (default 12, each window at least once; seed ``UL_JAX_SOAK_SEED``, default 0) is one
of, in a seeded order:

* ``ckpt``     inside an asynchronous checkpoint save: every file written into orbax's temporary
               directory, not yet renamed (held there by ``tests/_faults.py``);
* ``eval``     during an evaluation of the test set;
* ``jsonl``    half-way through appending a ``metrics.jsonl`` line (a torn line is on disk);
* ``tb``       half-way through handing a log step's scalars to the TensorBoard writer;
* ``takeover`` half-way through taking over the stale lock left by the previous kill;
* ``startup``  a random 0–2 s after the start (imports, data, compilation, lock, restore);
* ``running``  a random 0–30 ms after ``metrics.jsonl`` reaches a random step.

Window targets are drawn near planned positions spread over the run (and past the last committed
checkpoint), so the run progresses between kills but never finishes before the last one. After every kill: the committed checkpoints
never go back, ``metrics.jsonl`` parses (a torn line is skipped by readers) with every step at
most once, and the dead run's lock is left behind — the next start must take it over (the
take-over is logged). At the end: parameters, optimizer state and BatchNorm statistics
bit-identical to the uninterrupted run, ``metrics.jsonl`` equal number for number (``perf/``
timings excepted) with every log step exactly once, the lock released.

Takes ~1.5 min on 2 busy cores with the default 12 kills (marked slow: CI's full run has it);
``UL_JAX_SOAK_KILLS=40`` soaks longer.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _faults import WINDOW_DIR_ENV, WINDOW_ENV

from ul_jax.train import read_jsonl, restore_checkpoint
from ul_jax.train.checkpoint import checkpoint_steps
from ul_jax.train.lock import LOCK_FILE

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOTAL, LOG, EVAL, CKPT, KEEP = 160, 3, 10, 4, 2
OVERRIDES = [
    "--config.data.image_size=8",
    "--config.data.crop_padding=1",
    "--config.model.width_multiplier=0.25",
    "--config.batch_size=64",
    "--config.eval_batch_size=128",
    f"--config.num_train_steps={TOTAL}",
    f"--config.log_every={LOG}",
    f"--config.eval_every={EVAL}",
    f"--config.checkpoint_every={CKPT}",
    f"--config.keep_checkpoints={KEEP}",
]
LOG_STEPS = sorted(set(range(LOG, TOTAL + 1, LOG)) | set(range(EVAL, TOTAL + 1, EVAL)) | {TOTAL})
KILLS = int(os.environ.get("UL_JAX_SOAK_KILLS", "12"))
SEED = int(os.environ.get("UL_JAX_SOAK_SEED", "0"))
# the mix of 12 kills (shuffled copies for more): every window, the riskiest ones twice
MIX = ["ckpt"] * 2 + ["eval"] * 2 + ["jsonl"] * 2 + ["tb"] + ["takeover"] * 2
MIX += ["startup"] + ["running"] * 2


def _start(work: Path, cache: Path, window: Path | None = None, spec: str = ""):
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    env.pop("XLA_FLAGS", None)
    if window is not None:
        window.mkdir(parents=True)
        env.update({WINDOW_ENV: spec, WINDOW_DIR_ENV: str(window)})
    cmd = [sys.executable, str(REPO / "tests" / "_faults.py")]
    cmd += ["--config", "configs/digits.py:ul_pal", "--workdir", str(work), *OVERRIDES]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _strip_perf(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _plan(rng: random.Random) -> list[str]:
    kinds: list[str] = []
    while len(kinds) < KILLS:  # shuffled copies of MIX
        block = list(MIX)
        rng.shuffle(block)
        kinds += block
    kinds = kinds[:KILLS]
    if kinds and kinds[0] == "takeover":  # the first start finds no lock to take over
        j = next((i for i, k in enumerate(kinds) if k != "takeover"), 0)
        kinds[0], kinds[j] = kinds[j], kinds[0]
    return kinds


def _target(kind: str, resume: int, floor: int, rng: random.Random) -> int:
    """A step of ``kind``'s window past the last committed checkpoint ``resume`` and near
    ``floor`` (the kills' planned positions spread them over the run)."""
    lo = max(resume + 1, floor)
    hi = min(lo + 2 * CKPT, TOTAL - 1)  # never the end: the run must not finish
    if kind == "ckpt":
        options = [s for s in range(lo, hi + 1) if s % CKPT == 0]
    elif kind == "eval":
        options = [s for s in range(lo, TOTAL) if s % EVAL == 0][:1]
    elif kind in ("jsonl", "tb"):
        options = [s for s in LOG_STEPS if lo <= s <= hi]
    else:
        options = list(range(lo, hi + 1))
    return rng.choice(options or [hi])


def _wait(proc, until, what: str, timeout: float = 300) -> None:
    t0 = time.monotonic()
    while not until():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}: {_err(proc)}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.002)


def _err(proc) -> str:
    try:
        return proc.stderr.read()[-3000:]
    except ValueError:
        return ""


def test_sigkill_at_random_moments_and_windows_then_rerun_is_bit_identical(tmp_path):
    cache, ref, work = tmp_path / "xla_cache", tmp_path / "reference", tmp_path / "killed"
    t_start = time.monotonic()
    proc = _start(ref, cache)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

    rng = random.Random(SEED)
    history = []
    for i, kind in enumerate(_plan(rng)):
        committed = checkpoint_steps(work)
        resume = committed[-1] if committed else 0
        lock_before = (work / LOCK_FILE).exists()
        if resume >= TOTAL - 3 * CKPT and lock_before:  # keep the end for the final run
            kind = "takeover"
        floor = (i + 1) * (TOTAL - 3 * CKPT) // (KILLS + 1)
        window = tmp_path / f"window{i}"
        if kind in ("startup", "running"):
            proc = _start(work, cache)
            if kind == "startup":
                time.sleep(rng.uniform(0, 2))
                target = -1
            else:
                target = _target(kind, resume, floor, rng)
                _wait(
                    proc,
                    lambda: any(r["step"] >= target for r in read_jsonl(work / "metrics.jsonl")),
                    f"a metrics line at step >= {target}",
                )
                time.sleep(rng.uniform(0, 0.03))
        else:
            target = 0 if kind == "takeover" else _target(kind, resume, floor, rng)
            proc = _start(work, cache, window, f"{kind}:{target}")
            _wait(proc, (window / "entered").exists, f"the {kind} window at step {target}")
            time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != -signal.SIGKILL:  # a startup kill can only come too late
            pytest.fail(f"kill {i} ({kind}): the run ended first (rc {proc.returncode}): {err}")
        history.append((kind, target, resume))

        after = checkpoint_steps(work)
        assert not after or after[-1] >= resume, (kind, committed, after)  # never goes back
        steps = [r["step"] for r in read_jsonl(work / "metrics.jsonl")]  # a reader never fails
        assert steps == sorted(set(steps)), (kind, steps)  # each step at most once
        if kind == "ckpt":  # killed before the commit: only a temporary directory
            assert target not in after
            tmps = [p.name for p in (work / "checkpoints").iterdir() if not p.name.isdigit()]
            assert any(n.startswith(f"{target}.orbax-checkpoint-tmp") for n in tmps), tmps
        if kind == "jsonl":
            text = (work / "metrics.jsonl").read_text()
            assert not text.endswith("\n")  # the torn line is on disk ...
            assert steps[-1] < target  # ... and skipped by readers
        if kind in ("ckpt", "eval", "jsonl", "tb"):
            holder = json.loads((work / LOCK_FILE).read_text())
            assert holder["pid"] == proc.pid  # the dead run's lock is left behind
            if lock_before:
                assert "taking over the stale lock" in err, (kind, err[-3000:])
        if kind == "takeover":  # killed mid take-over: the old lock and the take-over file
            assert json.loads((work / LOCK_FILE).read_text())["pid"] != proc.pid
            assert (work / f"{LOCK_FILE}.takeover").exists()

    lock_before = (work / LOCK_FILE).exists()
    proc = _start(work, cache)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert ("taking over the stale lock" in err) == lock_before
    print(f"\n{KILLS} kills (seed {SEED}) in {time.monotonic() - t_start:.0f} s: {history}")

    _, sa = restore_checkpoint(ref)[:2]
    _, sb = restore_checkpoint(work)[:2]
    assert int(sa.step) == int(sb.step) == TOTAL
    for name in ("params", "batch_stats", "opt_state", "prototypes"):
        la = jax.tree_util.tree_leaves_with_path(getattr(sa, name))
        lb = jax.tree_util.tree_leaves_with_path(getattr(sb, name))
        assert [p for p, _ in la] == [p for p, _ in lb]
        for (path, x), (_, y) in zip(la, lb):
            assert np.array_equal(np.asarray(x), np.asarray(y)), (name, jax.tree_util.keystr(path))
    ra, rb = read_jsonl(ref / "metrics.jsonl"), read_jsonl(work / "metrics.jsonl")
    assert [r["step"] for r in ra] == [r["step"] for r in rb] == LOG_STEPS  # once each
    assert _strip_perf(ra) == _strip_perf(rb)
    assert not [p.name for p in work.iterdir() if p.name.startswith(LOCK_FILE)]  # released
    assert not [p for p in (work / "checkpoints").iterdir() if not p.name.isdigit()]
