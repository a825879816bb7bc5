"""``python -m launch.device_check``: the budget planning (hand-computed), the card matching, the
budget guard, and the whole check end to end on the CPU with a tiny budget (so it cannot rot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import device_check as cli
from ul_jax.bench import device_check as dc
from ul_jax.config import REPO_ROOT


def test_plan_whole_epochs_hand_computed():
    # 100 s share: usable = 0.9·100 − (20 + 2·5) = 60 s; epoch = 1000/100 + 200/400 = 10.5 s → 5
    p = dc.plan_training(
        100,
        train_images=1000,
        test_images=200,
        batch=50,
        train_img_s=100.0,
        eval_img_s=400.0,
        compile_s=5.0,
    )
    assert p["num_epochs"] == 5 and "num_train_steps" not in p
    kw = dict(train_images=1000, batch=50, test_images=200, train_img_s=100.0, eval_img_s=400.0)
    assert dc.planned_seconds(p, compile_s=5.0, **kw) == pytest.approx(30 + 5 * 10.5)
    # a slowdown of 2 doubles the per-epoch cost: 60 // 21 = 2
    p2 = dc.plan_training(100, compile_s=5.0, slowdown=2.0, **kw)
    assert p2["num_epochs"] == 2


def test_plan_fraction_of_an_epoch_and_no_benchmark():
    # usable = 0.9·40 − 20 = 16 s; epoch = 10,000/100 + 1 = 101 s → a fraction:
    # (16 − 1) s · 100 img/s // 50 = 30 steps, one evaluation at the end
    p = dc.plan_training(
        40,
        train_images=10_000,
        test_images=400,
        batch=50,
        train_img_s=100.0,
        eval_img_s=400.0,
        compile_s=0.0,
    )
    assert p["num_train_steps"] == 30 and p["eval_every"] == 30
    assert (
        dc.plan_training(
            5,
            train_images=1,
            test_images=1,
            batch=1,
            train_img_s=None,
            eval_img_s=None,
            compile_s=None,
        )["num_epochs"]
        == 1
    )


@pytest.mark.parametrize(
    "kind, name",
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM5-80GB"),
        ("NVIDIA H200", "H200-SXM-141GB"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("TPU v4", "TPU-v4"),
        ("TPU v5 lite", "TPU-v5e"),
        ("cpu", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_match_accelerator(kind, name):
    acc = dc.match_accelerator(kind)
    assert (acc and acc.name) == name


def test_budget_guard_skips_with_reasons(tmp_path):
    s = dc.device_check(
        0.05, tmp_path, bench=("cifar10:resnet8",), bench_dtypes=("float32",), variants=("ce",)
    )
    assert all("skipped" in b for b in s["bench"]), s["bench"]
    assert "skipped" in s["digits"]
    assert "skipped" in s["train"][0]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["environment"]["platform"] == "cpu" and on_disk["finished"]


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--budget", "10", "--out", str(tmp_path), "--train_set", "no_equals_sign"])
    assert e.value.code == 2
    assert "--train_set must be FIELD=VALUE; got 'no_equals_sign'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--out", str(tmp_path)])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["--budget", "-1", "--out", str(tmp_path)])
    assert e.value.code == 1
    assert "budget must be > 0 seconds; got -1.0" in capsys.readouterr().err


def _cifar10_offline() -> bool:
    from ul_jax.data.sources import resolve_image_folder

    try:
        resolve_image_folder("cifar10")
    except FileNotFoundError:
        return False
    return True


def test_device_check_end_to_end_on_cpu(tmp_path):
    """The real command on the CPU with a tiny model and budget: every phase runs (or records
    why not), the summary JSON has the device, the benchmark, the digits demo and the run."""
    out = tmp_path / "dc"
    # 100 s: bench + digits take ≈ 30 s idle but twice that on a loaded 2-core machine, and the
    # training phase is (correctly) skipped when less than start-up + 10 s is left for it
    budget = 100
    cmd = [
        sys.executable,
        "-m",
        "launch.device_check",
        "--budget",
        str(budget),
        "--out",
        str(out),
        "--bench",
        "cifar10:resnet8",
        "--bench_dtypes",
        "float32",
        "--bench_batch",
        "32",
        "--bench_steps",
        "1",
        "--bench_set",
        "model.width_multiplier=0.25",
        "--digits_set",
        "num_train_steps=10",
        "--train_arch",
        "resnet8",
        "--train_batch",
        "32",
        "--variants",
        "ce",
        "--train_set",
        "data.train_per_class=10",
        "--train_set",
        "model.width_multiplier=0.25",
    ]
    env = {**os.environ, "UL_JAX_PROGRESS": "log"}
    p = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["environment"]["platform"] == "cpu" and s["environment"]["versions"]["jax"]
    assert s["train_dtype"] == "float32"
    (b,) = s["bench"]
    assert b["item"] == "cifar10:resnet8" and b["train_images_per_sec"] > 0, b
    assert b["flops_per_train_step"] > 0 and b["mfu"] is None  # no data-sheet peak for a CPU
    assert json.loads((out / "bench.json").read_text()) == s["bench"]
    d = s["digits"]
    assert d["status"] == "complete" and d["step"] == 10 and 0 <= d["test_accuracy"] <= 1, d
    (t,) = s["train"]
    if _cifar10_offline():
        assert t.get("status") in ("complete", "partial (stopped by the budget)"), (t, s)
        assert "num_epochs" in t["plan"] or "num_train_steps" in t["plan"]
        assert 0 <= t["test_accuracy"] <= 1 and t["step"] >= 1
        assert (out / t["name"] / "metrics.jsonl").is_file()
    else:
        assert "never downloads" in t["skipped"]
    assert s["elapsed_s"] <= budget + dc._GRACE_S and s["within_budget"]
    assert "test accuracy" in p.stdout and str(Path(out) / "summary.json") in p.stdout
