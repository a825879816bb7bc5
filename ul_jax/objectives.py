"""Training objectives of Section 4: CE / UL / MSE, explicit feature regularization (EFR) and the
feature-norm rescaled learning rate (RLR), plus the optimizer of Appendix C.2.

Reductions (documented choices):
  * The classification loss is the mean over the (unmasked) examples of the batch.
  * EFR is ``λ_b·Σ_i ‖f(x_i)‖²``, a **sum** over the examples of the batch (like a weight-decay
    term on the features). Per example, the feature gradient of the sum is ``2λ_b h_i``, against
    ``(1/B)∂ℓ_i/∂h_i`` for the loss. A config states λ in one of three readings
    (``objective.efr_convention``, :data:`EFR_CONVENTIONS`): the batch sum itself, a per-example
    mean, or eq. 11's sum over the training set; :func:`efr_weight_from` converts it to λ_b once
    at setup (``ul_jax.config.effective_efr_weight``). Read as a batch sum the paper's λ ∈
    [1e-7, 5e-5] barely engages (Theorem 6's ‖h*‖ ≈ 2,170 for λ = 1e-6 at B = 256); read as
    eq. 11's data-set sum it does (‖h*‖ ≈ 22 on CIFAR-10): ``docs/REPRODUCTION.md``.
  * RLR (Sec. 4.3, footnote 15) weights each example's loss by ``stop_gradient(‖h_i‖)``: the
    gradient step is then SGD with the per-example learning rate ``η‖h_i‖``; with normalized
    features (FNPAL) this cancels the ``1/‖h_i‖`` of the normalization's Jacobian (eq. 19 vs its
    rescaled variant). In a deep net this loss weight is the *exact* RLR: the update of the shared
    parameters is a sum over the batch of per-example terms, and only a weight inside that sum can
    give each example its own rate — an optax transformation sees the already-summed gradient and
    cannot rescale per example. Where the features *are* the parameters (the layer-peeled model,
    ``H`` of shape ``(p, C·N)``), each column's gradient is its own example's, and RLR is the
    gradient transformation :func:`scale_by_feature_norm` (``optax.chain(scale_by_feature_norm(),
    optax.sgd(schedule))`` reproduces ``ul_jax.ufm.spherical_descent(rescaled=True)``, tested).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ul_jax import losses

Array = jax.Array

LOSSES: dict[str, Callable[..., Array]] = {
    "ce": losses.cross_entropy_loss,
    "ul": losses.unhinged_loss,
    "mse": losses.mse_loss,
    "hinge": losses.multiclass_hinge_loss,
}

__all__ = [
    "LOSSES",
    "per_example_loss",
    "rlr_weights",
    "scale_by_feature_norm",
    "classification_objective",
    "make_optimizer",
    "weight_decay_mask",
    "efr_feature_target_scale",
    "EFR_CONVENTIONS",
    "efr_lambda_conventions",
    "efr_weight_from",
]

# How a stated EFR λ is read (``objective.efr_convention``): :func:`efr_lambda_conventions`.
EFR_CONVENTIONS = ("batch_sum", "per_example", "dataset_sum")


def per_example_loss(name: str, logits: Array, labels: Array, gamma: float | None = None) -> Array:
    """Per-example loss ``(B,)`` by name (``ce``, ``ul`` with γ, ``mse``, ``hinge``)."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}; got loss={name!r}")
    if name == "ul":
        return losses.unhinged_loss(logits, labels, gamma)
    return LOSSES[name](logits, labels)


def scale_by_feature_norm(axis: int = 0) -> optax.GradientTransformation:
    """RLR as a gradient transformation, for parameters that *are* features (Sec. 4.3): each
    update ``u`` is multiplied by ``‖P‖`` taken along ``axis`` of its parameter ``P`` (the
    current, pre-update value), ``u ← u · ‖P‖_axis``. For the layer-peeled ``H`` of shape
    ``(p, C·N)`` with ``axis=0`` every column ``h_i``'s gradient is scaled by ``‖h_i‖``, so
    ``optax.chain(scale_by_feature_norm(), optax.sgd(η))`` steps ``h_i ← h_i − η(t)‖h_i‖ g_i``.
    Needs ``params`` in ``update``; stateless. Deep nets use :func:`rlr_weights` instead
    (module docstring: why)."""

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("scale_by_feature_norm needs params (the features) in update()")
        scaled = jax.tree.map(
            lambda u, p: u * jnp.linalg.norm(p, axis=axis, keepdims=True).astype(u.dtype),
            updates,
            params,
        )
        return scaled, state

    return optax.GradientTransformation(init, update)


def rlr_weights(features: Array) -> Array:
    """Per-example RLR weights ``stop_gradient(‖h_i‖)``, shape ``(B,)`` (footnote 15)."""
    return jax.lax.stop_gradient(jnp.linalg.norm(features, axis=-1))


def classification_objective(
    logits: Array,
    features: Array,
    labels: Array,
    *,
    loss: str = "ce",
    gamma: float | None = None,
    efr_weight: float = 0.0,
    rlr: bool = False,
    mask: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
    """``1/|B| Σ_i m_i r_i ℓ(z_i, y_i) + λ Σ_i m_i ‖h_i‖²`` with ``r_i = sg(‖h_i‖)`` under RLR.

    Args:
      logits ``(B, C)``, features ``(B, p)``, labels ``(B,)``; mask ``(B,)`` (1 = real example).
    Returns:
      ``(objective, aux)`` with the unweighted mean loss and the EFR term in ``aux``.
    """
    per_ex = per_example_loss(loss, logits, labels, gamma)
    m = jnp.ones_like(per_ex) if mask is None else mask.astype(per_ex.dtype)
    count = jnp.maximum(jnp.sum(m), 1.0)
    weights = rlr_weights(features) if rlr else jnp.ones_like(per_ex)
    data_term = jnp.sum(m * weights * per_ex) / count
    efr = (
        losses.feature_norm_penalty(features, "sum", m)
        if efr_weight
        else jnp.zeros((), per_ex.dtype)
    )
    total = data_term + efr_weight * efr
    aux = {"loss": jnp.sum(m * per_ex) / count, "efr_term": efr_weight * efr, "objective": total}
    return total, aux


def efr_feature_target_scale(
    efr_weight: float, batch_size: int, num_classes: int, gamma: float | None = None
) -> float:
    """Scale ``κ = (1+γ)/(2λB)`` of the features where UL + PAL + EFR is stationary (Theorem 6).

    With fixed prototypes ``W = (w_1 … w_C)`` whose columns sum to 0 (a simplex ETF), the batch
    objective ``(1/B) Σ_i L_γ(Wᵀh_i, y_i) + λ Σ_i ‖h_i‖²`` has feature gradient
    ``(1/B)(−(1+γ)w_{y_i} + γ Σ_j w_j) + 2λh_i = −(1+γ)w_{y_i}/B + 2λh_i``, zero exactly at
    ``h*_i = κ w_{y_i}``: the batch-sum counterpart of Theorem 6's limit ``H → WM/λ₁``
    (layer-peeled model with a mean loss over the ``n`` examples and ``(λ₁/2)‖H‖²_F``:
    ``h*_c = (1+γ)w_c/(λ₁ n)``). ``‖h*‖ = κ‖w‖``: for λ = 2e-6, B = 128, C = 10 and unit
    prototypes ``‖h*‖ ≈ 2,170``. γ = None means 1/(C−1).
    """
    if efr_weight <= 0:
        raise ValueError(f"efr_weight must be > 0 for a finite target; got {efr_weight}")
    g = 1.0 / (num_classes - 1) if gamma is None else float(gamma)
    return (1.0 + g) / (2.0 * float(efr_weight) * int(batch_size))


def efr_lambda_conventions(efr_weight: float, batch_size: int, num_train: int) -> dict[str, float]:
    """One EFR strength in the three normalizations the paper's text admits (same gradients).

    * ``batch_sum`` (ours, ``objectives.classification_objective``): ``mean_B ℓ + λ_b Σ_B ‖h‖²``;
    * ``per_example``: ``mean_B ℓ + λ_e mean_B ‖h‖²``, ``λ_e = λ_b B``;
    * ``dataset_sum`` (eq. 11's layer-peeled form): ``mean_n ℓ + (λ_n/2) Σ_n ‖h‖²`` over the
      whole training set of ``n`` examples, ``λ_n = 2 λ_b B / n``.

    Each gives the same per-example feature gradient relative to the loss term, so the same
    stationary features (:func:`efr_feature_target_scale`).
    """
    lb = float(efr_weight)
    return {
        "batch_sum": lb,
        "per_example": lb * batch_size,
        "dataset_sum": 2.0 * lb * batch_size / num_train,
    }


def efr_weight_from(
    value: float, convention: str, batch_size: int, num_train: int | None = None
) -> float:
    """The batch-sum λ_b (what the training step uses) of a λ stated in ``convention``
    (inverse of :func:`efr_lambda_conventions`):

    * ``batch_sum``: ``λ_b = λ``;
    * ``per_example``: ``λ_b = λ / B``;
    * ``dataset_sum`` (eq. 11): ``λ_b = λ · n / (2B)``, ``n`` the training images actually
      trained on (after any validation hold-out or long-tail subsetting), ``B`` the global batch.

    λ = 0 gives 0 in every convention (``num_train`` is then not needed).

    Raises:
      ValueError: an unknown ``convention`` (named as the field ``objective.efr_convention``), or
        ``dataset_sum`` with λ > 0 and no ``num_train`` >= 1.
    """
    if convention not in EFR_CONVENTIONS:
        raise ValueError(
            "objective.efr_convention must be 'batch_sum', 'per_example' or 'dataset_sum'; "
            f"got objective.efr_convention={convention!r}"
        )
    value = float(value)
    if convention == "batch_sum" or value == 0.0:
        return value
    if convention == "per_example":
        return value / int(batch_size)
    if num_train is None or int(num_train) < 1:
        raise ValueError(
            f"objective.efr_convention='dataset_sum' reads objective.efr_weight={value:g} as "
            "eq. 11's sum over the training set: it needs the number of training images; "
            f"got num_train={num_train!r}"
        )
    return value * int(num_train) / (2.0 * int(batch_size))


def weight_decay_mask(params: Any, which: str = "all") -> Any:
    """Which parameters get weight decay: ``"all"`` trainable parameters (PyTorch's
    ``SGD(weight_decay=...)``, what the paper's setup does, BN scales/biases included) or
    ``"kernels"`` (conv/dense kernels only). Fixed prototypes are not parameters and never decay."""
    if which == "all":
        return jax.tree.map(lambda _: True, params)
    if which == "kernels":
        return jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], "key", None) == "kernel", params
        )
    raise ValueError(f"weight_decay_on must be 'all' or 'kernels'; got {which!r}")


def make_optimizer(
    *,
    learning_rate: float,
    total_steps: int,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    weight_decay_on: str = "all",
    warmup_steps: int = 0,
    schedule: str = "cosine",
    nesterov: bool = False,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """SGD with momentum, coupled L2 weight decay (``g + λθ`` before momentum, as PyTorch) and a
    cosine schedule to 0 over ``total_steps`` (optionally after a linear warm-up)."""
    for name, value in (
        ("learning_rate", learning_rate),
        ("weight_decay", weight_decay),
        ("momentum", momentum),
        ("warmup_steps", warmup_steps),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {name}={value}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got total_steps={total_steps}")
    if schedule == "cosine":
        if warmup_steps:
            sched = optax.warmup_cosine_decay_schedule(
                0.0, learning_rate, warmup_steps, total_steps
            )
        else:
            sched = optax.cosine_decay_schedule(learning_rate, total_steps)
    elif schedule == "constant":
        sched = optax.constant_schedule(learning_rate)
    else:
        raise ValueError(f"schedule must be 'cosine' or 'constant'; got schedule={schedule!r}")
    tx = optax.chain(
        optax.add_decayed_weights(
            weight_decay, mask=lambda p: weight_decay_mask(p, weight_decay_on)
        ),
        optax.sgd(sched, momentum=momentum or None, nesterov=nesterov),
    )
    return tx, sched
