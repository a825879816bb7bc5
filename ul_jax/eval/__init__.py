"""The evaluation of trained runs: the job, its eval files and their text.

Modules:
  job     -- :func:`evaluate_run` ``(workdir) → dict``: accuracy (incl. many/medium/few),
             calibration, neural collapse and OOD detection of a checkpoint; :data:`CONVENTIONS`.
  io      -- eval file names, :func:`to_jsonable`, :func:`load_eval`.
  format  -- :func:`format_eval` (one run) and :func:`format_eval_outputs` (its files, the next
             commands), :func:`format_report` (Table 2/3-style comparison), :func:`run_label`.

The OOD test sets and their loader live with the data code (:mod:`ul_jax.data.ood`, re-exported
here). Command-line front ends: ``python -m launch.evaluate`` and ``python -m launch.report``.
"""

from ul_jax.data.ood import OOD_SETS, OODSet, check_ood_names, load_ood_images, resize_images
from ul_jax.eval.format import format_eval, format_eval_outputs, format_report, run_label
from ul_jax.eval.io import EVAL_FORMAT_VERSION, eval_filename, load_eval
from ul_jax.eval.job import CONVENTIONS, ENERGY_TEMPERATURE, SCORE_NAMES, evaluate_run
from ul_jax.io import checkpoint_steps

__all__ = [
    "EVAL_FORMAT_VERSION",
    "ENERGY_TEMPERATURE",
    "CONVENTIONS",
    "OODSet",
    "OOD_SETS",
    "SCORE_NAMES",
    "evaluate_run",
    "eval_filename",
    "checkpoint_steps",
    "check_ood_names",
    "load_ood_images",
    "resize_images",
    "load_eval",
    "run_label",
    "format_eval",
    "format_eval_outputs",
    "format_report",
]
