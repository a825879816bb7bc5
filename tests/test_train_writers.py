"""The metric writers: ``metrics.jsonl`` and the TensorBoard event files (written with
tensorboardX), read back with TensorBoard's own reader, including the purge of orphaned points on
resume."""

import math

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ul_jax.train import MetricWriter, read_jsonl
from ul_jax.train.writers import EventFileWriter


def tensorboard_scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` as TensorBoard shows ``logdir`` (orphans purged)."""
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def test_tensorboard_reads_the_scalars_and_skips_what_is_not_a_number(tmp_path):
    w = MetricWriter(tmp_path)
    w.write(
        2,
        {
            "train/loss": np.float32(1.5),
            "train/accuracy": 0.25,
            "eval/count": 450,
            "train/bad": math.nan,
            "train/flag": True,
            "eval/class_feature_norm": [1.0, 2.0],
        },
    )
    w.write(4, {"train/loss": -0.75, "train/bad": math.inf})
    w.close()
    tb = tensorboard_scalars(tmp_path / "tensorboard")
    assert tb == {
        "train/loss": [(2, 1.5), (4, -0.75)],
        "train/accuracy": [(2, 0.25)],
        "eval/count": [(2, 450.0)],
    }
    rows = read_jsonl(tmp_path / "metrics.jsonl")  # the JSON lines keep everything
    assert rows[0]["train/bad"] is None and rows[0]["train/flag"] is True
    assert rows[0]["eval/class_feature_norm"] == [1.0, 2.0] and rows[1]["train/bad"] is None


def test_resume_purges_the_orphaned_points_in_tensorboard(tmp_path):
    # an interrupted run logged steps 2..8 but its last checkpoint is step 4
    first = MetricWriter(tmp_path)
    for s in (2, 4, 6, 8):
        first.write(s, {"train/loss": float(s)})
    first.close()
    # the resumed run (same second, same process: a file of its own) logs 6..12 anew
    resumed = MetricWriter(tmp_path, resume_step=4)
    for s in (6, 8, 10, 12):
        resumed.write(s, {"train/loss": 100.0 + s})
    resumed.close()
    files = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 2
    assert tensorboard_scalars(tmp_path / "tensorboard") == {
        "train/loss": [(2, 2.0), (4, 4.0), (6, 106.0), (8, 108.0), (10, 110.0), (12, 112.0)]
    }
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [2, 4, 6, 8, 10, 12]
    # a second resume from step 10 drops 12 of both earlier files' points
    again = EventFileWriter(tmp_path / "tensorboard", resume_step=10)
    again.write(12, {"train/loss": -1.0})
    again.close()
    steps = tensorboard_scalars(tmp_path / "tensorboard")["train/loss"]
    assert steps[-2:] == [(10, 110.0), (12, -1.0)] and len(steps) == 6


def test_fresh_start_hides_an_earlier_runs_points(tmp_path):
    old = EventFileWriter(tmp_path)
    old.write(5, {"x": 1.0})
    old.close()
    new = EventFileWriter(tmp_path, resume_step=0)
    new.write(3, {"x": 2.0})
    new.close()
    assert tensorboard_scalars(tmp_path) == {"x": [(3, 2.0)]}


@pytest.mark.parametrize("enabled,tensorboard", [(False, True), (True, False)])
def test_disabled_writers_write_nothing(tmp_path, enabled, tensorboard):
    w = MetricWriter(tmp_path, enabled=enabled, tensorboard=tensorboard)
    w.write(2, {"train/loss": 1.0})
    w.close()
    assert (tmp_path / "metrics.jsonl").exists() == enabled
    assert not (tmp_path / "tensorboard").exists()
