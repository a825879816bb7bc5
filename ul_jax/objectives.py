"""Training objectives of Section 4: CE / UL / MSE, explicit feature regularization (EFR) and the
feature-norm rescaled learning rate (RLR), plus the optimizer of Appendix C.2.

Reductions (documented choices):
  * The classification loss is the mean over the (unmasked) examples of the batch.
  * EFR is ``λ·Σ_i ‖f(x_i)‖²``, a **sum** over the examples of the batch (like a weight-decay term
    on the features). With CE on CIFAR a ResNet-18 has ``‖h‖² ≈ 10²–10³``, so at batch 256 the sum
    is ``≈ 10⁴–10⁵`` and the paper's λ ∈ [1e-7, 5e-5] gives a term of ``10⁻³–5``, comparable to the
    loss; a mean would make it 256× smaller and the paper's λ values negligible. Per example, the
    feature gradient of the sum is ``2λh_i``, against ``(1/B)∂ℓ_i/∂h_i`` for the loss.
  * RLR (Sec. 4.3, footnote 15) weights each example's loss by ``stop_gradient(‖h_i‖)``: the
    gradient step is then SGD with the per-example learning rate ``η‖h_i‖``; with normalized
    features (FNPAL) this cancels the ``1/‖h_i‖`` of the normalization's Jacobian (eq. 19 vs its
    rescaled variant).
"""

from __future__ import annotations

from typing import Any, Callable

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

__all__ = ["LOSSES", "per_example_loss", "rlr_weights", "classification_objective",
           "make_optimizer", "weight_decay_mask"]


def per_example_loss(name: str, logits: Array, labels: Array, gamma: float | None = None) -> Array:
    """Per-example loss ``(B,)`` by name (``ce``, ``ul`` with γ, ``mse``, ``hinge``)."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}; got loss={name!r}")
    if name == "ul":
        return losses.unhinged_loss(logits, labels, gamma)
    return LOSSES[name](logits, labels)


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
    efr = losses.feature_norm_penalty(features, "sum", m) if efr_weight else jnp.zeros((), per_ex.dtype)
    total = data_term + efr_weight * efr
    aux = {"loss": jnp.sum(m * per_ex) / count, "efr_term": efr_weight * efr,
           "objective": total}
    return total, aux


def weight_decay_mask(params: Any, which: str = "all") -> Any:
    """Which parameters get weight decay: ``"all"`` trainable parameters (PyTorch's
    ``SGD(weight_decay=...)``, what the paper's setup does, BN scales/biases included) or
    ``"kernels"`` (conv/dense kernels only). Fixed prototypes are not parameters and never decay."""
    if which == "all":
        return jax.tree.map(lambda _: True, params)
    if which == "kernels":
        return jax.tree_util.tree_map_with_path(
            lambda path, _: getattr(path[-1], "key", None) == "kernel", params)
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
    for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay),
                        ("momentum", momentum), ("warmup_steps", warmup_steps)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0; got {name}={value}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got total_steps={total_steps}")
    if schedule == "cosine":
        if warmup_steps:
            sched = optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup_steps,
                                                       total_steps)
        else:
            sched = optax.cosine_decay_schedule(learning_rate, total_steps)
    elif schedule == "constant":
        sched = optax.constant_schedule(learning_rate)
    else:
        raise ValueError(f"schedule must be 'cosine' or 'constant'; got schedule={schedule!r}")
    tx = optax.chain(
        optax.add_decayed_weights(weight_decay, mask=lambda p: weight_decay_mask(p, weight_decay_on)),
        optax.sgd(sched, momentum=momentum or None, nesterov=nesterov),
    )
    return tx, sched
