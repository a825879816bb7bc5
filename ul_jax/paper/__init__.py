"""This paper's report (not reusable library code): the reproduction suites' claims, verdicts,
figures and docs. Each section module is named by what it reports.

=================  ============================================================================
module             job
=================  ============================================================================
``suites``         :class:`Run` and every suite as data; :data:`SUITES` (``--suite`` registry)
``runner``         train → evaluate each run/seed, statuses; :func:`reproduce` (the CLI's job)
``results``        read the run directories back: :func:`collect`, curves, statistics, timing
``claims``         the five claims at one fixed budget: table + mechanical verdict each
``validation_sweeps``  λ and the FNPAL scale s chosen on a validation split (λ sweep, s sweep,
                   long runs) and their figures
``long_tail_calibration``  long-tailed λ sweep, 200-epoch long-tailed runs, calibration pair
``terminal``       the terminal-phase settings: every claim judged by :mod:`verdicts` rules
``verdicts``       paired-seed differences and the decision rules (pure)
``figures``        the fixed-budget claims' figures and :func:`pyplot`
``report``         :func:`report`: all of the above into results JSON, figures and docs
``docs``           :func:`update_docs`: the marked blocks of ``docs/REPRODUCTION.md``
=================  ============================================================================

Imports go one way: ``suites`` ← ``results`` ← ``claims`` / ``figures`` ← ``validation_sweeps``
← ``long_tail_calibration`` / ``terminal`` / ``docs`` ← ``report`` ← ``runner``. Config files are named by path in the suites and loaded by
:func:`ul_jax.config.load_config_file`; nothing here imports ``configs``.
"""

from ul_jax.paper.claims import CLAIMS, PENDING
from ul_jax.paper.docs import update_docs
from ul_jax.paper.report import report
from ul_jax.paper.results import (
    FINISHED,
    STATUS_FILE,
    VARIANT_LABEL,
    collect,
    fmt_num,
    fmt_pct,
    mean_std,
    read_status,
    run_dir,
    seeds_on_disk,
    timing,
)
from ul_jax.paper.runner import (
    load_config,
    load_suite,
    report_suite,
    reproduce,
    run_one,
    run_suite,
)
from ul_jax.paper.suites import SUITES, Run

__all__ = [
    "CLAIMS",
    "FINISHED",
    "PENDING",
    "STATUS_FILE",
    "SUITES",
    "VARIANT_LABEL",
    "Run",
    "collect",
    "fmt_num",
    "fmt_pct",
    "load_config",
    "load_suite",
    "mean_std",
    "read_status",
    "report",
    "report_suite",
    "reproduce",
    "run_dir",
    "run_one",
    "run_suite",
    "seeds_on_disk",
    "timing",
    "update_docs",
]
