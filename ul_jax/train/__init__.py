"""Training stack: train state and guarded steps, sharded ``jit``, the loop with checkpoints,
resume, metrics (JSONL + TensorBoard) and config validation.

Modules:
  setup       -- config → :class:`TrainData`, model, optimizer, step config, step schedule, the
                 compile cache; :func:`restore_checkpoint` (a trained model from a work directory).
  step        -- :class:`TrainState`, pure :func:`train_step` / :func:`eval_step`, sharded wrappers.
  loop        -- :func:`train_and_evaluate` ``(config, workdir) → final metrics``,
                 :class:`NonFiniteError`.
  group_grad  -- each many/medium/few-shot class group's share of the batch's trunk gradient
                 (``group_grad_every``; ``train/trunk_grad_share``, ...).
  workdir     -- work directory checks and lock, resume / fresh start / refusal
                 (:class:`NoUsableCheckpointError`), ``restart``.
  lock        -- ``WORKDIR/writer.lock``: one writer per work directory (heartbeat, stale
                 take-over).
  preemption  -- ``SIGTERM`` → stop with a checkpoint at the next step boundary.
  checkpoint  -- orbax checkpoints with fingerprints, ``config.json``, the resume config check.
  summaries   -- :func:`evaluate` over a split, batch-metric averages.
  validate    -- :func:`validate_config` (``ValueError`` naming the bad field, before any compute).
  writers     -- ``metrics.jsonl`` and TensorBoard event files (tensorboardX, no TensorFlow).
  plot        -- :func:`plot_curves`: the training curves of ``metrics.jsonl`` files as a PNG
                 (``WORKDIR/curves.png`` at the end of a run, ``python -m launch.plot``).
  progress    -- the progress bar on a terminal (tqdm) and its ETA (wall time per step,
                 evaluation and checkpoints included).
  summary_text -- the end-of-run summary of ``python -m launch.train`` (metrics, files, next
                 command) and the number formats the other summaries share.
  cli         -- the body of ``python -m launch.train``, and the one-line errors and exit codes
                 (0/1/2/3/75/130, ``--debug``) of every ``launch/`` command; multi-host runtime.

The config schema (every field, its checks, docs and resume rule) is :mod:`ul_jax.config`;
configs are in ``configs/``; the CLI is ``python -m launch.train`` (:mod:`ul_jax.train.cli`). Resume, fallback and
preemption guarantees: ``docs/RELIABILITY.md``.
"""

from ul_jax.train.loop import NonFiniteError, train_and_evaluate
from ul_jax.train.plot import plot_curves
from ul_jax.train.setup import (
    TrainData,
    build_model_from_config,
    build_optimizer_from_config,
    load_train_data,
    restore_checkpoint,
    step_config_from,
)
from ul_jax.train.step import (
    NONFINITE_BITS,
    StepConfig,
    TrainState,
    classifier_weights,
    create_train_state,
    decode_nonfinite,
    eval_init,
    eval_step,
    init_eval_sums,
    init_key,
    jit_eval_step,
    jit_init_fn,
    jit_init_state,
    jit_train_step,
    prototype_metrics,
    train_step,
)
from ul_jax.train.summaries import BATCH_METRICS, evaluate
from ul_jax.train.validate import NUM_CLASSES, validate_config
from ul_jax.train.workdir import NoUsableCheckpointError
from ul_jax.train.writers import MetricWriter, read_jsonl

__all__ = [
    "BATCH_METRICS",
    "MetricWriter",
    "NONFINITE_BITS",
    "NUM_CLASSES",
    "NonFiniteError",
    "NoUsableCheckpointError",
    "StepConfig",
    "TrainData",
    "TrainState",
    "build_model_from_config",
    "build_optimizer_from_config",
    "classifier_weights",
    "create_train_state",
    "decode_nonfinite",
    "eval_init",
    "eval_step",
    "evaluate",
    "init_eval_sums",
    "jit_eval_step",
    "init_key",
    "jit_init_fn",
    "jit_init_state",
    "jit_train_step",
    "load_train_data",
    "plot_curves",
    "prototype_metrics",
    "read_jsonl",
    "restore_checkpoint",
    "step_config_from",
    "train_and_evaluate",
    "train_step",
    "validate_config",
]
