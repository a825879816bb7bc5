"""``-h`` / ``--help`` of every ``launch/*`` command exits 0 and prints the usage, the docstring as
plain text (no reStructuredText markup) and the flags; ``launch.train --help`` also lists the
config fields."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from launch import _flags

REPO = Path(__file__).resolve().parents[1]
CLIS = sorted(p.stem for p in (REPO / "launch").glob("*.py") if not p.stem.startswith("_"))


def _help(module: str, flag: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"launch.{module}", flag],
        cwd=REPO,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_cli_is_covered():
    assert {"train", "dynamics", "evaluate", "report", "reproduce", "bench", "plot"} <= set(CLIS)


@pytest.mark.parametrize("module", CLIS)
def test_help_exits_0_with_plain_usage(module):
    r = _help(module, "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith(f"usage: python -m launch.{module}"), r.stdout[:300]
    assert "``" not in r.stdout and ":mod:`" not in r.stdout and ":func:`" not in r.stdout
    assert "Traceback" not in r.stderr


def test_train_help_lists_flags_and_config_fields():
    r = _help("train", "-h")
    assert r.returncode == 0, r.stderr[-2000:]
    for flag in ("--config:", "--workdir:", "--until_step:", "--skip_nonfinite:"):
        assert f"\n  {flag}" in r.stdout
    assert "\n  --[no]config_help:" in r.stdout
    assert "Training config fields" in r.stdout
    for field in ("objective.loss", "head.kind", "batch_size", "tensorboard"):
        assert f"\n{field} (" in r.stdout


def test_dynamics_short_help_flag():
    r = _help("dynamics", "-h")
    assert r.returncode == 0 and "  --config" in r.stdout, r.stderr[-2000:]


def test_plain():
    doc = "Run ``x --y`` (:func:`ul_jax.a.b`, :mod:`~ul_jax.train.cli`).\n"
    assert _flags.plain(doc) == "Run x --y (ul_jax.a.b, cli)."
