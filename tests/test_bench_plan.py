"""The scale plan (``ul_jax.bench.plan``): the HLO collective parser on a hand-written module,
the time / batch arithmetic by hand, and the real compile of a tiny config on 1 and 2 forced CPU
devices (a subprocess, so the device count can be forced)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ul_jax.bench import plan as P

HLO = textwrap.dedent(
    """\
    ENTRY %main {
      %all-reduce.1 = (f32[16]{0}, f32[16]{0}) all-reduce(%a, %b), channel_id=2, metadata={op_name="jit(step)/jvp(Classifier)/trunk/BasicBlock_0/BatchNorm_0/reduce_sum"}
      %all-reduce.2 = (f32[32]{0}, f32[32]{0}) all-reduce(%c, %d), metadata={op_name="jit(step)/transpose(jvp(Classifier))/trunk/BasicBlock_1/BatchNorm_1/reduce_sum"}
      %all-reduce-start.3 = (f32[3,3,3,16]{3,2,1,0}, bf16[10]{0}) all-reduce-start(%e, %f), metadata={op_name="jit(step)/(transpose(jvp(Classifier))/trunk/conv_init/conv_general_dilated:loss)"}
      %all-reduce-done.3 = (f32[3,3,3,16]{3,2,1,0}, bf16[10]{0}) all-reduce-done(%all-reduce-start.3)
      %all-gather.4 = s32[8,4]{1,0} all-gather(%g), dimensions={0}
      %add.5 = f32[16]{0} add(%x, %y)
    }
    """
)


def test_collectives_parser_on_a_hand_written_module():
    got = P.collectives(HLO)
    assert [c["kind"] for c in got] == ["all-reduce"] * 3 + ["all-gather"]
    assert [c["bytes"] for c in got] == [
        2 * 16 * 4,
        2 * 32 * 4,
        3 * 3 * 3 * 16 * 4 + 10 * 2,
        8 * 4 * 4,
    ]
    assert [c["role"] for c in got[:3]] == [
        "bn_stats_forward",
        "bn_stats_backward",
        "gradients+metrics",
    ]
    assert got[3]["role"] == "unknown" and got[2]["operands"] == 2


def test_predict_and_max_batch_by_hand():
    acc = P.Accelerator("X", 100e12, 50e12, 10e9, 1e12, 100e9, "hand")
    plan = {
        "devices": 4,
        "batch": 256,
        "dtype": "float32",
        "flops": 2e12,
        "bytes_accessed": 1e10,
        "allreduce_bytes": 4e8,
    }
    q = P.predict(plan, acc, mfu=0.5, train_images=2560, epochs=3)
    assert q["compute_s"] == pytest.approx(2e12 / 25e12)  # float32 uses peak_f32
    assert q["memory_s"] == pytest.approx(0.01) and q["bound"] == "compute"
    assert q["comm_s"] == pytest.approx(2 * 3 / 4 * 4e8 / 100e9)
    assert q["step_s"] == pytest.approx(0.08 + 0.006)
    assert q["run_s"] == pytest.approx(q["step_s"] * 10 * 3)
    assert (
        P.predict({**plan, "devices": 1}, acc, mfu=0.5, train_images=2560, epochs=1)["comm_s"]
        == 0.0
    )
    with pytest.raises(ValueError, match="mfu"):
        P.predict(plan, acc, mfu=0, train_images=1, epochs=1)
    # peak = 1 GB + 0.1 GB / example: 90 % of 10 GB leaves 8 GB → 80 examples
    assert P.max_batch_per_device(32, 1e9 + 3.2e9, 256, 1e9 + 25.6e9, 10e9) == 80
    assert P.max_batch_per_device(1, 20e9, 2, 21e9, 10e9) == 0
    with pytest.raises(ValueError, match="two different"):
        P.max_batch_per_device(8, 1.0, 8, 2.0, 10e9)


_PLAN_SCRIPT = """
import json, sys
from ul_jax.bench import plan as P
entries = [("digits / ResNet-8", "configs/digits.py:ul_pal_efr", 1000, 2)]
out = P.plan_benchmark(device_counts=(1, 2), dtypes=("float32",), entries=entries,
                       markdown=sys.argv[1])
print("JSON" + json.dumps(out))
"""


def test_scale_plan_compiles_the_real_step_on_one_and_two_devices(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    md = tmp_path / "SCALE.md"
    md.write_text("# Scale\n\nprose kept\n\n<!-- BEGIN plan -->\nold\n<!-- END plan -->\n")
    res = subprocess.run(
        [sys.executable, "-c", _PLAN_SCRIPT, str(md)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    plan = json.loads(res.stdout.split("JSON", 1)[1])
    (row,) = plan["rows"]
    one, two = row["plans"]
    assert (one["devices"], two["devices"]) == (1, 2)
    assert two["batch_per_device"] * 2 == one["batch_per_device"]
    for p in (one, two):
        m = p["memory_bytes"]
        assert m["peak"] > m["argument"] > 4 * p["params"] > 0 and m["temp"] > 0
    # the per-device work halves with the devices (same program, half the batch)
    assert two["flops"] == pytest.approx(one["flops"] / 2, rel=0.1)
    # data parallelism: no collective on one device; on two, BN statistics forward and
    # backward and one gradient all-reduce that carries at least every float32 parameter
    assert one["collectives"] == {} and one["allreduce_bytes"] == 0
    cl = two["collectives"]
    assert cl["gradients+metrics"]["count"] == 1
    assert cl["bn_stats_forward"]["count"] >= 1 and cl["bn_stats_backward"]["count"] >= 1
    grads = cl["gradients+metrics"]["bytes"] + cl["bn_stats_backward"]["bytes"]
    assert grads >= 4 * one["params"]
    assert set(cl) <= {"bn_stats_forward", "bn_stats_backward", "gradients+metrics"}
    # every accelerator has a prediction, and a larger card never fits fewer examples
    for p in (one, two):
        assert set(p["predict"]) == set(P.ACCELERATORS)
        assert all(q["run_s"] > 0 for q in p["predict"].values())
    fit = row["max_batch_per_device"]
    assert fit["H200-SXM-141GB"] >= fit["H100-SXM5-80GB"] >= fit["TPU-v5e"] > 0
    text = md.read_text()
    assert "prose kept" in text and "old" not in text and "| digits / ResNet-8 |" in text
