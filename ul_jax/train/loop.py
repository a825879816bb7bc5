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
4. Resume: if ``WORKDIR/checkpoints`` holds a checkpoint, the newest *usable* one is restored
   (after :func:`ul_jax.checkpoint.check_resume_config` and the shape check of
   :meth:`ul_jax.checkpoint.Checkpointer.restore`, which also verifies the checkpoint's
   fingerprint) and training continues at its step. A damaged checkpoint (truncated or missing
   files, bytes that differ from the saved ones) is skipped with a warning naming it and moved
   to ``WORKDIR/damaged_checkpoints/``; the previous one is used. The batch of step ``k`` and its
   augmentation key ``augment_key(seed, k)`` are functions of ``(seed, k)``, and each checkpoint
   stores the batch metrics of the steps since the last log line, so the resumed run sees
   exactly the data and randomness of an uninterrupted run, ends with bit-identical parameters
   (on the same hardware and software) and writes the same ``metrics.jsonl`` lines (which are
   truncated to the steps ≤ the restored step first).
   No usable checkpoint: a fresh start, except over the files of an earlier run that had got
   further — damaged checkpoints only, a ``config.json`` that differs from this config, or
   ``metrics.jsonl`` lines past the first checkpoint step — which raises
   :class:`NoUsableCheckpointError` unless ``config.restart`` is true (then those files move to
   ``WORKDIR/previous_<time>/`` and the run starts from step 0). ``config.restart`` never
   discards a usable checkpoint.
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
   checkpoint, which is left intact (a bad state is never saved). With ``skip_nonfinite=N > 0``
   up to ``N`` *consecutive* refused updates are skipped (a warning each; logged as
   ``train/skipped_steps``, left out of the batch-metric averages) and the run stops at the
   ``N + 1``-th, like dynamic loss scaling skips overflowing steps. The count survives a resume.
7. Preemption: ``SIGTERM`` (the notice of preemptible VMs, Kubernetes, SLURM) sets a flag; at the
   next step boundary the loop saves a checkpoint of that step synchronously, closes the logs
   and returns ``{"step": k, "preempted": True, ...}`` (``python -m launch.train`` then exits
   with code 75). Multi-process runs use JAX's preemption sync point, so all processes stop at
   the same step even if only one got the signal.

Logged keys: ``train/<metric>`` (batch metrics — loss, objective, efr_term, accuracy,
grad_norm, feature_norm — averaged over the steps since the previous log; state metrics — lr,
param_norm, prototype_* — at the logged step), ``train/epoch``, ``eval/accuracy``, ``eval/loss``,
``eval/feature_norm``, ``eval/count`` and ``perf/steps_per_sec``, ``perf/images_per_sec``
(train time only, from the second log on: the first interval includes compilation).

Multi-host: every process runs this function; only process 0 writes ``metrics.jsonl``,
TensorBoard events, ``config.json`` and console lines; all processes take part in checkpointing,
and every checkpoint save checks that all processes hold the same replicated state.

See ``docs/RELIABILITY.md`` for what is guaranteed and how each guarantee is tested.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from ul_jax import data as uldata
from ul_jax.checkpoint import (
    CONFIG_FILE,
    Checkpointer,
    check_resume_config,
    flatten_config,
    load_config,
    save_config,
    sync_processes,
)
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
from ul_jax.train.writers import MetricWriter, read_jsonl

__all__ = [
    "NonFiniteError",
    "NoUsableCheckpointError",
    "TrainData",
    "load_train_data",
    "build_model_from_config",
    "build_optimizer_from_config",
    "step_config_from",
    "evaluate",
    "theorem6_scale_from",
    "restore_checkpoint",
    "train_and_evaluate",
    "BATCH_METRICS",
]

# Averaged over the log interval; the other train metrics are reported at the logged step.
BATCH_METRICS = ("loss", "objective", "efr_term", "accuracy", "grad_norm", "feature_norm")
DAMAGED_DIR = "damaged_checkpoints"
# Files of a run in its work directory (moved to previous_<time>/ by config.restart).
RUN_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", CONFIG_FILE, DAMAGED_DIR)


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss, gradient or update; the run stopped.

    Attributes: ``step`` (the refused update), ``quantities`` (names), ``checkpoint`` (path of the
    last good checkpoint or ``None``), ``metrics`` (host metrics of that step), ``consecutive``
    (refused updates in a row, this one included; > 1 only with ``skip_nonfinite``).
    """

    def __init__(self, step: int, quantities: list[str], checkpoint: Path | None,
                 metrics: dict[str, Any], consecutive: int = 1, limit: int = 0):
        self.step, self.quantities, self.checkpoint, self.metrics = step, quantities, checkpoint, metrics
        self.consecutive = consecutive
        where = (f"the last good checkpoint is {checkpoint} (left intact)" if checkpoint is not None
                 else "no checkpoint had been written yet")
        skipped = (f" after {consecutive} consecutive non-finite steps (skip_nonfinite={limit})"
                   if limit > 0 else "")
        super().__init__(
            f"non-finite {', '.join(quantities)} at step {step}: the update was refused and the "
            f"run stopped{skipped} (loss={float(metrics['loss']):.6g}, "
            f"grad_norm={float(metrics['grad_norm']):.6g}, lr={float(metrics['lr']):.6g}); "
            f"{where}")


class NoUsableCheckpointError(RuntimeError):
    """The work directory holds an earlier run's files but no checkpoint that can be resumed,
    and ``config.restart`` is false: starting from step 0 there would silently discard them."""


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
    num_val: int = 0                     # held-out validation examples (0: no validation split)
    val_batches: Callable[[uldata.BatchLayout], Iterator[dict]] | None = None


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
    per_class = int(_get_optional(d, "validation_per_class", 0) or 0)
    val = None
    if per_class > 0:
        # balanced validation set held out of the full train split; the long-tailed subset (if
        # any) is drawn from the rest (ul_jax.data.split_validation)
        full = uldata.load_dataset(d.name, "train", **kw)
        train, val = uldata.split_validation(full, per_class, d.seed)
        if d.imbalance_ratio is not None:
            train = uldata.make_long_tailed(train, d.imbalance_ratio, d.imbalance_kind, d.seed)
    else:
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
        lambda layout: uldata.eval_batches(test.images, test.labels, layout),
        num_val=0 if val is None else len(val),
        val_batches=None if val is None else (
            lambda layout: uldata.eval_batches(val.images, val.labels, layout)))


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


def evaluate(eval_fn: Callable, state, batches: Iterator[dict], mesh, *, prefix: str = "eval",
             theorem6_scale: float | None = None) -> dict[str, Any]:
    """Accuracy, mean loss, mean feature norm and the mechanism diagnostics over every (masked)
    example of ``batches``, keys ``<prefix>/...``:

    * ``cos_feature_prototype``: mean cos(h_i, w_{y_i});
    * ``class_feature_norm``: the per-class mean ‖h‖ (a list of C; NaN for an absent class);
    * with ``theorem6_scale = (1+γ)/(2λB)`` (UL with fixed prototypes and EFR λΣ_batch‖h‖², see
      :func:`ul_jax.objectives.efr_feature_target`): ``theorem6_target_norm`` (mean ‖h*_c‖ of the
      stationary features ``h*_c = theorem6_scale · w_c``) and ``theorem6_distance``
      (mean over classes of ‖μ_c − h*_c‖ / ‖h*_c‖, μ_c the class-mean feature; the deep-network
      counterpart of Fig. 15).
    """
    sums = [eval_fn(state, b) for b in uldata.prefetch_to_device(_without_index(batches), 2, mesh)]
    s = host_sums(sums)
    n = max(s["count"], 1.0)
    out: dict[str, Any] = {
        f"{prefix}/accuracy": s["correct"] / n, f"{prefix}/loss": s["loss_sum"] / n,
        f"{prefix}/feature_norm": s["feature_norm_sum"] / n, f"{prefix}/count": int(s["count"])}
    if "class_count" not in s:
        return out
    cnt = s["class_count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"{prefix}/cos_feature_prototype"] = s["cos_sum"] / n
        out[f"{prefix}/class_feature_norm"] = [float(x) for x in s["class_norm_sum"] / cnt]
        if theorem6_scale is not None:
            from ul_jax.train.step import classifier_weights
            w = np.asarray(jax.device_get(classifier_weights(state)), np.float64)   # (p, C)
            target = theorem6_scale * w.T                                          # (C, p)
            means = s["class_feature_sum"] / cnt[:, None]
            tn = np.linalg.norm(target, axis=1)
            present = cnt > 0
            out[f"{prefix}/theorem6_target_norm"] = float(tn.mean())
            out[f"{prefix}/theorem6_distance"] = float(np.mean(
                np.linalg.norm(means - target, axis=1)[present] / tn[present]))
    return out


def theorem6_scale_from(config, num_classes: int) -> float | None:
    """``(1+γ)/(2λB)`` for UL with a fixed-prototype PAL head and EFR λ > 0 (else ``None``): the
    class-``c`` features at which the batch objective's feature gradient vanishes are
    ``h*_c = (1+γ)/(2λB) · w_c`` (:func:`ul_jax.objectives.efr_feature_target`)."""
    o = config.objective
    if o.loss != "ul" or config.head.kind != "pal" or not o.efr_weight or config.head.bias:
        return None
    from ul_jax.objectives import efr_feature_target_scale
    return efr_feature_target_scale(o.efr_weight, config.batch_size, num_classes, o.gamma)


def _summarize(interval: list[dict[str, float]], last: dict[str, np.ndarray]) -> dict[str, float]:
    """Batch metrics averaged (float64) over ``interval`` (NaN if empty: every step skipped),
    the others taken from ``last``, the logged step."""
    out = {}
    for k, v in last.items():
        if k == "nonfinite":
            continue
        if k in BATCH_METRICS:
            val = np.mean([r[k] for r in interval], dtype=np.float64) if interval else math.nan
        else:
            val = v
        out[f"train/{k}"] = float(val)
    return out


class _PreemptionWatch:
    """Turns ``SIGTERM`` into "stop at the next step boundary".

    Single process: a Python handler (installed while :func:`train_and_evaluate` runs, main
    thread only; the previous handler is restored) sets a flag that stays set for the rest of
    the process, so a later call in the same process (a suite of runs) stops at once too.
    Multi-process: JAX's preemption service (started by ``jax.distributed.initialize``) receives
    the signal on any process and
    :func:`jax.experimental.multihost_utils.reached_preemption_sync_point` makes every process
    stop at the same step."""

    received = False          # a SIGTERM arrived in this process (single-process mode)

    def __init__(self):
        self._old = None
        self._multi = jax.process_count() > 1
        if not self._multi and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)

    @staticmethod
    def _handle(signum, frame):  # noqa: ARG004
        _PreemptionWatch.received = True

    def pending(self) -> bool:
        """A single-process preemption notice that arrived before the first step."""
        return not self._multi and _PreemptionWatch.received

    def reached(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils
            try:
                return bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError:   # preemption service disabled: no SIGTERM handling
                self._multi = False
                return False
        return _PreemptionWatch.received

    def close(self):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
            self._old = None


def _agree(value: int, what: str) -> None:
    """Raises unless every process computed the same ``value`` (no-op with one process)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils
    values = np.asarray(multihost_utils.process_allgather(np.asarray([value], np.int64))).ravel()
    if len(set(values.tolist())) > 1:
        raise RuntimeError(f"processes disagree on {what}: {values.tolist()} (process order); "
                           "is the work directory shared by all processes?")


def _config_diff(stored: dict[str, Any], config) -> list[str]:
    old, new = flatten_config(stored), flatten_config(config)
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if k != "restart" and old.get(k) != new.get(k)]


def _fresh_start_problem(workdir: Path, stored, config, first_ckpt: int, damaged) -> str | None:
    """Why starting from step 0 in ``workdir`` would discard an earlier run's progress (or
    ``None`` if it would not: nothing there, or a run of this config that stopped before its
    first checkpoint step)."""
    if damaged:
        return ("no usable checkpoint in " + str(workdir / "checkpoints") + ": "
                + "; ".join(f"{e.path} is damaged ({e.reason})" for e in damaged))
    if stored is not None:
        diff = _config_diff(stored, config)
        if diff:
            return (f"{workdir} holds the config.json of another run and no checkpoint "
                    f"(differing fields: {'; '.join(diff[:6])}{' ...' if len(diff) > 6 else ''})")
    rows = read_jsonl(workdir / "metrics.jsonl")
    last = max((int(r.get("step", 0)) for r in rows), default=0)
    if last > first_ckpt:
        return (f"{workdir / 'metrics.jsonl'} reaches step {last}, past the first checkpoint step "
                f"{first_ckpt}, but {workdir / 'checkpoints'} holds no checkpoint (deleted or "
                "lost?)")
    return None


def _refusal(problem: str, workdir: Path) -> str:
    return (f"refusing to start from step 0: {problem}. Pass --config.restart=True to move the "
            f"earlier run's files to {workdir}/previous_<time>/ and start over, or use a new "
            "--workdir")


def _move_run_aside(workdir: Path) -> Path:
    """Moves :data:`RUN_FILES` (and ``config.resume_*.json``) to ``workdir/previous_<time>``
    (process 0; every process calls this)."""
    dest = workdir / time.strftime("previous_%Y%m%d-%H%M%S", time.gmtime())
    if jax.process_index() == 0:
        n = 0
        while dest.exists():
            n += 1
            dest = dest.with_name(dest.name.split(".")[0] + f".{n}")
        dest.mkdir(parents=True)
        names = [*RUN_FILES, *(p.name for p in workdir.glob("config.resume_*.json"))]
        for name in names:
            if (workdir / name).exists():
                shutil.move(str(workdir / name), str(dest / name))
    sync_processes("ul_jax_restart")
    return dest


def _start_or_resume(config, workdir: Path, template, first_ckpt: int, total: int,
                     is_main: bool):
    """``(checkpointer, state, start_step, extra)``: the newest usable checkpoint restored, or
    ``template`` at step 0 (see steps 4 of the module docstring)."""
    ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
    restart = bool(_get_optional(config, "restart", False))
    try:
        stored = load_config(workdir)
        changed, step, state, damaged = [], None, template, []
        if ckpt.all_steps():
            changed = check_resume_config(stored, config)   # before reading any array
            step, state, damaged = ckpt.restore_latest(template)
        _agree(-1 if step is None else step, "the checkpoint step to resume from")
        if step is not None:
            if damaged:
                moved = ckpt.move_aside([int(e.path.name) for e in damaged], workdir / DAMAGED_DIR)
                if is_main:
                    logging.warning(
                        "%s; falling back to %s (step %d). Moved the damaged checkpoint(s) to %s",
                        "; ".join(f"checkpoint {e.path} is damaged: {e.reason}" for e in damaged),
                        ckpt.path(step), step, ", ".join(map(str, moved)))
            start = int(jax.device_get(state.step))
            if start != step:
                raise ValueError(f"checkpoint {ckpt.path(step)} holds step {start}, not {step}")
            if is_main:
                if restart:
                    logging.warning("config.restart=True has no effect: %s holds the usable "
                                    "checkpoint %s (use a new --workdir to start over)", workdir,
                                    ckpt.path(step))
                if changed:
                    logging.warning("resuming at step %d with changed config fields: %s", start,
                                    "; ".join(changed))
                    save_config(workdir, config, f"config.resume_{start}.json")
                logging.info("resumed from %s at step %d of %d", ckpt.path(step), start, total)
            return ckpt, state, start, ckpt.extra(step)

        problem = _fresh_start_problem(workdir, stored, config, first_ckpt, damaged)
        if problem is not None:
            if not restart:
                raise NoUsableCheckpointError(_refusal(problem, workdir))
            ckpt.close()
            dest = _move_run_aside(workdir)
            ckpt = Checkpointer(workdir / "checkpoints", keep=config.keep_checkpoints)
            if is_main:
                logging.warning("config.restart=True: %s; moved the earlier run's files to %s "
                                "and starting from step 0", problem, dest)
        elif is_main and (stored is not None or (workdir / "metrics.jsonl").exists()):
            logging.warning("%s holds no checkpoint: the earlier run of this config stopped "
                            "before its first checkpoint (step %d); starting from step 0",
                            workdir, first_ckpt)
        save_config(workdir, config)
        return ckpt, template, 0, {}
    except BaseException:
        ckpt.close()
        raise


def _step_dirs(workdir: Path) -> list[Path]:
    d = workdir / "checkpoints"
    return [p for p in d.iterdir() if p.is_dir() and p.name.isdigit()] if d.is_dir() else []


def _get_optional(config, name: str, default):
    try:
        return config[name]
    except (KeyError, AttributeError):
        return default


def _fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train_and_evaluate(config, workdir: str | Path, *, until_step: int | None = None,
                       skip_nonfinite: int = 0) -> dict[str, Any]:
    """Trains ``config`` in ``workdir`` (resuming from its newest usable checkpoint) and evaluates.

    Args:
      config: a config of ``configs/`` (see ``configs/common.py``).
      workdir: checkpoints, ``config.json``, ``metrics.jsonl`` and ``tensorboard/`` go here.
      until_step: stop (with a checkpoint) once this global step is reached, as a preempted job
        would; the schedule still spans the whole run. ``None``: train to the end.
      skip_nonfinite: skip up to this many consecutive non-finite updates before stopping
        (0: stop at the first; see the module docstring).

    Returns:
      ``{"step": k, "train/...": ..., "eval/...": ...}``: the last logged train metrics and the
      last evaluation of this call (at the end of training: the final evaluation); plus
      ``"preempted": True`` if a ``SIGTERM`` stopped the run early (with a checkpoint at ``k``).

    Raises:
      ValueError: a bad config field, a config that does not match the work directory's
        checkpoint, or a batch larger than the train set.
      NoUsableCheckpointError: an earlier run's files but no usable checkpoint, and
        ``config.restart`` is false.
      NonFiniteError: a non-finite loss / gradient / update (see the module docstring).
    """
    validate_config(config)
    if isinstance(skip_nonfinite, bool) or not isinstance(skip_nonfinite, int) or skip_nonfinite < 0:
        raise ValueError(f"skip_nonfinite must be an integer >= 0; got "
                         f"skip_nonfinite={skip_nonfinite!r}")
    if until_step is not None and (isinstance(until_step, bool) or int(until_step) != until_step
                                   or until_step < 1):
        raise ValueError(f"until_step must be None or an integer >= 1; got until_step={until_step!r}")
    workdir = Path(workdir).absolute()
    preempt = _PreemptionWatch()       # from here on, SIGTERM means "stop at a step boundary"
    try:
        return _train_and_evaluate(config, workdir, until_step, skip_nonfinite, preempt)
    finally:
        preempt.close()


def _train_and_evaluate(config, workdir: Path, until_step, skip_nonfinite: int,
                        preempt: _PreemptionWatch) -> dict[str, Any]:
    is_main = jax.process_index() == 0
    if workdir.exists() and not workdir.is_dir():
        raise NotADirectoryError(f"--workdir {workdir} exists and is not a directory")
    workdir.mkdir(parents=True, exist_ok=True)
    stored = load_config(workdir)              # a corrupt config.json fails here
    if _step_dirs(workdir):   # a resume: refuse a config of other shapes before loading data
        check_resume_config(stored, config)

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
    if not _step_dirs(workdir) and not _get_optional(config, "restart", False):
        # nothing to resume: refuse to start over an earlier run's files before compiling
        problem = _fresh_start_problem(workdir, stored, config, min(ckpt_every, total), [])
        if problem is not None:
            raise NoUsableCheckpointError(_refusal(problem, workdir))

    mesh = uldata.data_mesh()
    layout = uldata.batch_layout(config.batch_size)
    eval_layout = uldata.batch_layout(config.eval_batch_size)
    model, tx, schedule, step_cfg, init_fn, train_fn, eval_fn = _compiled(config, data, total,
                                                                          spe, mesh)
    state = init_fn()

    ckpt = writer = None
    try:
        ckpt, state, start, resumed = _start_or_resume(config, workdir, state,
                                                       min(ckpt_every, total), total, is_main)
        last_ckpt = ckpt.path(start) if start > 0 else None

        t6 = theorem6_scale_from(config, data.num_classes)

        def run_eval(st):
            out = evaluate(eval_fn, st, data.eval_batches(eval_layout), mesh, theorem6_scale=t6)
            if data.val_batches is not None:
                out.update(evaluate(eval_fn, st, data.val_batches(eval_layout), mesh,
                                    prefix="val", theorem6_scale=t6))
            return out

        if preempt.pending():     # SIGTERM during start-up: nothing new to save
            if is_main:
                logging.warning("preempted (SIGTERM) before the first step; the work directory "
                                "is at step %d", start)
            return {"step": start, "preempted": True}
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
        # host batch metrics of the finite steps since the last log line, the refused updates
        # among them and in a row: carried over a resume by the checkpoint, so that the next log
        # line is the one of an uninterrupted run
        interval: list[dict[str, float]] = [
            {k: float(v) for k, v in r.items()} for r in resumed.get("interval", [])]
        skipped = int(resumed.get("skipped_in_interval", 0))
        streak = int(resumed.get("nonfinite_streak", 0))
        last_train: dict[str, float] = {}
        last_eval: dict[str, Any] = {}
        t_mark, t_step, overhead, logs_done, rate = time.perf_counter(), start, 0.0, 0, float("nan")
        preempted = False

        for step in range(start + 1, stop + 1):
            state, metrics = train_fn(state, next(batches))
            pending.append((step, metrics))
            preempted = preempt.reached(step)
            # A stop at until_step or by SIGTERM only checkpoints: its logs stay those of an
            # uninterrupted run.
            is_log = step % log_every == 0 or step == total
            is_eval = step % eval_every == 0 or step == total
            is_ckpt = step % ckpt_every == 0 or step == stop or preempted
            if not (is_log or is_eval or is_ckpt):
                continue
            fetched = jax.device_get([m for _, m in pending])
            for (s, _), f in zip(pending, fetched):
                if int(f["nonfinite"]):
                    streak += 1
                    what = decode_nonfinite(int(f["nonfinite"]))
                    if streak > skip_nonfinite:
                        ckpt.wait()
                        err = NonFiniteError(s, what, last_ckpt, f, consecutive=streak,
                                             limit=skip_nonfinite)
                        if is_main:
                            logging.error("%s", err)
                        raise err
                    skipped += 1
                    if is_main:
                        logging.warning("non-finite %s at step %d: update skipped (%d in a row, "
                                        "skip_nonfinite=%d)", ", ".join(what), s, streak,
                                        skip_nonfinite)
                else:
                    streak = 0
                    interval.append({k: float(f[k]) for k in BATCH_METRICS})
            last = fetched[-1]
            pending.clear()

            row: dict[str, Any] = {}
            if is_log:
                now = time.perf_counter()
                if logs_done > 0:  # the first interval includes compilation
                    rate = (step - t_step) / max(now - t_mark - overhead, 1e-9)
                    row["perf/steps_per_sec"] = rate
                    row["perf/images_per_sec"] = rate * config.batch_size
                last_train = {**_summarize(interval, last), "train/epoch": step / spe}
                if skip_nonfinite:
                    last_train["train/skipped_steps"] = skipped
                row.update(last_train)
                interval.clear()
                skipped = 0
                t_mark, t_step, overhead, logs_done = now, step, 0.0, logs_done + 1
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
                last_ckpt = ckpt.save(step, state, extra={   # copies: orbax writes it later
                    "interval": [dict(r) for r in interval], "skipped_in_interval": skipped,
                    "nonfinite_streak": streak})
                overhead += time.perf_counter() - t0
            if preempted:
                break
        ckpt.wait()
        if preempted:
            if is_main:
                logging.warning("preempted (SIGTERM) at step %d of %d: saved checkpoint %s; rerun "
                                "the same command to resume", step, total, last_ckpt)
            return {"step": step, "preempted": True, **last_train, **last_eval}
        return {"step": stop, **last_train, **last_eval}
    finally:
        if writer is not None:
            writer.close()
        if ckpt is not None:
            ckpt.close()
