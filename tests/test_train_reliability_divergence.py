"""Divergence: the run stops at the first non-finite update with an error naming the step, the
quantities and the last good checkpoint; that checkpoint restores *and resumes* (to the very
state of a run that never diverged, once the cause is removed); the optional skip mode skips up
to N consecutive non-finite updates, exactly, across a resume. The plain unhinged loss of the
digits demo diverging for real, through the CLI, is the slow test at the end.

(test_train_loop.py already checks the error's step / quantities / checkpoint for an injected
infinite learning rate and for UL with lr=1e6; these tests extend it.)"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from ul_jax.train import NonFiniteError, read_jsonl, restore_checkpoint, train_and_evaluate
from ul_jax.train.checkpoint import Checkpointer
from ul_jax.train.setup import build_optimizer_from_config
from ul_jax.train.step import schedule_count

sys.path.insert(0, str(Path(__file__).parent))
from helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


def _strip_perf(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


_TEMPLATE = {}


def _final_state(workdir: Path, step: int | None = None):
    """A checkpoint of ``workdir`` (default: the latest), restored and verified; the state
    template is built once (restore_checkpoint compiles the initializer each call)."""
    if "state" not in _TEMPLATE:
        _TEMPLATE["state"] = restore_checkpoint(workdir)[1]
    with Checkpointer(workdir / "checkpoints") as ck:
        return ck.restore(ck.latest_step() if step is None else step, _TEMPLATE["state"])


def _same_tree(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)
    )


INJECTED = dict(debug_nonfinite_at_step=7)  # the test hook: an infinite lr at step 7


def test_last_good_checkpoint_of_a_diverged_run_resumes_bit_identically(tmp_path):
    """The run stops at step 7, naming checkpoint 4; rerun with a remedy (here: skipping the
    bad update) it resumes from that checkpoint and ends exactly where a run that had the
    remedy from the start ends: the divergence left no trace (no bad state saved, its metrics
    lines dropped). Checkpoints every 4 steps."""
    work = tmp_path / "diverged"
    with pytest.raises(NonFiniteError) as info:
        train_and_evaluate(tiny_config(**INJECTED), work)
    assert info.value.step == 7 and info.value.checkpoint == work / "checkpoints" / "4"
    assert [r["step"] for r in read_jsonl(work / "metrics.jsonl")] == [2, 4, 6]
    with Checkpointer(work / "checkpoints") as ck:
        assert ck.all_steps() == [4]
    out = train_and_evaluate(tiny_config(**INJECTED), work, skip_nonfinite=1)
    assert out["step"] == 12

    ref = tmp_path / "remedied_from_the_start"
    train_and_evaluate(tiny_config(**INJECTED), ref, skip_nonfinite=1)
    s_ref, s_work = _final_state(ref), _final_state(work)
    assert int(s_work.step) == 12 and _same_tree(s_ref, s_work)
    rows, ref_rows = read_jsonl(work / "metrics.jsonl"), read_jsonl(ref / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    # lines 2 and 4 were written before skip mode (no train/skipped_steps column); otherwise
    # every number is the reference's
    assert [r.pop("train/skipped_steps", None) for r in rows] == [None, None, 0, 1, 0, 0]
    assert [r.pop("train/skipped_steps") for r in ref_rows] == [0, 0, 0, 1, 0, 0]
    assert _strip_perf(rows) == _strip_perf(ref_rows)


def test_skip_mode_refuses_exactly_the_bad_update_and_goes_on(tmp_path, caplog):
    c = tiny_config(**INJECTED, checkpoint_every=1, keep_checkpoints=20)
    work = tmp_path / "skip"
    out = train_and_evaluate(c, work, skip_nonfinite=1)
    assert out["step"] == 12 and np.isfinite(out["train/loss"])
    assert any(
        "at step 7: update skipped (1 in a row, skip_nonfinite=1)" in r.getMessage()
        for r in caplog.records
    )
    rows = read_jsonl(work / "metrics.jsonl")
    assert [(r["step"], r["train/skipped_steps"]) for r in rows] == [
        (2, 0),
        (4, 0),
        (6, 0),
        (8, 1),
        (10, 0),
        (12, 0),
    ]
    assert all(r["train/loss"] is not None for r in rows)  # the refused step is not averaged
    s6, s7, s8 = (_final_state(work, k) for k in (6, 7, 8))
    # update 7 was refused: only the step and the schedule's counter moved; update 8 was applied
    assert int(s7.step) == 7
    for name in ("params", "batch_stats"):
        assert _same_tree(getattr(s6, name), getattr(s7, name)), name
    tget = optax.tree_utils.tree_get
    assert _same_tree(tget(s6.opt_state, "trace"), tget(s7.opt_state, "trace"))
    assert not _same_tree(s7.params, s8.params)
    # the schedule follows the step: the counter is the step, the logged lr of step k is the
    # η(k - 1) it applied, and the last update applies the cosine's last value
    _, sched = build_optimizer_from_config(c, total_steps=12, steps_per_epoch=1)
    final = _final_state(work)
    assert int(schedule_count(final.opt_state, final.step)) == 12
    for r in rows:
        assert r["train/lr"] == pytest.approx(float(sched(r["step"] - 1)), rel=1e-6), r["step"]


def _ul_huge_lr():
    # plain UL, lr=1e6: every update from step 3 on is non-finite (as in test_train_loop.py)
    return tiny_config(
        "ul",
        num_train_steps=40,
        log_every=1,
        checkpoint_every=40,
        eval_every=40,
        **{"optimizer.lr": 1e6, "optimizer.schedule": "constant", "optimizer.weight_decay": 0.0},
    )


def test_skip_mode_stops_after_n_consecutive_even_across_a_resume(tmp_path):
    c = _ul_huge_lr()
    with pytest.raises(NonFiniteError) as info:
        train_and_evaluate(c, tmp_path / "plain")
    first = info.value.step
    with pytest.raises(NonFiniteError) as info:
        train_and_evaluate(c, tmp_path / "skip3", skip_nonfinite=3)
    err = info.value
    assert (err.step, err.consecutive) == (first + 3, 4)
    assert "after 4 consecutive non-finite steps (skip_nonfinite=3)" in str(err)
    skipped = [r["train/skipped_steps"] for r in read_jsonl(tmp_path / "skip3" / "metrics.jsonl")]
    assert skipped == [0] * (first - 1) + [1, 1, 1]

    # interrupted mid-streak (2 refused updates so far), then resumed: the count goes on
    work = tmp_path / "resumed"
    out = train_and_evaluate(c, work, until_step=first + 1, skip_nonfinite=3)
    assert out["step"] == first + 1
    with Checkpointer(work / "checkpoints") as ck:
        assert ck.extra(first + 1)["nonfinite_streak"] == 2
    with pytest.raises(NonFiniteError) as info:
        train_and_evaluate(c, work, skip_nonfinite=3)
    assert (info.value.step, info.value.consecutive) == (first + 3, 4)
    assert info.value.checkpoint == work / "checkpoints" / str(first + 1)


@pytest.mark.slow
def test_plain_unhinged_loss_on_the_digits_demo_diverges_through_the_cli(tmp_path):
    """configs/digits.py:ul (plain UL, learnable linear head, no PAL) at the demo's lr 0.1 with
    a constant schedule: feature and classifier norms grow until BatchNorm statistics overflow
    (Fig. 19). Exit code 3, the message names step, quantity and last good checkpoint, and that
    checkpoint restores to a finite state. (With the default cosine schedule the demo's 300
    steps end blown up — loss ≈ -1e14, chance accuracy — but finite.)"""
    work = tmp_path / "ul"
    cmd = [
        sys.executable,
        "-m",
        "launch.train",
        "--config",
        "configs/digits.py:ul",
        "--workdir",
        str(work),
        "--config.optimizer.schedule=constant",
        "--config.num_epochs=60",
        "--config.eval_every=1000",
        "--config.log_every=50",
    ]
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = next(ln for ln in proc.stderr.splitlines() if "the update was refused" in ln)
    step = int(line.split(" at step ")[1].split(":")[0])
    last = (step - 1) // 100 * 100  # checkpoint_every = 100 in configs/digits.py
    assert last >= 100
    assert f"the last good checkpoint is {work / 'checkpoints' / str(last)} (left intact)" in line
    assert "non-finite" in line and "batch_stats" in line
    _, state, _ = restore_checkpoint(work)
    assert int(state.step) == last
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))
    norms = [r["train/feature_norm"] for r in read_jsonl(work / "metrics.jsonl")]
    assert norms[-1] > 1e4 * norms[0]  # the blow-up before the overflow
