"""The console progress of a training run (``ul_jax.train.progress``): a bar only on a terminal
(or when ``UL_JAX_PROGRESS`` asks), the ETA arithmetic on wall time — evaluation and checkpoint
time included, compilation excluded —, the bar with absl's lines above it, and the loop using it
(the step lines replaced by the bar, the evaluation lines kept)."""

from __future__ import annotations

import io
import logging
import math

import pytest
from absl import logging as absl_logging
from helpers import tiny_config

from ul_jax.train import loop
from ul_jax.train.progress import ProgressBar, WallRate, eta_seconds, use_progress_bar
from ul_jax.train.setup import Schedule


class _Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_bar_only_on_a_terminal_unless_the_environment_says():
    assert use_progress_bar(_Stream(True), environ={}) is True
    assert use_progress_bar(_Stream(False), environ={}) is False
    assert use_progress_bar(object(), environ={}) is False  # no isatty: a file-like of a cluster
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError
    assert use_progress_bar(closed, environ={}) is False
    for value, tty, want in [
        ("bar", False, True),
        ("1", False, True),
        ("log", True, False),
        ("0", True, False),
        ("auto", True, True),
        ("auto", False, False),
    ]:
        assert use_progress_bar(_Stream(tty), environ={"UL_JAX_PROGRESS": value}) is want, value
    with pytest.raises(
        ValueError, match="UL_JAX_PROGRESS must be one of .*got UL_JAX_PROGRESS='x'"
    ):
        use_progress_bar(_Stream(True), environ={"UL_JAX_PROGRESS": "x"})


def test_eta_arithmetic():
    assert eta_seconds(80, 2.0) == 40.0
    assert eta_seconds(0, math.nan) == 0.0 and eta_seconds(-3, 1.0) == 0.0
    assert math.isnan(eta_seconds(10, math.nan)) and math.isnan(eta_seconds(10, 0.0))
    w = WallRate()
    assert math.isnan(w.steps_per_sec(10, 5.0))  # no mark yet
    w.mark(10, 100.0)
    w.mark(20, 105.0)  # only the first mark counts
    assert math.isnan(w.steps_per_sec(10, 101.0))  # no step since the mark
    assert w.steps_per_sec(30, 120.0) == 1.0
    assert w.eta(30, 100, 120.0) == 70.0


def _fake_clock(monkeypatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    return now


def test_eta_counts_evaluation_and_checkpoint_time_but_not_compilation(monkeypatch):
    """Steps 0→10 take 10 s (compilation), then every 10 steps take 5 s of training plus 5 s of
    evaluation / checkpoint: the rate shown is the training rate (2 steps/s), the ETA uses the
    wall-clock rate (1 step/s) — 80 s for the last 80 steps, not 40."""
    now = _fake_clock(monkeypatch)
    sched = Schedule(10, 100, 100, 10, 20, 20)
    p = loop._Progress([], 0, 0, None)
    p.start_clock(0)
    batch = {"loss": 0.5, "objective": 0.5, "efr_term": 0.0, "accuracy": 0.25}
    batch.update(grad_norm=1.0, feature_norm=1.0)

    def log(step: int) -> str:
        p.interval.append(dict(batch))
        p.train_row(step, {**batch, "lr": 0.1}, 4, sched.steps_per_epoch, 0)
        return p.console_line(step, sched, False, 4)

    now[0] = 10.0
    assert "compiling | ETA ?" in log(10)

    def overhead():
        now[0] += 5.0  # an evaluation, a checkpoint

    now[0] = 15.0
    p.timed(overhead)
    assert now[0] == 20.0
    line = log(20)
    assert p.rate == 2.0 and "| 8 img/s |" in line  # batch 4: training time only
    assert p.eta(20, sched) == 80.0 and line.endswith("ETA 0:01:20")
    assert p.throughput(4) == {"perf/images_per_sec": 8.0}
    text = p.bar_text(20, sched, 4)
    assert text.startswith("ETA 0:01:20, 8 img/s, loss 0.5, acc 25.0%")


def test_progress_bar_draws_and_keeps_log_lines_above_it():
    absl_handler = absl_logging.get_absl_handler().python_handler
    old = absl_handler.stream
    out = _Stream(True)
    absl_handler.stream = out
    std_handler = logging.StreamHandler(out)  # a logging.basicConfig console handler
    logging.getLogger().addHandler(std_handler)
    try:
        bar = ProgressBar(4, 12, file=out)
        assert absl_handler.stream is not out and std_handler.stream is not out
        bar.update(6, "ETA 0:00:03, 1,000 img/s")
        absl_handler.stream.write("I1201 an absl line\n")
        std_handler.stream.write("a logging line\n")
        bar.close()
        assert absl_handler.stream is out and std_handler.stream is out  # given back
    finally:
        absl_handler.stream = old
        logging.getLogger().removeHandler(std_handler)
    text = out.getvalue()
    assert "6/12" in text and "ETA 0:00:03, 1,000 img/s" in text and "50%" in text
    assert "I1201 an absl line\n" in text and "a logging line\n" in text
    assert text.index("I1201 an absl line") > text.index("6/12")  # the bar was drawn first ...
    assert text.rindex("6/12") > text.index("a logging line")  # ... and again below the lines


def test_the_loop_shows_a_bar_and_logs_only_evaluation_lines(monkeypatch, tmp_path, capsys, caplog):
    monkeypatch.setattr(loop, "use_progress_bar", lambda: True)
    caplog.set_level(logging.INFO)
    out = loop.train_and_evaluate(tiny_config(), tmp_path / "run")
    assert out["step"] == 12 and out["total_steps"] == 12 and out["perf/images_per_sec"] > 0
    err = capsys.readouterr().err
    assert "12/12" in err and "ETA" in err and "img/s" in err and "eval 1" in err
    logged = [r.getMessage() for r in caplog.records]
    steps = [m.split()[1] for m in logged if m.startswith("step ")]
    assert steps == ["6/12", "12/12"]  # eval_every 6: the evaluation lines, not steps 2, 4, ...
