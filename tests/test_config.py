"""Training configs: every file and variant validates; bad fields are ValueErrors naming the field,
raised before any data is read or anything compiled; the CLI parses config files and overrides."""

import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from configs import common
from ul_jax.config import SHAPE_FIELDS, set_field
from ul_jax.train import train_and_evaluate, validate_config
from ul_jax.train.checkpoint import check_resume_config, flatten_config

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILES = ("cifar10", "cifar100", "cifar10_lt", "cifar100_lt", "imagenet100", "digits")


@pytest.mark.parametrize("name", CONFIG_FILES)
@pytest.mark.parametrize("variant", common.VARIANTS)
def test_every_config_and_variant_validates(name, variant):
    c = importlib.import_module(f"configs.{name}").get_config(variant)
    validate_config(c, device_count=1)
    validate_config(c, device_count=8)  # batch 256 / 128 split over 8 devices
    assert c.variant == variant
    if variant in ("ul_pal", "ul_pal_efr"):
        assert c.head.kind == "pal" and c.objective.loss == "ul" and not c.model.final_relu
        assert not c.head.bias  # UL is linear in b: a bias drifts on imbalanced data
    if variant.startswith("ul_fnpal"):
        assert c.head.kind == "fnpal" and not c.head.bias
        assert c.objective.rlr == variant.endswith("rlr")
    if variant in ("ce", "ul", "ce_efr"):
        assert c.head.kind == "linear" and c.model.final_relu and c.head.bias
    assert (c.objective.efr_weight > 0) == variant.endswith("efr")


def test_ul_with_bias_on_imbalanced_data_warns():
    c = importlib.import_module("configs.cifar10_lt").get_config("ul_pal")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_config(c, device_count=1)  # the variant itself: no bias, no warning
    c.head.bias = True
    with pytest.warns(
        UserWarning, match=r"head\.bias=True on imbalanced data.*imbalance_ratio=100"
    ):
        validate_config(c, device_count=1)
    c.data.imbalance_ratio = None  # balanced: the drift is zero, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_config(c, device_count=1)


def test_paper_hyperparameters():
    for name, arch, epochs in (
        ("cifar10", "resnet18", 200),
        ("cifar100", "resnet34", 200),
        ("imagenet100", "resnet50", 100),
    ):
        c = importlib.import_module(f"configs.{name}").get_config()
        assert (c.model.arch, c.num_epochs, c.batch_size) == (arch, epochs, 256)
        o = c.optimizer
        assert (o.lr, o.momentum, o.weight_decay, o.schedule) == (0.1, 0.9, 5e-4, "cosine")
    im = importlib.import_module("configs.imagenet100").get_config()
    assert (im.model.stem, im.data.image_size) == ("imagenet", 224)
    lt = importlib.import_module("configs.cifar10_lt").get_config()
    assert lt.data.imbalance_ratio == 100.0


def test_unknown_variant():
    with pytest.raises(ValueError, match="variant must be one of"):
        importlib.import_module("configs.cifar10").get_config("ul_pall")


def _digits(**overrides):
    c = importlib.import_module("configs.digits").get_config("ul_pal")
    for k, v in overrides.items():
        set_field(c, k, v)
    return c


BAD = [
    ({"objective.loss": "hinge2"}, r"objective\.loss.*'hinge2'"),
    ({"head.kind": "cosine"}, r"head\.kind.*'cosine'"),
    ({"model.arch": "resnet9"}, r"model\.arch.*'resnet9'"),
    ({"objective.gamma": -0.5}, r"objective\.gamma.*-0\.5"),
    ({"objective.efr_weight": -1e-6}, r"objective\.efr_weight.*-1e-06"),
    ({"optimizer.lr": 0.0}, r"optimizer\.lr.*0\.0"),
    ({"optimizer.lr": -0.1}, r"optimizer\.lr.*-0\.1"),
    ({"optimizer.lr": float("inf")}, r"optimizer\.lr.*inf"),
    ({"optimizer.momentum": 1.0}, r"optimizer\.momentum.*1\.0"),
    ({"optimizer.weight_decay": -5e-4}, r"optimizer\.weight_decay"),
    ({"optimizer.schedule": "step"}, r"optimizer\.schedule.*'step'"),
    ({"num_epochs": 0}, r"num_epochs.*0"),
    ({"batch_size": 0}, r"batch_size.*0"),
    ({"log_every": 0}, r"log_every.*0"),
    ({"keep_checkpoints": 0}, r"keep_checkpoints.*0"),
    ({"data.name": "mnist"}, r"data\.name.*'mnist'"),
    ({"data.source": "tfds"}, r"data\.source.*'tfds'"),
    ({"data.augment": "mixup"}, r"data\.augment.*'mixup'"),
    ({"data.imbalance_ratio": 0.5}, r"data\.imbalance_ratio.*0\.5"),
    ({"model.width_multiplier": 0.0}, r"model\.width_multiplier.*0\.0"),
    ({"model.stem": "vit"}, r"model\.stem.*'vit'"),
    ({"head.scale": 0.0}, r"head\.scale.*0\.0"),
    (
        {"head.kind": "fnpal", "head.bias": True},
        r"head\.bias must be False for head\.kind='fnpal'.*=True",
    ),  # FNPAL has no bias
    ({"head.kind": "fnpal", "head.bias": False, "objective.loss": "mse"}, r"'mse'.*'fnpal'"),
    ({"objective.loss": "ce", "objective.gamma": 0.1}, r"objective\.gamma.*'ul'"),
    ({"model.width_multiplier": 0.125}, r"pal.*feature dimension >= num_classes-1 = 9.*gives 8"),
    ({"debug_nonfinite_at_step": 0}, r"debug_nonfinite_at_step.*0"),
]


@pytest.mark.parametrize(
    "overrides,pattern", BAD, ids=[next(iter(o)) + "=" + str(list(o.values())[-1]) for o, _ in BAD]
)
def test_bad_config_fields(overrides, pattern, tmp_path):
    c = _digits(**overrides)
    with pytest.raises(ValueError, match=pattern):
        validate_config(c, device_count=1)
    # train_and_evaluate refuses it before touching the work directory or compiling anything
    with pytest.raises(ValueError, match=pattern):
        train_and_evaluate(c, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_batch_not_divisible_by_devices():
    c = _digits(batch_size=100)
    validate_config(c, device_count=4)
    with pytest.raises(ValueError, match=r"batch_size=100 must be divisible by the device count 8"):
        validate_config(c, device_count=8)
    with pytest.raises(
        ValueError,
        match=r"eval_batch_size=256 must be divisible by the device "
        r"count 3",
    ):
        validate_config(_digits(batch_size=99), device_count=3)


def test_missing_field_is_named():
    c = _digits()
    del c.objective["rlr"]
    with pytest.raises(ValueError, match=r"no field 'objective\.rlr'"):
        validate_config(c, device_count=1)


def test_batch_larger_than_train_set(tmp_path):
    with pytest.raises(ValueError, match=r"batch_size=2048 exceeds the 1347 train examples"):
        train_and_evaluate(_digits(batch_size=2048, eval_batch_size=2048), tmp_path / "run")


def test_resume_config_check_names_shape_fields():
    old = _digits()
    assert check_resume_config(old.to_dict(), _digits()) == []
    changed = check_resume_config(old.to_dict(), _digits(num_epochs=40, **{"optimizer.lr": 0.05}))
    assert changed == ["num_epochs: 30 -> 40", "optimizer.lr: 0.1 -> 0.05"]
    assert check_resume_config(old.to_dict(), _digits(**{"optimizer.momentum": 0.5})) != []
    with pytest.raises(
        ValueError, match=r"optimizer\.momentum: checkpoint has 0\.9, config has 0\.0"
    ):
        check_resume_config(old.to_dict(), _digits(**{"optimizer.momentum": 0.0}))
    with pytest.raises(ValueError, match=r"head\.kind: checkpoint has 'pal', config has 'linear'"):
        check_resume_config(old.to_dict(), _digits(**{"head.kind": "linear"}))
    assert set(SHAPE_FIELDS) <= set(flatten_config(old))


def test_cli_config_flags_and_errors(tmp_path):
    """``python -m launch.train`` parses ``file:variant`` and ``--config.x=y``; a bad override
    fails with the field's name before anything runs."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [
        sys.executable,
        "-m",
        "launch.train",
        "--config",
        "configs/digits.py:ce",
        "--workdir",
        str(tmp_path / "run"),
        "--config.objective.gamma=0.5",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "objective.gamma" in proc.stderr and "'ul'" in proc.stderr
    assert not (tmp_path / "run").exists()
    stored = json.loads(json.dumps(_digits().to_dict()))  # config dicts are JSON-serializable
    assert stored["data"]["name"] == "digits"


def test_schema_table_covers_base_config():
    """ul_jax.config.FIELDS has one row per field of configs/common.py:base_config() (plus the
    optional variant/experiment), with the same defaults; every default passes its own rule."""
    from ul_jax.config import FIELDS, check_fields, describe_fields
    from ul_jax.train.checkpoint import flatten_config

    flat = flatten_config(common.base_config())
    table = {f.name: f for f in FIELDS}
    assert set(flat) == set(table) - {"variant", "experiment"}
    assert {n: table[n].default for n in flat} == flat
    check_fields(common.base_config())
    text = describe_fields()
    assert all(f"\n{f.name} (" in text for f in FIELDS)
    assert "changes checkpoint shapes" in text


def test_dotted_field_helpers():
    from ul_jax.config import get_field, set_field

    c = _digits()
    set_field(c, "optimizer.lr", 0.05)
    assert get_field(c, "optimizer.lr") == c.optimizer.lr == 0.05
    d = c.to_dict()
    set_field(d, "data.seed", 3)
    assert get_field(d, "data.seed") == 3
    assert get_field(d, "data.missing", None) is None
    for bad in ("optimizer.lrr", "nope.lr", "lrr"):
        with pytest.raises(ValueError, match=f"no field '{bad}'"):
            set_field(c, bad, 1)
    with pytest.raises(TypeError):
        set_field(c, "batch_size", "64")  # a ConfigDict keeps its type checks


def test_load_config_file(tmp_path, monkeypatch):
    from ul_jax.config import load_config_file

    c = load_config_file("configs/digits.py:ce", {"optimizer.lr": 0.5}, seed=7)
    assert (c.variant, c.optimizer.lr, c.seed) == ("ce", 0.5, 7)
    assert load_config_file("configs/digits.py").variant == "ul_pal"
    monkeypatch.chdir(tmp_path)  # paths fall back to the repository root
    assert load_config_file("configs/cpu/cifar10.py:ce,full").num_train_steps == 1200
    with pytest.raises(ValueError, match="no field 'optimizer.lrr'"):
        load_config_file("configs/digits.py", {"optimizer.lrr": 0.5})
    with pytest.raises(ValueError, match="path/to/file.py"):
        load_config_file("configs/digits")
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config_file("configs/nope.py")


def test_fill_defaults_is_the_one_place_a_missing_field_gets_its_default():
    """A config saved before optional fields existed gets the table's defaults, once (also a
    locked ConfigDict); no code outside ul_jax/config.py reads a field with a fallback."""
    import ast
    from pathlib import Path

    import ml_collections

    from configs import digits
    from ul_jax.config import FIELDS, fill_defaults, get_field

    c = digits.get_config("ul_pal")
    old = c.to_dict()
    optional = [f for f in FIELDS if f.optional]
    for f in optional:
        parent, _, leaf = f.name.rpartition(".")
        (old[parent] if parent else old).pop(leaf, None)
    stored = ml_collections.ConfigDict(old)
    stored.lock()
    fill_defaults(stored)
    for f in optional:
        assert get_field(stored, f.name) == f.default, f.name
    root = Path(__file__).resolve().parents[1] / "ul_jax"
    fallbacks = []
    for path in root.rglob("*.py"):
        if path.name == "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", None)) == "get_field"
                and len(node.args) + len(node.keywords) > 2
            ):
                fallbacks.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not fallbacks, f"get_field(..., default) outside ul_jax/config.py: {fallbacks}"
