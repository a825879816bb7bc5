"""The training loop on the real digits data: learning, bit-exact resume, metrics.jsonl without
duplicates, TensorBoard events, the non-finite stop, and the checkpoint/config safety checks."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import TINY_CLI_OVERRIDES, tiny_config
from test_train_writers import tensorboard_scalars

from ul_jax.train import (
    NonFiniteError,
    read_jsonl,
    restore_checkpoint,
    train_and_evaluate,
)
from ul_jax.train.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]


def _leaves_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def _strip_perf(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def test_digits_short_run_learns(tmp_path):
    c = tiny_config(
        "ul_pal",
        num_train_steps=60,
        log_every=10,
        eval_every=60,
        checkpoint_every=60,
        **{"data.augment": "none"},
    )
    out = train_and_evaluate(c, tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    losses = [r["train/loss"] for r in rows]
    assert losses[-1] < losses[0] - 1.0  # the unhinged loss keeps decreasing
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert out["eval/count"] == 450
    assert out["eval/accuracy"] > 0.5  # chance is 0.1
    assert rows[-1]["train/accuracy"] > 0.5
    # Fig. 19 quantities are logged; PAL keeps an exact simplex ETF (norm ratio 1, angle 96.4°)
    assert rows[-1]["train/prototype_norm_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert rows[-1]["train/prototype_min_angle"] == pytest.approx(96.379, abs=1e-2)
    assert rows[-1]["train/feature_norm"] > rows[0]["train/feature_norm"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 12-step run of :func:`tiny_config` (checkpoints at 4, 8, 12)."""
    full = tmp_path_factory.mktemp("full") / "run"
    out = train_and_evaluate(tiny_config(), full)
    assert out["step"] == 12
    return full, out


def test_resume_is_bit_identical_and_metrics_not_duplicated(tmp_path, full_run):
    c = tiny_config()
    full, out_full = full_run
    part = tmp_path / "part"

    # an interrupted run: stopped at step 8 (checkpoints 4 and 8) ...
    out_part = train_and_evaluate(c, part, until_step=8)
    assert out_part["step"] == 8
    assert not (part / "curves.png").exists()  # drawn only by a run that reaches its end
    with Checkpointer(part / "checkpoints") as ck:
        assert ck.all_steps() == [4, 8]
    # ... whose last checkpoint was lost: metrics.jsonl now runs ahead of the checkpoint (step 4)
    shutil.rmtree(part / "checkpoints" / "8")
    assert [r["step"] for r in read_jsonl(part / "metrics.jsonl")] == [2, 4, 6, 8]

    out_resumed = train_and_evaluate(c, part)  # a fresh loop resumes from step 4
    assert out_resumed["step"] == 12

    _, state_full, _ = restore_checkpoint(full)
    _, state_part, _ = restore_checkpoint(part)
    assert int(state_full.step) == int(state_part.step) == 12
    for name in ("params", "batch_stats", "opt_state", "prototypes"):
        assert _leaves_equal(getattr(state_full, name), getattr(state_part, name)), name

    rows_full = read_jsonl(full / "metrics.jsonl")
    rows_part = read_jsonl(part / "metrics.jsonl")
    steps = [r["step"] for r in rows_part]
    assert steps == [2, 4, 6, 8, 10, 12]  # one line per logging step, no duplicates
    assert [r["step"] for r in rows_full] == steps
    assert "eval/accuracy" in rows_part[2] and "eval/accuracy" in rows_part[5]
    # every logged number (losses, accuracies, norms, eval) equals the uninterrupted run's
    assert _strip_perf(rows_part) == _strip_perf(rows_full)
    assert out_resumed["eval/accuracy"] == out_full["eval/accuracy"]

    # TensorBoard (its own reader): the resumed run's file starts with a SessionLog.START at
    # step 5 that drops the orphaned points 6 and 8 of the first file
    files = sorted((part / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2
    tb = tensorboard_scalars(part / "tensorboard")
    assert [s for s, _ in tb["train/loss"]] == steps
    assert [s for s, _ in tb["eval/accuracy"]] == [6, 12]
    for key in ("train/loss", "eval/accuracy"):
        assert [v for _, v in tb[key]] == pytest.approx(
            [r[key] for r in rows_full if key in r], rel=1e-6
        )
    # a finished run draws its curves
    assert (part / "curves.png").is_file() and (full / "curves.png").is_file()

    # resuming a finished run trains nothing and writes nothing
    again = train_and_evaluate(c, part)
    assert again["step"] == 12 and again["eval/accuracy"] == out_full["eval/accuracy"]
    assert [r["step"] for r in read_jsonl(part / "metrics.jsonl")] == steps

    # a config whose shapes differ is refused before restoring, naming the field
    wider = tiny_config(**{"model.width_multiplier": 0.5})
    with pytest.raises(ValueError, match=r"model\.width_multiplier.*0\.25.*0\.5"):
        train_and_evaluate(wider, part)
    # restoring into mismatched shapes (config.json bypassed) names the leaf and both shapes
    with pytest.raises(
        ValueError,
        match=r"params/trunk/BasicBlock_0/Conv_0/kernel: checkpoint "
        r"has shape \(3, 3, 4, 4\) float32, model has "
        r"\(3, 3, 8, 8\)",
    ):
        restore_checkpoint(part, config=wider)


def test_nonfinite_stops_run_and_keeps_last_checkpoint(tmp_path):
    # an infinite learning rate at step 7; checkpoints every 4 steps, logs every 2
    c = tiny_config(debug_nonfinite_at_step=7)
    with pytest.raises(NonFiniteError) as info:
        train_and_evaluate(c, tmp_path / "run")
    err = info.value
    msg = str(err)
    assert err.step == 7 and "at step 7" in msg
    assert "updated parameters" in msg and "updated parameters" in err.quantities
    ckpt_dir = (tmp_path / "run" / "checkpoints").absolute()
    assert str(ckpt_dir / "4") in msg and err.checkpoint == ckpt_dir / "4"
    assert isinstance(err, RuntimeError)
    # the bad state was never saved: the checkpoint of step 8 does not exist
    with Checkpointer(ckpt_dir) as ck:
        assert ck.all_steps() == [4]
    _, state, _ = restore_checkpoint(tmp_path / "run")
    assert int(state.step) == 4
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))
    # metrics stop at the last finite logging step before the failure
    assert [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [2, 4, 6]


def test_train_and_eval_steps_compile_once_per_run(tmp_path, monkeypatch):
    """Over several log intervals, evaluations, checkpoints and a resume from a restored
    checkpoint, the jitted train and eval steps compile exactly once each (a retrace — a shape,
    dtype, weak type or sharding that drifts between steps or after a restore — would add an
    entry to their cache and cost a compile in every run)."""
    import chex

    from ul_jax.train import setup
    from ul_jax.train import step as step_mod

    # every trace of the jitted steps calls these; a second trace raises (chex)
    chex.clear_trace_counter()
    monkeypatch.setattr(step_mod, "train_step", chex.assert_max_traces(step_mod.train_step, n=1))
    monkeypatch.setattr(step_mod, "eval_step", chex.assert_max_traces(step_mod.eval_step, n=1))
    c = tiny_config(seed=4321)  # a setup of its own: its compiled functions are fresh
    train_and_evaluate(c, tmp_path / "run", until_step=6)  # logs 2, 4, 6; eval 6; ckpt 4, 6
    fns = next(reversed(setup._COMPILED.values()))
    out = train_and_evaluate(c, tmp_path / "run")  # resumed from checkpoint 6 to step 12
    assert out["step"] == 12
    assert next(reversed(setup._COMPILED.values())) is fns  # the same compiled functions


def test_plain_unhinged_loss_with_huge_lr_diverges(tmp_path):
    # Fig. 19 in miniature: the plain UL with a learnable linear head blows up; the run stops
    # at the first non-finite step instead of training on NaNs.
    c = tiny_config(
        "ul",
        num_train_steps=40,
        log_every=1,
        checkpoint_every=40,
        eval_every=40,
        **{"optimizer.lr": 1e6, "optimizer.schedule": "constant", "optimizer.weight_decay": 0.0},
    )
    with pytest.raises(NonFiniteError) as info:
        train_and_evaluate(c, tmp_path / "run")
    err = info.value
    assert 1 <= err.step <= 40
    assert err.checkpoint is None and "no checkpoint had been written yet" in str(err)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, err.step))
    if len(rows) >= 2:  # features and classifier norms grow before the overflow
        assert rows[-1]["train/feature_norm"] > rows[0]["train/feature_norm"]


CLI_OVERRIDES = TINY_CLI_OVERRIDES


def test_cli_resume_in_fresh_process_is_bit_identical(tmp_path, full_run):
    """``python -m launch.train`` stopped at step 6, then rerun: a new process resumes from the
    checkpoint and ends bit-identical to the uninterrupted in-process run."""
    full, _ = full_run
    work = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "launch.train",
        "--config",
        "configs/digits.py:ul_pal",
        "--workdir",
        str(work),
        *CLI_OVERRIDES,
    ]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    first = subprocess.run(
        cmd + ["--until_step", "6"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr[-3000:]
    with Checkpointer(work / "checkpoints") as ck:
        assert ck.all_steps() == [4, 6]
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from" in second.stderr and "at step 6 of 12" in second.stderr
    assert "img/s" in second.stderr and "ETA" in second.stderr  # console progress line
    assert (work / "curves.png").is_file()
    _, state_full, _ = restore_checkpoint(full)
    _, state_cli, cfg = restore_checkpoint(work)
    assert cfg.data.image_size == 8 and cfg.num_train_steps == 12  # config.json of the run
    assert int(state_cli.step) == 12
    for name in ("params", "batch_stats", "opt_state", "prototypes"):
        assert _leaves_equal(getattr(state_full, name), getattr(state_cli, name)), name
    rows = read_jsonl(work / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    # line 8 averages steps 7-8 in both runs (the resume at 6 is on a log boundary)
    assert _strip_perf(rows) == _strip_perf(read_jsonl(full / "metrics.jsonl"))


def test_imagenet100_path_with_a_synthetic_source(tmp_path, monkeypatch):
    """The ImageNet-100 branch of the loop (host-side crops by ImageNetLoader, normalize-only
    on device, the 'validation' split for eval) on a tiny synthetic record source; the real
    loader needs tfds imagenet2012, which is not available here."""
    import ul_jax.data as uldata
    from configs import imagenet100

    calls = []

    def fake_loader(
        split,
        *,
        train,
        data_dir=None,
        seed=0,
        image_size=224,
        resize_size=256,
        num_threads=None,
        num_workers=0,
        cache_dir=None,
    ):
        calls.append((split, train, image_size, resize_size, num_workers))
        rng = np.random.default_rng(0 if split == "train" else 1)
        n = 96 if split == "train" else 37
        items = [
            {
                "image": rng.integers(
                    0,
                    256,
                    (int(rng.integers(30, 50)), int(rng.integers(30, 50)), 3),
                    dtype=np.uint8,
                ),
                "label": int(rng.integers(0, 100)),
            }
            for _ in range(n)
        ]
        return uldata.ImageNetLoader(
            items,
            train=train,
            seed=seed,
            image_size=image_size,
            resize_size=resize_size,
            num_threads=2,
        )

    monkeypatch.setattr(uldata, "make_imagenet100_loader", fake_loader)
    c = imagenet100.get_config("ce")
    c.model.arch, c.model.width_multiplier = "resnet8", 0.25
    c.data.image_size = 28
    c.batch_size, c.eval_batch_size = 32, 16
    c.num_train_steps, c.log_every = 3, 1
    out = train_and_evaluate(c, tmp_path / "run")
    assert sorted(calls) == [("train", True, 28, 32, 0), ("validation", False, 28, 32, 0)]
    assert out["step"] == 3 and out["eval/count"] == 37
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["train/loss"]) for r in rows)


@pytest.mark.slow
def test_cifar10_config_smoke(tmp_path):
    """configs/cifar10.py on the real offline CIFAR-10 archive, shrunk to a few steps."""
    from configs import cifar10
    from ul_jax.data import resolve_image_folder

    try:
        resolve_image_folder("cifar10")
    except FileNotFoundError:
        pytest.skip("no offline CIFAR-10 archive")
    c = cifar10.get_config("ul_pal_efr")
    c.model.arch, c.model.width_multiplier = "resnet8", 0.25
    c.batch_size, c.eval_batch_size = 128, 1000
    c.num_train_steps, c.log_every = 4, 2
    out = train_and_evaluate(c, tmp_path / "run")
    assert out["step"] == 4 and out["eval/count"] == 10_000
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4]
    assert rows[-1]["train/efr_term"] > 0


def test_validation_split_is_balanced_disjoint_and_evaluated(tmp_path):
    from ul_jax import data as D

    full = D.load_dataset("digits", "train", source="digits", image_size=8)
    rest, val = D.split_validation(full, 7, seed=3)
    assert len(rest) + len(val) == len(full) and val.split == "validation"
    np.testing.assert_array_equal(val.class_counts(), 7)
    both = np.concatenate([rest.images.reshape(len(rest), -1), val.images.reshape(len(val), -1)])
    assert len(np.unique(both, axis=0)) == len(
        np.unique(full.images.reshape(len(full), -1), axis=0)
    )
    again, val2 = D.split_validation(full, 7, seed=3)
    np.testing.assert_array_equal(val2.images, val.images)  # seeded
    _, val3 = D.split_validation(full, 7, seed=4)
    assert not np.array_equal(val3.images, val.images)
    with pytest.raises(ValueError, match="validation_per_class=200"):
        D.split_validation(full, 200, seed=0)
    # a run with a validation split logs val/* (balanced held-out set) next to eval/* (test)
    c = tiny_config(
        "ul_pal_efr",
        num_train_steps=6,
        log_every=3,
        eval_every=6,
        checkpoint_every=6,
        **{"data.validation_per_class": 5, "objective.efr_weight": 1e-3},
    )
    out = train_and_evaluate(c, tmp_path / "v")
    assert out["val/count"] == 50 and out["eval/count"] == 450
    assert len(out["val/class_feature_norm"]) == 10
    assert out["val/theorem6_target_norm"] > 0 and out["train/last_bn_scale_norm"] > 0
    c.data.validation_per_class = -1
    with pytest.raises(ValueError, match="data.validation_per_class"):
        train_and_evaluate(c, tmp_path / "bad")


def test_train_per_class_caps_the_train_split_after_the_hold_out(tmp_path):
    """``data.train_per_class = k``: a balanced subset of k per class (no imbalance ratio), or
    the long-tailed profile with n_max = k; drawn after the validation hold-out, disjoint from
    it; too large a k fails naming the field."""
    from ul_jax.train.setup import load_train_data

    c = tiny_config("ce", **{"data.validation_per_class": 5, "data.train_per_class": 20})
    d = load_train_data(c)
    np.testing.assert_array_equal(d.class_counts, 20)
    assert d.num_train == 200 and d.num_val == 50
    c.data.imbalance_ratio = 10.0
    lt = load_train_data(c)
    np.testing.assert_array_equal(lt.class_counts, [20, 15, 11, 9, 7, 5, 4, 3, 2, 2])
    assert lt.num_train == 78
    c.data.imbalance_ratio, c.data.train_per_class = None, 10_000
    with pytest.raises(ValueError, match="data.train_per_class=10000"):
        load_train_data(c)
    c.data.train_per_class = -3
    with pytest.raises(ValueError, match="data.train_per_class"):
        train_and_evaluate(c, tmp_path / "bad")
