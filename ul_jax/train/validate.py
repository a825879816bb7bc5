"""Static checks of a training config: every bad field is a ``ValueError`` naming the field and its
value, raised before any data is loaded or anything is compiled.

The per-field checks come from the schema table :data:`ul_jax.config.FIELDS` (which documents every
field); the dataset facts (classes, loaders, streamed or not) from the dataset registry
:mod:`ul_jax.data.registry`; this module adds the rules that tie several fields together.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax

from ul_jax.config import AUGMENTS, HEADS, bad_value, check_fields, fill_defaults, get_field
from ul_jax.data import registry
from ul_jax.data.registry import NUM_CLASSES
from ul_jax.models import feature_dim

__all__ = ["NUM_CLASSES", "HEADS", "AUGMENTS", "validate_config", "get_field", "num_classes_of"]


def num_classes_of(config: Any) -> int:
    """The number of classes of ``data.name`` (a training set of the dataset registry)."""
    return registry.train_dataset_spec(get_field(config, "data.name")).num_classes


def validate_config(config: Any, device_count: int | None = None) -> None:
    """Checks every field of a training config (see the module docstring).

    Args:
      config: the ``ConfigDict`` (or nested dict) of ``configs/common.py``.
      device_count: devices the batch is split over (default ``jax.device_count()``, all devices
        of all hosts).

    Raises:
      ValueError: the first bad field, named with its value and what it must be.
    """
    fill_defaults(config)  # fields a config saved before they existed lacks: the table's default
    num_classes = num_classes_of(config)
    check_fields(config)
    _check_dataset_rules(config)
    _check_head_rules(config, num_classes)
    _check_objective_rules(config)
    n_dev = jax.device_count() if device_count is None else int(device_count)
    for f in ("batch_size", "eval_batch_size"):
        b = get_field(config, f)
        if b % n_dev:
            raise ValueError(
                f"{f}={b} must be divisible by the device count {n_dev} "
                "(the batch is split evenly over all devices of all hosts)"
            )


def _check_dataset_rules(config: Any) -> None:
    """``data.source`` is a loader of ``data.name``; a streamed set (ImageNet-100) augments on
    the host and has no validation split."""
    g = lambda f: get_field(config, f)
    name, source, augment = g("data.name"), g("data.source"), g("data.augment")
    sources = registry.allowed_sources(name)
    if source not in sources:
        raise bad_value(
            "data.source", source, " or ".join(map(repr, sources)) + f" for data.name={name!r}"
        )
    if not registry.is_streamed(name):
        return
    if augment != "none":
        raise bad_value(
            "data.augment",
            augment,
            f"'none' for {name} (random-resized-crop + flip run on the host loader)",
        )
    for field in ("data.validation_per_class", "data.train_per_class"):
        if v := get_field(config, field):
            raise bad_value(field, v, f"0 for data.name={name!r} (streamed)")


def _check_head_rules(config: Any, num_classes: int) -> None:
    g = lambda f: get_field(config, f)
    head, arch, wm = g("head.kind"), g("model.arch"), g("model.width_multiplier")
    if head == "fnpal" and g("head.bias"):
        raise bad_value(
            "head.bias",
            g("head.bias"),
            "False for head.kind='fnpal' (logits are s·cos(w_c, h); FNPAL has no bias)",
        )
    p, c = feature_dim(arch, wm), num_classes
    if head in ("pal", "fnpal") and p < c - 1:
        raise ValueError(
            f"head.kind={head!r} needs a feature dimension >= num_classes-1 = {c - 1} "
            f"(a simplex ETF of {c} prototypes spans {c - 1} dimensions); model.arch={arch!r} "
            f"with model.width_multiplier={wm} gives {p}"
        )


def _check_objective_rules(config: Any) -> None:
    g = lambda f: get_field(config, f)
    loss, gamma, head, ratio = (
        g("objective.loss"),
        g("objective.gamma"),
        g("head.kind"),
        g("data.imbalance_ratio"),
    )
    if gamma is not None and loss != "ul":
        raise bad_value(
            "objective.gamma", gamma, f"None unless objective.loss='ul' (loss={loss!r})"
        )
    if loss == "ul" and g("head.bias") and ratio is not None and ratio > 1:
        warnings.warn(
            f"objective.loss='ul' with head.bias=True on imbalanced data "
            f"(data.imbalance_ratio={ratio}): the mean unhinged loss is linear in the bias with "
            f"slope γ − (1+γ)π_c per class, nonzero unless the classes are balanced, so the bias "
            f"drifts without bound (only weight decay holds it) and dominates the logits; set "
            f"head.bias=False (the ul_pal variants do)",
            UserWarning,
            stacklevel=3,
        )
    if head == "fnpal" and loss == "mse":
        raise ValueError(
            "objective.loss='mse' with head.kind='fnpal' is not allowed: FNPAL logits "
            "s·ŵ_cᵀĥ with simplex-ETF prototypes always sum to 0 over classes (Σ_c ŵ_c = 0) and "
            "have no bias, while a one-hot target sums to 1, so the MSE target is unreachable "
            "and its minimizer is not the class prototype; use loss 'ul' or 'ce' with FNPAL, or "
            "head.kind='pal' (with a bias) for MSE"
        )
