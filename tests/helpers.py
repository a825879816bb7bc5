"""Shared test helpers (plain module: ``from helpers import tiny_config``; pytest puts this
directory on ``sys.path``).

``tiny_config`` is the one small training setup most loop / reliability tests run: ResNet-8 at
width 1/4 (features 16) on 8×8 real digits, 64 per batch, 12 steps, logs every 2, evals every 6,
checkpoints every 4. ``TINY_CLI_OVERRIDES`` is the same setup as ``python -m launch.train`` flags.
"""

from __future__ import annotations

TINY = {
    "data.image_size": 8,
    "data.crop_padding": 1,
    "model.width_multiplier": 0.25,
    "batch_size": 64,
    "eval_batch_size": 128,
    "num_train_steps": 12,
    "log_every": 2,
    "eval_every": 6,
    "checkpoint_every": 4,
    "keep_checkpoints": 5,
}
TINY_CLI_OVERRIDES = [f"--config.{k}={v}" for k, v in TINY.items()]


def tiny_config(variant: str = "ul_pal", **overrides):
    """``configs/digits.py:<variant>`` scaled down to :data:`TINY`, then ``overrides``
    (dotted field names, e.g. ``**{"objective.efr_weight": 1e-3}``)."""
    from configs import digits
    from ul_jax.config import set_field

    c = digits.get_config(variant)
    for k, v in {**TINY, **overrides}.items():
        set_field(c, k, v)
    return c
