"""The report of a suite: tables, verdicts, figures, results JSON and the docs sections.

:func:`report` (run at the end of :func:`ul_jax.paper.runner.run_suite`, and alone by
``--tables_only``) reads every status / ``eval.json`` / ``metrics.jsonl`` of the runs
(:func:`ul_jax.paper.results.collect`) and writes

* ``FIG_DIR/results_<suite>.json``: per run and seed the status, headline metrics and curves,
  the sections (table, verdict, figures) and the timing;
* for every section of the one registry :data:`SECTIONS` that some run names (the first pass's
  claims, the second pass's sections, the long-tailed and terminal-phase ones), its figures and
  its markdown table (mean ± sample std over the finished seeds) with a one-line verdict, into
  the marked blocks of the docs file (:func:`ul_jax.paper.docs.update_docs`), unless no run
  folder exists.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ul_jax.config import REPO_ROOT
from ul_jax.io import write_json_atomic
from ul_jax.paper import long_tail_calibration, terminal, validation_sweeps
from ul_jax.paper.claims import CLAIM_FNS
from ul_jax.paper.docs import update_docs
from ul_jax.paper.figures import FIGURES, copy_ood_histograms
from ul_jax.paper.results import (
    CURVE_KEYS,
    collect,
    json_default,
    run_dir,
    runs_with_claim,
    seeds_on_disk,
    timing,
)
from ul_jax.paper.suites import Run

_log = logging.getLogger(__name__)

FIG_DIR = REPO_ROOT / "figures" / "reproduction"


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of the report: ``table(res, runs, seeds) → (markdown table, verdict line)``
    and its figures, ``((file name after "<suite>_", fig(res, runs, path) → written name or
    None), ...)``."""

    table: Callable[..., tuple[str, str]]
    figures: tuple[tuple[str, Callable[..., str | None]], ...] = ()


def _registry() -> dict[str, Section]:
    """The one registry of report sections, in document order: the first pass's five claims
    (:mod:`ul_jax.paper.claims`), the second pass's (:mod:`ul_jax.paper.validation_sweeps`), the
    long-tailed and calibration ones (:mod:`ul_jax.paper.long_tail_calibration`) and the terminal-phase
    settings (:mod:`ul_jax.paper.terminal`). A run takes part in every section its ``claims``
    name."""
    reg = {c: Section(fn, FIGURES[c]) for c, fn in CLAIM_FNS.items()}
    for mod in (validation_sweeps, long_tail_calibration, terminal):
        reg.update({k: Section(fn, tuple(mod.FIGURES[k])) for k, fn in mod.SECTIONS.items()})
    return reg


SECTIONS: dict[str, Section] = _registry()


def _sections(res, runs: Sequence[Run], seeds, fig_dir: Path, suite: str, out: Path) -> dict:
    """``{section: {"table", "verdict", "figures"}}`` for every section of :data:`SECTIONS` some
    run lists (and the λ-convention table with the second pass's)."""
    sections: dict[str, dict[str, Any]] = {}
    for name, sec in SECTIONS.items():
        rs = runs_with_claim(runs, name)
        if not rs:
            continue
        table, verdict = sec.table(res, rs, seeds)
        files = [f for stem, fig in sec.figures if (f := fig(res, rs, fig_dir / f"{suite}_{stem}"))]
        if name == "claim5":  # its figures are the runs' own OOD histograms, copied
            files += copy_ood_histograms(res, rs, fig_dir, suite, out)
        sections[name] = {"table": table, "verdict": verdict, "figures": files}
    if any(runs_with_claim(runs, c) for c in validation_sweeps.SECTIONS):
        sections["conventions"] = {
            "table": validation_sweeps.conventions_table(),
            "verdict": "",
            "figures": [],
        }
    return sections


def _shown(out: Path) -> str:
    """``out`` as recorded in the results JSON: relative to the repository when inside it, else
    only its name (the file names no directory of the machine it was made on)."""
    try:
        return Path(out).resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return Path(out).resolve().name


def report(
    runs: Sequence[Run],
    out: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    suite: str = "suite",
    fig_dir: str | Path | None = None,
    docs: str | Path | None = None,
) -> dict:
    """Tables, verdicts, figures and results JSON from whatever has finished; updates ``docs``.
    ``seeds=None``: every seed found on disk (:func:`seeds_on_disk`; ``[0]`` when none)."""
    out = Path(out)
    if seeds is None:
        seeds = seeds_on_disk(runs, out) or [0]
    fig_dir = Path(fig_dir) if fig_dir is not None else FIG_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    res = collect(
        runs,
        out,
        seeds,
        curve_keys=(
            *CURVE_KEYS,
            *validation_sweeps.CURVE_KEYS,
            *long_tail_calibration.CURVE_KEYS,
            *terminal.CURVE_KEYS,
        ),
    )
    sections = _sections(res, runs, seeds, fig_dir, suite, out)
    t_table, t_data = timing(res, runs)
    payload = {
        "suite": suite,
        "seeds": list(seeds),
        "out": _shown(out),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "claims": sections,
        "timing": t_data,
        "runs": res,
    }
    write_json_atomic(
        fig_dir / f"results_{suite}.json", payload, indent=1, allow_nan=True, default=json_default
    )
    on_disk = any(run_dir(out, r, k).is_dir() for r in runs for k in seeds)
    if docs is not None and not on_disk:
        # e.g. --tables_only on a fresh clone: never replace measured tables by empty ones
        _log.warning("no run folder of suite %s under %s: %s left unchanged", suite, out, docs)
    elif docs is not None:
        update_docs(docs, suite, sections, fig_dir, extra={"timing": t_table})
    return payload
