"""How much of a batch's trunk gradient each long-tailed class group carries (``group_grad_every``).

The claim it measures. With fixed simplex-ETF prototypes ``W`` the unhinged loss has the feature
gradient ``∂ℓ_i/∂h_i = −(1+γ) w_{y_i}`` for *every* example, fitted or not
(:func:`ul_jax.objectives.efr_feature_target_scale`), so each example pushes the shared trunk
equally hard and the groups' pushes stand in the ratio of their example counts; cross-entropy's
``∂ℓ_i/∂z_i = p_i − e_{y_i}`` shrinks as an example is fitted, so the well-fitted head classes'
share of the gradient falls below their share of the examples. This module measures that share
along training, on the training batch of the step.

Decomposition. The train step (:func:`ul_jax.train.step.train_step`) differentiates the batch
objective of :func:`ul_jax.objectives.classification_objective` (no mask), a sum of per-example
terms::

    J(θ) = Σ_{i=1..B} c_i(θ),    c_i = r_i ℓ(z_i, y_i) / B  +  λ ‖h_i‖²        (B,)

with ``ℓ`` the loss (γ for UL), ``r_i = sg(‖h_i‖)`` under RLR (else 1), ``λ`` the EFR weight (0:
no term) — both the loss term *and* the EFR term per example; weight decay is the optimizer's,
not the objective's, and is not included. The classes are split into groups ``G`` (many /
medium / few shot by the training set's class counts, :func:`ul_jax.metrics.classification.
shot_groups`, the OLTR thresholds 100 and 20 of the evaluation's group accuracies), and::

    J_G(θ) = Σ_{i: y_i ∈ G} c_i(θ),     g_G = ∂J_G / ∂θ_trunk,     g = ∂J / ∂θ_trunk

— the other examples are masked out of the sum but still go through the network (BatchNorm in
train mode normalizes with the statistics of the *whole* batch, as in the step, so ``g_G`` also
holds the part of group ``G``'s loss that flows through the other examples' statistics), and the
loss keeps its division by the full batch size ``B``. Hence ``Σ_G J_G = J`` and, by linearity,
``Σ_G g_G = g`` exactly: ``g`` is the trunk part of the step's gradient. ``θ_trunk`` is every
parameter except ``params["head"]`` (the linear classifier; PAL/FNPAL prototypes are not
parameters). All on the step's batch (same augmentation key ``augment_key(seed, step)``) and the
step's parameters and BatchNorm statistics, before its update.

Computed with one forward pass and one VJP per group (``(C,) → K = 3`` cotangents ``1[y_i ∈ G]``
over the ``(B,)`` vector ``c``), in a jitted function separate from the train step (the step is
not slowed down; the loop calls it only at the chosen steps). Logged per group ``G`` (lists of 3,
many / medium / few):

==================================  ===============================================================
``train/trunk_grad_share``          ``s_G = ⟨g_G, g⟩ / ‖g‖²`` (Σ_G s_G = 1; can be < 0 or > 1)
``train/trunk_grad_norm_ratio``     ``‖g_G‖ / ‖g‖``
``train/group_batch_share``         ``n_G / B``: the group's share of the batch's examples
``train/trunk_grad_norm``           ``‖g‖`` (a scalar)
==================================  ===============================================================

A group with no example in the batch (or no class at all: a balanced set is all "many") has
``g_G = 0``: share, norm ratio and batch share 0. Inner products and norms are elementwise sums in
float32 (no matmul, so no reduced-precision TF32 on a GPU).

Sharding: as the train step, state replicated and the batch sharded over the 1-D ``"data"`` mesh;
under ``jit`` every sum over the batch axis (the loss, the BatchNorm statistics, the VJPs) is over
the global batch, so the values do not depend on the number of devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ul_jax.data.augment import augment_key
from ul_jax.metrics.classification import SHOT_GROUPS, shot_groups
from ul_jax.objectives import per_example_loss, rlr_weights
from ul_jax.train.step import StepConfig, TrainState, mesh_shardings, train_inputs

__all__ = [
    "GROUP_GRAD_KEYS",
    "per_example_objective",
    "split_trunk",
    "group_trunk_gradients",
    "gradient_shares",
    "group_gradient_metrics",
    "jit_group_gradients",
    "class_groups",
    "host_row",
]

# metrics.jsonl keys of :func:`host_row` (the lists are in SHOT_GROUPS order)
GROUP_GRAD_KEYS = (
    "train/trunk_grad_share",
    "train/trunk_grad_norm_ratio",
    "train/group_batch_share",
    "train/trunk_grad_norm",
)


def per_example_objective(
    logits: jax.Array, features: jax.Array, labels: jax.Array, cfg: StepConfig
) -> jax.Array:
    """``c_i = r_i ℓ(z_i, y_i) / B + λ ‖h_i‖²``, shape ``(B,)`` (float32): the per-example terms
    whose sum is :func:`ul_jax.objectives.classification_objective` without a mask (module
    docstring). logits ``(B, C)``, features ``(B, p)``, labels ``(B,)``."""
    per_ex = per_example_loss(cfg.loss, logits, labels, cfg.gamma)
    weights = rlr_weights(features) if cfg.rlr else jnp.ones_like(per_ex)
    c = weights * per_ex / per_ex.shape[0]
    if cfg.efr_weight:
        # ‖h_i‖²: the summands of losses.feature_norm_penalty(features, "sum")
        c = c + cfg.efr_weight * jnp.sum(jnp.square(features), axis=-1)
    return c.astype(jnp.float32)


def split_trunk(params: Any) -> tuple[dict, dict]:
    """``(trunk, head)``: the parameters except ``params["head"]``, and ``{"head": ...}`` (empty
    for a head without parameters)."""
    trunk = {k: v for k, v in params.items() if k != "head"}
    head = {k: v for k, v in params.items() if k == "head"}
    return trunk, head


def group_trunk_gradients(
    model: nn.Module,
    cfg: StepConfig,
    state: TrainState,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    class_group: np.ndarray,
    num_groups: int = len(SHOT_GROUPS),
) -> tuple[list[Any], jax.Array]:
    """``([g_G for G in groups], member)``: the trunk gradient of each group's part ``J_G`` of the
    batch objective (pytrees shaped as :func:`split_trunk` ``(state.params)[0]``) and the
    ``(B, K)`` float32 membership ``1[y_i ∈ G]``. ``class_group`` ``(C,)`` int in ``[0, K)``
    (:func:`class_groups`); ``batch`` and ``rng`` as :func:`ul_jax.train.step.train_step`'s.
    Pure."""
    images = train_inputs(cfg, rng, batch["image"])
    labels = batch["label"].astype(jnp.int32)
    trunk, head = split_trunk(state.params)

    def contributions(trunk_params):
        variables = {**state.variables(), "params": {**trunk_params, **head}}
        (logits, features), _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
        return per_example_objective(logits, features, labels, cfg)

    _, vjp = jax.vjp(contributions, trunk)
    groups = jnp.asarray(np.asarray(class_group, np.int32))[labels]
    member = jax.nn.one_hot(groups, num_groups, dtype=jnp.float32)  # (B, K)
    return [vjp(member[:, k])[0] for k in range(num_groups)], member


def _dot(a: Any, b: Any) -> jax.Array:
    """``⟨a, b⟩`` over every leaf, float32, elementwise (no matmul precision modes)."""
    leaves = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.sum(x * y, dtype=jnp.float32), a, b))
    return sum(leaves, jnp.zeros((), jnp.float32))


def gradient_shares(grads: list[Any], member: jax.Array) -> dict[str, jax.Array]:
    """``{"trunk_grad_share" (K,), "trunk_grad_norm_ratio" (K,), "group_batch_share" (K,),
    "trunk_grad_norm" ()}`` (the module docstring's table) of the ``K`` group gradients ``g_G``
    (pytrees of one structure) and the ``(B, K)`` membership of :func:`group_trunk_gradients`;
    ``g = Σ_G g_G``."""
    g = jax.tree.map(lambda *xs: sum(xs[1:], xs[0]), *grads)  # Σ_G g_G
    gg = _dot(g, g)
    return {
        "trunk_grad_share": jnp.stack([_dot(gk, g) for gk in grads]) / gg,
        "trunk_grad_norm_ratio": jnp.sqrt(jnp.stack([_dot(gk, gk) for gk in grads]) / gg),
        "group_batch_share": jnp.mean(member, axis=0),
        "trunk_grad_norm": jnp.sqrt(gg),
    }


def group_gradient_metrics(
    model: nn.Module,
    cfg: StepConfig,
    state: TrainState,
    batch: dict[str, jax.Array],
    rng: jax.Array,
    class_group: np.ndarray,
    num_groups: int = len(SHOT_GROUPS),
) -> dict[str, jax.Array]:
    """:func:`gradient_shares` of :func:`group_trunk_gradients` (same arguments). Pure."""
    return gradient_shares(
        *group_trunk_gradients(model, cfg, state, batch, rng, class_group, num_groups)
    )


def jit_group_gradients(
    model: nn.Module, cfg: StepConfig, mesh: Mesh, seed: int, class_group: np.ndarray
) -> Callable[[TrainState, dict], dict[str, jax.Array]]:
    """``(state, batch) → metrics`` of :func:`group_gradient_metrics` compiled over ``mesh`` as
    :func:`ul_jax.train.step.jit_train_step` (state replicated, *not* donated: the train step
    uses it next; batch sharded along ``"data"``; key ``augment_key(seed, state.step)``, the
    step's)."""
    replicated, batch_sharding = mesh_shardings(mesh)
    groups = np.asarray(class_group, np.int32)

    def fn(state, batch):
        rng = augment_key(seed, state.step)
        return group_gradient_metrics(model, cfg, state, batch, rng, groups)

    return jax.jit(fn, in_shardings=(replicated, batch_sharding), out_shardings=replicated)


def class_groups(class_counts: np.ndarray | None, field: str = "group_grad_every") -> np.ndarray:
    """The ``(C,)`` group index (:data:`ul_jax.metrics.classification.SHOT_GROUPS` order) of each
    class from the training split's class counts.

    Raises:
      ValueError: no class counts (a streamed data set), naming ``field``.
    """
    if class_counts is None:
        raise ValueError(
            f"{field} > 0 needs the training set's class counts (an in-memory data set); this "
            f"data set is streamed (set {field}=0)"
        )
    return shot_groups(class_counts)


def host_row(metrics: dict[str, Any]) -> dict[str, Any]:
    """The ``metrics.jsonl`` values (:data:`GROUP_GRAD_KEYS`) of fetched
    :func:`group_gradient_metrics` output: lists of floats (many, medium, few) and a float."""
    m = jax.device_get(metrics)
    return {
        "train/trunk_grad_share": [float(x) for x in np.asarray(m["trunk_grad_share"])],
        "train/trunk_grad_norm_ratio": [float(x) for x in np.asarray(m["trunk_grad_norm_ratio"])],
        "train/group_batch_share": [float(x) for x in np.asarray(m["group_batch_share"])],
        "train/trunk_grad_norm": float(m["trunk_grad_norm"]),
    }
