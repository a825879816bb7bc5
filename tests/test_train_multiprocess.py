"""Two processes × four CPU devices (``jax.distributed`` over localhost, gloo collectives) run the
CLI like two hosts would: stop at step 6, resume in two new processes, and end where one process
with eight devices ends (same mesh size: parameters, BN statistics and metrics equal to float
tolerance), and near a one-device run (another reduction order)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from ul_jax.train import read_jsonl, restore_checkpoint, train_and_evaluate
from ul_jax.train.checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from helpers import TINY_CLI_OVERRIDES as CLI_OVERRIDES  # noqa: E402
from helpers import tiny_config  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cmd(workdir: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "launch.train",
        "--config",
        "configs/digits.py:ul_pal",
        "--workdir",
        str(workdir),
        *CLI_OVERRIDES,
        *extra,
    ]


def _run_two_processes(workdir: Path, extra: list[str]) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    cmd = _cmd(workdir, extra)
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "UL_JAX_DISTRIBUTED": "1",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "UL_JAX_NUM_PROCESSES": "2",
            "UL_JAX_PROCESS_ID": str(pid),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        }
        procs.append(
            subprocess.Popen(
                cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.slow
def test_two_processes_train_and_resume(tmp_path):
    work = tmp_path / "mp"
    first = _run_two_processes(work, ["--until_step", "6"])
    for r in first:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "process 1/2, 4 local / 8 global devices" in first[1].stderr
    with Checkpointer(work / "checkpoints") as ck:
        assert ck.all_steps() == [4, 6]
    second = _run_two_processes(work, [])
    for r in second:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed from" in second[0].stderr
    assert (
        "step 12/12" in second[0].stderr and "step 12/12" not in second[1].stderr
    )  # process 0 logs

    rows = read_jsonl(work / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]  # written once, by process 0
    assert rows[-1]["eval/count"] == 450

    # 1 process × 8 devices: the same global mesh size, so the same per-device batches
    eight = tmp_path / "one_process_8_devices"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    }
    r = subprocess.run(
        _cmd(eight, []), cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-3000:]
    _, s_8, _ = restore_checkpoint(eight)
    _, s_mp, _ = restore_checkpoint(work)
    assert int(s_mp.step) == int(s_8.step) == 12
    leaves_8, leaves_mp = jax.tree.leaves(s_8), jax.tree.leaves(s_mp)
    assert len(leaves_8) == len(leaves_mp)
    for a, b in zip(leaves_8, leaves_mp):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
    rows_8 = read_jsonl(eight / "metrics.jsonl")
    assert [r["step"] for r in rows_8] == [r["step"] for r in rows]
    for r8, rm in zip(rows_8, rows):
        for k in ("train/loss", "train/accuracy", "train/feature_norm", "eval/accuracy"):
            if k in r8:
                assert rm[k] == pytest.approx(r8[k], rel=1e-5, abs=1e-6), (r8["step"], k)

    # 1 device: another reduction order, so a looser tolerance
    ref = tmp_path / "single"
    train_and_evaluate(tiny_config(), ref)
    _, s_ref, _ = restore_checkpoint(ref)
    for a, b in zip(jax.tree.leaves(s_ref), leaves_mp):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)
    ref_rows = read_jsonl(ref / "metrics.jsonl")
    assert rows[-1]["eval/accuracy"] == pytest.approx(ref_rows[-1]["eval/accuracy"], abs=3 / 450)
    assert rows[-1]["train/loss"] == pytest.approx(ref_rows[-1]["train/loss"], rel=1e-3, abs=1e-4)
