"""What the commands print when they end: ``launch.train``'s summary (final metrics rounded —
accuracies in %, losses to 4 significant digits —, wall time, img/s, the files written, the next
command) instead of a raw dict; ``launch.evaluate``'s files and next commands;
``launch.reproduce``'s state of every run and where the report went."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TINY_CLI_OVERRIDES

from launch import evaluate as evaluate_cli
from launch import reproduce as reproduce_cli
from ul_jax.paper import runner
from ul_jax.paper.suites import SUITES
from ul_jax.paper.summary_text import format_suite_summary
from ul_jax.train.summary_text import (
    fmt_duration,
    fmt_pct,
    fmt_rate,
    fmt_sig,
    format_train_summary,
)

REPO = Path(__file__).resolve().parents[1]


def test_number_formats():
    assert fmt_pct(0.982222) == "98.22 %" and fmt_pct(1) == "100.00 %"
    assert fmt_pct(None) == "–" and fmt_pct(float("nan")) == "–"
    assert fmt_sig(-0.056669238954782486) == "-0.05667" and fmt_sig(1234.56) == "1235"
    assert fmt_sig(1.5e-7) == "1.5e-07" and fmt_sig(float("inf")) == "inf" and fmt_sig(None) == "–"
    assert fmt_duration(35.24) == "35.2 s" and fmt_duration(247) == "4 min 07 s"
    assert fmt_duration(7390) == "2 h 03 min" and fmt_duration(float("nan")) == "?"
    assert fmt_rate(14480.4) == "14,480 img/s" and fmt_rate(12.345) == "12.3 img/s"


def _workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "run"
    for d in (
        "checkpoints/8",
        "checkpoints/12",
        "checkpoints/12.orbax-checkpoint-tmp",
        "tensorboard",
    ):
        (wd / d).mkdir(parents=True)
    for f in ("metrics.jsonl", "config.json", "curves.png"):
        (wd / f).write_text("")
    return wd


OUT = {
    "step": 12,
    "total_steps": 12,
    "train/loss": -0.056669238954782486,
    "train/accuracy": 0.1171875,
    "train/feature_norm": 1.7158775329589844,
    "train/epoch": 0.5714285714285714,
    "eval/accuracy": 0.1688888888888889,
    "eval/loss": -0.16525560908847384,
    "eval/ece": 0.024258783062299085,
    "eval/feature_norm": 0.9315655008951823,
    "eval/class_feature_norm": [0.71, 0.73],
    "perf/images_per_sec": 14480.4,
}


def test_train_summary_text(tmp_path):
    wd = _workdir(tmp_path)
    text = format_train_summary(OUT, wd, wall_seconds=35.24)
    assert text.splitlines() == [
        "finished: step 12 of 12 (epoch 0.57); wall time 35.2 s; training 14,480 img/s",
        "  test        accuracy  16.89 %   loss -0.1653   ECE 2.43 %   mean ‖h‖ 0.9316",
        "  train       accuracy  11.72 %   loss -0.05667   mean ‖h‖ 1.716   "
        "(mean of the last log interval)",
        f"files in {wd}:",
        f"  metrics.jsonl  the logged metrics (python -m launch.plot {wd} redraws)",
        "  checkpoints/   steps 8, 12",
        f"  tensorboard/   event files: tensorboard --logdir {wd}",
        "  curves.png     training curves",
        "  config.json    the run's config",
        f"next: python -m launch.evaluate --workdir {wd}   (accuracy groups, calibration, NC, OOD)",
    ]
    stopped = format_train_summary({**OUT, "step": 6, "train/epoch": 0.29}, wd)
    assert stopped.startswith("stopped at step 6 of 12 (epoch 0.29) (--until_step)")
    assert "next: the same command without --until_step continues the run" in stopped
    done = format_train_summary({"step": 12, "total_steps": 12, "eval/accuracy": 0.5}, wd)
    assert done.startswith("nothing to train: the run is at step 12 of 12")
    assert "accuracy  50.00 %" in done


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "-m", "launch.train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kw,
    )


def test_train_and_evaluate_commands_end_with_a_summary(tmp_path, capsys):
    work = tmp_path / "run"
    p = _cli(["--config", "configs/digits.py:ul_pal", "--workdir", str(work), *TINY_CLI_OVERRIDES])
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout.splitlines()
    assert out[0].startswith("finished: step 12 of 12 (epoch 0.57); wall time ")
    assert out[0].endswith(" img/s")
    assert out[1].startswith("  test        accuracy ") and " %   loss " in out[1]
    accuracy = json.loads((work / "metrics.jsonl").read_text().splitlines()[-1])["eval/accuracy"]
    assert f"accuracy {100 * accuracy:6.2f} %" in out[1]
    assert f"files in {work}:" in out
    for name in ("metrics.jsonl", "checkpoints/", "tensorboard/", "curves.png", "config.json"):
        assert any(line.startswith(f"  {name} ") for line in out), name
    assert out[-1].startswith(f"next: python -m launch.evaluate --workdir {work}")
    assert "{'step'" not in p.stdout + p.stderr and "final:" not in p.stderr  # no raw dict
    assert "step 2/12" in p.stderr and "train:" not in p.stderr  # not a terminal: log lines

    assert evaluate_cli.main(["--workdir", str(work)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run      {work}"  # the readable table first, then where it went
    assert f"wrote to {work}:" in lines and "files: reliability.png, eval.json" not in lines
    assert any(line.startswith("  eval.json ") for line in lines)
    assert any(line.startswith("  reliability.png ") for line in lines)
    assert any(line.startswith("evaluated step 12 in ") for line in lines)
    assert lines[-2].startswith(f"next: python -m launch.report {work} [OTHER_RUN ...]")
    assert lines[-1].strip() == f"python -m launch.plot {work}   (training curves)"

    # and its errors: a damaged checkpoint is one line naming it, exit code 1
    (work / "checkpoints" / "12" / "_CHECKPOINT_METADATA").unlink()
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--workdir", str(work)])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        f"python -m launch.evaluate: error: CheckpointCorruptError: checkpoint "
        f"{work / 'checkpoints' / '12'} is damaged: "
    )


def _status(out: Path, run: str, seed: int, **status) -> None:
    d = out / run / f"seed{seed}"
    d.mkdir(parents=True)
    (d / "reproduce_status.json").write_text(json.dumps({"run": run, "seed": seed, **status}))


def test_reproduce_summary_states_every_run_and_where_the_report_went(
    tmp_path, capsys, monkeypatch
):
    runs = [r.name for r in SUITES["cpu"][0]]
    out = tmp_path / "out"
    _status(out, runs[0], 0, status="complete", step=1200)
    _status(out, runs[1], 0, status="nonfinite", step=208, quantities=["loss", "batch_stats"])
    _status(out, runs[2], 0, status="failed", error="ValueError: boom\nsecond line")
    (out / runs[3] / "seed0").mkdir(parents=True)  # started, interrupted: no status file
    text = format_suite_summary("cpu", out, only=runs[:4], fig_dir=tmp_path / "figs", docs=None)
    lines = text.splitlines()
    assert lines[0] == f"suite cpu (4 runs × seeds 0) in {out}:"
    # the --status table (ul_jax/paper/status.py), then where the tracebacks are
    assert lines[2] == "| run | seed | state | step | val top-1 (%) | test top-1 (%) | wall time |"
    assert lines[4].startswith(f"| {runs[0]} | 0 | complete | 1,200 |")
    assert lines[5].startswith(f"| {runs[1]} | 0 | nonfinite (step 208: loss, batch_stats")
    assert lines[6].startswith(f"| {runs[2]} | 0 | failed (ValueError: boom second line) |")
    assert lines[7].startswith(f"| {runs[3]} | 0 | not started |")
    assert lines[9] == "complete 1, nonfinite 1, failed 1, not started 1"
    status_file = out / runs[2] / "seed0" / "reproduce_status.json"
    assert lines[10] == f"traceback of {runs[2]} seed 0: {status_file}"
    assert lines[11] == f"wrote to {tmp_path / 'figs'}:"
    assert lines[-1].startswith("next: rerun the same command: finished runs are skipped")

    # through the command: --tables_only on runs not trained yet; the document is left alone
    docs = tmp_path / "R.md"
    docs.write_text("# results\n")
    args = ["--suite", "cpu", "--out", str(tmp_path / "none"), "--tables_only"]
    args += ["--fig_dir", str(tmp_path / "figs2"), "--docs", str(docs)]
    assert reproduce_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert f"suite cpu ({len(runs)} runs × seeds 0) in {tmp_path / 'none'}:" in printed
    assert f"wrote to {tmp_path / 'figs2'}:\n  results_cpu.json  " in printed
    assert f"docs: {docs} (left unchanged: no run on disk)" in printed
    assert "next: the same command without --tables_only trains the unfinished runs" in printed
    assert docs.read_text() == "# results\n"

    # a suite resolved by the runner (as the reproduction tests patch it) is the one summarized
    micro = SUITES["cpu"][0][:2]
    monkeypatch.setattr(runner, "load_suite", lambda name: micro)
    monkeypatch.setattr(runner, "report_suite", lambda name: ("micro", micro))
    args[1] = "micro"
    assert reproduce_cli.main(args) == 0
    assert "suite micro (2 runs × seeds 0) in " in capsys.readouterr().out
