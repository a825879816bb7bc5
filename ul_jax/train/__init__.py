"""Training stack: train state and guarded steps, sharded ``jit``, the loop with checkpoints,
resume, metrics (JSONL + TensorBoard) and config validation.

Modules:
  step      -- :class:`TrainState`, pure :func:`train_step` / :func:`eval_step`, sharded wrappers.
  loop      -- :func:`train_and_evaluate` ``(config, workdir) → final metrics``, :class:`NonFiniteError`,
               :class:`NoUsableCheckpointError` (resume, fallback, preemption: docs/RELIABILITY.md).
  validate  -- :func:`validate_config` (``ValueError`` naming the bad field, before any compute).
  writers   -- ``metrics.jsonl`` and TensorBoard event files without TensorFlow.

Checkpointing lives in :mod:`ul_jax.checkpoint`; configs in ``configs/`` (``configs/common.py``
documents every field); the CLI is ``python -m launch.train``.
"""

from ul_jax.train.loop import (
    BATCH_METRICS,
    NonFiniteError,
    NoUsableCheckpointError,
    TrainData,
    build_model_from_config,
    build_optimizer_from_config,
    evaluate,
    load_train_data,
    restore_checkpoint,
    step_config_from,
    train_and_evaluate,
)
from ul_jax.train.step import (
    NONFINITE_BITS,
    StepConfig,
    TrainState,
    classifier_weights,
    create_train_state,
    decode_nonfinite,
    eval_step,
    jit_eval_step,
    init_key,
    jit_init_fn,
    jit_init_state,
    jit_train_step,
    prototype_metrics,
    train_step,
)
from ul_jax.train.validate import NUM_CLASSES, validate_config
from ul_jax.train.writers import MetricWriter, read_event_file, read_jsonl

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
    "eval_step",
    "evaluate",
    "jit_eval_step",
    "init_key",
    "jit_init_fn",
    "jit_init_state",
    "jit_train_step",
    "load_train_data",
    "prototype_metrics",
    "read_event_file",
    "read_jsonl",
    "restore_checkpoint",
    "step_config_from",
    "train_and_evaluate",
    "train_step",
    "validate_config",
]
