"""Train state, the pure train and eval steps, and their sharded ``jit`` wrappers.

State. :class:`TrainState` holds ``step`` (updates applied so far, int32), ``params``,
``batch_stats``, ``prototypes`` (the fixed PAL/FNPAL ETF; ``{}`` for a linear head) and
``opt_state``. The model and optimizer are not part of it (they are static code, not data).

Train step. :func:`train_step` ``(state, batch, rng) → (state, metrics)`` augments the uint8
batch on device with ``rng`` (the loop passes ``augment_key(seed, state.step)``, so augmentation
is a function of ``(seed, step)``), runs the model in train mode (BatchNorm batch statistics),
takes the objective of :func:`ul_jax.objectives.classification_objective`, and applies one
optimizer update.

Non-finite guard. The step checks that the objective, the loss, every gradient, every updated
parameter, every updated optimizer buffer and every updated BatchNorm statistic is finite; if not,
it *refuses the update*: ``params``, ``batch_stats`` and the optimizer's buffers (momentum)
keep their old values (``jnp.where(ok, new, old)``), ``step`` and the optimizer's schedule counter
(optax's ``count``) advance, and ``metrics["nonfinite"]`` is a nonzero bit mask naming what was
non-finite (:data:`NONFINITE_BITS`). So a non-finite value never enters the state; the training
loop reads the mask on the host and stops the run with :class:`ul_jax.train.NonFiniteError` (see
:mod:`ul_jax.train.loop`), or skips the update in skip mode.

Learning rate after a refused update. The schedule is a function of the step, like the data order
and the augmentation: update ``k`` (``state.step`` ``k − 1 → k``) applies ``η(k − 1)`` whether or
not earlier updates were refused, so a refused update drops one batch *and its lr slot*, and the
cosine still ends at ``η(total − 1)`` on the last step (as in a run without refusals). This is why
the counter advances on a refused update (optax alone would keep it, shifting every later lr by
one and never reaching the end of the cosine). The logged ``lr`` is read from that counter — the
lr the update actually used, ``η(count)`` — not recomputed from ``state.step`` (the two differ
only for a checkpoint written before this rule, whose counter lags by its refused updates).

Sharding. :func:`jit_train_step` / :func:`jit_eval_step` compile the steps with the state
replicated (``NamedSharding(mesh, P())``) and the batch sharded over the 1-D ``"data"`` mesh
(``P("data")``), donating the old state's buffers. BatchNorm needs no ``axis_name``: under
``jit`` a mean over the batch axis of a globally sharded array is the mean over the *global*
batch (XLA inserts the cross-device reduction), so the statistics are those of one big batch.

Metrics (per step, all scalars, float32):

============================  =================================================================
``loss``                      mean classification loss of the batch (no EFR, no RLR weights)
``objective``                 what is differentiated (RLR-weighted loss + λ·Σ‖h‖²)
``efr_term``                  λ·Σ_i ‖h_i‖²
``accuracy``                  train accuracy of the (augmented) batch
``lr``                        learning rate applied by this update: ``η(count)``
``grad_norm``                 global L2 norm of the gradient (before weight decay)
``param_norm``                global L2 norm of the parameters after the update
``feature_norm``              mean ‖h_i‖ over the batch (Fig. 19b)
``prototype_norm_ratio``      max_c ‖w_c‖ / min_c ‖w_c‖ of the classifier (Fig. 19c)
``prototype_min_norm``        min_c ‖w_c‖ (Fig. 19d)
``prototype_min_angle``       min_{i≠j} ∠(w_i, w_j) in degrees = arccos max_{i≠j} cos (Fig. 19e)
``last_bn_scale_norm``        ‖γ‖ of the last residual block's BatchNorm scales after the update
``nonfinite``                 bit mask, 0 when the update was applied
============================  =================================================================

The classifier ``w_c`` are the linear head's kernel columns (learned) or the fixed prototypes
(PAL/FNPAL), measured on the weights the step used (before its update).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ul_jax.data.augment import crop_and_flip, normalize, sample_crop_flip
from ul_jax.data.pipeline import DATA_AXIS
from ul_jax.metrics.streaming import (
    ClassificationState,
    CollapseState,
    classification_init,
    classification_update,
    collapse_init,
    collapse_update,
)
from ul_jax.objectives import classification_objective, per_example_loss

__all__ = [
    "TrainState",
    "StepConfig",
    "NONFINITE_BITS",
    "decode_nonfinite",
    "create_train_state",
    "train_step",
    "EvalSums",
    "eval_init",
    "eval_step",
    "init_eval_sums",
    "jit_train_step",
    "jit_eval_step",
    "classifier_weights",
    "prototype_metrics",
    "last_block_bn_scale_norm",
    "schedule_count",
]

# Bits of metrics["nonfinite"], in the order the guard reports them.
NONFINITE_BITS: dict[str, int] = {
    "loss": 1,
    "objective": 2,
    "gradients": 4,
    "updated parameters": 8,
    "optimizer state": 16,
    "batch_stats": 32,
}


def decode_nonfinite(mask: int) -> list[str]:
    """Names of the non-finite quantities in a ``metrics["nonfinite"]`` bit mask."""
    return [name for name, bit in NONFINITE_BITS.items() if int(mask) & bit]


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    prototypes: Any
    opt_state: Any

    def variables(self) -> dict[str, Any]:
        """The Flax variable dict ``model.apply`` takes."""
        v = {"params": self.params, "batch_stats": self.batch_stats}
        if self.prototypes:
            v["prototypes"] = self.prototypes
        return v


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of the train/eval steps (hashable; compiled into the step).

    ``mean``/``std``: per-channel normalization in 0..255 units; ``augment``: ``"crop_flip"``
    (pad-crop + horizontal flip, the CIFAR transform), ``"crop"`` (no flip, for digits) or
    ``"none"`` (normalize only, e.g. when the host loader already augmented);
    ``debug_nonfinite_at_step``: test hook, ``k ≥ 1`` multiplies the update of step ``k`` (the
    one that brings ``state.step`` from ``k − 1`` to ``k``) by +inf, as an infinite lr would.
    """

    loss: str = "ce"
    gamma: float | None = None
    efr_weight: float = 0.0
    rlr: bool = False
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (255.0, 255.0, 255.0)
    augment: str = "crop_flip"
    crop_padding: int = 4
    debug_nonfinite_at_step: int = -1


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    image_shape: tuple[int, int, int],
) -> TrainState:
    """Initializes the model on a ``(1, *image_shape)`` dummy batch (pure; jit it with
    ``out_shardings`` to create the state directly on the devices)."""
    variables = model.init({"params": rng}, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        prototypes=variables.get("prototypes", {}),
        opt_state=tx.init(params),
    )


def classifier_weights(state: TrainState) -> jax.Array:
    """The ``(p, C)`` classifier of the head: fixed prototypes (PAL/FNPAL) or the linear kernel."""
    if state.prototypes:
        return state.prototypes["head"]["kernel"]
    return state.params["head"]["kernel"]


def prototype_metrics(w: jax.Array) -> dict[str, jax.Array]:
    """Fig. 19 (c–e): norm ratio, min norm and min pairwise angle (degrees) of the columns of w."""
    w = w.astype(jnp.float32)
    norms = jnp.linalg.norm(w, axis=0)
    w_hat = w / jnp.maximum(norms, 1e-30)
    cos = w_hat.T @ w_hat
    c = cos.shape[0]
    max_cos = jnp.max(jnp.where(jnp.eye(c, dtype=bool), -jnp.inf, cos))
    return {
        "prototype_norm_ratio": jnp.max(norms) / jnp.min(norms),
        "prototype_min_norm": jnp.min(norms),
        "prototype_min_angle": jnp.degrees(jnp.arccos(jnp.clip(max_cos, -1.0, 1.0))),
    }


def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)
    ]
    return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def _is_count(path: tuple) -> bool:
    """Whether a ``tree_leaves_with_path`` path ends at an optax schedule counter ``count``."""
    return bool(path) and getattr(path[-1], "name", None) == "count"


def schedule_count(opt_state: Any, step: jax.Array) -> jax.Array:
    """The optimizer's schedule counter (optax's ``count``: the lr of the next update is
    ``η(count)``); ``step`` if the optimizer has none (a constant float lr)."""
    counts = [x for p, x in jax.tree_util.tree_leaves_with_path(opt_state) if _is_count(p)]
    return counts[0] if counts else step


def train_inputs(cfg: StepConfig, rng: jax.Array, images: jax.Array) -> jax.Array:
    """The network input of a training batch ``images (B, H, W, 3)`` uint8: randomly cropped
    from a ``cfg.crop_padding``-padded copy and flipped (as ``cfg.augment`` says), then
    normalized with ``cfg.mean`` / ``cfg.std``."""
    if cfg.augment == "none":
        return normalize(images, cfg.mean, cfg.std)
    offsets, flips = sample_crop_flip(rng, images.shape[0], cfg.crop_padding)
    if cfg.augment == "crop":
        flips = jnp.zeros_like(flips)
    elif cfg.augment != "crop_flip":
        raise ValueError(f"augment must be 'crop_flip', 'crop' or 'none'; got {cfg.augment!r}")
    return normalize(crop_and_flip(images, offsets, flips, cfg.crop_padding), cfg.mean, cfg.std)


def train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    cfg: StepConfig,
    state: TrainState,
    batch: dict[str, jax.Array],
    rng: jax.Array,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One guarded SGD update (see the module docstring); pure, ``batch = {"image" uint8
    (B, H, W, 3), "label" (B,)}``, ``rng`` the augmentation key of this step."""
    images = train_inputs(cfg, rng, batch["image"])
    labels = batch["label"].astype(jnp.int32)

    def objective_fn(params):
        variables = {**state.variables(), "params": params}
        (logits, features), new_vars = model.apply(
            variables, images, train=True, mutable=["batch_stats"]
        )
        obj, aux = classification_objective(
            logits,
            features,
            labels,
            loss=cfg.loss,
            gamma=cfg.gamma,
            efr_weight=cfg.efr_weight,
            rlr=cfg.rlr,
        )
        return obj, (aux, logits, features, new_vars["batch_stats"])

    (obj, (aux, logits, features, new_bs)), grads = jax.value_and_grad(objective_fn, has_aux=True)(
        state.params
    )
    updates, new_opt = tx.update(grads, state.opt_state, state.params)
    if cfg.debug_nonfinite_at_step >= 0:  # test hook: lr = inf for update number k (1-based)
        factor = jnp.where(state.step + 1 == cfg.debug_nonfinite_at_step, jnp.inf, 1.0)
        updates = jax.tree.map(lambda u: u * factor, updates)
    new_params = optax.apply_updates(state.params, updates)

    checks = {
        "loss": jnp.isfinite(aux["loss"]),
        "objective": jnp.isfinite(obj),
        "gradients": _all_finite(grads),
        "updated parameters": _all_finite(new_params),
        "optimizer state": _all_finite(new_opt),
        "batch_stats": _all_finite(new_bs),
    }
    nonfinite = sum(jnp.where(ok, 0, NONFINITE_BITS[k]) for k, ok in checks.items())
    ok = nonfinite == 0

    def keep(new, old):
        return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)

    # a refused update keeps the buffers but still advances the schedule counter (see the module
    # docstring: the lr is a function of the step)
    kept_opt = jax.tree_util.tree_map_with_path(
        lambda p, n, o: n if _is_count(p) else jnp.where(ok, n, o), new_opt, state.opt_state
    )
    new_state = state.replace(
        step=state.step + 1,
        params=keep(new_params, state.params),
        batch_stats=keep(new_bs, state.batch_stats),
        opt_state=kept_opt,
    )
    metrics = {
        "loss": aux["loss"],
        "objective": obj,
        "efr_term": aux["efr_term"],
        "accuracy": jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32)),
        "lr": jnp.asarray(schedule(schedule_count(state.opt_state, state.step)), jnp.float32),
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(new_state.params),
        "feature_norm": jnp.mean(jnp.linalg.norm(features.astype(jnp.float32), axis=-1)),
        **prototype_metrics(classifier_weights(state)),
        "last_bn_scale_norm": last_block_bn_scale_norm(new_state.params),
        "nonfinite": nonfinite.astype(jnp.int32),
    }
    metrics = {
        k: v if k == "nonfinite" else jnp.asarray(v, jnp.float32) for k, v in metrics.items()
    }
    return new_state, metrics


@struct.dataclass
class EvalSums:
    """Running sums of one evaluation pass (a pytree, replicated on the mesh).

    Accuracy, per-class counts, the 15 ECE bins (eq. 103), the class means and the mean ‖h‖ are
    the streaming accumulators of :mod:`ul_jax.metrics.streaming` — the very ones the evaluation
    job (``python -m launch.evaluate``) uses, so every metric the two report has one
    implementation. The loop's own diagnostics are plain masked sums beside them:

    * ``count`` ``()``: rows seen (padding excluded), valid or not;
    * ``loss_sum`` ``()``: Σ of the classification loss (no EFR, no RLR weight);
    * ``cos_sum`` ``()``: Σ cos(h_i, w_{y_i}), ``w`` the classifier of :func:`classifier_weights`;
    * ``class_norm_sum`` ``(C,)``: Σ_{y_i=c} ‖h_i‖;
    * ``pred_count`` ``(C,)``: predictions per class (argmax of the logits).
    """

    classification: ClassificationState
    collapse: CollapseState
    count: jax.Array
    loss_sum: jax.Array
    cos_sum: jax.Array
    class_norm_sum: jax.Array
    pred_count: jax.Array


def eval_init(num_classes: int, dim: int) -> EvalSums:
    """Empty :class:`EvalSums` for ``C = num_classes`` classes and ``p = dim`` features."""
    z = jnp.zeros((), jnp.float32)
    return EvalSums(
        classification=classification_init(num_classes, topk=(1,)),
        collapse=collapse_init(num_classes, dim),
        count=z,
        loss_sum=z,
        cos_sum=z,
        class_norm_sum=jnp.zeros((num_classes,), jnp.float32),
        pred_count=jnp.zeros((num_classes,), jnp.float32),
    )


def eval_step(
    model: nn.Module,
    cfg: StepConfig,
    acc: EvalSums,
    state: TrainState,
    batch: dict[str, jax.Array],
) -> EvalSums:
    """``acc`` plus one padded eval batch (``mask`` 0 rows contribute nothing; ``image (B, H, W,
    3)`` uint8, ``label (B,)``): logits and features ``h (B, p)`` of the model in eval mode go to
    :func:`~ul_jax.metrics.streaming.classification_update` and
    :func:`~ul_jax.metrics.streaming.collapse_update`, the diagnostics to the sums of
    :class:`EvalSums`."""
    images = normalize(batch["image"], cfg.mean, cfg.std)
    labels = batch["label"].astype(jnp.int32)
    logits, features = model.apply(state.variables(), images, train=False)
    logits = logits.astype(jnp.float32)
    h = features.astype(jnp.float32)
    mask = batch["mask"]
    m = mask.astype(jnp.float32)
    per_ex = per_example_loss(cfg.loss, logits, labels, cfg.gamma)
    norms = jnp.linalg.norm(h, axis=-1)
    w = classifier_weights(state).astype(jnp.float32)  # (p, C)
    w_y = w.T[labels]  # (B, p)
    cos = jnp.sum(h * w_y, -1) / jnp.maximum(norms * jnp.linalg.norm(w_y, axis=-1), 1e-30)
    onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32) * m[:, None]  # (B, C)
    pred = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=jnp.float32)
    return acc.replace(
        classification=classification_update(acc.classification, logits, labels, mask),
        collapse=collapse_update(acc.collapse, h, labels, mask),
        count=acc.count + jnp.sum(m),
        loss_sum=acc.loss_sum + jnp.sum(m * per_ex),
        cos_sum=acc.cos_sum + jnp.sum(m * cos),
        class_norm_sum=acc.class_norm_sum + onehot.T @ norms,
        pred_count=acc.pred_count + jnp.sum(pred * m[:, None], 0),
    )


def mesh_shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """``(replicated, batch)``: ``P()`` for states and sums, ``P("data")`` for batches."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def jit_train_step(
    model: nn.Module,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    cfg: StepConfig,
    mesh: Mesh,
    seed: int,
) -> Callable:
    """``(state, batch) → (state, metrics)`` compiled over ``mesh``: state replicated and donated,
    batch sharded along ``"data"``, augmentation key ``augment_key(seed, state.step)``."""
    from ul_jax.data.augment import augment_key

    replicated, batch_sharding = mesh_shardings(mesh)

    def step(state, batch):
        return train_step(model, tx, schedule, cfg, state, batch, augment_key(seed, state.step))

    return jax.jit(
        step,
        in_shardings=(replicated, batch_sharding),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def jit_eval_step(model: nn.Module, cfg: StepConfig, mesh: Mesh) -> Callable:
    """``(acc, state, batch) → acc`` (:func:`eval_step`) compiled over ``mesh``: sums and state
    replicated, batch sharded (XLA adds the cross-device reductions of the sums)."""
    replicated, batch_sharding = mesh_shardings(mesh)
    return jax.jit(
        lambda acc, state, batch: eval_step(model, cfg, acc, state, batch),
        in_shardings=(replicated, replicated, batch_sharding),
        out_shardings=replicated,
    )


@functools.cache
def _jit_eval_init(mesh: Mesh) -> Callable:
    return jax.jit(eval_init, static_argnums=(0, 1), out_shardings=mesh_shardings(mesh)[0])


def init_eval_sums(num_classes: int, dim: int, mesh: Mesh) -> EvalSums:
    """:func:`eval_init` placed replicated on ``mesh`` (computed there, not transferred, so it
    works on every host of a multi-host run; compiled once per mesh and shape)."""
    return _jit_eval_init(mesh)(int(num_classes), int(dim))


def init_key(seed: int) -> jax.Array:
    """The parameter-init key of a run: ``jax.random.key(seed, impl="rbg")``.

    XLA's RngBitGenerator instead of threefry: with JAX's default *partitionable* threefry, the
    init of even a ResNet-8 takes ~10 s to compile on CPU (~1.5 s with rbg). Init values are
    deterministic on a given platform but may differ between CPU and GPU. The augmentation keys
    (:func:`ul_jax.data.augment_key`) and the ETF prototypes (``PRNGKey(prototype_seed)``) stay
    threefry, so augmentation does not depend on the device layout."""
    return jax.random.key(seed, impl="rbg")


def jit_init_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seed: int,
    image_shape: tuple[int, int, int],
    mesh: Mesh,
) -> TrainState:
    """:func:`create_train_state` with :func:`init_key` ``(seed)``, placed replicated on ``mesh``
    (works on every host of a multi-host run: the state is computed, not transferred)."""
    return jit_init_fn(model, tx, seed, image_shape, mesh)()


def jit_init_fn(
    model: nn.Module,
    tx: optax.GradientTransformation,
    seed: int,
    image_shape: tuple[int, int, int],
    mesh: Mesh,
) -> Callable[[], TrainState]:
    """The compiled initializer behind :func:`jit_init_state` (``() → state``)."""
    replicated, _ = mesh_shardings(mesh)
    return jax.jit(
        lambda: create_train_state(model, tx, init_key(seed), image_shape), out_shardings=replicated
    )


def last_block_bn_scale_norm(params: Any) -> jax.Array:
    """L2 norm of the BatchNorm scales γ of the trunk's *last* residual block (all its norms,
    projection included): the scale of the features ``h`` before the head (EFR's lever in a
    BN network). NaN when the trunk has no block (not the case for the ResNets here)."""
    trunk = params.get("trunk", {}) if hasattr(params, "get") else {}
    blocks = [k for k in trunk if "Block_" in k]
    if not blocks:
        return jnp.asarray(jnp.nan, jnp.float32)
    last = max(blocks, key=lambda k: int(k.rsplit("_", 1)[1]))
    scales = [
        v["scale"] for k, v in trunk[last].items() if "scale" in getattr(v, "keys", lambda: ())()
    ]
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in scales))
