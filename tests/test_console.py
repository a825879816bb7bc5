"""ul_jax.console: the errors, exit codes and formats every command shares, without the training
stack (issue 25, item 2)."""

import subprocess
import sys

import pytest

from ul_jax import console
from ul_jax.config import REPO_ROOT

_PROBE = """
import contextlib, io, runpy, sys
sys.argv = ["launch.{m}", "--help"]
code = None
try:
    with contextlib.redirect_stdout(io.StringIO()):
        runpy.run_module("launch.{m}", run_name="__main__")
except SystemExit as e:
    code = e.code
loaded = sorted(m for m in sys.modules if m == "ul_jax.train" or m.startswith("ul_jax.train."))
print(code, loaded, "tensorboardX" in sys.modules)
"""


@pytest.mark.parametrize("command", ["dynamics", "evaluate", "report"])
def test_commands_without_training_do_not_load_the_training_stack(command):
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(m=command)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")[-2]
    assert out == "0 [] False", out


def test_importing_the_evaluation_package_does_not_load_training():
    code = (
        "import sys, ul_jax.eval, ul_jax.console; "
        "bad = [m for m in sys.modules if m.startswith(('ul_jax.train', 'tensorboardX'))]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def test_one_duration_formatter_three_styles():
    assert console.fmt_duration(35.24) == "35.2 s"
    assert console.fmt_duration(247) == "4 min 07 s"
    assert console.fmt_duration(7390) == "2 h 03 min"
    assert console.fmt_duration(583, "clock") == "0:09:43"
    assert console.fmt_duration(7390, "clock") == "2:03:10"
    assert console.fmt_duration(45.1, "decimal") == "45.1 s"
    assert console.fmt_duration(228, "decimal") == "3.8 min"
    assert console.fmt_duration(5400, "decimal") == "1.5 h"
    assert console.fmt_duration(float("inf"), "clock") == "?"
    with pytest.raises(ValueError, match="style must be 'text', 'clock' or 'decimal'; got 'iso'"):
        console.fmt_duration(1.0, "iso")


def test_exit_code_of_an_error_that_carries_one():
    from ul_jax.train import NonFiniteError

    class Custom(RuntimeError):
        exit_code = 9

    assert console.exit_code_for(Custom("x")) == 9
    assert (
        console.exit_code_for(
            NonFiniteError(5, ["loss"], None, {"loss": 1, "grad_norm": 1, "lr": 1})
        )
        == console.EXIT_DIVERGED
    )
    assert console.exit_code_for(RuntimeError("x")) == console.EXIT_ERROR


def test_importing_metrics_does_not_load_matplotlib():
    code = "import sys, ul_jax.metrics; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)
