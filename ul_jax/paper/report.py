"""The report of a suite: tables, verdicts, figures, results JSON and the docs sections.

:func:`report` (run at the end of :func:`ul_jax.paper.runner.run_suite`, and alone by
``--tables_only``) reads every status / ``eval.json`` / ``metrics.jsonl`` of the runs
(:func:`ul_jax.paper.results.collect`) and writes

* ``FIG_DIR/results_<suite>.json``: per run and seed the status, headline metrics and curves,
  the sections (table, verdict, figures) and the timing;
* the figures of the first-pass claims (:mod:`ul_jax.paper.figures`) and of the second-pass
  sections (:data:`ul_jax.paper.second_pass.FIGURES`);
* the markdown tables (mean ± sample std over the finished seeds) and a one-line verdict per
  claim (:mod:`ul_jax.paper.claims`, :data:`ul_jax.paper.second_pass.SECTIONS`) into the marked
  blocks of the docs file (:func:`ul_jax.paper.docs.update_docs`), unless no run folder exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ul_jax.config import REPO_ROOT
from ul_jax.io import write_json_atomic
from ul_jax.paper import long_tail, second_pass, terminal
from ul_jax.paper.claims import CLAIM_FNS
from ul_jax.paper.docs import update_docs
from ul_jax.paper.figures import FIGURES, _copy_ood_hists
from ul_jax.paper.results import (
    CURVE_KEYS,
    _by,
    collect,
    json_default,
    run_dir,
    seeds_on_disk,
    timing,
)
from ul_jax.paper.suites import Run

_log = logging.getLogger(__name__)

FIG_DIR = REPO_ROOT / "figures" / "reproduction"


def _sections(res, runs: Sequence[Run], seeds, fig_dir: Path, suite: str, out: Path) -> dict:
    """``{claim: {"table", "verdict", "figures"}}`` for every claim some run lists: the five
    first-pass claims, then the second-pass sections (and the λ-convention table with them)."""
    sections: dict[str, dict[str, Any]] = {}
    for claim, fn in CLAIM_FNS.items():
        rs = _by(runs, claim)
        if not rs:
            continue
        table, verdict = fn(res, rs, seeds)
        files = []
        if claim in FIGURES:
            name, fig = FIGURES[claim]
            f = fig(res, rs, fig_dir / f"{suite}_{name}")
            if f:
                files.append(f)
        if claim == "claim5":
            files += _copy_ood_hists(res, rs, fig_dir, suite, out)
        sections[claim] = {"table": table, "verdict": verdict, "figures": files}
    for claim, fn in {**second_pass.SECTIONS, **long_tail.SECTIONS, **terminal.SECTIONS}.items():
        rs = _by(runs, claim)
        if not rs:
            continue
        table, verdict = fn(res, rs, seeds)
        figures = {**second_pass.FIGURES, **long_tail.FIGURES, **terminal.FIGURES}[claim]
        files = [f for name, fig in figures if (f := fig(res, rs, fig_dir / f"{suite}_{name}"))]
        sections[claim] = {"table": table, "verdict": verdict, "figures": files}
    if any(_by(runs, c) for c in second_pass.SECTIONS):
        sections["conventions"] = {
            "table": second_pass.conventions_table(),
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
            *second_pass.CURVE_KEYS,
            *long_tail.CURVE_KEYS,
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
