"""The training loop: :func:`train_and_evaluate` ``(config, workdir) → final metrics``.

What happens, in order:

1. :func:`ul_jax.train.validate_config` checks every field (``ValueError`` naming the field),
   before any data is read or anything compiled.
2. Data: in-memory sets (CIFAR, digits, long-tailed subsets) via :func:`ul_jax.data.load_dataset`
   with per-channel mean/std of the train split, augmented on device; ImageNet-100 via
   :func:`ul_jax.data.make_imagenet100_loader` (host-side random-resized-crop; normalize on
   device).
3. Model, SGD + cosine schedule (:func:`ul_jax.objectives.make_optimizer`) over
   ``num_epochs × (n_train // batch_size)`` steps (or ``num_train_steps``), the state created
   replicated on the 1-D ``"data"`` mesh of all devices of all hosts.
4. Resume: if ``WORKDIR/checkpoints`` holds a checkpoint, the latest one is restored (after
   :func:`ul_jax.checkpoint.check_resume_config` and the shape check of
   :meth:`ul_jax.checkpoint.Checkpointer.restore`) and training continues at its step. The batch
   of step ``k`` and its augmentation key ``augment_key(seed, k)`` are functions of
   ``(seed, k)``, so the resumed run sees exactly the data and randomness of an uninterrupted run
   and ends with bit-identical parameters (on the same hardware and software).
   ``metrics.jsonl`` is truncated to the steps ≤ the restored step.
5. Steps: step ``k`` (1-based: the state holds ``k`` updates after it) trains on train batch
   ``k − 1`` (:func:`ul_jax.data.train_batches` index) augmented with
   ``augment_key(seed, k − 1)`` (the key is derived from ``state.step`` inside the step). Every ``log_every`` steps (and at the end) a line goes to ``metrics.jsonl``, to
   TensorBoard and to the console (throughput, ETA); every ``eval_every`` steps (0: every epoch)
   and at the end the whole test set is evaluated; every ``checkpoint_every`` steps (0: every
   epoch) and at the end a checkpoint is saved.
6. Non-finite values: the step itself refuses a non-finite update (see
   :mod:`ul_jax.train.step`); the loop reads every step's ``nonfinite`` mask on the host at each
   log, eval and checkpoint step — so before any checkpoint is written — and raises
   :class:`NonFiniteError` naming the first bad step, the non-finite quantities and the last good
   checkpoint, which is left intact (a bad state is never saved).

Logged keys: ``train/<metric>`` (batch metrics — loss, objective, efr_term, accuracy,
grad_norm, feature_norm — averaged over the steps since the previous log; state metrics — lr,
param_norm, prototype_* — at the logged step), ``train/epoch``, ``eval/accuracy``, ``eval/loss``,
``eval/feature_norm``, ``eval/count`` and ``perf/steps_per_sec``, ``perf/images_per_sec``
(train time only, from the second log on: the first interval includes compilation).

Multi-host: every process runs this function; only process 0 writes ``metrics.jsonl``,
TensorBoard events, ``config.json`` and console lines; all processes take part in checkpointing.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ul_jax import data as uldata
from ul_jax.checkpoint import Checkpointer, check_resume_config, load_config, save_config
from ul_jax.models import build_model
from ul_jax.objectives import make_optimizer
from ul_jax.train.step import (
    StepConfig,
    decode_nonfinite,
    host_sums,
    jit_eval_step,
    jit_init_fn,
    jit_init_state,
    jit_train_step,
)
from ul_jax.train.validate import NUM_CLASSES, validate_config
from ul_jax.train.writers import MetricWriter

__all__ = [
    "NonFiniteError",
    "TrainData",
    "load_train_data",
    "build_model_from_config",
    "build_optimizer_from_config",
    "step_config_from",
    "evaluate",
    "restore_checkpoint",
    "train_and_evaluate",
    "BATCH_METRICS",
]

# Averaged over the log interval; the other train metrics are reported at the logged step.
BATCH_METRICS = ("loss", "objective", "efr_term", "accuracy", "grad_norm", "feature_norm")


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss, gradient or update; the run stopped.

    Attributes: ``step`` (the refused update), ``quantities`` (names), ``checkpoint`` (path of the
    last good checkpoint or ``None``), ``metrics`` (host metrics of that step).
    """

    def __init__(self, step: int, quantities: list[str], checkpoint: Path | None,
                 metrics: dict[str, Any]):
        self.step, self.quantities, self.checkpoint, self.metrics = step, quantities, checkpoint, metrics
        where = (f"the last good checkpoint is {checkpoint} (left intact)" if checkpoint is not None
                 else "no checkpoint had been written yet")
        super().__init__(
            f"non-finite {', '.join(quantities)} at step {step}: the update was refused and the "
            f"run stopped (loss={float(metrics['loss']):.6g}, "
            f"grad_norm={float(metrics['grad_norm']):.6g}, lr={float(metrics['lr']):.6g}); "
            f"{where}")


@dataclasses.dataclass
class TrainData:
    """What the loop needs from a dataset."""

    num_classes: int
    num_train: int
    num_eval: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    train_batches: Callable[[uldata.BatchLayout, int, int], Iterator[dict]]   # (layout, start, n)
    eval_batches: Callable[[uldata.BatchLayout], Iterator[dict]]


def load_train_data(config) -> TrainData:
    """Loads the train and test splits named by ``config.data`` (see the module docstring)."""
    d = config.data
    if d.name == "imagenet100":
        size = d.image_size or 224
        kw = dict(data_dir=d.data_dir, image_size=size, resize_size=round(size * 256 / 224),
                  num_threads=d.num_threads)
        train = uldata.make_imagenet100_loader("train", train=True, seed=config.seed, **kw)
        test = uldata.make_imagenet100_loader("validation", train=False, seed=config.seed, **kw)
        s = train.image_size
        return TrainData(
            100, len(train), len(test), (s, s, 3), tuple(uldata.IMAGENET_MEAN),
            tuple(uldata.IMAGENET_STD),
            lambda layout, start, n: train.train_batches(layout, start, n),
            test.eval_batches)
    kw = dict(source=d.source, data_dir=d.data_dir, image_size=d.image_size, seed=d.seed)
    train = uldata.load_dataset(d.name, "train", imbalance_ratio=d.imbalance_ratio,
                                imbalance_kind=d.imbalance_kind, **kw)
    test = uldata.load_dataset(d.name, "test", **kw)
    if train.num_classes != NUM_CLASSES[d.name]:
        raise ValueError(f"data.name={d.name!r} should have {NUM_CLASSES[d.name]} classes; the "
                         f"loaded train split has {train.num_classes}")
    mean, std = uldata.channel_stats(train.images)
    images, labels = train.images, train.labels
    return TrainData(
        train.num_classes, len(train), len(test), tuple(images.shape[1:]),
        tuple(float(x) for x in mean), tuple(float(x) for x in std),
        lambda layout, start, n: uldata.train_batches(images, labels, layout, config.seed, start, n),
        lambda layout: uldata.eval_batches(test.images, test.labels, layout))


def build_model_from_config(config, num_classes: int):
    m, h = config.model, config.head
    return build_model(m.arch, num_classes, stem=m.stem, final_relu=m.final_relu, head=h.kind,
                       head_scale=h.scale, head_bias=h.bias, head_init=h.init,
                       prototype_seed=h.prototype_seed, width_multiplier=m.width_multiplier,
                       dtype=jnp.dtype(m.dtype))


def build_optimizer_from_config(config, total_steps: int, steps_per_epoch: int):
    o = config.optimizer
    return make_optimizer(learning_rate=o.lr, total_steps=total_steps, momentum=o.momentum,
                          weight_decay=o.weight_decay, weight_decay_on=o.weight_decay_on,
                          warmup_steps=int(round(o.warmup_epochs * steps_per_epoch)),
                          schedule=o.schedule, nesterov=o.nesterov)


def step_config_from(config, data: TrainData) -> StepConfig:
    o = config.objective
    return StepConfig(loss=o.loss, gamma=o.gamma, efr_weight=float(o.efr_weight), rlr=o.rlr,
                      mean=data.mean, std=data.std, augment=config.data.augment,
                      crop_padding=config.data.crop_padding,
                      debug_nonfinite_at_step=config.debug_nonfinite_at_step)


def restore_checkpoint(workdir: str | Path, config=None, step: int | None = None):
    """Loads a trained model from a work directory: ``(model, state, config)``.

    ``config`` defaults to the work directory's ``config.json``; ``step`` to the latest
    checkpoint. No data is loaded (the number of classes comes from :data:`NUM_CLASSES`); the
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
    model = build_model_from_config(config, NUM_CLASSES[config.data.name])
    tx, _ = build_optimizer_from_config(config, total_steps=1, steps_per_epoch=1)
    size = config.data.image_size or 32   # ResNet parameter shapes do not depend on it
    mesh = uldata.data_mesh(jax.devices()[:1])
    state = jit_init_state(model, tx, config.seed, (size, size, 3), mesh)
    with Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints) as ckpt:
        step = ckpt.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {workdir / 'checkpoints'}")
        state = ckpt.restore(step, state)
    return model, state, config


_COMPILED: collections.OrderedDict = collections.OrderedDict()


def _compiled(config, data: TrainData, total: int, spe: int, mesh):
    """``(model, tx, schedule, step_cfg, init_fn, train_fn, eval_fn)``, cached per process on
    everything they are built from, so a second run of the same setup in one process (a resume
    in a notebook or a test) does not compile again."""
    key = json.dumps({
        "sections": {k: config[k].to_dict() for k in ("model", "head", "objective", "optimizer")},
        "data": [config.data.augment, config.data.crop_padding],
        "seed": config.seed, "debug": config.debug_nonfinite_at_step, "total": total,
        "spe": spe, "classes": data.num_classes, "shape": list(data.image_shape),
        "mean": list(data.mean), "std": list(data.std),
        "mesh": [d.id for d in mesh.devices.flat]}, sort_keys=True)
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    model = build_model_from_config(config, data.num_classes)
    tx, schedule = build_optimizer_from_config(config, total, spe)
    step_cfg = step_config_from(config, data)
    fns = (model, tx, schedule, step_cfg,
           jit_init_fn(model, tx, config.seed, data.image_shape, mesh),
           jit_train_step(model, tx, schedule, step_cfg, mesh, config.seed),
           jit_eval_step(model, step_cfg, mesh))
    _COMPILED[key] = fns
    while len(_COMPILED) > 4:
        _COMPILED.popitem(last=False)
    return fns


def _without_index(batches):
    for b in batches:
        yield {k: v for k, v in b.items() if k != "index"}


def evaluate(eval_fn: Callable, state, batches: Iterator[dict], mesh) -> dict[str, float]:
    """Accuracy, mean loss and mean feature norm over every (masked) example of ``batches``."""
    sums = [eval_fn(state, b) for b in uldata.prefetch_to_device(_without_index(batches), 2, mesh)]
    s = host_sums(sums)
    n = max(s["count"], 1.0)
    return {"eval/accuracy": s["correct"] / n, "eval/loss": s["loss_sum"] / n,
            "eval/feature_norm": s["feature_norm_sum"] / n, "eval/count": int(s["count"])}


def _summarize(fetched: list[dict[str, np.ndarray]]) -> dict[str, float]:
    last = fetched[-1]
    out = {}
    for k, v in last.items():
        if k == "nonfinite":
            continue
        val = np.mean([f[k] for f in fetched], dtype=np.float64) if k in BATCH_METRICS else v
        out[f"train/{k}"] = float(val)
    return out


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train_and_evaluate(config, workdir: str | Path, *, until_step: int | None = None) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and evaluates.

    Args:
      config: a config of ``configs/`` (see ``configs/common.py``).
      workdir: checkpoints, ``config.json``, ``metrics.jsonl`` and ``tensorboard/`` go here.
      until_step: stop (with a checkpoint) once this global step is reached, as a preempted job
        would; the schedule still spans the whole run. ``None``: train to the end.

    Returns:
      ``{"step": k, "train/...": ..., "eval/...": ...}``: the last logged train metrics and the
      last evaluation of this call (at the end of training: the final evaluation).

    Raises:
      ValueError: a bad config field, a config that does not match the work directory's
        checkpoint, or a batch larger than the train set.
      NonFiniteError: a non-finite loss / gradient / update (see the module docstring).
    """
    validate_config(config)
    workdir = Path(workdir).absolute()
    is_main = jax.process_index() == 0
    workdir.mkdir(parents=True, exist_ok=True)

    data = load_train_data(config)
    if config.batch_size > data.num_train:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {data.num_train} train "
                         f"examples of data.name={config.data.name!r}")
    spe = uldata.steps_per_epoch(data.num_train, config.batch_size)
    total = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * spe
    warmup = int(round(config.optimizer.warmup_epochs * spe))
    if warmup >= total:
        raise ValueError(f"optimizer.warmup_epochs={config.optimizer.warmup_epochs} gives "
                         f"{warmup} warm-up steps, not fewer than the {total} train steps")
    log_every = config.log_every
    eval_every = config.eval_every or spe
    ckpt_every = config.checkpoint_every or spe
    stop = total if until_step is None else min(int(until_step), total)

    mesh = uldata.data_mesh()
    layout = uldata.batch_layout(config.batch_size)
    eval_layout = uldata.batch_layout(config.eval_batch_size)
    model, tx, schedule, step_cfg, init_fn, train_fn, eval_fn = _compiled(config, data, total,
                                                                          spe, mesh)
    state = init_fn()

    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    writer = None
    try:
        latest = ckpt.latest_step()
        if latest is not None:
            changed = check_resume_config(load_config(workdir), config)
            state = ckpt.restore(latest, state)
            start = int(jax.device_get(state.step))
            if start != latest:
                raise ValueError(f"checkpoint {ckpt.path(latest)} holds step {start}, not {latest}")
            if changed and is_main:
                logging.warning("resuming at step %d with changed config fields: %s", start,
                                "; ".join(changed))
                save_config(workdir, config, f"config.resume_{start}.json")
            if is_main:
                logging.info("resumed from %s at step %d of %d", ckpt.path(latest), start, total)
        else:
            start = 0
            save_config(workdir, config)
        last_ckpt = ckpt.path(latest) if latest is not None else None

        run_eval = lambda st: evaluate(eval_fn, st, data.eval_batches(eval_layout), mesh)  # noqa: E731

        if start >= stop:
            out = {"step": start, **run_eval(state)}
            return out

        writer = MetricWriter(workdir, resume_step=start, enabled=is_main,
                              tensorboard=config.tensorboard)
        if is_main:
            logging.info("training %s/%s for %d steps (%d per epoch, batch %d on %d devices), "
                         "from step %d to %d", config.data.name, config.model.arch, total, spe,
                         config.batch_size, jax.device_count(), start, stop)
        batches = uldata.prefetch_to_device(data.train_batches(layout, start, stop - start), 2, mesh)
        pending: list[tuple[int, dict]] = []      # device metrics not yet checked
        interval: list[dict] = []                 # host metrics since the last log
        last_train: dict[str, float] = {}
        last_eval: dict[str, Any] = {}
        t_mark, overhead, logs_done, rate = time.perf_counter(), 0.0, 0, float("nan")

        for step in range(start + 1, stop + 1):
            state, metrics = train_fn(state, next(batches))
            pending.append((step, metrics))
            # A stop at until_step only checkpoints: its logs stay those of an uninterrupted run.
            is_log = step % log_every == 0 or step == total
            is_eval = step % eval_every == 0 or step == total
            is_ckpt = step % ckpt_every == 0 or step == stop
            if not (is_log or is_eval or is_ckpt):
                continue
            fetched = jax.device_get([m for _, m in pending])
            for (s, _), f in zip(pending, fetched):
                if int(f["nonfinite"]):
                    ckpt.wait()
                    err = NonFiniteError(s, decode_nonfinite(int(f["nonfinite"])), last_ckpt, f)
                    if is_main:
                        logging.error("%s", err)
                    raise err
            interval.extend(fetched)
            pending.clear()

            row: dict[str, Any] = {}
            if is_log:
                now = time.perf_counter()
                if logs_done > 0:  # the first interval includes compilation
                    rate = (len(interval)) / max(now - t_mark - overhead, 1e-9)
                    row["perf/steps_per_sec"] = rate
                    row["perf/images_per_sec"] = rate * config.batch_size
                last_train = {**_summarize(interval), "train/epoch": step / spe}
                row.update(last_train)
                interval.clear()
                t_mark, overhead, logs_done = now, 0.0, logs_done + 1
            if is_eval:
                t0 = time.perf_counter()
                last_eval = run_eval(state)
                row.update(last_eval)
                overhead += time.perf_counter() - t0
            if row:
                writer.write(step, row)
            if is_log and is_main:
                eta = (stop - step) / rate if rate == rate and rate > 0 else float("nan")
                line = (f"step {step}/{total} ({100 * step / total:.1f}%, epoch {step / spe:.2f}) "
                        f"loss {last_train['train/loss']:.4f} acc {last_train['train/accuracy']:.3f} "
                        f"lr {last_train['train/lr']:.4g} |h| {last_train['train/feature_norm']:.3g}")
                if is_eval:
                    line += f" | eval acc {last_eval['eval/accuracy']:.4f}"
                line += (f" | {rate * config.batch_size:.0f} img/s" if rate == rate else
                         " | compiling") + f" | ETA {_fmt_time(eta)}"
                logging.info("%s", line)
            if is_ckpt:
                t0 = time.perf_counter()
                last_ckpt = ckpt.save(step, state)
                overhead += time.perf_counter() - t0
        ckpt.wait()
        return {"step": stop, **last_train, **last_eval}
    finally:
        if writer is not None:
            writer.close()
        ckpt.close()
