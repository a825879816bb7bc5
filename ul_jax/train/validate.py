"""Static checks of a training config: every bad field is a ``ValueError`` naming the field and its
value, raised before any data is loaded or anything is compiled.

The config layout is the one of ``configs/common.py`` (``data``, ``model``, ``head``,
``objective``, ``optimizer`` and the loop fields); see that file for what each field means.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax

from ul_jax.models import ARCHS, feature_dim
from ul_jax.objectives import LOSSES

__all__ = ["NUM_CLASSES", "HEADS", "AUGMENTS", "validate_config", "get_field", "num_classes_of"]

# Datasets the training loop knows, with their number of classes (known before loading, so the
# PAL/FNPAL feature-dimension check runs before any data is read).
NUM_CLASSES: dict[str, int] = {
    "cifar10": 10,
    "cifar100": 100,
    "digits": 10,
    "cifar10_split_id": 6,
    "imagenet100": 100,
}
HEADS = ("linear", "pal", "fnpal")
AUGMENTS = ("crop_flip", "crop", "none")
SOURCES = ("tfds", "image_folder", "digits")
DTYPES = ("float32", "bfloat16")


def get_field(config: Any, dotted: str) -> Any:
    """``config.a.b`` for ``"a.b"``; a missing field is a ``ValueError`` naming it."""
    node = config
    for part in dotted.split("."):
        try:
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        except (AttributeError, KeyError):
            raise ValueError(f"config has no field {dotted!r} (see configs/common.py)") from None
    return node


def num_classes_of(config: Any) -> int:
    name = get_field(config, "data.name")
    if name not in NUM_CLASSES:
        raise ValueError(f"data.name must be one of {sorted(NUM_CLASSES)}; got data.name={name!r}")
    return NUM_CLASSES[name]


def _bad(field: str, value: Any, need: str) -> ValueError:
    return ValueError(f"{field} must be {need}; got {field}={value!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(config: Any, device_count: int | None = None) -> None:
    """Checks every field of a training config (see the module docstring).

    Args:
      config: the ``ConfigDict`` (or nested dict) of ``configs/common.py``.
      device_count: devices the batch is split over (default ``jax.device_count()``, all devices
        of all hosts).

    Raises:
      ValueError: the first bad field, named with its value and what it must be.
    """
    g = lambda f: get_field(config, f)  # noqa: E731
    n_dev = jax.device_count() if device_count is None else int(device_count)

    # ---- data
    c = num_classes_of(config)
    name, source = g("data.name"), g("data.source")
    if source not in SOURCES:
        raise _bad("data.source", source, f"one of {SOURCES}")
    if name == "digits" and source != "digits":
        raise _bad("data.source", source, "'digits' for data.name='digits'")
    if name == "imagenet100" and source != "tfds":
        raise _bad("data.source", source, "'tfds' for data.name='imagenet100' (imagenet2012)")
    augment = g("data.augment")
    if augment not in AUGMENTS:
        raise _bad("data.augment", augment, f"one of {AUGMENTS}")
    if name == "imagenet100" and augment != "none":
        raise _bad("data.augment", augment,
                   "'none' for imagenet100 (random-resized-crop + flip run on the host loader)")
    pad = g("data.crop_padding")
    if not _is_int(pad) or pad < 0:
        raise _bad("data.crop_padding", pad, "an integer >= 0")
    size = g("data.image_size")
    if size is not None and (not _is_int(size) or size < 1):
        raise _bad("data.image_size", size, "None or a positive integer")
    ratio = g("data.imbalance_ratio")
    if ratio is not None and (not _is_real(ratio) or ratio < 1):
        raise _bad("data.imbalance_ratio", ratio, "None or a number >= 1")
    if g("data.imbalance_kind") not in ("exp", "step"):
        raise _bad("data.imbalance_kind", g("data.imbalance_kind"), "'exp' or 'step'")
    for f in ("seed", "data.seed"):
        if not _is_int(g(f)) or g(f) < 0:
            raise _bad(f, g(f), "an integer >= 0")
    try:
        vpc = g("data.validation_per_class")
    except (KeyError, AttributeError):
        vpc = 0
    if not _is_int(vpc) or vpc < 0:
        raise _bad("data.validation_per_class", vpc, "an integer >= 0 (0: no validation split)")
    if vpc and name == "imagenet100":
        raise _bad("data.validation_per_class", vpc, "0 for data.name='imagenet100' (streamed)")

    # ---- model and head
    arch = g("model.arch")
    if arch not in ARCHS:
        raise _bad("model.arch", arch, f"one of {sorted(ARCHS)}")
    if g("model.stem") not in ("cifar", "imagenet"):
        raise _bad("model.stem", g("model.stem"), "'cifar' or 'imagenet'")
    wm = g("model.width_multiplier")
    if not _is_real(wm) or wm <= 0:
        raise _bad("model.width_multiplier", wm, "a number > 0")
    if g("model.dtype") not in DTYPES:
        raise _bad("model.dtype", g("model.dtype"), f"one of {DTYPES}")
    head = g("head.kind")
    if head not in HEADS:
        raise _bad("head.kind", head, f"one of {HEADS}")
    scale = g("head.scale")
    if not _is_real(scale) or scale <= 0:
        raise _bad("head.scale", scale, "a number > 0")
    if g("head.init") not in ("random", "etf"):
        raise _bad("head.init", g("head.init"), "'random' or 'etf'")
    if head == "fnpal" and g("head.bias"):
        raise _bad("head.bias", g("head.bias"),
                   "False for head.kind='fnpal' (logits are s·cos(w_c, h); FNPAL has no bias)")
    p = feature_dim(arch, wm)
    if head in ("pal", "fnpal") and p < c - 1:
        raise ValueError(
            f"head.kind={head!r} needs a feature dimension >= num_classes-1 = {c - 1} "
            f"(a simplex ETF of {c} prototypes spans {c - 1} dimensions); model.arch={arch!r} "
            f"with model.width_multiplier={wm} gives {p}")

    # ---- objective
    loss = g("objective.loss")
    if loss not in LOSSES:
        raise _bad("objective.loss", loss, f"one of {sorted(LOSSES)}")
    gamma = g("objective.gamma")
    if gamma is not None:
        if loss != "ul":
            raise _bad("objective.gamma", gamma, f"None unless objective.loss='ul' (loss={loss!r})")
        if not _is_real(gamma) or gamma < 0:
            raise _bad("objective.gamma", gamma, "None (= 1/(C-1)) or a finite number >= 0")
    if loss == "ul" and g("head.bias") and ratio is not None and ratio > 1:
        warnings.warn(
            f"objective.loss='ul' with head.bias=True on imbalanced data "
            f"(data.imbalance_ratio={ratio}): the mean unhinged loss is linear in the bias with "
            f"slope γ − (1+γ)π_c per class, nonzero unless the classes are balanced, so the bias "
            f"drifts without bound (only weight decay holds it) and dominates the logits; set "
            f"head.bias=False (the ul_pal variants do)", UserWarning, stacklevel=2)
    efr = g("objective.efr_weight")
    if not _is_real(efr) or efr < 0:
        raise _bad("objective.efr_weight", efr, "a finite number >= 0 (the EFR λ)")
    if not isinstance(g("objective.rlr"), bool):
        raise _bad("objective.rlr", g("objective.rlr"), "True or False")
    if head == "fnpal" and loss == "mse":
        raise ValueError(
            "objective.loss='mse' with head.kind='fnpal' is not allowed: FNPAL logits "
            "s·ŵ_cᵀĥ with simplex-ETF prototypes always sum to 0 over classes (Σ_c ŵ_c = 0) and "
            "have no bias, while a one-hot target sums to 1, so the MSE target is unreachable "
            "and its minimizer is not the class prototype; use loss 'ul' or 'ce' with FNPAL, or "
            "head.kind='pal' (with a bias) for MSE")

    # ---- optimizer
    lr = g("optimizer.lr")
    if not _is_real(lr) or lr <= 0:
        raise _bad("optimizer.lr", lr, "a finite number > 0")
    mom = g("optimizer.momentum")
    if not _is_real(mom) or not 0 <= mom < 1:
        raise _bad("optimizer.momentum", mom, "in [0, 1)")
    wd = g("optimizer.weight_decay")
    if not _is_real(wd) or wd < 0:
        raise _bad("optimizer.weight_decay", wd, "a finite number >= 0")
    if g("optimizer.weight_decay_on") not in ("all", "kernels"):
        raise _bad("optimizer.weight_decay_on", g("optimizer.weight_decay_on"), "'all' or 'kernels'")
    if g("optimizer.schedule") not in ("cosine", "constant"):
        raise _bad("optimizer.schedule", g("optimizer.schedule"), "'cosine' or 'constant'")
    warm = g("optimizer.warmup_epochs")
    if not _is_real(warm) or warm < 0:
        raise _bad("optimizer.warmup_epochs", warm, "a number >= 0")
    if not isinstance(g("optimizer.nesterov"), bool):
        raise _bad("optimizer.nesterov", g("optimizer.nesterov"), "True or False")

    # ---- batch and loop
    for f in ("batch_size", "eval_batch_size"):
        b = g(f)
        if not _is_int(b) or b < 1:
            raise _bad(f, b, "a positive integer")
        if b % n_dev:
            raise ValueError(f"{f}={b} must be divisible by the device count {n_dev} "
                             "(the batch is split evenly over all devices of all hosts)")
    epochs = g("num_epochs")
    if not _is_int(epochs) or epochs < 1:
        raise _bad("num_epochs", epochs, "an integer >= 1")
    steps = g("num_train_steps")
    if not _is_int(steps) or (steps != -1 and steps < 1):
        raise _bad("num_train_steps", steps, "-1 (use num_epochs) or an integer >= 1")
    if not _is_int(g("log_every")) or g("log_every") < 1:
        raise _bad("log_every", g("log_every"), "an integer >= 1 (steps)")
    for f in ("eval_every", "checkpoint_every"):
        if not _is_int(g(f)) or g(f) < 0:
            raise _bad(f, g(f), "an integer >= 0 (steps; 0 = once per epoch)")
    if not _is_int(g("keep_checkpoints")) or g("keep_checkpoints") < 1:
        raise _bad("keep_checkpoints", g("keep_checkpoints"), "an integer >= 1")
    dbg = g("debug_nonfinite_at_step")
    if not _is_int(dbg) or (dbg != -1 and dbg < 1):
        raise _bad("debug_nonfinite_at_step", dbg, "-1 (off) or a step >= 1")
    if not isinstance(g("tensorboard"), bool):
        raise _bad("tensorboard", g("tensorboard"), "True or False")
    # optional (config.json files written before the field existed lack it): default False
    try:
        restart = get_field(config, "restart")
    except ValueError:
        restart = False
    if not isinstance(restart, bool):
        raise _bad("restart", restart, "True or False")
