"""The bad-input sweep of docs/RELIABILITY.md: every row of its table is a case here, run for
real (training entry points, data loaders, checkpoints, the CLI in subprocesses), and the
message each gets must equal the table's — character for character, with ``<tmp>`` for the
test's temporary directory. Cases and table cannot drift: a case missing from the table, a row
without a case, or a changed message fails.

Regenerate the table after an intended message change (then review the diff)::

    python tests/test_train_reliability_inputs.py --write
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- bad-inputs:begin -->", "<!-- bad-inputs:end -->"
sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    bad_input: str  # what was wrong (the table's second column)
    run: Callable[[Path], object]  # raises, or returns ("warning", message) / ("exit N", line)
    must: tuple[str, ...]  # fragments the message must hold, whatever the table says
    cli: list[str] | None = None  # for CLI cases: the launch.train arguments
    env: dict | None = None


CASES: dict[str, Case] = {}


def case(id, bad_input, *must):
    def deco(fn):
        CASES[id] = Case(id, bad_input, fn, must)
        return fn

    return deco


def cli_case(id, bad_input, args, *must, env=None):
    CASES[id] = Case(id, bad_input, None, must, cli=args, env=env)


# ---------------------------------------------------------------------------------------------
# configs
# ---------------------------------------------------------------------------------------------
def _digits(variant="ul_pal", **overrides):
    from helpers import tiny_config

    return tiny_config(variant, **{"keep_checkpoints": 2, **overrides})  # digits default: 2


def _as_dict(c, **overrides):
    """The config as a plain nested dict (a config.json edited by hand, a ConfigDict built with
    type_safe=False): no type checks on assignment, so wrong types reach the validator."""
    from ul_jax.config import get_field, set_field

    d = c.to_dict()
    for k, v in overrides.items():
        if v is _DELETE:
            parent, _, leaf = k.rpartition(".")
            del (get_field(d, parent) if parent else d)[leaf]
        else:
            set_field(d, k, v)
    return d


_DELETE = object()


def _train(config, tmp: Path, **kw):
    from ul_jax.train import train_and_evaluate

    train_and_evaluate(config, tmp / "run", **kw)


def _config_case(id, bad_input, overrides, *must, variant="ul_pal", as_dict=False):
    def run(tmp):
        c = _as_dict(_digits(variant), **overrides) if as_dict else _digits(variant, **overrides)
        _train(c, tmp)

    CASES[id] = Case(id, bad_input, run, must)


_config_case("lr_negative", "optimizer.lr = -0.1", {"optimizer.lr": -0.1}, "optimizer.lr", "-0.1")
_config_case("lr_nan", "optimizer.lr = nan", {"optimizer.lr": math.nan}, "optimizer.lr", "nan")
_config_case(
    "momentum_one",
    "optimizer.momentum = 1.0",
    {"optimizer.momentum": 1.0},
    "optimizer.momentum",
    "1.0",
)
_config_case(
    "weight_decay_negative",
    "optimizer.weight_decay = -5e-4",
    {"optimizer.weight_decay": -5e-4},
    "optimizer.weight_decay",
    "-0.0005",
)
_config_case("batch_zero", "batch_size = 0", {"batch_size": 0}, "batch_size", "0")
_config_case(
    "num_train_steps_zero", "num_train_steps = 0", {"num_train_steps": 0}, "num_train_steps", "0"
)
_config_case("eval_every_negative", "eval_every = -1", {"eval_every": -1}, "eval_every", "-1")
_config_case(
    "keep_checkpoints_zero",
    "keep_checkpoints = 0",
    {"keep_checkpoints": 0},
    "keep_checkpoints",
    "0",
)
_config_case(
    "crop_padding_negative",
    "data.crop_padding = -1",
    {"data.crop_padding": -1},
    "data.crop_padding",
    "-1",
)
_config_case(
    "image_size_zero", "data.image_size = 0", {"data.image_size": 0}, "data.image_size", "0"
)
_config_case(
    "gamma_negative", "objective.gamma = -0.5", {"objective.gamma": -0.5}, "objective.gamma", "-0.5"
)
_config_case(
    "gamma_with_ce",
    "objective.gamma = 0.1 with objective.loss = 'ce'",
    {"objective.loss": "ce", "objective.gamma": 0.1},
    "objective.gamma",
    "'ul'",
)
_config_case("head_scale_zero", "head.scale = 0.0", {"head.scale": 0.0}, "head.scale")
_config_case(
    "pal_too_narrow",
    "model.width_multiplier = 0.125 with a PAL head (8 features, 10 classes)",
    {"model.width_multiplier": 0.125},
    "num_classes-1 = 9",
    "gives 8",
)
_config_case(
    "fnpal_mse",
    "objective.loss = 'mse' with head.kind = 'fnpal'",
    {"head.kind": "fnpal", "head.bias": False, "objective.loss": "mse"},
    "'mse'",
    "'fnpal'",
)
_config_case(
    "warmup_too_long",
    "optimizer.warmup_epochs = 100 in a 12-step run",
    {"optimizer.warmup_epochs": 100.0},
    "warmup_epochs=100",
    "12 train steps",
)
_config_case(
    "batch_larger_than_data",
    "batch_size = 2048 > 1347 digits train images",
    {"batch_size": 2048, "eval_batch_size": 2048},
    "batch_size=2048",
    "1347",
)
# wrong types
_config_case(
    "batch_size_str",
    "batch_size = '64' (a string)",
    {"batch_size": "64"},
    "batch_size",
    "'64'",
    as_dict=True,
)
_config_case(
    "lr_str",
    "optimizer.lr = '0.1' (a string)",
    {"optimizer.lr": "0.1"},
    "optimizer.lr",
    "'0.1'",
    as_dict=True,
)
_config_case(
    "num_epochs_bool",
    "num_epochs = True (a bool for an int)",
    {"num_epochs": True},
    "num_epochs",
    "True",
    as_dict=True,
)
_config_case(
    "num_epochs_float",
    "num_epochs = 2.5 (a float for an int)",
    {"num_epochs": 2.5},
    "num_epochs",
    "2.5",
    as_dict=True,
)
_config_case(
    "rlr_int",
    "objective.rlr = 1 (an int for a bool)",
    {"objective.rlr": 1},
    "objective.rlr",
    as_dict=True,
)
_config_case(
    "restart_str",
    "restart = 'yes' (a string for a bool)",
    {"restart": "yes"},
    "restart",
    "'yes'",
    as_dict=True,
)
# unknown names
_config_case(
    "data_name_unknown", "data.name = 'mnist'", {"data.name": "mnist"}, "data.name", "'mnist'"
)
_config_case(
    "arch_unknown", "model.arch = 'resnet9'", {"model.arch": "resnet9"}, "model.arch", "'resnet9'"
)
_config_case(
    "loss_unknown",
    "objective.loss = 'hinge2'",
    {"objective.loss": "hinge2"},
    "objective.loss",
    "'hinge2'",
)
_config_case(
    "head_unknown", "head.kind = 'cosine'", {"head.kind": "cosine"}, "head.kind", "'cosine'"
)
_config_case(
    "source_wrong",
    "data.source = 'tfds' for data.name = 'digits'",
    {"data.source": "tfds"},
    "data.source",
    "'tfds'",
)
_config_case(
    "field_missing",
    "objective.rlr missing from the config",
    {"objective.rlr": _DELETE},
    "objective.rlr",
    as_dict=True,
)


@case("variant_unknown", "configs/digits.py variant 'ul_pall'", "variant", "'ul_pall'")
def _(tmp):
    from configs import digits

    digits.get_config("ul_pall")


# ---------------------------------------------------------------------------------------------
# loop arguments and work directories
# ---------------------------------------------------------------------------------------------
@case("until_step_zero", "until_step = 0", "until_step", "0")
def _(tmp):
    _train(_digits(), tmp, until_step=0)


@case("skip_nonfinite_negative", "skip_nonfinite = -1", "skip_nonfinite", "-1")
def _(tmp):
    _train(_digits(), tmp, skip_nonfinite=-1)


@case("workdir_is_a_file", "--workdir names an existing file", "<tmp>/run", "not a directory")
def _(tmp):
    (tmp / "run").write_text("x")
    _train(_digits(), tmp)


@case(
    "workdir_parent_is_a_file",
    "--workdir <tmp>/file/run where <tmp>/file is a file",
    "<tmp>/file is a file",
)
def _(tmp):
    from ul_jax.train import train_and_evaluate

    (tmp / "file").write_text("x")
    train_and_evaluate(_digits(), tmp / "file" / "run")


@case(
    "workdir_parent_read_only",
    "--workdir <tmp>/ro/new/run where <tmp>/ro is read-only",
    "<tmp>/ro is not writable",
)
def _(tmp):
    from _faults import read_only

    from ul_jax.train import train_and_evaluate

    (tmp / "ro").mkdir()
    with read_only(tmp / "ro"):
        train_and_evaluate(_digits(), tmp / "ro" / "new" / "run")


@case(
    "workdir_read_only",
    "--workdir an existing read-only directory",
    "<tmp>/run is not writable",
)
def _(tmp):
    from _faults import read_only

    (tmp / "run").mkdir()
    with read_only(tmp / "run"):
        _train(_digits(), tmp)


@case(
    "workdir_locked",
    "--workdir locked by a live run on another host (fresh heartbeat)",
    "host node-b, PID 4242, started 2026-01-01 00:00:00 UTC",
    "<tmp>/run/writer.lock",
)
def _(tmp):
    import json
    import time

    (tmp / "run").mkdir()
    now = time.time()
    (tmp / "run" / "writer.lock").write_text(
        json.dumps(
            {
                "host": "node-b",
                "pid": 4242,
                "start_time": "2026-01-01 00:00:00 UTC",
                "heartbeat": now,
                "token": "0" * 32,
            }
        )
    )
    _train(_digits(), tmp)


@case(
    "config_json_truncated",
    "the work directory's config.json truncated",
    "config.json",
    "not valid JSON",
)
def _(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text(_digits().to_json()[:100])
    _train(_digits(), tmp)


@case(
    "config_json_other_run",
    "a work directory with another run's config.json (seed 1) and no checkpoint",
    "seed: 1 -> 0",
    "--config.restart=True",
)
def _(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text(_digits(seed=1).to_json())
    _train(_digits(), tmp)


@case(
    "checkpoints_lost",
    "metrics.jsonl up to step 8 but no checkpoint (first one due at 4)",
    "reaches step 8",
    "first checkpoint step 4",
)
def _(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / "config.json").write_text(_digits().to_json())
    (tmp / "run" / "metrics.jsonl").write_text(
        "".join(f'{{"step": {k}, "train/loss": 0.5}}\n' for k in (2, 4, 6, 8))
    )
    _train(_digits(), tmp)


# ---------------------------------------------------------------------------------------------
# checkpoints of another shape, damaged checkpoints
# ---------------------------------------------------------------------------------------------
def _cifar(name="cifar10", **overrides):
    import importlib

    from ul_jax.config import set_field

    c = importlib.import_module(f"configs.{name}").get_config("ce")
    c.model.arch, c.model.width_multiplier = "resnet8", 0.25
    for k, v in overrides.items():
        set_field(c, k, v)
    return c


def _cifar10_run(tmp: Path) -> Path:
    """A CIFAR-10 work directory (config.json + checkpoint 0 of the initial state: no data
    needed), as a CIFAR-10 run leaves it."""
    import jax

    from ul_jax import data as uldata
    from ul_jax.train import build_model_from_config, build_optimizer_from_config, jit_init_state
    from ul_jax.train.checkpoint import Checkpointer, save_config

    work = tmp / "cifar10_run"
    c = _cifar()
    tx, _ = build_optimizer_from_config(c, 100, 10)
    state = jit_init_state(
        build_model_from_config(c, 10), tx, c.seed, (32, 32, 3), uldata.data_mesh(jax.devices()[:1])
    )
    save_config(work, c)
    with Checkpointer(work / "checkpoints") as ck:
        ck.save(4, state)
    return work


@case(
    "resume_cifar10_as_cifar100",
    "resuming a CIFAR-10 work directory with a CIFAR-100 config",
    "data.name",
    "'cifar10'",
    "'cifar100'",
)
def _(tmp):
    from ul_jax.train import train_and_evaluate

    train_and_evaluate(_cifar("cifar100"), _cifar10_run(tmp))


@case(
    "restore_cifar10_into_cifar100",
    "restore_checkpoint of a CIFAR-10 run with a CIFAR-100 config (num_classes differs)",
    "params/head/kernel",
    "(16, 10)",
    "(16, 100)",
)
def _(tmp):
    from ul_jax.train import restore_checkpoint

    restore_checkpoint(_cifar10_run(tmp), config=_cifar("cifar100"))


@case(
    "restore_truncated_tree_metadata",
    "restore_checkpoint of a checkpoint whose tree metadata (default/_METADATA) is truncated",
    "<tmp>/cifar10_run/checkpoints/4 is damaged",
    "tree metadata",
)
def _(tmp):
    from ul_jax.train import restore_checkpoint

    work = _cifar10_run(tmp)
    meta = work / "checkpoints" / "4" / "default" / "_METADATA"
    meta.write_bytes(meta.read_bytes()[:200])
    restore_checkpoint(work)


@case(
    "restore_without_checkpoint_metadata",
    "restore_checkpoint of a checkpoint whose "
    "_CHECKPOINT_METADATA (with the fingerprint) was deleted",
    "<tmp>/cifar10_run/checkpoints/4 is damaged",
    "fingerprint",
)
def _(tmp):
    from ul_jax.train import restore_checkpoint

    work = _cifar10_run(tmp)
    (work / "checkpoints" / "4" / "_CHECKPOINT_METADATA").unlink()
    restore_checkpoint(work)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _image_folder(root: Path, classes=CIFAR10_CLASSES, splits=("train", "test")) -> Path:
    for split in splits:
        for i, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            (root / split / c / "0.png").write_bytes(_png(10 * i))
    return root


def _cifar_from(tmp: Path):
    os.environ["UL_JAX_CACHE_DIR"] = str(tmp / "cache")  # restored by the test
    return _cifar(**{"data.data_dir": str(tmp / "data"), "batch_size": 4, "eval_batch_size": 4})


@case(
    "data_missing",
    "data.data_dir without the CIFAR-10 archive or folder",
    "no image folder for dataset 'cifar10'",
    "<tmp>/data/cifar10.tar.gz",
)
def _(tmp):
    (tmp / "data").mkdir()
    _train(_cifar_from(tmp), tmp)


@case(
    "archive_not_a_tar",
    "cifar10.tar.gz holding random bytes",
    "neither a directory nor a tar archive",
)
def _(tmp):
    (tmp / "data").mkdir()
    (tmp / "data" / "cifar10.tar.gz").write_bytes(np.random.default_rng(0).bytes(4096))
    _train(_cifar_from(tmp), tmp)


@case(
    "archive_truncated",
    "cifar10.tar.gz cut in half",
    "truncated or corrupt",
    "<tmp>/data/cifar10.tar.gz",
)
def _(tmp):
    _image_folder(tmp / "folder")
    (tmp / "data").mkdir()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:  # fixed times: the same bytes each run
        for p in sorted((tmp / "folder").rglob("*.png")):
            info = tarfile.TarInfo("cifar10/" + p.relative_to(tmp / "folder").as_posix())
            info.size, info.mtime = p.stat().st_size, 0
            t.addfile(info, io.BytesIO(p.read_bytes()))
    blob = gzip.compress(buf.getvalue(), mtime=0)
    (tmp / "data" / "cifar10.tar.gz").write_bytes(blob[: len(blob) // 2])
    _train(_cifar_from(tmp), tmp)


@case(
    "image_corrupt",
    "an undecodable .png in the CIFAR-10 folder",
    "cannot decode image",
    "train/cat/0.png",
)
def _(tmp):
    root = _image_folder(tmp / "data" / "cifar10")
    (root / "train" / "cat" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    _train(_cifar_from(tmp), tmp)


@case(
    "images_of_mixed_sizes",
    "CIFAR-10 folder images of two sizes",
    "has shape (8, 8, 3)",
    "(4, 4, 3)",
)
def _(tmp):
    from PIL import Image

    root = _image_folder(tmp / "data" / "cifar10")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "truck" / "1.png")
    _train(_cifar_from(tmp), tmp)


@case("split_missing", "CIFAR-10 folder without a test split", "split 'test' not found")
def _(tmp):
    _image_folder(tmp / "data" / "cifar10", splits=("train",))
    _train(_cifar_from(tmp), tmp)


@case(
    "eleven_classes", "a CIFAR-10 folder with 11 class folders", "should have 10 classes", "has 11"
)
def _(tmp):
    _image_folder(tmp / "data" / "cifar10", classes=CIFAR10_CLASSES + ("zebra",))
    _train(_cifar_from(tmp), tmp)


@case(
    "labels_out_of_range",
    "labels [0, 10] for 10 classes (an in-memory dataset)",
    "out of range [0, 10)",
    "[10]",
)
def _(tmp):
    from ul_jax.data import ArrayDataset

    ArrayDataset(
        "cifar10", "train", np.zeros((2, 4, 4, 3), np.uint8), np.array([0, 10]), CIFAR10_CLASSES
    )


@case("labels_negative", "label -1 (an in-memory dataset)", "out of range [0, 10)", "[-1]")
def _(tmp):
    from ul_jax.data import ArrayDataset

    ArrayDataset(
        "cifar10", "train", np.zeros((2, 4, 4, 3), np.uint8), np.array([3, -1]), CIFAR10_CLASSES
    )


@case(
    "cache_bytes_flipped",
    "a flipped byte in the decoded-image cache (images.npy)",
    "images.npy differs from the bytes that were written",
    "rebuilding it",
)
def _(tmp):
    import logging

    from ul_jax.data import load_dataset

    _image_folder(tmp / "data" / "cifar10")
    c = _cifar_from(tmp)
    kw = dict(source="image_folder", data_dir=c.data.data_dir)
    first = load_dataset("cifar10", "train", **kw)
    npy = next((tmp / "cache").rglob("images.npy"))
    blob = bytearray(npy.read_bytes())
    blob[-1] ^= 0xFF  # one pixel of the last image
    npy.write_bytes(bytes(blob))
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("ul_jax.data._cache").addHandler(handler)
    try:
        again = load_dataset("cifar10", "train", **kw)
    finally:
        logging.getLogger("ul_jax.data._cache").removeHandler(handler)
    assert np.array_equal(first.images, again.images)  # rebuilt, not used
    return "warning", records[0].getMessage()


# ---------------------------------------------------------------------------------------------
# the command line (run in subprocesses, all at once)
# ---------------------------------------------------------------------------------------------
DIGITS = ["--config", "configs/digits.py"]
cli_case(
    "cli_unknown_field",
    "--config.optimizer.lrr=0.1 (a misspelt field)",
    [*DIGITS, "--config.optimizer.lrr=0.1"],
    "--config.optimizer.lrr",
    'Did you mean "lr"',
)
cli_case(
    "cli_wrong_type",
    "--config.batch_size=abc",
    [*DIGITS, "--config.batch_size=abc"],
    "--config.batch_size=abc",
)
cli_case(
    "cli_float_for_int",
    "--config.num_epochs=2.5",
    [*DIGITS, "--config.num_epochs=2.5"],
    "--config.num_epochs=2.5",
)
cli_case(
    "cli_unknown_variant",
    "--config configs/digits.py:ul_pall",
    ["--config", "configs/digits.py:ul_pall"],
    "'ul_pall'",
)
cli_case(
    "cli_batch_not_divisible",
    "batch_size 128 on 3 devices (--xla_force_host_platform_device_count=3)",
    DIGITS,
    "batch_size=128",
    "device count 3",
    env={"XLA_FLAGS": "--xla_force_host_platform_device_count=3"},
)
cli_case(
    "cli_bad_timeout_env",
    "UL_JAX_HEARTBEAT_TIMEOUT_S=abc (multi-process settings)",
    DIGITS,
    "UL_JAX_HEARTBEAT_TIMEOUT_S",
    "'abc'",
    env={"UL_JAX_DISTRIBUTED": "1", "UL_JAX_HEARTBEAT_TIMEOUT_S": "abc"},
)
cli_case(
    "cli_no_workdir", "no --workdir", ["--config", "configs/digits.py", "--noworkdir"], "--workdir"
)


# ---------------------------------------------------------------------------------------------
# running a case, the table
# ---------------------------------------------------------------------------------------------
def _normalize(text: str, tmp: Path) -> str:
    """One line; the temporary directory as ``<tmp>``, the repository as ``<repo>``, object
    addresses as ``0x…``, sha256 cache keys (they hash file times) as ``<sha256>``, the age of
    a lock's heartbeat as ``<n>``."""
    text = " ".join(str(text).split())
    text = text.replace(str(tmp), "<tmp>").replace(str(REPO), "<repo>")
    text = re.sub(r"\b[0-9a-f]{64}\b", "<sha256>", text)
    text = re.sub(r"last heartbeat \d+ s ago", "last heartbeat <n> s ago", text)
    return re.sub(r"\b0x[0-9a-f]{6,}\b", "0x…", text)


def _cli_command(c: Case, tmp: Path) -> tuple[list[str], dict]:
    args = [a for a in c.cli if a != "--noworkdir"]
    if "--noworkdir" not in c.cli:
        args += ["--workdir", str(tmp / "run")]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(c.env or {})}
    if "XLA_FLAGS" not in (c.env or {}):
        env.pop("XLA_FLAGS", None)
    return [sys.executable, "-m", "launch.train", *args], env


def _cli_outcome(rc: int, stderr: str) -> tuple[str, str]:
    """``("exit N", the last stderr line)``: the CLI's one-line error."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return f"exit {rc}", lines[-1] if lines else ""


def run_case(c: Case, tmp: Path) -> tuple[str, str]:
    """``(error, message)`` of a case: the exception type (or ``exit N`` / ``warning``)."""
    if c.cli is not None:
        cmd, env = _cli_command(c, tmp)
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        kind, msg = _cli_outcome(p.returncode, p.stderr)
        return kind, _normalize(msg, tmp)
    old_cache = os.environ.get("UL_JAX_CACHE_DIR")
    try:
        out = c.run(tmp)
    except Exception as e:
        return type(e).__name__, _normalize(str(e), tmp)
    finally:
        if old_cache is None:
            os.environ.pop("UL_JAX_CACHE_DIR", None)
        else:
            os.environ["UL_JAX_CACHE_DIR"] = old_cache
    if isinstance(out, tuple):
        return out[0], _normalize(out[1], tmp)
    return "no error", ""


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _uncell(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def render_table(results: dict[str, tuple[str, str]]) -> str:
    lines = ["| case | bad input | error | message |", "|---|---|---|---|"]
    for cid, c in CASES.items():
        kind, msg = results[cid]
        lines.append(f"| `{cid}` | {_cell(c.bad_input)} | {_cell(kind)} | {_cell(msg)} |")
    return "\n".join(lines)


def read_table(path: Path = DOC) -> dict[str, tuple[str, str, str]]:
    """``{case: (bad input, error, message)}`` from the table between the markers."""
    text = path.read_text()
    body = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    rows = {}
    for line in body.strip().splitlines()[2:]:
        cells = [_uncell(c.strip()) for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        assert len(cells) == 4, line
        rows[cells[0].strip("`")] = tuple(cells[1:])
    return rows


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
def test_table_lists_exactly_the_cases():
    rows = read_table()
    assert list(rows) == list(CASES), "docs/RELIABILITY.md table out of sync with CASES"
    for cid, (bad_input, _, _) in rows.items():
        assert bad_input == CASES[cid].bad_input, cid


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """All CLI cases started at once (each is a short-lived process)."""
    procs = {}
    for cid, c in CASES.items():
        if c.cli is not None:
            tmp = tmp_path_factory.mktemp(cid)
            cmd, env = _cli_command(c, tmp)
            procs[cid] = (
                tmp,
                subprocess.Popen(
                    cmd,
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
    out = {}
    for cid, (tmp, p) in procs.items():
        _, err = p.communicate(timeout=300)
        kind, msg = _cli_outcome(p.returncode, err)
        out[cid] = (kind, _normalize(msg, tmp), tmp, err)
    return out


@pytest.mark.parametrize("cid", list(CASES))
def test_bad_input_gets_the_documented_error(cid, tmp_path, cli_results):
    c = CASES[cid]
    row = read_table().get(cid)
    assert row is not None, f"{cid} is not in docs/RELIABILITY.md"
    if c.cli is not None:
        kind, msg, tmp, err = cli_results[cid]
        assert kind != "exit 0"
        assert not (tmp / "run").exists()  # nothing written before the error
        assert err.count("\n") == 1 and "Traceback" not in err, err  # one line, no traceback
        assert msg.startswith("python -m launch.train: error: "), msg
    else:
        kind, msg = run_case(c, tmp_path)
        assert kind != "no error"
    for fragment in c.must:
        assert fragment in msg, (fragment, msg)
    assert (kind, msg) == row[1:], f"message of {cid} differs from docs/RELIABILITY.md"


def write_table(tmp_root: Path) -> None:
    results = {}
    for cid, c in CASES.items():
        d = tmp_root / cid
        d.mkdir(parents=True)
        results[cid] = run_case(c, d)
        print(f"{cid}: {results[cid]}")
    text = DOC.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    DOC.write_text(f"{head}{BEGIN}\n{render_table(results)}\n{END}{tail}")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    with tempfile.TemporaryDirectory() as d:
        write_table(Path(d))
