"""The training config schema: one table of every field, and what is derived from it.

:data:`FIELDS` lists every field of a training config (``configs/common.py:base_config()`` holds
the defaults; the dataset files and ``configs/paper/`` override them): its name, type, allowed
values, one-line meaning, default, and whether it changes the shapes of a checkpoint. From the
table come

* :func:`check_fields` -- the per-field checks (:func:`ul_jax.train.validate_config` adds the
  rules that tie several fields together);
* :data:`SHAPE_FIELDS` -- the fields a resume may not change (:mod:`ul_jax.train.checkpoint`);
* :func:`describe_fields` -- the text ``python -m launch.train --config_help`` prints;
* :func:`get_field` / :func:`set_field` -- dotted access (``"optimizer.lr"``) to a ``ConfigDict``
  or a nested dict.

:func:`load_config_file` turns ``"configs/x.py:arg"`` (plus dotted overrides and a seed) into a
config; ``launch.train`` (through :func:`define_config_flag`) and the reproduction runner use it.

A new config field: add its row here and its default in ``configs/common.py``, then use it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ul_jax.data.registry import SOURCES
from ul_jax.layers import NORM_IMPLS
from ul_jax.models import ARCHS
from ul_jax.objectives import EFR_CONVENTIONS, LOSSES, efr_weight_from

__all__ = [
    "Field",
    "FIELDS",
    "FIELDS_BY_NAME",
    "SHAPE_FIELDS",
    "HEADS",
    "AUGMENTS",
    "SOURCES",
    "DTYPES",
    "REPO_ROOT",
    "bad_value",
    "check_fields",
    "shape_view",
    "effective_efr_weight",
    "describe_fields",
    "get_field",
    "set_field",
    "load_config_file",
    "ensure_on_path",
    "define_config_flag",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
HEADS = ("linear", "pal", "fnpal")
AUGMENTS = ("crop_flip", "crop", "none")
DTYPES = ("float32", "bfloat16")
_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Rule:
    """What a field's value must be: ``ok(value)``, and ``need`` for the error message
    ``"<field> must be <need>; got <field>=<value>"``."""

    ok: Callable[[Any], bool]
    need: str


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(
    lo: int, need: str | None = None, *, none: bool = False, off: int | None = None
) -> Rule:
    """An int ``>= lo`` (``none``: or ``None``; ``off``: or that sentinel value)."""

    def ok(v):
        return (none and v is None) or (_is_int(v) and (v == off or v >= lo))

    return Rule(ok, need or f"an integer >= {lo}")


def number(
    lo: float, need: str, *, strict: bool = False, hi: float | None = None, none: bool = False
) -> Rule:
    """A finite int or float ``>= lo`` (``strict``: ``> lo``; ``hi``: ``< hi``)."""

    def ok(v):
        if none and v is None:
            return True
        return _is_real(v) and (v > lo if strict else v >= lo) and (hi is None or v < hi)

    return Rule(ok, need)


def one_of(values, need: str | None = None) -> Rule:
    return Rule(lambda v: v in values, need or f"one of {values}")


BOOL = Rule(lambda v: isinstance(v, bool), "True or False")


def _step_window(v) -> bool:
    """``None`` or a ``(first, count)`` pair (tuple, or list after JSON) of integers >= 1."""
    return v is None or (
        isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v)
    )


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field. ``rule`` ``None``: not checked (any value of ``type``); ``shape``:
    changes the checkpoint's shapes (``True``, or a function of the value giving what is
    compared); ``optional``: may be missing (configs stored before it existed), read as
    ``default``."""

    name: str
    type: str
    default: Any
    doc: str
    rule: Rule | None = None
    shape: bool | Callable[[Any], Any] = False
    optional: bool = False


F = Field
FIELDS: tuple[Field, ...] = (
    F(
        "seed",
        "int",
        0,
        "model init, train order and augmentation keys augment_key(seed, step): "
        "the whole run is a function of the config",
        integer(0),
    ),
    # ---- data
    F(
        "data.name",
        "str",
        "cifar10",
        "training set: a trainable dataset of ul_jax.data.registry "
        "(cifar10, cifar100, digits, cifar10_split_id, imagenet100)",
        shape=True,
    ),
    F(
        "data.source",
        "str",
        "image_folder",
        "the loader; one the registry lists for data.name",
        one_of(SOURCES),
    ),
    F("data.data_dir", "str | None", None, "data directory (None: the source's default)"),
    F(
        "data.image_size",
        "int | None",
        None,
        "digits size / optional resize / ImageNet crop",
        integer(1, "None or a positive integer", none=True),
    ),
    F(
        "data.imbalance_ratio",
        "float | None",
        None,
        "long-tailed train split with this ratio "
        "rho of largest to smallest class (None: the full split)",
        number(1, "None or a number >= 1", none=True),
    ),
    F(
        "data.imbalance_kind",
        "str",
        "exp",
        "class-count profile of the long-tailed split",
        one_of(("exp", "step"), "'exp' or 'step'"),
    ),
    F("data.seed", "int", 0, "digits split, long-tailed subset and validation split", integer(0)),
    F(
        "data.validation_per_class",
        "int",
        0,
        "k > 0 holds k train images of every class out as "
        "a balanced validation set, logged as val/* (0: none)",
        integer(0, "an integer >= 0 (0: no validation split)"),
        optional=True,
    ),
    F(
        "data.train_per_class",
        "int",
        0,
        "k > 0: train on at most k images of the largest class (the long-tailed profile's "
        "n_max); without data.imbalance_ratio a balanced subset of k per class (0: all)",
        integer(0, "an integer >= 0 (0: every available image)"),
        optional=True,
    ),
    F("data.augment", "str", "crop_flip", "on-device augmentation", one_of(AUGMENTS)),
    F("data.crop_padding", "int", 4, "zero padding before the random crop", integer(0)),
    F(
        "data.num_threads",
        "int | None",
        None,
        "ImageNet-100 threads per process building batches (None: automatic)",
    ),
    F(
        "data.num_workers",
        "int",
        0,
        "ImageNet-100 grain worker processes (0: decode in the training process)",
        integer(0, "an integer >= 0 (0: no worker processes)"),
        optional=True,
    ),
    # ---- model
    F("model.arch", "str", "resnet18", "the ResNet trunk", one_of(sorted(ARCHS)), shape=True),
    F(
        "model.stem",
        "str",
        "cifar",
        "3x3 (cifar) or 7x7 + max-pool (imagenet) first layer",
        one_of(("cifar", "imagenet"), "'cifar' or 'imagenet'"),
        shape=True,
    ),
    F(
        "model.final_relu",
        "bool",
        False,
        "ReLU on the features before the head (PAL/FNPAL: none, App. C.2)",
    ),
    F(
        "model.width_multiplier",
        "float",
        1.0,
        "channel width factor",
        number(0, "a number > 0", strict=True),
        shape=True,
    ),
    F("model.dtype", "str", "float32", "compute dtype (parameters stay float32)", one_of(DTYPES)),
    F(
        "model.norm_impl",
        "str",
        "auto",
        "BatchNorm implementation: auto (fused on CPU, flax elsewhere), flax, fused (ul_jax.layers);"
        " same variables, checkpoints load in either",
        one_of(NORM_IMPLS),
        optional=True,  # runs saved before the field existed validate and evaluate as "auto"
    ),
    # ---- head
    F(
        "head.kind",
        "str",
        "pal",
        "linear (learnable), pal (fixed simplex ETF) or fnpal (s * cos(w_c, h))",
        one_of(HEADS),
        shape=True,
    ),
    F(
        "head.scale",
        "float",
        1.0,
        "PAL prototype norm, FNPAL logit scale s, linear init scale",
        number(0, "a number > 0", strict=True),
    ),
    F(
        "head.bias",
        "bool",
        True,
        "a learnable bias (False for PAL/FNPAL: configs/common.py says why)",
        shape=True,
    ),
    F(
        "head.init",
        "str",
        "random",
        "linear head init",
        one_of(("random", "etf"), "'random' or 'etf'"),
    ),
    F("head.prototype_seed", "int", 0, "rotation of the fixed PAL/FNPAL prototypes", shape=True),
    # ---- objective
    F("objective.loss", "str", "ul", "the classification loss", one_of(sorted(LOSSES))),
    F(
        "objective.gamma",
        "float | None",
        None,
        "UL gamma (None: 1/(C-1)); loss 'ul' only",
        number(0, "None (= 1/(C-1)) or a finite number >= 0", none=True),
    ),
    F(
        "objective.efr_weight",
        "float",
        0.0,
        "EFR lambda, read as objective.efr_convention says (batch_sum: the weight of the sum "
        "over the batch of ||h_i||^2; ul_jax/objectives.py)",
        number(0, "a finite number >= 0 (the EFR λ)"),
    ),
    F(
        "objective.efr_convention",
        "str",
        "batch_sum",
        "how efr_weight is read, converted once at setup to the batch-sum weight lambda_b "
        "(logged): batch_sum (lambda_b = efr_weight), per_example (a mean over the batch: "
        "lambda_b = efr_weight/B) or dataset_sum (eq. 11's (lambda/2) sum over the n training "
        "images: lambda_b = efr_weight*n/(2B)); B the global batch, n the images trained on",
        one_of(EFR_CONVENTIONS, "'batch_sum', 'per_example' or 'dataset_sum'"),
        optional=True,  # runs saved before the field existed validate and resume as batch_sum
    ),
    F(
        "objective.rlr",
        "bool",
        False,
        "rescaled learning rate: per-example weight sg(||h_i||) (Sec. 4.3)",
        BOOL,
    ),
    # ---- optimizer
    F(
        "optimizer.lr",
        "float",
        0.1,
        "peak learning rate",
        number(0, "a finite number > 0", strict=True),
    ),
    F(
        "optimizer.momentum",
        "float",
        0.9,
        "SGD momentum (0: no momentum buffers)",
        number(0, "in [0, 1)", hi=1),
        shape=lambda v: None if v is None else bool(v > 0),
    ),
    F("optimizer.nesterov", "bool", False, "Nesterov momentum", BOOL),
    F(
        "optimizer.weight_decay",
        "float",
        5e-4,
        "coupled L2 weight decay",
        number(0, "a finite number >= 0"),
    ),
    F(
        "optimizer.weight_decay_on",
        "str",
        "all",
        "decayed parameters",
        one_of(("all", "kernels"), "'all' or 'kernels'"),
    ),
    F(
        "optimizer.schedule",
        "str",
        "cosine",
        "cosine (to 0) or constant learning rate",
        one_of(("cosine", "constant"), "'cosine' or 'constant'"),
    ),
    F(
        "optimizer.warmup_epochs",
        "float",
        0.0,
        "linear warm-up length in epochs",
        number(0, "a number >= 0"),
    ),
    # ---- loop
    F(
        "batch_size",
        "int",
        256,
        "global train batch, split over all devices",
        integer(1, "a positive integer"),
    ),
    F("eval_batch_size", "int", 256, "global eval batch", integer(1, "a positive integer")),
    F("num_epochs", "int", 200, "train epochs (when num_train_steps is -1)", integer(1)),
    F(
        "num_train_steps",
        "int",
        -1,
        "train steps (-1: num_epochs x floor(n_train / batch_size))",
        integer(1, "-1 (use num_epochs) or an integer >= 1", off=-1),
    ),
    F(
        "log_every",
        "int",
        50,
        "steps between metrics.jsonl lines",
        integer(1, "an integer >= 1 (steps)"),
    ),
    F(
        "eval_every",
        "int",
        0,
        "steps between test-set evaluations (0: every epoch)",
        integer(0, "an integer >= 0 (steps; 0 = once per epoch)"),
    ),
    F(
        "eval_train_split",
        "bool",
        False,
        "also evaluate the un-augmented training images at every evaluation, logged as "
        "train_eval/* (the fitted-training-set check of the terminal phase; in-memory sets only)",
        BOOL,
        optional=True,  # runs saved before the field existed validate and resume as False
    ),
    F(
        "group_grad_every",
        "int",
        0,
        "steps between measurements of each many/medium/few-shot class group's share of the "
        "batch's trunk gradient, also at the last step (train/trunk_grad_share, "
        "train/trunk_grad_norm_ratio, train/group_batch_share; ul_jax/train/group_grad.py; "
        "in-memory sets only); 0: off",
        integer(0, "an integer >= 0 (steps; 0 = off)"),
        optional=True,  # runs saved before the field existed validate and resume as 0 (off)
    ),
    F(
        "checkpoint_every",
        "int",
        0,
        "steps between checkpoints (0: every epoch)",
        integer(0, "an integer >= 0 (steps; 0 = once per epoch)"),
    ),
    F("keep_checkpoints", "int", 3, "checkpoints kept", integer(1)),
    F("tensorboard", "bool", True, "also write TensorBoard event files", BOOL),
    F(
        "debug_nonfinite_at_step",
        "int",
        -1,
        "test hook: an infinite learning rate at this step (-1: off)",
        integer(1, "-1 (off) or a step >= 1", off=-1),
    ),
    F(
        "profile_steps",
        "tuple[int, int] | None",
        None,
        "(first, count): wrap train steps first .. first+count-1 in jax.profiler.trace, "
        "written to WORKDIR/profile on process 0 (TensorBoard's profile plugin, Perfetto); "
        "None: off",
        Rule(_step_window, "None or a pair (first_step, num_steps) of integers >= 1"),
        optional=True,
    ),
    F(
        "deterministic_ops",
        "bool",
        False,
        "GPU: start JAX with XLA_FLAGS=--xla_gpu_deterministic_ops=true (run-to-run identical "
        "kernels, somewhat slower); CPU/TPU: no effect (already deterministic). "
        "ul_jax/train/precision.py",
        BOOL,
        optional=True,
    ),
    F(
        "restart",
        "bool",
        False,
        "start from step 0 over an earlier run's files that hold no "
        "usable checkpoint, moving them to WORKDIR/previous_<time>/ (a usable checkpoint is "
        "always resumed; docs/RELIABILITY.md)",
        BOOL,
        optional=True,
    ),
    F(
        "variant",
        "str",
        None,
        "the variant configs/common.py:apply_variant set (ce, ul, ul_pal, ...); informational",
        optional=True,
    ),
    F(
        "experiment",
        "str",
        None,
        "the paper experiment a configs/paper or configs/cpu file built; informational",
        optional=True,
    ),
)
del F
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
# Config fields that change the shapes or the structure of the saved state (table order).
SHAPE_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.shape)


def bad_value(field: str, value: Any, need: str) -> ValueError:
    """The error for a bad field: ``"<field> must be <need>; got <field>=<value>"``."""
    return ValueError(f"{field} must be {need}; got {field}={value!r}")


# ---------------------------------------------------------------------------------------------
# dotted access
# ---------------------------------------------------------------------------------------------
def _child(node: Any, part: str) -> Any:
    return node[part] if isinstance(node, dict) else getattr(node, part)


def get_field(config: Any, dotted: str, default: Any = _MISSING) -> Any:
    """``config.a.b`` for ``"a.b"`` (a ``ConfigDict`` or a nested dict).

    Raises:
      ValueError: the field is missing and no ``default`` is given; names the field.
    """
    node = config
    for part in dotted.split("."):
        try:
            node = _child(node, part)
        except (AttributeError, KeyError):
            if default is not _MISSING:
                return default
            raise ValueError(f"config has no field {dotted!r} (see configs/common.py)") from None
    return node


def set_field(config: Any, dotted: str, value: Any) -> None:
    """``config.a.b = value`` for ``"a.b"``; the field must exist (a ``ConfigDict`` keeps its
    type checks: an int field refuses a string).

    Raises:
      ValueError: the field (or a parent) does not exist; names it.
    """
    parent, _, leaf = dotted.rpartition(".")
    try:
        node = get_field(config, parent) if parent else config
        _child(node, leaf)
    except (ValueError, AttributeError, KeyError, TypeError):
        raise ValueError(f"config has no field {dotted!r} (see configs/common.py)") from None
    node[leaf] = value


# ---------------------------------------------------------------------------------------------
# checks and descriptions
# ---------------------------------------------------------------------------------------------
def fill_defaults(config: Any) -> Any:
    """Adds every optional field of :data:`FIELDS` that ``config`` lacks (a config saved before
    the field existed) with the table's default, in place, and returns ``config``. The one place
    a missing field gets its default: :func:`load_config_file` and
    :func:`ul_jax.train.validate_config` (every run, resume and evaluation) call it, so the code
    that uses a field reads it plainly."""
    absent = object()
    for f in FIELDS:
        if not f.optional or get_field(config, f.name, absent) is not absent:
            continue
        parent, _, leaf = f.name.rpartition(".")
        node = get_field(config, parent, None) if parent else config
        if node is None:  # not a training config's section: nothing to fill
            continue
        if hasattr(node, "unlocked") and getattr(node, "is_locked", False):
            with node.unlocked():
                node[leaf] = f.default
        else:
            node[leaf] = f.default
    return config


def check_fields(config: Any) -> None:
    """Checks every field of :data:`FIELDS` that has a rule, in table order.

    Raises:
      ValueError: the first missing (non-optional) or bad field, with its value and what it
        must be.
    """
    for f in FIELDS:
        value = get_field(config, f.name, f.default) if f.optional else get_field(config, f.name)
        if f.rule is not None and not f.rule.ok(value):
            raise bad_value(f.name, value, f.rule.need)


def shape_view(field: str, flat: Mapping[str, Any]) -> Any:
    """What a resume compares of the shape field ``field`` in the flat config ``flat``."""
    v = flat.get(field)
    shape = FIELDS_BY_NAME[field].shape
    return shape(v) if callable(shape) else v


def effective_efr_weight(config: Any, num_train: int | None) -> float:
    """λ_b, the weight of ``Σ_batch ‖h_i‖²`` the training step uses: ``objective.efr_weight``
    read in ``objective.efr_convention`` (missing, as in configs saved before the field existed:
    ``batch_sum``) with ``B`` = ``batch_size`` (global) and ``n`` = ``num_train``, the training
    images actually trained on (after the validation hold-out and long-tail subsetting:
    ``ul_jax.train.TrainData.num_train``). Every consumer of the EFR weight (the step config, the
    Theorem-6 target, the evaluation record) takes it from here
    (:func:`ul_jax.objectives.efr_weight_from`).

    Raises:
      ValueError: an unknown ``objective.efr_convention`` (naming it and the value), or
        ``dataset_sum`` with λ > 0 and no ``num_train``.
    """
    return efr_weight_from(
        get_field(config, "objective.efr_weight"),
        get_field(
            config, "objective.efr_convention", FIELDS_BY_NAME["objective.efr_convention"].default
        ),
        int(get_field(config, "batch_size")),
        num_train,
    )


def describe_fields() -> str:
    """Every field: name, type, default, allowed values, meaning, and whether a resume may
    change it (the text of ``python -m launch.train --config_help``)."""
    lines = [
        "Training config fields (ul_jax/config.py; defaults in configs/common.py). Override "
        "any of them as --config.<field>=<value>.",
        "",
    ]
    for f in FIELDS:
        notes = [
            f"must be {f.rule.need}" if f.rule else None,
            "changes checkpoint shapes: a resume may not change it" if f.shape else None,
            "optional" if f.optional else None,
        ]
        lines.append(f"{f.name} ({f.type}, default {f.default!r})")
        lines.append(f"    {f.doc}")
        lines.extend(f"    {n}" for n in notes if n)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# loading config files
# ---------------------------------------------------------------------------------------------
def ensure_on_path(root: str | Path = REPO_ROOT) -> None:
    """Puts ``root`` (default: the repository root) on ``sys.path`` so that config files'
    ``from configs import ...`` work."""
    root = Path(root).resolve()
    if not any(Path(p or ".").resolve() == root for p in sys.path):
        sys.path.insert(0, str(root))


def load_config_file(
    spec: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None
):
    """``"configs/x.py[:arg]"`` → ``get_config(arg)`` of that file, with the dotted ``overrides``
    (:func:`set_field`) and ``seed`` applied.

    The path is relative to the working directory or, failing that, to the repository root
    (which is put on ``sys.path`` for the file's ``configs.*`` imports). As with
    ``ml_collections.config_flags``, ``get_config`` gets an argument only if ``spec`` has a
    colon.

    Raises:
      ValueError: not a ``.py`` path, or an override of a field the config does not have.
      FileNotFoundError: no such file.
    """
    path, colon, arg = spec.partition(":")
    p = Path(path)
    if p.suffix != ".py":
        raise ValueError(f"config must be 'path/to/file.py[:arg]'; got {spec!r}")
    if p.is_absolute() or p.exists():
        file, root = p.resolve(), Path.cwd()
    else:
        file, root = (REPO_ROOT / p).resolve(), REPO_ROOT
    if not file.is_file():
        where = sorted({str(Path.cwd()), str(REPO_ROOT)})
        raise FileNotFoundError(
            f"config file {path!r} not found (relative to {' or '.join(where)})"
        )
    ensure_on_path(root)
    module_spec = importlib.util.spec_from_file_location(f"_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(*([arg] if colon else []))
    if all(k in config for k in ("data", "model", "objective")):  # a training config
        fill_defaults(config)
    for dotted, value in (overrides or {}).items():
        set_field(config, dotted, value)
    if seed is not None:
        set_field(config, "seed", int(seed))
    return config


def define_config_flag(name: str, help_string: str, lock_config: bool = True):
    """``ml_collections.config_flags.DEFINE_config_file`` (``--name file.py[:arg]`` plus
    ``--name.<field>=value`` overrides) that loads the file with :func:`load_config_file`."""
    from absl import flags
    from ml_collections import config_flags

    class Parser(flags.ArgumentParser):
        def parse(self, path):
            try:
                config = load_config_file(path)
            except (TypeError, ValueError, OSError) as e:
                # absl keeps only the message of a ValueError: one line naming the problem (the
                # traceback stays in the chain: --debug / UL_JAX_DEBUG=1 shows it)
                message = " ".join(str(e).split())
                if not isinstance(e, (ValueError, OSError)):
                    message = f"{type(e).__name__}: {message}"
                raise ValueError(message) from e
            if lock_config and callable(getattr(config, "lock", None)):
                config.lock()
            return config

        def flag_type(self):
            return "config object"

    holder = config_flags.DEFINE_config_file(name, None, help_string, lock_config=lock_config)
    flags.FLAGS[name].parser = Parser()
    return holder
