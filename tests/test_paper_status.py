"""``launch.reproduce --status``: every state of a run folder, read without touching it."""

import json
import os

from launch import reproduce as reproduce_cli
from ul_jax.paper.status import format_status_table, run_status
from ul_jax.paper.suites import SUITES
from ul_jax.train.lock import WorkdirLock


def _folder(out, run, seed=0, status=None, rows=(), total=100):
    d = out / run / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"num_train_steps": total}))
    if rows:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if status is not None:
        (d / "reproduce_status.json").write_text(json.dumps({"run": run, "seed": seed, **status}))
    return d


def _snapshot(root):
    return sorted(
        (str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if p.name != "writer.lock"  # its heartbeat thread rewrites it
    )


def test_every_state(tmp_path, capsys):
    runs = SUITES["cpu_tp_b100"][0][:6]
    out = tmp_path / "out"
    rows = [
        {"step": 10, "eval/accuracy": 0.3},
        {"step": 20, "val/accuracy": 0.41, "eval/accuracy": 0.4},
    ]
    _folder(
        out,
        runs[0].name,
        status={
            "status": "complete",
            "step": 100,
            "top1": 0.5,
            "train_seconds": 60.0,
            "eval_seconds": 6.0,
        },
        rows=rows,
    )
    _folder(
        out,
        runs[1].name,
        status={"status": "nonfinite", "step": 37, "quantities": ["loss"]},
        rows=rows,
    )
    _folder(out, runs[2].name, status={"status": "failed", "error": "ValueError: data.name\n bad"})
    running = _folder(out, runs[3].name, rows=rows)
    partial = _folder(out, runs[4].name, rows=rows)
    with open(partial / "metrics.jsonl", "a") as f:
        f.write('{"step": 30, "eval/acc')  # a torn last line (killed mid-write)
    # runs[5]: no folder at all
    lock = WorkdirLock.acquire(running)
    try:
        before = _snapshot(out)
        got = {r.name: run_status(out / r.name / "seed0") for r in runs}
        assert got[runs[0].name]["state"] == "complete"
        assert got[runs[0].name]["test_top1"] == 0.5 and got[runs[0].name]["wall_s"] == 66.0
        assert got[runs[1].name]["state"] == "nonfinite"
        assert got[runs[1].name]["detail"] == "step 37: loss"
        assert got[runs[2].name]["state"] == "failed"
        assert got[runs[2].name]["detail"] == "ValueError: data.name bad"
        assert got[runs[3].name]["state"] == "running"
        assert got[runs[3].name]["detail"].endswith(f"PID {os.getpid()}")
        assert got[runs[4].name]["state"] == "partial"
        assert got[runs[4].name]["step"] == 20 and got[runs[4].name]["total"] == 100
        assert got[runs[4].name]["val_top1"] == 0.41 and got[runs[4].name]["wall_approx"]
        assert got[runs[5].name]["state"] == "not started"
        table = format_status_table(runs, out, [0])
        assert "complete 1, nonfinite 1, failed 1, running 1, partial 1, not started 1" in table
        assert f"| {runs[4].name} | 0 | partial | 20 / 100 | 41.00 | 40.00 | ≈" in table
        # through the command; nothing under OUT changed, nothing created
        args = ["--suite", "cpu_tp_b100", "--out", str(out), "--status"]
        args += sum((["--only", r.name] for r in runs), [])
        assert reproduce_cli.main(args) == 0
        printed = capsys.readouterr().out
        assert f"| {runs[2].name} | 0 | failed (ValueError: data.name bad) |" in printed
        assert _snapshot(out) == before
    finally:
        lock.release()
    # the holder is gone: the same folder now reads as partial
    assert run_status(running)["state"] == "partial"
    # trained to the last step without a status file: evaluation running or not done
    done = _folder(out, "trained", rows=rows, total=20)
    assert run_status(done)["detail"] == "trained; evaluation running or not done"


def test_status_refuses_an_unknown_run(tmp_path, capsys):
    args = ["--suite", "cpu_tp_b100", "--out", str(tmp_path), "--status", "--only", "nope"]
    assert reproduce_cli.main(args) == 2
    assert "unknown run(s) ['nope']" in capsys.readouterr().err
