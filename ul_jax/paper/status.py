"""One status table of a suite: ``python -m launch.reproduce --suite S --out DIR --status``.

For every (run, seed) of the suite, from what is in ``OUT/<run>/seed<k>/`` — and without touching
it (no file is created, locked or changed) — :func:`run_status` gives its state:

* ``complete`` / ``nonfinite``: finished (``reproduce_status.json``; skipped by the runner);
* ``failed``: the runner recorded an error (its one line; retried by the next invocation);
* ``running``: a live process holds the run's ``writer.lock`` (host, PID; :func:`lock_holder`);
* ``submitted``: a submitit job was submitted for it (``submitted.json``: cluster and job id)
  and it has not logged a step yet;
* ``partial``: trained to step k of N, nobody running it (resumes from its last checkpoint; the
  detail names its submitted job if it has one);
* ``not started``: no run folder, or nothing logged yet.

with the last logged validation and test top-1 and the wall time so far (training + evaluation
seconds of a finished run; for a running one, since its lock was taken; for a partial one, the
span from its ``config.json`` to its last ``metrics.jsonl`` line, ``≈``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ul_jax.paper.executors import read_submitted
from ul_jax.paper.results import read_status, run_dir
from ul_jax.paper.suites import Run
from ul_jax.train.lock import lock_holder

__all__ = ["STATES", "format_status_table", "run_status"]

STATES = ("complete", "nonfinite", "failed", "running", "submitted", "partial", "not started")


def _last_rows(path: Path) -> dict[str, Any]:
    """The last logged value of ``step``, ``val/accuracy`` and ``eval/accuracy`` in a
    ``metrics.jsonl`` (a torn last line — a run killed mid-write — is skipped)."""
    out: dict[str, Any] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for k in ("step", "val/accuracy", "eval/accuracy"):
            if isinstance(row.get(k), (int, float)):
                out[k] = row[k]
    return out


def _total_steps(wd: Path) -> int | None:
    try:
        n = json.loads((wd / "config.json").read_text()).get("num_train_steps")
    except (OSError, ValueError):
        return None
    return int(n) if isinstance(n, int) and n > 0 else None


def run_status(workdir: str | Path, now: float | None = None) -> dict[str, Any]:
    """``{"state", "detail", "step", "total", "val_top1", "test_top1", "wall_s",
    "wall_approx"}`` of one run folder (module docstring); reads only."""
    wd = Path(workdir)
    now = time.time() if now is None else now
    rows = _last_rows(wd / "metrics.jsonl") if wd.is_dir() else {}
    out: dict[str, Any] = {
        "state": "not started",
        "detail": "",
        "step": rows.get("step"),
        "total": _total_steps(wd) if wd.is_dir() else None,
        "val_top1": rows.get("val/accuracy"),
        "test_top1": rows.get("eval/accuracy"),
        "wall_s": None,
        "wall_approx": False,
    }
    if not wd.is_dir():
        return out
    st = read_status(wd)
    state = (st or {}).get("status")
    if state in ("complete", "nonfinite", "failed"):
        out["state"] = state
        if state == "complete" and st.get("top1") is not None:
            out["test_top1"] = st["top1"]
        if state == "nonfinite":
            q = ", ".join(st.get("quantities", [])) or "non-finite"
            out["detail"] = f"step {st.get('step')}: {q}"
            out["step"] = st.get("step", out["step"])
        if state == "failed":
            out["detail"] = " ".join(str(st.get("error", "")).split())
        if "train_seconds" in st:
            out["wall_s"] = float(st["train_seconds"]) + float(st.get("eval_seconds", 0.0))
        if state == "complete":
            out["step"] = st.get("step", out["step"])
        return out
    holder = lock_holder(wd)
    if holder is not None:
        out["state"] = "running"
        out["detail"] = f"{holder.get('host')} PID {holder.get('pid')}"
        started = holder.get("started")
        if isinstance(started, (int, float)):
            out["wall_s"] = max(0.0, now - float(started))
        return out
    sub = read_submitted(wd)
    job = f"{sub.get('cluster')} job {sub.get('job_id')}" if sub else ""
    if out["step"] is None and sub:
        out["state"], out["detail"] = "submitted", job
        if isinstance(sub.get("submitted"), (int, float)):
            out["detail"] += f", {max(0.0, now - float(sub['submitted'])) / 60.0:.0f} min ago"
        return out
    if out["step"] is not None:
        out["state"] = "partial"
        if out["total"] and out["step"] >= out["total"]:
            out["detail"] = "trained; evaluation running or not done"
        if job:
            out["detail"] = "; ".join(x for x in (out["detail"], job) if x)
        try:
            t0 = (wd / "config.json").stat().st_mtime
            t1 = (wd / "metrics.jsonl").stat().st_mtime
            out["wall_s"], out["wall_approx"] = max(0.0, t1 - t0), True
        except OSError:
            pass
    return out


def _pct(x) -> str:
    return "—" if x is None else f"{100 * float(x):.2f}"


def _wall(s: dict) -> str:
    if s["wall_s"] is None:
        return "—"
    m = s["wall_s"] / 60.0
    return f"{'≈' if s['wall_approx'] else ''}{m:.1f} min"


def format_status_table(
    runs: Sequence[Run], out: str | Path, seeds: Sequence[int], now: float | None = None
) -> str:
    """The status table (markdown) of every (run, seed) and a count per state."""
    rows = [
        "| run | seed | state | step | val top-1 (%) | test top-1 (%) | wall time |",
        "|---|---|---|---|---|---|---|",
    ]
    counts = dict.fromkeys(STATES, 0)
    for run in runs:
        for seed in seeds:
            s = run_status(run_dir(Path(out), run, seed), now)
            counts[s["state"]] += 1
            if s["state"] == "nonfinite" and run.expect_nonfinite:
                s["detail"] += "; expected (Fig. 19)"
            state = s["state"] + (f" ({s['detail']})" if s["detail"] else "")
            step = "—" if s["step"] is None else f"{s['step']:,}"
            if s["total"]:
                step += f" / {s['total']:,}"
            rows.append(
                f"| {run.name} | {seed} | {state} | {step} | {_pct(s['val_top1'])} | "
                f"{_pct(s['test_top1'])} | {_wall(s)} |"
            )
    summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    return "\n".join(rows) + f"\n\n{summary}"
