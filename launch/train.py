"""Train a classifier: ``python -m launch.train --config configs/X.py[:variant] --workdir DIR
[--config.field=value ...] [--until_step K]``.

Resumes automatically from the latest checkpoint in ``--workdir``.

Multi-host: run the same command in every process with ``UL_JAX_DISTRIBUTED=1``, which calls
``jax.distributed.initialize()`` before anything touches a device. JAX detects SLURM, Open MPI,
mpi4py, Kubernetes and Cloud TPU clusters by itself; elsewhere set ``JAX_COORDINATOR_ADDRESS``
(``host:port`` of process 0) plus ``UL_JAX_NUM_PROCESSES`` and ``UL_JAX_PROCESS_ID`` (passed as
``num_processes`` / ``process_id``). ``--workdir`` must be a directory all processes share: every
process takes part in checkpointing, only process 0 writes metrics and ``config.json``.
"""

import logging as std_logging
import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "training config file[:variant]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "work directory (checkpoints, metrics, config)")
_UNTIL = flags.DEFINE_integer("until_step", None,
                              "stop with a checkpoint at this global step (the schedule still "
                              "spans the whole run); rerun without it to continue")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietOrbax(std_logging.Filter):
  """Drops orbax's per-save INFO chatter (warnings and errors still show)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_QuietOrbax())
  import jax

  if os.environ.get("UL_JAX_DISTRIBUTED", "") not in ("", "0"):
    kw = {k: int(os.environ[e]) for k, e in (("num_processes", "UL_JAX_NUM_PROCESSES"),
                                             ("process_id", "UL_JAX_PROCESS_ID")) if e in os.environ}
    jax.distributed.initialize(**kw)
  from ul_jax.train import train_and_evaluate

  logging.info("process %d/%d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].device_kind)
  out = train_and_evaluate(_CONFIG.value, _WORKDIR.value, until_step=_UNTIL.value)
  if jax.process_index() == 0:
    logging.info("final: %s", {k: v for k, v in out.items() if not k.startswith("perf/")})


if __name__ == "__main__":
  app.run(main)
