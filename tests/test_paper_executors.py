"""Executors of a suite (ul_jax/paper/executors.py): SLURM parameters (no cluster needed) and the
submitit path end to end through submitit's local executor (real subprocesses: a job preempted
mid-run and requeued, a job that fails with a config error)."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest
import submitit
from submitit.core.job_environment import JobEnvironment

from ul_jax.paper import runner as rp
from ul_jax.paper.executors import (
    SUBMITTED_FILE,
    InProcess,
    Processes,
    SlurmOptions,
    Submitit,
    _still_live,
    make_executor,
    parse_extra,
    slurm_parameters,
)
from ul_jax.paper.status import run_status
from ul_jax.train.lock import lock_holder

_TINY = {
    "log_every": 5,
    "eval_every": 300,
    "checkpoint_every": 100,
    "tensorboard": False,
    "batch_size": 32,
    "data.image_size": 8,
    "data.crop_padding": 1,
    "model.width_multiplier": 0.25,
}


def test_slurm_parameters_make_the_sbatch_script(tmp_path, monkeypatch):
    opts = SlurmOptions(
        partition="gpu",
        time_min=90,
        gpus_per_run=1,
        cpus_per_run=10,
        mem_gb=32,
        account="lab",
        qos="normal",
        setup=("source .venv/bin/activate",),
        extra=parse_extra(["mail-type=END"]),
    )
    p = slurm_parameters(opts, "tp_b100_ce-s0")
    assert p["time"] == 90 and p["gpus_per_node"] == 1 and p["cpus_per_task"] == 10
    assert p["nodes"] == 1 and p["ntasks_per_node"] == 1 and p["mem"] == "32GB"
    # no cluster here: without srun, submitit refuses to build a SLURM executor, with a message
    with pytest.raises(ValueError, match="no SLURM here"):
        Submitit("slurm", opts)._executor(tmp_path / "submitit", "tp_b100_ce-s0")
    # pretend srun exists (the only thing mocked), then build it as --executor slurm does;
    # submitit rejects unknown parameters in update_parameters
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    ex = Submitit("slurm", opts)._executor(tmp_path / "submitit", "tp_b100_ce-s0")
    assert ex.max_num_timeout == 10
    text = ex._make_submission_file_text("python -u -m submitit.core._submit X", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=10",
        "#SBATCH --mem=32GB",
        "#SBATCH --account=lab",
        "#SBATCH --qos=normal",
        "#SBATCH --job-name=tp_b100_ce-s0",
        "#SBATCH --signal=USR2@120",
        "#SBATCH --mail-type=END",
        "#SBATCH --nodes=1",
        "#SBATCH --ntasks-per-node=1",
        "source .venv/bin/activate",
    ):
        assert line in text, line
    assert f"--output={tmp_path / 'submitit'}" in text
    # the defaults leave the cluster's own choices alone; a CPU-only run asks for no GPU
    q = slurm_parameters(SlurmOptions(gpus_per_run=0), "x")
    assert not {"partition", "account", "mem", "gpus_per_node"} & set(q)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"time_min": 0}, "slurm_time_min"),
        ({"cpus_per_run": 0}, "slurm_cpus_per_run"),
        ({"gpus_per_run": -1}, "slurm_gpus_per_run"),
        ({"mem_gb": 0}, "slurm_mem_gb"),
        ({"time_min": 2, "signal_delay_s": 120}, "shorter than the job's time limit"),
    ],
)
def test_slurm_options_name_the_bad_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SlurmOptions(**kwargs)


def test_make_executor_and_bad_choices():
    assert isinstance(make_executor(1), InProcess)
    assert make_executor(3) == Processes(3)
    ex = make_executor(1, "slurm")
    assert isinstance(ex, Submitit) and ex.cluster == "slurm" and not ex.wait
    assert make_executor(1, "submitit_local").wait  # the local executor always waits
    with pytest.raises(ValueError, match="--jobs 2 is for --executor local"):
        make_executor(2, "slurm")
    with pytest.raises(ValueError, match="unknown --executor 'pbs'"):
        make_executor(1, "pbs")
    with pytest.raises(ValueError, match="KEY=VALUE; got 'oops'"):
        parse_extra(["oops"])


def test_nothing_imports_submitit_unless_asked():
    code = (
        "import sys, launch.reproduce, ul_jax.paper.runner, ul_jax.paper.status, "
        "ul_jax.paper.jobs; assert 'submitit' not in sys.modules, 'submitit imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=rp.REPO_ROOT)


def test_live_job_records(tmp_path):
    host = socket.gethostname()
    assert _still_live({"cluster": "local", "job_id": str(os.getpid()), "host": host}, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not _still_live({"cluster": "local", "job_id": str(dead.pid), "host": host}, tmp_path)
    assert not _still_live({"cluster": "local", "job_id": str(os.getpid()), "host": "x"}, tmp_path)
    assert not _still_live(None, tmp_path)


def test_status_shows_a_submitted_job(tmp_path):
    wd = tmp_path / "r" / "seed0"
    wd.mkdir(parents=True)
    rec = {"cluster": "slurm", "job_id": "4242", "submitted": 1000.0}
    (wd / SUBMITTED_FILE).write_text(json.dumps(rec))
    s = run_status(wd, now=1000.0 + 600)
    assert s["state"] == "submitted" and s["detail"] == "slurm job 4242, 10 min ago"
    (wd / "metrics.jsonl").write_text(json.dumps({"step": 50, "eval/accuracy": 0.5}) + "\n")
    s = run_status(wd, now=2000.0)
    assert s["state"] == "partial" and s["step"] == 50 and "slurm job 4242" in s["detail"]


def _wait_for_step(wd, step, timeout=240.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
        except (OSError, ValueError):
            rows = []
        if any(r.get("step", 0) >= step for r in rows):
            return
        time.sleep(0.1)
    raise AssertionError(f"no step {step} logged in {wd} within {timeout} s")


def test_submitit_local_preempted_job_resumes_and_a_failed_job_is_not_retried(tmp_path):
    good = rp.Run(
        "s_ul_pal",
        "configs/digits.py:ul_pal",
        ("x",),
        "digits",
        "ul_pal",
        overrides={**_TINY, "num_train_steps": 300},
    )
    bad = rp.Run(
        "s_bad",
        "configs/digits.py:ce",
        ("x",),
        "digits",
        "ce",
        overrides={**_TINY, "num_train_steps": 10, "batch_size": -3},
    )
    out = tmp_path / "out"
    ex = Submitit("local", SlurmOptions(time_min=30, signal_delay_s=60), wait=True, poll_s=0.5)
    job = ex.submit(good, 0, out)
    wd = rp.run_dir(out, good, 0)
    assert json.loads((wd / SUBMITTED_FILE).read_text())["job_id"] == str(job.job_id)
    _wait_for_step(wd, 10)
    # preemption as SLURM signals it: submitit's signal to the job's process (the one that
    # holds the run folder's lock); submitit's local controller restarts a requeued job
    holder = lock_holder(wd)
    assert holder is not None and holder["pid"] != os.getpid()
    os.kill(int(holder["pid"]), JobEnvironment._usr_sig())
    # the same executor then skips the finished-or-live run and runs the bad one, which fails
    # once: its job raises, so submitit does not requeue it
    done = ex.run((good, bad), out, (0,))
    job.wait()
    assert done["failed"] == [("s_bad", 0)]
    assert done["submitted"] + done["skipped"] == [("s_ul_pal", 0)]
    st = rp.read_status(wd)
    assert st["status"] == "complete" and st["step"] == 300
    logs = "".join(p.read_text() for p in (wd / "submitit").glob("*_log.*"))
    assert "handing over to submitit to requeue" in logs
    steps = [json.loads(x)["step"] for x in (wd / "metrics.jsonl").read_text().splitlines()]
    resumed = [ln for ln in logs.splitlines() if "resumed from" in ln]
    assert len(resumed) == 1, logs[-3000:]
    k = int(resumed[0].split(" at step ")[1].split()[0])
    assert 10 <= k < 300 and steps[-1] == 300
    bad_st = rp.read_status(rp.run_dir(out, bad, 0))
    assert bad_st["status"] == "failed" and "batch_size" in bad_st["error"]
    bad_logs = "".join(
        p.read_text() for p in (rp.run_dir(out, bad, 0) / "submitit").glob("*_log.*")
    )
    assert bad_logs.count("run s_bad seed 0 failed") == 1
