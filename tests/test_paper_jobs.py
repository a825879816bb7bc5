"""``launch.reproduce --jobs N``: runs of a suite in pinned child processes (ul_jax/paper/jobs.py)."""

import json

import pytest

from ul_jax.paper import runner as rp
from ul_jax.paper.executors import run_from_json, run_to_json
from ul_jax.paper.jobs import core_slices

_TINY = {
    "num_train_steps": 12,
    "log_every": 6,
    "eval_every": 6,
    "checkpoint_every": 6,
    "tensorboard": False,
    "batch_size": 64,
    "data.image_size": 8,
    "data.crop_padding": 1,
    "model.width_multiplier": 0.25,
}
# one real run (compared with the sequential runner) next to a run that fails: two children
PAIR = (
    rp.Run("j_ul_pal", "configs/digits.py:ul_pal", ("x",), "digits", "ul_pal", overrides=_TINY),
)


@pytest.mark.parametrize(
    "cores,jobs,expected",
    [
        ([0, 1], 2, [(0,), (1,)]),
        ([0, 1], 1, [(0, 1)]),
        ([3, 1, 2, 0], 2, [(0, 1), (2, 3)]),
        (list(range(5)), 2, [(0, 1, 2), (3, 4)]),
        ([0, 1], 4, [(0,), (1,)]),  # never more jobs than cores
    ],
)
def test_core_slices(cores, jobs, expected):
    got = core_slices(cores, jobs)
    assert got == expected
    assert sorted(c for s in got for c in s) == sorted(cores)


def test_core_slices_bad_input():
    with pytest.raises(ValueError, match="--jobs must be >= 1; got 0"):
        core_slices([0], 0)
    with pytest.raises(ValueError, match="no CPU cores"):
        core_slices([], 2)


def test_run_travels_as_json():
    r = rp.load_suite("cpu_tp_lt")[0]
    assert run_from_json(run_to_json(r)) == r


def _finals(out, run):
    rows = [
        json.loads(x) for x in (out / run.name / "seed0" / "metrics.jsonl").read_text().splitlines()
    ]
    last = [r for r in rows if "eval/accuracy" in r][-1]
    return last["step"], last["eval/accuracy"], last["eval/loss"]


def test_jobs_2_equals_jobs_1_and_reports_a_failure(tmp_path):
    seq = rp.run_suite(
        PAIR, tmp_path / "seq", seeds=(0,), suite="t", fig_dir=tmp_path / "f", docs=None
    )
    bad = rp.Run(
        "j_bad",
        "configs/digits.py:ce",
        ("x",),
        "digits",
        "ce",
        overrides={**_TINY, "batch_size": -3},
    )
    par = rp.run_suite(
        (*PAIR, bad),
        tmp_path / "par",
        seeds=(0,),
        suite="t",
        fig_dir=tmp_path / "g",
        docs=None,
        jobs=2,
    )
    assert seq["ran"] == par["ran"] == [("j_ul_pal", 0)]
    assert par["failed"] == [("j_bad", 0)] and par["interrupted"] == []
    st = rp.read_status(tmp_path / "par" / "j_bad" / "seed0")
    assert st["status"] == "failed" and "batch_size" in st["error"]
    for r in PAIR:
        s_step, s_acc, s_loss = _finals(tmp_path / "seq", r)
        p_step, p_acc, p_loss = _finals(tmp_path / "par", r)
        assert s_step == p_step == 12
        assert p_acc == pytest.approx(s_acc, abs=1e-9)
        assert p_loss == pytest.approx(s_loss, rel=1e-4)
        assert rp.read_status(tmp_path / "par" / r.name / "seed0")["status"] == "complete"
        log = (tmp_path / "par" / r.name / "seed0" / "reproduce.log").read_text()
        assert r.name in log
    # a second invocation skips the finished runs and retries the failed one once
    again = rp.run_suite(
        (*PAIR, bad),
        tmp_path / "par",
        seeds=(0,),
        suite="t",
        fig_dir=tmp_path / "g",
        docs=None,
        jobs=2,
    )
    assert again["skipped"] == [("j_ul_pal", 0)]
    assert again["failed"] == [("j_bad", 0)] and again["ran"] == []
