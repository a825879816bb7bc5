"""The text at the end of ``python -m launch.reproduce``: :func:`format_suite_summary`.

After :func:`ul_jax.paper.runner.reproduce` (which prints what this invocation ran, skipped,
failed and the verdicts), it states every (run, seed) of the suite as found on disk in the same
table as ``--status`` (:func:`ul_jax.paper.status.format_status_table`: complete, stopped
non-finite — the Fig. 19 outcome —, failed with its error, running, submitted, partial, not
started), where the tracebacks of failed runs are, where the results JSON, the figures and the
results document went, and what to do next. It only reads the run folders; it changes
nothing.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from ul_jax.console import format_files
from ul_jax.paper import runner
from ul_jax.paper.report import FIG_DIR
from ul_jax.paper.results import STATUS_FILE, read_status, run_dir, seeds_on_disk
from ul_jax.paper.status import format_status_table
from ul_jax.paper.suites import Run

__all__ = ["format_suite_summary", "suite_states"]

STATES = ("complete", "nonfinite", "failed", "unfinished")
_SHOWN = 6  # names listed per state


def suite_states(
    runs: Sequence[Run], out: str | Path, seeds: Sequence[int]
) -> dict[str, list[tuple[Run, int, dict | None]]]:
    """``{state: [(run, seed, status), ...]}`` for every (run, seed); ``state`` is one of
    :data:`STATES` (``unfinished``: no status file — not started, interrupted or running)."""
    states: dict[str, list[tuple[Run, int, dict | None]]] = {s: [] for s in STATES}
    for run in runs:
        for seed in seeds:
            st = read_status(run_dir(Path(out), run, seed))
            state = (st or {}).get("status")
            states[state if state in states else "unfinished"].append((run, seed, st))
    return states


def _written(fig_dir: Path, report_name: str, since: float | None) -> list[tuple[str, str]]:
    """The results JSON and the figures in ``fig_dir`` modified at or after ``since`` (all
    figures as ``*.png`` when ``since`` is ``None``)."""
    files = [(f"results_{report_name}.json", "every number of the tables, per run and seed")]
    if since is None:
        return files + [("*.png", "the figures of the report")]
    pngs = sorted(
        # 1 s of slack: file times come from a coarser clock than time.time()
        p.name
        for p in fig_dir.glob("*.png")
        if p.is_file() and p.stat().st_mtime >= since - 1
    )
    for name in pngs[:_SHOWN]:
        files.append((name, "figure"))
    if len(pngs) > _SHOWN:
        files.append(("…", f"{len(pngs) - _SHOWN} more figures"))
    return files


def format_suite_summary(
    suite: str,
    out: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    only: Sequence[str] | None = None,
    fig_dir: str | Path | None = None,
    docs: str | Path | None = runner.DOCS,
    tables_only: bool = False,
    since: float | None = None,
) -> str:
    """The state of ``suite``'s runs in ``out`` (only ``only`` if given; ``seeds`` plus every
    seed on disk), where its report went (figures written at or after ``since``, a
    ``time.time()``) and the next step. Raises ``ValueError`` for an unknown suite or run name
    (as :func:`ul_jax.paper.runner.reproduce` does)."""
    out = Path(out)
    runs = runner._select(runner.load_suite(suite), only)  # through the module: patchable
    name, report_runs = runner.report_suite(suite)
    seeds = seeds_on_disk(runs, out, seeds or [0])
    states = suite_states(runs, out, seeds)
    seed_text = ", ".join(map(str, seeds))
    lines = [f"suite {suite} ({len(runs)} runs × seeds {seed_text}) in {out}:", ""]
    lines += format_status_table(runs, out, seeds).splitlines()
    for r, k, _ in states["failed"][:_SHOWN]:
        lines.append(f"traceback of {r.name} seed {k}: {run_dir(out, r, k) / STATUS_FILE}")
    if len(states["failed"]) > _SHOWN:
        lines.append(f"… and {len(states['failed']) - _SHOWN} more failed runs")
    figs = Path(fig_dir) if fig_dir is not None else FIG_DIR
    lines += format_files(figs, _written(figs, name, since), "wrote to")
    report_seeds = seeds_on_disk(report_runs, out, seeds)
    if docs is not None:
        on_disk = any(run_dir(out, r, k).is_dir() for r in report_runs for k in report_seeds)
        what = f"its results sections ({name})" if on_disk else "left unchanged: no run on disk"
        lines.append(f"docs: {docs} ({what})")
    if tables_only and (states["failed"] or states["unfinished"]):
        lines.append("next: the same command without --tables_only trains the unfinished runs")
    elif states["failed"] or states["unfinished"]:
        lines.append(
            "next: rerun the same command: finished runs are skipped, unfinished ones resume "
            "from their last checkpoint, failed ones are retried"
        )
    elif docs is not None:
        lines.append(f"next: review the updated document: git diff -- {shlex.quote(str(docs))}")
    return "\n".join(lines)
