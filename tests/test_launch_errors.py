"""One-line errors of the ``launch/`` commands (``ul_jax.train.cli``): an expected error — missing
data, a bad config value, a bad flag, no usable checkpoint, a full disk — is one line
``python -m launch.X: error: ...`` naming the value or path and how to fix it, with a documented
exit code and no traceback; ``--debug`` / ``UL_JAX_DEBUG=1`` shows the traceback; no misleading
chained error. The exit-code table of docs/RELIABILITY.md lists exactly the codes of the code."""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from absl import app

from launch import evaluate as evaluate_cli
from launch import plot as plot_cli
from ul_jax import console
from ul_jax.train import cli
from ul_jax.train.checkpoint import CheckpointCorruptError
from ul_jax.train.lock import WorkdirLockedError
from ul_jax.train.loop import NonFiniteError
from ul_jax.train.workdir import NoUsableCheckpointError

REPO = Path(__file__).resolve().parents[1]


def test_expected_errors_and_their_exit_codes():
    for e in [
        ValueError("optimizer.lr must be > 0"),
        FileNotFoundError("no image folder"),
        NotADirectoryError("x"),
        PermissionError("x"),
        OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl"),
        NoUsableCheckpointError("refusing to start from step 0"),
        CheckpointCorruptError(Path("/w/checkpoints/4"), "truncated"),
        WorkdirLockedError("in use"),
    ]:
        assert cli.is_expected_error(e), e
        assert cli.exit_code_for(e) == 1, e
    for e in [RuntimeError("a bug"), TypeError("a bug"), KeyError("a bug"), OSError(errno.EIO, "")]:
        assert not cli.is_expected_error(e), e
    assert cli.exit_code_for(app.UsageError("x")) == 2
    assert cli.exit_code_for(FileNotFoundError("x"), (FileNotFoundError,)) == 2
    nonfinite = NonFiniteError(5, ["loss"], None, {"loss": 1, "grad_norm": 1, "lr": 1})
    assert cli.exit_code_for(nonfinite) == 3 and cli.exit_code_for(KeyboardInterrupt()) == 130


def test_error_message_is_one_line_with_the_class_of_named_errors():
    assert cli.error_message(ValueError("a\n  b")) == "a b"
    assert cli.error_message(WorkdirLockedError("in use")) == "WorkdirLockedError: in use"
    full = cli.error_message(OSError(errno.ENOSPC, "No space left on device", "/w/m.jsonl"))
    assert full == (
        "[Errno 28] No space left on device: '/w/m.jsonl'; free space (or raise the quota) and "
        "rerun the same command"
    )
    assert cli.error_message(KeyboardInterrupt()) == "interrupted (Ctrl-C)"
    stream = io.StringIO()
    cli.report_error("prog", ValueError("bad\nvalue"), stream)
    assert stream.getvalue() == "prog: error: bad value\n"


def test_one_line_errors_context(capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as e:
        with cli.one_line_errors("prog"):
            raise ValueError("batch_size must be a positive integer; got batch_size=0")
    err = capsys.readouterr().err
    assert e.value.code == 1 and err == (
        "prog: error: batch_size must be a positive integer; got batch_size=0\n"
    )
    with pytest.raises(RuntimeError, match="a bug"):  # not expected: propagates unchanged
        with cli.one_line_errors("prog"):
            raise RuntimeError("a bug")
    for debug, env in [(True, None), (False, "1")]:
        if env:
            monkeypatch.setenv(cli.DEBUG_ENV, env)
        with pytest.raises(SystemExit) as e:
            with cli.one_line_errors("prog", debug=debug):
                raise FileNotFoundError("no such data")
        err = capsys.readouterr().err
        assert e.value.code == 1 and err.startswith("Traceback (most recent call last):")
        assert "FileNotFoundError: no such data" in err and "prog: error:" not in err
    assert [console._is_debug_flag(a) for a in ("--debug", "--debug=true", "--debug=false")] == [
        True,
        True,
        False,
    ]
    assert cli.debug_requested(False, {"UL_JAX_DEBUG": "0"}) is False
    assert cli.debug_requested(False, {}) is False and cli.debug_requested(True, {}) is True


def test_distributed_start_modes(monkeypatch, capsys):
    """UL_JAX_DISTRIBUTED=auto: jax.distributed.initialize() with no arguments (JAX detects the
    cluster); 1: with the UL_JAX_* settings; 0 / unset: not called; another value: one line
    naming the variable, exit code 2 (a usage error)."""
    import jax

    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **kw: calls.append((a, kw)))
    assert cli.init_distributed({"UL_JAX_DISTRIBUTED": "auto"}) is True
    assert calls == [((), {})]
    calls.clear()
    env = {"UL_JAX_DISTRIBUTED": "1", "UL_JAX_NUM_PROCESSES": "2", "UL_JAX_PROCESS_ID": "1"}
    assert cli.init_distributed(env) is True
    assert calls == [((), {**cli.distributed_kwargs(env), "num_processes": 2, "process_id": 1})]
    assert calls[0][1]["heartbeat_timeout_seconds"] == 60
    calls.clear()
    for off in ({}, {"UL_JAX_DISTRIBUTED": ""}, {"UL_JAX_DISTRIBUTED": "0"}):
        assert cli.init_distributed(off) is False
    assert calls == []

    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    monkeypatch.setenv("UL_JAX_DISTRIBUTED", "yes")
    with pytest.raises(SystemExit) as e:
        with cli.one_line_errors("prog"):
            cli.init_distributed()
    err = capsys.readouterr().err
    assert e.value.code == 2 and calls == []
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("prog: error: UL_JAX_DISTRIBUTED must be 'auto'")
    assert "got UL_JAX_DISTRIBUTED='yes'" in err


def _train(args: list[str], env: dict | None = None, unset=()) -> subprocess.Popen:
    e = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    for k in ("XLA_FLAGS", *unset):
        e.pop(k, None)
    if not env or cli.DEBUG_ENV not in env:
        e.pop(cli.DEBUG_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-m", "launch.train", *args],
        cwd=REPO,
        env=e,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_train_errors_are_one_line_and_debug_shows_the_traceback(tmp_path):
    """Started together (each process fails within seconds)."""
    from configs import digits

    other = tmp_path / "other_run"  # another run's config.json (seed 1), no checkpoint
    other.mkdir()
    config = digits.get_config("ul_pal")
    config.seed = 1
    (other / "config.json").write_text(config.to_json())
    missing = tmp_path / "no_data"
    cifar = ["--config", "configs/cifar10.py:ul_pal", f"--config.data.data_dir={missing}"]
    runs = {
        "missing_data": _train([*cifar, "--workdir", str(tmp_path / "a")]),
        "missing_data_debug": _train([*cifar, "--workdir", str(tmp_path / "b"), "--debug"]),
        "missing_data_env": _train(
            [*cifar, "--workdir", str(tmp_path / "c")], env={cli.DEBUG_ENV: "1"}
        ),
        "bad_value": _train(
            [
                *("--config", "configs/digits.py", "--workdir", str(tmp_path / "d")),
                "--config.optimizer.lr=-0.1",
            ]
        ),
        "bad_variant": _train(
            ["--config", "configs/digits.py:ul_pall", "--workdir", str(tmp_path / "e")]
        ),
        "stray_argument": _train(
            ["--config", "configs/digits.py", "--workdir", str(tmp_path / "f"), "stray"]
        ),
        "no_usable_checkpoint": _train(["--config", "configs/digits.py", "--workdir", str(other)]),
        # the design card's headline command on a fresh machine: no ~/tensorflow_datasets at all
        "imagenet_fresh_machine": _train(
            ["--config", "configs/imagenet100.py", "--workdir", str(tmp_path / "g")],
            env={"HOME": str(tmp_path / "home")},
            unset=("TFDS_DATA_DIR",),
        ),
    }
    done = {k: (p.wait(timeout=300), p.stderr.read(), p.stdout.read()) for k, p in runs.items()}

    rc, err, out = done["missing_data"]
    assert rc == 1 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1, err  # exactly one line, nothing else on stderr
    assert err.startswith(
        f"python -m launch.train: error: no image folder for dataset 'cifar10': none of "
        f"['{missing}/cifar10.tar.gz', "
    )
    assert f"exists ({missing} does not exist)" in err and "--config.data.data_dir=DIR" in err
    for key in ("missing_data_debug", "missing_data_env"):
        rc, err, _ = done[key]
        assert rc == 1 and "Traceback (most recent call last):" in err, key
        assert "FileNotFoundError: no image folder for dataset 'cifar10'" in err, key

    rc, err, _ = done["bad_value"]
    assert rc == 1 and err == (
        "python -m launch.train: error: optimizer.lr must be a finite number > 0; "
        "got optimizer.lr=-0.1\n"
    )
    assert not (tmp_path / "d").exists()  # refused before anything was written
    rc, err, _ = done["bad_variant"]
    assert rc == 2 and err == (
        "python -m launch.train: error: flag --config=configs/digits.py:ul_pall: config variant "
        "must be one of ('ce', 'ul', 'ul_pal', 'ul_fnpal', 'ul_fnpal_rlr', 'ce_efr', "
        "'ul_pal_efr'); got 'ul_pall'\n"
    )
    rc, err, _ = done["stray_argument"]
    assert rc == 2 and err == "python -m launch.train: error: unexpected arguments: stray\n"
    rc, err, _ = done["no_usable_checkpoint"]
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        f"python -m launch.train: error: NoUsableCheckpointError: refusing to start from step 0: "
        f"{other} holds the config.json of another run and no checkpoint (differing fields: "
        "seed: 1 -> 0). Pass --config.restart=True"
    )
    rc, err, _ = done["imagenet_fresh_machine"]
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    tfds_home = tmp_path / "home" / "tensorflow_datasets" / "imagenet2012"
    assert err.startswith(
        f"python -m launch.train: error: tfds dataset 'imagenet2012' (split 'train') is not "
        f"prepared in '{tfds_home}"
    )
    assert "`tfds build imagenet2012 --file_format=array_record`" in err


def test_tfds_data_not_prepared_has_no_misleading_chained_error(tmp_path):
    """tfds's own error says the dataset is "already prepared … in the TFRECORD format" when the
    folder is empty; ours says where it looked and how to prepare it, and drops that chain."""
    from ul_jax import data

    with pytest.raises(FileNotFoundError) as e:
        data.load_tfds("cifar100", "train", data_dir=tmp_path / "tfds")
    message = str(e.value)
    assert f"is not prepared in '{tmp_path / 'tfds' / 'cifar100'}" in message
    assert "tfds build cifar100" in message and "--config.data.data_dir=DIR" in message
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_in_process_commands_one_line_and_debug(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    missing = tmp_path / "nope"
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--workdir", str(missing)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err == (
        f"python -m launch.evaluate: error: work directory {missing} does not exist\n"
    )
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--workdir", str(missing), "--debug"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("Traceback") and "does not exist" in err
    with pytest.raises(SystemExit) as e:
        plot_cli.main([str(tmp_path), "--debug"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" in err and "metrics.jsonl: no such file" in err


def _table(heading: str) -> dict[int, str]:
    text = (REPO / "docs" / "RELIABILITY.md").read_text()
    body = text[text.index(heading) :]
    rows = re.findall(r"^\| (\d+) \| (.+?) \|", body.split("\n\n", 2)[1], re.M)
    return {int(code): what for code, what in rows}


def test_exit_code_table_of_the_docs_lists_the_codes():
    codes = _table("Exit codes of `python -m launch.train` and the other `launch/` commands")
    assert sorted(codes) == sorted(cli.EXIT_CODES)
