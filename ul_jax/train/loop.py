"""The training loop: :func:`train_and_evaluate` ``(config, workdir) → final metrics``.

What happens, in order:

1. :func:`ul_jax.train.validate_config` checks every field (``ValueError`` naming the field),
   before any data is read or anything compiled; so does
   :func:`ul_jax.train.workdir.claim_workdir` for the work directory (a file, a read-only
   parent: an error naming the path), which then takes its single-writer lock
   ``WORKDIR/writer.lock`` (:mod:`ul_jax.train.lock`; held until the call returns or raises).
2. Data (:mod:`ul_jax.train.setup`): in-memory sets (CIFAR, digits, long-tailed subsets) via :func:`ul_jax.data.load_dataset`
   with per-channel mean/std of the train split, augmented on device; ImageNet-100 via
   :func:`ul_jax.data.make_imagenet100_loader` (host-side random-resized-crop; normalize on
   device).
3. Model, SGD + cosine schedule (:func:`ul_jax.objectives.make_optimizer`) over
   ``num_epochs × (n_train // batch_size)`` steps (or ``num_train_steps``), the state created
   replicated on the 1-D ``"data"`` mesh of all devices of all hosts.
4. Resume (:mod:`ul_jax.train.workdir`): if ``WORKDIR/checkpoints`` holds a checkpoint, the newest *usable* one is restored
   (after :func:`ul_jax.train.checkpoint.check_resume_config` and the shape check of
   :meth:`ul_jax.train.checkpoint.Checkpointer.restore`, which also verifies the checkpoint's
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
   TensorBoard and to the console (throughput, ETA; on an interactive terminal a progress bar
   instead, :mod:`ul_jax.train.progress`); every ``eval_every`` steps (0: every epoch)
   and at the end the whole test set is evaluated; every ``checkpoint_every`` steps (0: every
   epoch) and at the end a checkpoint is saved. A run that reaches its last step draws
   ``WORKDIR/curves.png`` (:func:`ul_jax.train.plot.write_run_curves`; a failure only warns).
   ``config.profile_steps = (first, count)`` traces steps ``first … first + count − 1`` (those
   this call runs) with :func:`jax.profiler.start_trace` into ``WORKDIR/profile`` on process 0
   (``plugins/profile/<time>/<host>.xplane.pb``: TensorBoard's profile plugin, Perfetto); the
   trace ends after the last traced step's outputs are ready.
6. Non-finite values: the step itself refuses a non-finite update (see
   :mod:`ul_jax.train.step`); the loop reads every step's ``nonfinite`` mask on the host at each
   log, eval and checkpoint step — so before any checkpoint is written — and raises
   :class:`NonFiniteError` naming the first bad step, the non-finite quantities and the last good
   checkpoint, which is left intact (a bad state is never saved). With ``skip_nonfinite=N > 0``
   up to ``N`` *consecutive* refused updates are skipped (a warning each; logged as
   ``train/skipped_steps``, left out of the batch-metric averages) and the run stops at the
   ``N + 1``-th, like dynamic loss scaling skips overflowing steps. The count survives a resume.
   A skipped step drops its batch and its lr slot: the schedule follows the step, not the count
   of applied updates, so the cosine still reaches its end on the last step; the logged
   ``train/lr`` is the lr the update applied (read from the optimizer's counter).
7. Preemption (:mod:`ul_jax.train.preemption`): ``SIGTERM`` (the notice of preemptible VMs, Kubernetes, SLURM) sets a flag; at the
   next step boundary the loop saves a checkpoint of that step synchronously, closes the logs
   and returns ``{"step": k, "preempted": True, ...}`` (``python -m launch.train`` then exits
   with code 75). Multi-process runs use JAX's preemption sync point, so all processes stop at
   the same step even if only one got the signal.

Logged keys: ``train/<metric>`` (batch metrics — loss, objective, efr_term, accuracy,
grad_norm, feature_norm — averaged over the steps since the previous log; state metrics — lr,
param_norm, prototype_* — at the logged step), ``train/epoch``, ``eval/accuracy``, ``eval/loss``,
``eval/feature_norm``, ``eval/count`` and ``perf/steps_per_sec``, ``perf/images_per_sec``
(train time only, from the second log on: the first interval includes compilation).
With ``group_grad_every = N > 0``, at every step that is a multiple of ``N`` and at the last step
(its own ``metrics.jsonl`` line when it is not a log or eval step), the per-group trunk-gradient
diagnostic of :mod:`ul_jax.train.group_grad`, on that step's batch and the parameters before its
update — lists in many / medium / few-shot order (groups by the training set's class counts):
``train/trunk_grad_share`` (``⟨g_G, g⟩/‖g‖²``, sums to 1), ``train/trunk_grad_norm_ratio``
(``‖g_G‖/‖g‖``), ``train/group_batch_share`` (the group's share of the batch's examples), and the
scalar ``train/trunk_grad_norm`` (``‖g‖``); its time is left out of the throughput.

Multi-host: every process runs this function; only process 0 writes ``metrics.jsonl``,
TensorBoard events, ``config.json`` and console lines; all processes take part in checkpointing,
and every checkpoint save checks that all processes hold the same replicated state.

See ``docs/RELIABILITY.md`` for what is guaranteed and how each guarantee is tested.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
from absl import logging

from ul_jax import data as uldata
from ul_jax.config import get_field
from ul_jax.console import EXIT_DIVERGED, fmt_duration
from ul_jax.train import group_grad
from ul_jax.train.checkpoint import Checkpointer
from ul_jax.train.plot import write_run_curves
from ul_jax.train.precision import apply_deterministic_ops
from ul_jax.train.preemption import PreemptionWatch
from ul_jax.train.progress import ProgressBar, WallRate, use_progress_bar
from ul_jax.train.setup import Schedule, TrainData, compile_run, load_train_data, schedule_from
from ul_jax.train.step import decode_nonfinite
from ul_jax.train.summaries import BATCH_METRICS, evaluate, summarize, theorem6_scale_from
from ul_jax.train.validate import validate_config
from ul_jax.train.workdir import (
    claim_workdir,
    prepare_workdir,
    refuse_fresh_start,
    start_or_resume,
)
from ul_jax.train.writers import MetricWriter

__all__ = ["NonFiniteError", "train_and_evaluate"]


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss, gradient or update; the run stopped.

    Attributes: ``step`` (the refused update), ``quantities`` (names), ``checkpoint`` (path of the
    last good checkpoint or ``None``), ``metrics`` (host metrics of that step), ``consecutive``
    (refused updates in a row, this one included; > 1 only with ``skip_nonfinite``).
    """

    exit_code = EXIT_DIVERGED  # launch.train exits 3 (ul_jax.console.exit_code_for)

    def __init__(
        self,
        step: int,
        quantities: list[str],
        checkpoint: Path | None,
        metrics: dict[str, Any],
        consecutive: int = 1,
        limit: int = 0,
    ):
        self.step, self.quantities, self.checkpoint, self.metrics = (
            step,
            quantities,
            checkpoint,
            metrics,
        )
        self.consecutive = consecutive
        where = (
            f"the last good checkpoint is {checkpoint} (left intact)"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        skipped = (
            f" after {consecutive} consecutive non-finite steps (skip_nonfinite={limit})"
            if limit > 0
            else ""
        )
        super().__init__(
            f"non-finite {', '.join(quantities)} at step {step}: the update was refused and the "
            f"run stopped{skipped} (loss={float(metrics['loss']):.6g}, "
            f"grad_norm={float(metrics['grad_norm']):.6g}, lr={float(metrics['lr']):.6g}); "
            f"{where}"
        )


def train_and_evaluate(
    config, workdir: str | Path, *, until_step: int | None = None, skip_nonfinite: int = 0
) -> dict[str, Any]:
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
      When the call reached its last step (the end or ``until_step``) also ``"total_steps"``
      (the schedule's length) and, given two log lines or more, ``"perf/images_per_sec"``: this
      call's mean training throughput (compilation, evaluation and checkpoints excluded).

    Raises:
      ValueError: a bad config field, a config that does not match the work directory's
        checkpoint, or a batch larger than the train set.
      NoUsableCheckpointError: an earlier run's files but no usable checkpoint, and
        ``config.restart`` is false.
      NonFiniteError: a non-finite loss / gradient / update (see the module docstring).
      WorkdirLockedError: another live run holds the work directory (names host, PID, start).
      NotADirectoryError, WorkdirNotWritableError: the work directory cannot be created or
        written.
      CheckpointDiskFullError: no space left for a checkpoint (the previous one is intact).
    """
    validate_config(config)
    apply_deterministic_ops(config)  # a no-op when launch.train set it; errors if too late
    if (
        isinstance(skip_nonfinite, bool)
        or not isinstance(skip_nonfinite, int)
        or skip_nonfinite < 0
    ):
        raise ValueError(
            f"skip_nonfinite must be an integer >= 0; got skip_nonfinite={skip_nonfinite!r}"
        )
    if until_step is not None and (
        isinstance(until_step, bool) or int(until_step) != until_step or until_step < 1
    ):
        raise ValueError(
            f"until_step must be None or an integer >= 1; got until_step={until_step!r}"
        )
    workdir = Path(workdir).absolute()
    lock = claim_workdir(workdir)  # path checks and the single-writer lock, before any compile
    try:
        preempt = PreemptionWatch()  # from here on, SIGTERM means "stop at a step boundary"
        try:
            return _train_and_evaluate(config, workdir, until_step, skip_nonfinite, preempt, lock)
        finally:
            preempt.close()
    finally:
        lock.release()


def _train_and_evaluate(
    config, workdir: Path, until_step, skip_nonfinite: int, preempt: PreemptionWatch, lock
) -> dict[str, Any]:
    is_main = jax.process_index() == 0
    show_bar = is_main and use_progress_bar()  # a bad UL_JAX_PROGRESS fails before any work
    stored = prepare_workdir(workdir, config)
    data = load_train_data(config)
    sched = schedule_from(config, data, until_step)
    refuse_fresh_start(workdir, stored, config, sched.first_ckpt)  # before compiling
    mesh = uldata.data_mesh()
    fns = compile_run(config, data, sched.total, sched.steps_per_epoch, mesh)
    group_grad_every = int(get_field(config, "group_grad_every"))
    group_grad_fn = (
        group_grad.jit_group_gradients(
            fns.model,
            fns.step_cfg,
            mesh,
            config.seed,
            group_grad.class_groups(data.class_counts, "group_grad_every"),
        )
        if group_grad_every > 0
        else None
    )
    state = fns.init_fn()
    ckpt = writer = bar = None
    try:
        ckpt, state, start, resumed = start_or_resume(
            config, workdir, state, sched.first_ckpt, sched.total, is_main
        )
        run_eval = _evaluator(config, data, fns.eval_fn, mesh)
        if preempt.pending():  # SIGTERM during start-up: nothing new to save
            if is_main:
                logging.warning(
                    "preempted (SIGTERM) before the first step; the work directory is at step %d",
                    start,
                )
            return {"step": start, "preempted": True}
        if start >= sched.stop:
            return {"step": start, "total_steps": sched.total, **run_eval(state)}
        writer = MetricWriter(
            workdir, resume_step=start, enabled=is_main, tensorboard=config.tensorboard
        )
        if is_main:
            logging.info(
                "training %s/%s for %d steps (%d per epoch, batch %d on %d %s device(s)), "
                "from step %d to %d",
                config.data.name,
                config.model.arch,
                sched.total,
                sched.steps_per_epoch,
                config.batch_size,
                jax.device_count(),
                jax.devices()[0].platform,
                start,
                sched.stop,
            )
        progress = _Progress.resumed(resumed, start, ckpt.path(start) if start > 0 else None)
        bar = ProgressBar(start, sched.total) if show_bar else None
        profiler = _StepProfiler(get_field(config, "profile_steps"), workdir / "profile", is_main)
        loop = _Loop(
            config,
            sched,
            data,
            mesh,
            fns.train_fn,
            run_eval,
            ckpt,
            writer,
            preempt,
            skip_nonfinite,
            is_main,
            lock,
            bar,
            profiler,
            group_grad_fn,
            group_grad_every,
        )
        out = loop.run(state, start, progress)
        if is_main and out["step"] == sched.total and not out.get("preempted"):
            write_run_curves(workdir)  # WORKDIR/curves.png; a failure is only a warning
        return out
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if ckpt is not None:
            ckpt.close()


def _evaluator(config, data: TrainData, eval_fn, mesh) -> Callable[[Any], dict[str, Any]]:
    """``state → {"eval/...": ..., "val/...": ..., "train_eval/...": ...}``: the test set, the
    validation split and (``config.eval_train_split``) the un-augmented training images.

    Raises:
      ValueError: ``eval_train_split`` is set for a streamed data set (no in-memory train split).
    """
    layout = uldata.batch_layout(config.eval_batch_size)
    t6 = theorem6_scale_from(config, data.num_classes, data.num_train)
    on_train = bool(get_field(config, "eval_train_split"))
    if on_train and data.train_eval_batches is None:
        raise ValueError(
            f"eval_train_split=True needs an in-memory training set; data.name="
            f"{config.data.name!r} is streamed (set eval_train_split=False)"
        )

    def run_eval(state):
        out = evaluate(eval_fn, state, data.eval_batches(layout), mesh, theorem6_scale=t6)
        if data.val_batches is not None:
            out.update(
                evaluate(
                    eval_fn, state, data.val_batches(layout), mesh, prefix="val", theorem6_scale=t6
                )
            )
        if on_train:
            batches = data.train_eval_batches(layout)
            out.update(
                evaluate(eval_fn, state, batches, mesh, prefix="train_eval", theorem6_scale=t6)
            )
        return out

    return run_eval


@dataclasses.dataclass
class _Loop:
    """What the step loop works with; :meth:`run` is the loop."""

    config: Any
    sched: Schedule
    data: TrainData
    mesh: Any
    train_fn: Callable
    run_eval: Callable
    ckpt: Checkpointer
    writer: MetricWriter
    preempt: PreemptionWatch
    skip_nonfinite: int
    is_main: bool
    lock: Any  # ul_jax.train.lock.WorkdirLock (process 0) or NoLock
    bar: ProgressBar | None = None  # process 0 on a terminal: the bar replaces the step lines
    profiler: _StepProfiler | None = None  # config.profile_steps
    group_grad_fn: Callable | None = None  # config.group_grad_every > 0: (state, batch) → metrics
    group_grad_every: int = 0

    def is_group_grad(self, step: int) -> bool:
        """Whether step ``step`` runs the group-gradient diagnostic (a multiple of
        ``group_grad_every``, or the run's last step)."""
        every = self.group_grad_every
        return (
            self.group_grad_fn is not None
            and every > 0
            and (step % every == 0 or step == self.sched.total)
        )

    def run(self, state, start: int, p: _Progress) -> dict[str, Any]:
        """Steps ``start + 1 … stop`` with logs, evaluations and checkpoints (module docstring,
        steps 5–7)."""
        sched, layout = self.sched, uldata.batch_layout(self.config.batch_size)
        batches = uldata.prefetch_to_device(
            self.data.train_batches(layout, start, sched.stop - start), 2, self.mesh
        )
        pending: list[tuple[int, dict]] = []  # device metrics not yet checked
        p.start_clock(start)
        prof = self.profiler or _StepProfiler(None, Path(), False)
        try:
            return self._run(state, start, p, batches, pending, prof)
        finally:
            prof.close()

    def _run(
        self, state, start: int, p: _Progress, batches, pending: list, prof: _StepProfiler
    ) -> dict[str, Any]:
        """The step loop of :meth:`run`, each step between ``prof.before`` / ``prof.after``."""
        sched, preempted = self.sched, False
        for step in range(start + 1, sched.stop + 1):
            batch = next(batches)
            diag = None
            if self.is_group_grad(step):  # the step's batch and state, before its update
                jax.block_until_ready(state)  # the earlier steps' time stays training time
                diag = p.timed(lambda: group_grad.host_row(self.group_grad_fn(state, batch)))
            prof.before(step)
            state, metrics = self.train_fn(state, batch)
            prof.after(step, metrics)
            pending.append((step, metrics))
            preempted = self.preempt.reached(step)
            # A stop at until_step or by SIGTERM only checkpoints: its logs stay those of an
            # uninterrupted run.
            is_log, is_eval = sched.is_log(step), sched.is_eval(step)
            is_ckpt = sched.is_ckpt(step) or preempted
            if not (is_log or is_eval or is_ckpt or diag):
                continue
            self.lock.check()  # another run took the work directory over: write nothing more
            last = self._check_finite(pending, p)
            row = (
                p.train_row(
                    step, last, self.config.batch_size, sched.steps_per_epoch, self.skip_nonfinite
                )
                if is_log
                else {}
            )
            if is_eval:
                p.last_eval = p.timed(self.run_eval, state)
                row.update(p.last_eval)
            if diag:
                row.update(diag)
            if row:
                self.writer.write(step, row)
            if is_log and self.is_main:
                line = p.console_line(step, sched, is_eval, self.config.batch_size)
                if self.bar is None or is_eval:  # with a bar: evaluations only, above it
                    logging.info("%s", line)
                if self.bar is not None:
                    self.bar.update(step, p.bar_text(step, sched, self.config.batch_size))
            if is_ckpt:
                p.last_ckpt = p.timed(self.ckpt.save, step, state, extra=p.checkpoint_extra())
            if preempted:
                break
        self.ckpt.wait()
        if preempted:
            if self.is_main:
                logging.warning(
                    "preempted (SIGTERM) at step %d of %d: saved checkpoint %s; rerun "
                    "the same command to resume",
                    step,
                    sched.total,
                    p.last_ckpt,
                )
            return {"step": step, "preempted": True, **p.last_train, **p.last_eval}
        return {
            "step": sched.stop,
            "total_steps": sched.total,
            **p.last_train,
            **p.last_eval,
            **p.throughput(self.config.batch_size),
        }

    def _check_finite(self, pending: list[tuple[int, dict]], p: _Progress) -> dict:
        """Fetches the pending steps' metrics to the host; skips (up to ``skip_nonfinite`` in a
        row) or raises :class:`NonFiniteError` for a refused update. Returns the last step's."""
        fetched = jax.device_get([m for _, m in pending])
        for (s, _), f in zip(pending, fetched):
            if not int(f["nonfinite"]):
                p.streak = 0
                p.interval.append({k: float(f[k]) for k in BATCH_METRICS})
                continue
            p.streak += 1
            what = decode_nonfinite(int(f["nonfinite"]))
            if p.streak > self.skip_nonfinite:
                self.ckpt.wait()
                err = NonFiniteError(
                    s, what, p.last_ckpt, f, consecutive=p.streak, limit=self.skip_nonfinite
                )
                if self.is_main:
                    logging.error("%s", err)
                raise err
            p.skipped += 1
            if self.is_main:
                logging.warning(
                    "non-finite %s at step %d: update skipped (%d in a row, skip_nonfinite=%d)",
                    ", ".join(what),
                    s,
                    p.streak,
                    self.skip_nonfinite,
                )
        pending.clear()
        return fetched[-1]


class _StepProfiler:
    """Wraps train steps ``first … first + count − 1`` in a :mod:`jax.profiler` trace written
    to ``log_dir`` (``steps`` ``None`` or ``enabled`` false: does nothing). A resumed call traces
    the part of the window it runs."""

    def __init__(self, steps: tuple[int, int] | list[int] | None, log_dir: Path, enabled: bool):
        self.window = None if steps is None or not enabled else (int(steps[0]), int(steps[1]))
        self.log_dir, self.active = log_dir, False

    def _last(self) -> int:
        return self.window[0] + self.window[1] - 1

    def before(self, step: int) -> None:
        """Starts the trace before the first step of the window this call runs."""
        if self.window and not self.active and self.window[0] <= step <= self._last():
            self.log_dir.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.log_dir))
            self.active = True
            logging.info("profiling steps %d to %d into %s", step, self._last(), self.log_dir)

    def after(self, step: int, outputs: Any) -> None:
        """Ends the trace after the window's last step, once its ``outputs`` are computed."""
        if self.active and step >= self._last():
            jax.block_until_ready(outputs)
            self.close()

    def close(self) -> None:
        """Writes the trace if one is open (the run stopped inside the window)."""
        if self.active:
            self.active = False
            jax.profiler.stop_trace()


@dataclasses.dataclass
class _Progress:
    """The loop's host-side state: the batch metrics of the finite steps since the last log
    line, the refused updates among them (``skipped``) and in a row (``streak``) — carried over a
    resume by the checkpoint, so that the next log line is the one of an uninterrupted run —,
    the last logged train metrics and evaluation, the last checkpoint, and the clocks: the
    throughput (``rate``: eval and checkpoint time are ``overhead``, left out of it) and the
    wall-clock rate of the ETA (``wall``: everything since the first log line counts)."""

    interval: list[dict[str, float]]
    skipped: int
    streak: int
    last_ckpt: Path | None
    last_train: dict[str, float] = dataclasses.field(default_factory=dict)
    last_eval: dict[str, Any] = dataclasses.field(default_factory=dict)
    t_mark: float = 0.0
    t_step: int = 0
    overhead: float = 0.0
    logs_done: int = 0
    rate: float = math.nan
    wall: WallRate = dataclasses.field(default_factory=WallRate)
    train_steps: int = 0  # timed training steps of this call (after the first log line) ...
    train_seconds: float = 0.0  # ... and their time, overhead excluded

    @classmethod
    def resumed(cls, extra: dict[str, Any], start: int, last_ckpt: Path | None) -> _Progress:
        """From the ``extra`` record of the checkpoint resumed at ``start`` (``{}``: a fresh
        start)."""
        return cls(
            [{k: float(v) for k, v in r.items()} for r in extra.get("interval", [])],
            int(extra.get("skipped_in_interval", 0)),
            int(extra.get("nonfinite_streak", 0)),
            last_ckpt,
            t_step=start,
        )

    def start_clock(self, step: int) -> None:
        self.t_mark, self.t_step = time.perf_counter(), step

    def timed(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``, its time counted as overhead (not training)."""
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        self.overhead += time.perf_counter() - t0
        return out

    def checkpoint_extra(self) -> dict[str, Any]:
        return {
            "interval": [dict(r) for r in self.interval],  # copies: orbax writes it later
            "skipped_in_interval": self.skipped,
            "nonfinite_streak": self.streak,
        }

    def train_row(
        self, step: int, last: dict, batch_size: int, spe: int, skip_nonfinite: int
    ) -> dict[str, Any]:
        """The ``train/*`` and ``perf/*`` values of a log line; starts the next interval."""
        now, row = time.perf_counter(), {}
        if self.logs_done > 0:  # the first interval includes compilation
            seconds = max(now - self.t_mark - self.overhead, 1e-9)
            self.rate = (step - self.t_step) / seconds
            self.train_steps += step - self.t_step
            self.train_seconds += seconds
            row["perf/steps_per_sec"] = self.rate
            row["perf/images_per_sec"] = self.rate * batch_size
        self.wall.mark(step, now)
        self.last_train = {**summarize(self.interval, last), "train/epoch": step / spe}
        if skip_nonfinite:
            self.last_train["train/skipped_steps"] = self.skipped
        row.update(self.last_train)
        self.interval.clear()
        self.skipped = 0
        self.t_mark, self.t_step, self.overhead = now, step, 0.0
        self.logs_done += 1
        return row

    def throughput(self, batch_size: int) -> dict[str, float]:
        """``{"perf/images_per_sec": …}``: this call's mean training throughput (``{}`` before
        a second log line)."""
        if self.train_steps == 0:
            return {}
        return {"perf/images_per_sec": self.train_steps * batch_size / self.train_seconds}

    def eta(self, step: int, sched: Schedule) -> float:
        """Seconds to ``sched.stop`` at the wall-clock rate (evaluation and checkpoints
        included; :class:`ul_jax.train.progress.WallRate`)."""
        return self.wall.eta(step, sched.stop, time.perf_counter())

    def bar_text(self, step: int, sched: Schedule, batch_size: int) -> str:
        """The progress bar's text after the counts: ETA, throughput, the last metrics."""
        t, rate = self.last_train, self.rate
        parts = [
            f"ETA {fmt_duration(self.eta(step, sched), 'clock')}",
            f"{rate * batch_size:,.0f} img/s" if rate == rate else "compiling",
            f"loss {t['train/loss']:.4g}",
            f"acc {100 * t['train/accuracy']:.1f}%",
        ]
        if "eval/accuracy" in self.last_eval:
            parts.append(f"eval {100 * self.last_eval['eval/accuracy']:.2f}%")
        return ", ".join(parts)

    def console_line(self, step: int, sched: Schedule, is_eval: bool, batch_size: int) -> str:
        rate, t, total = self.rate, self.last_train, sched.total
        eta = self.eta(step, sched)
        line = (
            f"step {step}/{total} ({100 * step / total:.1f}%, epoch "
            f"{step / sched.steps_per_epoch:.2f}) loss {t['train/loss']:.4f} acc "
            f"{t['train/accuracy']:.3f} lr {t['train/lr']:.4g} |h| {t['train/feature_norm']:.3g}"
        )
        if is_eval:
            line += f" | eval acc {self.last_eval['eval/accuracy']:.4f}"
        return (
            line
            + (f" | {rate * batch_size:.0f} img/s" if rate == rate else " | compiling")
            + f" | ETA {fmt_duration(eta, 'clock')}"
        )
