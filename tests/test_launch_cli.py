"""The absl command lines of ``launch/`` that are also called as functions: flag parsing, the
argparse-compatible list flags (``--ood a b``, ``--seeds 0 1`` as in the README), usage errors
(exit code 2 with a one-line message) and ``--help``; the benchmark CLI's config."""

import json
import os

import pytest
from absl import flags

from launch import _flags, bench


def _fv():
    fv = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "w", required=True, flag_values=fv)
    flags.DEFINE_multi_string("ood", [], "o", flag_values=fv)
    flags.DEFINE_multi_integer("seeds", None, "s", flag_values=fv)
    flags.DEFINE_boolean("markdown", False, "m", flag_values=fv)
    return fv


def test_expand_lists():
    argv = ["--ood", "a", "b", "--workdir", "w", "--seeds", "0", "1", "--ood", "c"]
    assert _flags.expand_lists(argv, ("ood", "seeds")) == [
        "--ood",
        "a",
        "--ood",
        "b",
        "--workdir",
        "w",
        "--seeds",
        "0",
        "--seeds",
        "1",
        "--ood",
        "c",
    ]
    # --NAME=value takes one value; "--" ends the flags; other flags are left alone
    assert _flags.expand_lists(["--ood=a", "x", "--", "--ood", "b", "c"], ("ood",)) == [
        "--ood=a",
        "x",
        "--",
        "--ood",
        "b",
        "c",
    ]
    assert _flags.expand_lists(["--workdir", "w", "x"], ("ood",)) == ["--workdir", "w", "x"]


def test_parse_lists_positionals_and_errors(capsys):
    fv = _fv()
    assert (
        _flags.parse(
            fv,
            [
                "--ood",
                "cifar10",
                "uniform_noise",
                "--workdir",
                "w",
                "--seeds",
                "0",
                "1",
                "--markdown",
            ],
            "prog",
            lists=("ood", "seeds"),
        )
        == []
    )
    assert fv.ood == ["cifar10", "uniform_noise"] and fv.seeds == [0, 1] and fv.markdown
    assert fv.workdir == "w"
    fv = _fv()
    rest = _flags.parse(fv, ["r1", "--workdir", "w", "r2"], "prog", positional="RUN")
    assert rest == ["r1", "r2"]
    assert fv.ood == [] and fv.seeds is None and not fv.markdown
    for argv, kw, message in [
        (["--workdir", "w", "stray"], {}, "unrecognized arguments: stray"),
        (["--workdir", "w"], {"positional": "RUN"}, "the following arguments are required: RUN"),
        (["--workdir", "w", "--bogus"], {}, "Unknown command line flag 'bogus'"),
        (["--ood", "a"], {}, "--workdir"),
    ]:
        with pytest.raises(SystemExit) as e:
            _flags.parse(_fv(), argv, "prog", **kw)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("prog: error: ") and message in err
        assert err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        _flags.parse(_fv(), ["--help"], "prog", "What it does.")
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith("usage: prog [flags]") and "What it does." in out
    assert "--workdir" in out and "--seeds" in out


def test_bench_cli_builds_the_training_config(monkeypatch, capsys, tmp_path):
    """``launch.bench train`` hands ``ul_jax.bench`` the config training would build for the
    variant (PAL/FNPAL: no bias, no final ReLU; linear heads keep both); usage errors exit 2."""
    calls = []
    monkeypatch.setattr(bench.bench, "run", lambda suite, **kw: calls.append((suite, kw)))
    for variant, head, relu in [
        ("ul_pal", "pal", False),
        ("ul_fnpal", "fnpal", False),
        ("ce", "linear", True),
    ]:
        assert (
            bench.main(
                [
                    "train",
                    "--model",
                    "resnet8",
                    "--batch",
                    "16",
                    "--dtype",
                    "bfloat16",
                    "--variant",
                    variant,
                    "--json",
                    "x.json",
                ]
            )
            == 0
        )
        suite, kw = calls.pop()
        c = kw["config"]
        assert suite == "train" and kw["steps"] == 5 and kw["json_path"] == "x.json"
        assert (c.model.arch, c.model.dtype, c.batch_size) == ("resnet8", "bfloat16", 16)
        assert c.variant == variant and c.head.kind == head
        assert c.model.final_relu is relu and c.head.bias is relu
    assert (
        bench.main(["data", "--source", "synthetic", "--batch-size", "32", "--data-dir", "d"]) == 0
    )
    assert calls.pop() == (
        "data",
        {
            "json_path": None,
            "dataset": "cifar10",
            "source": "synthetic",
            "data_dir": "d",
            "batch_size": 32,
            "steps": None,  # the suite's own default (200 for cifar10)
            "warmup": None,
            "seed": 0,
            "records": 512,
            "workers": (),
            "image_size": 224,
        },
    )
    # plan: the device counts / dtypes as tuples, and the CPU devices forced before jax starts
    monkeypatch.setenv("XLA_FLAGS", "")
    argv = ["plan", "--devices", "1", "--devices", "2", "--dtypes", "float32", "--mfu", "0.3"]
    assert bench.main(argv) == 0
    assert calls.pop() == (
        "plan",
        {
            "json_path": None,
            "device_counts": (1, 2),
            "dtypes": ("float32",),
            "mfu": 0.3,
            "markdown": None,
        },
    )
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert bench.main([]) == 2 and bench.main(["nope"]) == 2
    assert "usage: python -m launch.bench {ufm|train|data|plan|profile}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.main(["train", "--dtype", "float64"])
    assert e.value.code == 2 and "python -m launch.bench train: error:" in capsys.readouterr().err


def test_bench_run_writes_json(monkeypatch, tmp_path, capsys):
    from ul_jax import bench as lib
    from ul_jax.bench import data as data_bench

    monkeypatch.setattr(data_bench, "data_benchmark", lambda **kw: {"ok": 1, **kw})
    out = lib.run("data", json_path=str(tmp_path / "b.json"), steps=3)
    assert out == {"ok": 1, "steps": 3} == json.loads((tmp_path / "b.json").read_text())
    assert json.loads(capsys.readouterr().out) == out
    with pytest.raises(ValueError, match="benchmark must be one of"):
        lib.run("nope")
