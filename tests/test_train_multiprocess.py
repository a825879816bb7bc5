"""Two processes × two CPU devices (``jax.distributed`` over localhost, gloo collectives) run the
CLI like two hosts would: stop at step 6, resume in two new processes, and end where a
single-process run ends (to float tolerance: 4 devices reduce in another order than 1)."""

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
from conftest import TINY_CLI_OVERRIDES as CLI_OVERRIDES  # noqa: E402
from conftest import tiny_config  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(workdir: Path, extra: list[str]) -> list[subprocess.CompletedProcess]:
    port = _free_port()
    cmd = [
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
    procs = []
    for pid in range(2):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "UL_JAX_DISTRIBUTED": "1",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "UL_JAX_NUM_PROCESSES": "2",
            "UL_JAX_PROCESS_ID": str(pid),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
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
    assert "process 1/2, 2 local / 4 global devices" in first[1].stderr
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

    ref = tmp_path / "single"
    train_and_evaluate(tiny_config(), ref)
    _, s_ref, _ = restore_checkpoint(ref)
    _, s_mp, _ = restore_checkpoint(work)
    assert int(s_mp.step) == 12
    for a, b in zip(jax.tree.leaves(s_ref), jax.tree.leaves(s_mp)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-4, atol=2e-5)
    ref_rows = read_jsonl(ref / "metrics.jsonl")
    assert rows[-1]["eval/accuracy"] == pytest.approx(ref_rows[-1]["eval/accuracy"], abs=3 / 450)
    assert rows[-1]["train/loss"] == pytest.approx(ref_rows[-1]["train/loss"], rel=1e-3, abs=1e-4)
