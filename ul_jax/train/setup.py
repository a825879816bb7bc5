"""Setup of a training run: config → data, model, optimizer, step config, the step schedule and
the compiled functions (cached per process); and :func:`restore_checkpoint`, which rebuilds a
trained model from a work directory.

The data: in-memory sets (CIFAR, digits, long-tailed subsets, an optional balanced validation
split) via :func:`ul_jax.data.load_dataset`, with per-channel mean/std of the train split,
augmented on device; ImageNet-100 via :func:`ul_jax.data.make_imagenet100_loader` (host-side
random-resized-crop; normalized on device).
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ul_jax import data as uldata
from ul_jax.config import effective_efr_weight
from ul_jax.data.registry import num_classes
from ul_jax.models import build_model
from ul_jax.objectives import make_optimizer
from ul_jax.train.checkpoint import Checkpointer, load_config
from ul_jax.train.step import (
    StepConfig,
    jit_eval_step,
    jit_init_fn,
    jit_init_state,
    jit_train_step,
)
from ul_jax.train.validate import validate_config

__all__ = [
    "TrainData",
    "Schedule",
    "Compiled",
    "load_train_data",
    "build_model_from_config",
    "build_optimizer_from_config",
    "efr_weight_used",
    "step_config_from",
    "schedule_from",
    "compile_run",
    "restore_checkpoint",
]


@dataclasses.dataclass
class TrainData:
    """What the loop needs from a dataset."""

    num_classes: int
    num_train: int
    num_eval: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_batches: Callable[[uldata.BatchLayout, int, int], Iterator[dict]]  # (layout, start, n)
    eval_batches: Callable[[uldata.BatchLayout], Iterator[dict]]
    num_val: int = 0  # held-out validation examples (0: no validation split)
    val_batches: Callable[[uldata.BatchLayout], Iterator[dict]] | None = None
    # the training images in evaluation form (no augmentation, padded, every image once): the
    # config's eval_train_split pass (``train_eval/*``); None for streamed sets
    train_eval_batches: Callable[[uldata.BatchLayout], Iterator[dict]] | None = None
    # training images per class (in-memory sets; None for streamed ones): the many/medium/few
    # groups of a long-tailed run come from the split that was actually trained on
    class_counts: np.ndarray | None = None


# streamed datasets (the registry's ``streamed``): the names in ul_jax.data of the loader factory
# ``(split, *, train, seed, data_dir, image_size, resize_size, num_threads, num_workers)`` and of
# its normalization constants (looked up when a run starts)
STREAMING_LOADERS = {
    "imagenet100": ("make_imagenet100_loader", "IMAGENET_MEAN", "IMAGENET_STD"),
}


def load_train_data(config) -> TrainData:
    """Loads the train and test splits named by ``config.data`` (see the module docstring)."""
    d = config.data
    spec = uldata.dataset_spec(d.name)
    if spec.streamed:
        if d.name not in STREAMING_LOADERS:
            raise ValueError(
                f"data.name={d.name!r} is a streamed dataset (ul_jax.data.registry) without a "
                f"streaming loader; known: {sorted(STREAMING_LOADERS)}"
            )
        make, mean, std = (getattr(uldata, n) for n in STREAMING_LOADERS[d.name])
        size = d.image_size or spec.image_size
        kw = dict(
            data_dir=d.data_dir,
            image_size=size,
            resize_size=round(size * 256 / 224),
            num_threads=d.num_threads,
            num_workers=int(d.num_workers or 0),
        )
        train = make("train", train=True, seed=config.seed, **kw)
        test = make(spec.eval_split, train=False, seed=config.seed, **kw)
        s = train.image_size
        return TrainData(
            spec.num_classes,
            len(train),
            len(test),
            (s, s, 3),
            tuple(mean),
            tuple(std),
            lambda layout, start, n: train.train_batches(layout, start, n),
            test.eval_batches,
        )
    kw = dict(source=d.source, data_dir=d.data_dir, image_size=d.image_size, seed=d.seed)
    per_class = int(d.validation_per_class or 0)
    n_max = int(d.train_per_class or 0)
    train = uldata.load_dataset(d.name, "train", **kw)
    val = None
    if per_class > 0:
        # balanced validation set held out of the full train split; the long-tailed / capped
        # subset (if any) is drawn from the rest (ul_jax.data.split_validation)
        train, val = uldata.split_validation(train, per_class, d.seed)
    if d.imbalance_ratio is not None or n_max:
        ratio = 1.0 if d.imbalance_ratio is None else d.imbalance_ratio
        try:
            train = uldata.make_long_tailed(train, ratio, d.imbalance_kind, d.seed, n_max or None)
        except ValueError as e:
            if not n_max:
                raise
            raise ValueError(f"data.train_per_class={n_max}: {e}") from None
    test = uldata.load_dataset(d.name, "test", **kw)
    if train.num_classes != num_classes(d.name):
        raise ValueError(
            f"data.name={d.name!r} should have {num_classes(d.name)} classes; the "
            f"loaded train split has {train.num_classes}"
        )
    mean, std = uldata.channel_stats(train.images)
    images, labels = train.images, train.labels
    return TrainData(
        train.num_classes,
        len(train),
        len(test),
        tuple(images.shape[1:]),
        tuple(float(x) for x in mean),
        tuple(float(x) for x in std),
        lambda layout, start, n: uldata.train_batches(
            images, labels, layout, config.seed, start, n
        ),
        lambda layout: uldata.eval_batches(test.images, test.labels, layout),
        num_val=0 if val is None else len(val),
        class_counts=train.class_counts(),
        val_batches=None
        if val is None
        else (lambda layout: uldata.eval_batches(val.images, val.labels, layout)),
        train_eval_batches=lambda layout: uldata.eval_batches(images, labels, layout),
    )


def build_model_from_config(config, num_classes: int):
    m, h = config.model, config.head
    return build_model(
        m.arch,
        num_classes,
        stem=m.stem,
        final_relu=m.final_relu,
        head=h.kind,
        head_scale=h.scale,
        head_bias=h.bias,
        head_init=h.init,
        prototype_seed=h.prototype_seed,
        width_multiplier=m.width_multiplier,
        dtype=jnp.dtype(m.dtype),
        norm_impl=m.get("norm_impl", "auto"),  # configs saved before the field existed
    )


def build_optimizer_from_config(config, total_steps: int, steps_per_epoch: int):
    o = config.optimizer
    return make_optimizer(
        learning_rate=o.lr,
        total_steps=total_steps,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        weight_decay_on=o.weight_decay_on,
        warmup_steps=int(round(o.warmup_epochs * steps_per_epoch)),
        schedule=o.schedule,
        nesterov=o.nesterov,
    )


def efr_weight_used(config, data) -> float:
    """λ_b, the EFR weight of ``Σ_batch ‖h_i‖²`` the step uses: ``objective.efr_weight`` read in
    ``objective.efr_convention`` with the images actually trained on, ``data.num_train``
    (:func:`ul_jax.config.effective_efr_weight`). ``data`` without ``num_train`` (the
    benchmarks' stand-in): only a ``batch_sum`` / ``per_example`` λ, or λ = 0, converts."""
    return effective_efr_weight(config, getattr(data, "num_train", None))


def step_config_from(config, data: TrainData) -> StepConfig:
    o = config.objective
    return StepConfig(
        loss=o.loss,
        gamma=o.gamma,
        efr_weight=efr_weight_used(config, data),
        rlr=o.rlr,
        mean=data.mean,
        std=data.std,
        augment=config.data.augment,
        crop_padding=config.data.crop_padding,
        debug_nonfinite_at_step=config.debug_nonfinite_at_step,
    )


def restore_checkpoint(workdir: str | Path, config=None, step: int | None = None):
    """Loads a trained model from a work directory: ``(model, state, config)``.

    ``config`` defaults to the work directory's ``config.json``; ``step`` to the latest
    checkpoint. No data is loaded (the number of classes comes from the dataset registry); the
    state is placed on the default device. Use ``model.apply(state.variables(), x, train=False)``.
    """
    import ml_collections

    workdir = Path(workdir).absolute()
    if config is None:
        stored = load_config(workdir)
        if stored is None:
            raise FileNotFoundError(f"no config.json in {workdir}")
        config = ml_collections.ConfigDict(stored)
    validate_config(config, device_count=1)
    model = build_model_from_config(config, num_classes(config.data.name))
    tx, _ = build_optimizer_from_config(config, total_steps=1, steps_per_epoch=1)
    size = config.data.image_size or 32  # ResNet parameter shapes do not depend on it
    mesh = uldata.data_mesh(jax.devices()[:1])
    state = jit_init_state(model, tx, config.seed, (size, size, 3), mesh)
    with Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints) as ckpt:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
        state = ckpt.restore(step, state)
    return model, state, config


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Step counts of a run: ``steps_per_epoch``, ``total`` (the schedule's length), ``stop``
    (this call's last step: ``total`` or ``until_step``) and the log / eval / checkpoint
    periods (steps)."""

    steps_per_epoch: int
    total: int
    stop: int
    log_every: int
    eval_every: int
    ckpt_every: int

    @property
    def first_ckpt(self) -> int:
        """The step of a run's first checkpoint."""
        return min(self.ckpt_every, self.total)

    def is_log(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.total

    def is_eval(self, step: int) -> bool:
        return step % self.eval_every == 0 or step == self.total

    def is_ckpt(self, step: int) -> bool:
        return step % self.ckpt_every == 0 or step == self.stop


def schedule_from(config, data: TrainData, until_step: int | None) -> Schedule:
    """The :class:`Schedule` of ``config`` on ``data`` (``num_epochs × ⌊n_train / batch_size⌋``
    steps unless ``num_train_steps`` is set; ``eval_every`` / ``checkpoint_every`` 0: an epoch).

    Raises:
      ValueError: a batch larger than the train set, or a warm-up not shorter than the run.
    """
    if config.batch_size > data.num_train:
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {data.num_train} train "
            f"examples of data.name={config.data.name!r}"
        )
    spe = uldata.steps_per_epoch(data.num_train, config.batch_size)
    total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * spe
    warmup = int(round(config.optimizer.warmup_epochs * spe))
    if warmup >= total:
        raise ValueError(
            f"optimizer.warmup_epochs={config.optimizer.warmup_epochs} gives "
            f"{warmup} warm-up steps, not fewer than the {total} train steps"
        )
    stop = total if until_step is None else min(int(until_step), total)
    return Schedule(
        spe, total, stop, config.log_every, config.eval_every or spe, config.checkpoint_every or spe
    )


class Compiled(
    collections.namedtuple("Compiled", "model tx schedule step_cfg init_fn train_fn eval_fn")
):
    """The model, optimizer, learning-rate schedule, step config and jitted functions of a run."""


_COMPILED: collections.OrderedDict = collections.OrderedDict()


def compile_run(config, data: TrainData, total: int, spe: int, mesh) -> Compiled:
    """The :class:`Compiled` functions of a run, cached per process on everything they are
    built from — the frozen :class:`StepConfig` (which already folds in the EFR reading, the
    normalization and the augmentation), the model / head / optimizer sections, the seed, the
    schedule's length, the image shape and the mesh — so a second run of the same setup in one
    process (a resume in a notebook or a test) does not compile again."""
    efr = efr_weight_used(config, data)
    if float(config.objective.efr_weight) or efr:
        logging.info(
            "EFR: objective.efr_weight=%g read as %s (n=%d training images, global batch B=%d)"
            " -> lambda_b=%.6g on the sum over the batch of ||h_i||^2",
            float(config.objective.efr_weight),
            config.objective.efr_convention,
            data.num_train,
            config.batch_size,
            efr,
        )
    step_cfg = step_config_from(config, data)  # frozen: loss, γ, λ_b, RLR, normalization, ...
    key = (
        step_cfg,
        json.dumps(
            {k: config[k].to_dict() for k in ("model", "head", "optimizer")}, sort_keys=True
        ),
        config.seed,  # the init and the augmentation keys
        total,
        spe,
        data.num_classes,
        tuple(data.image_shape),
        tuple(d.id for d in mesh.devices.flat),
    )
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    model = build_model_from_config(config, data.num_classes)
    tx, schedule = build_optimizer_from_config(config, total, spe)
    fns = Compiled(
        model,
        tx,
        schedule,
        step_cfg,
        jit_init_fn(model, tx, config.seed, data.image_shape, mesh),
        jit_train_step(model, tx, schedule, step_cfg, mesh, config.seed),
        jit_eval_step(model, step_cfg, mesh),
    )
    _COMPILED[key] = fns
    while len(_COMPILED) > 4:
        _COMPILED.popitem(last=False)
    return fns
