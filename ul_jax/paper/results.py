"""What the runs left on disk, read back: statuses, curves, evaluation summaries, statistics.

Layout: ``OUT/<run>/seed<k>/`` (:func:`run_dir`) holds the run's ``metrics.jsonl``, ``config.json``,
``eval.json`` and ``reproduce_status.json`` (:data:`STATUS_FILE`, written by
:mod:`ul_jax.paper.runner`). :func:`collect` gathers all of it for a suite as
``{run: {"run": fields, "seeds": {seed: {status, curves, summary}}}}``; the statistics
(:func:`mean_std`, sample std over the finished seeds) and the table cells (:func:`fmt_pct`,
:func:`fmt_num`) work on that structure, as does :func:`timing` (the wall-clock budget table).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ul_jax.paper.suites import Run

STATUS_FILE = "reproduce_status.json"
FINISHED = ("complete", "nonfinite")
VARIANT_LABEL = {
    "ce": "CE",
    "ce_efr": "CE+EFR",
    "ul": "UL (linear head)",
    "ul_pal": "UL+PAL",
    "ul_pal_efr": "UL+PAL+EFR",
    "ul_fnpal": "UL+FNPAL",
    "ul_fnpal_rlr": "UL+FNPAL+RLR",
}
FIG19_KEYS = (
    ("train/accuracy", "train accuracy"),
    ("train/feature_norm", "mean ‖h‖"),
    ("train/prototype_norm_ratio", "max‖w‖ / min‖w‖"),
    ("train/prototype_min_norm", "min‖w‖"),
    ("train/prototype_min_angle", "min prototype angle (deg)"),
)
SCORES = ("msp", "energy", "feature_norm")
# the curves the first pass reads from metrics.jsonl (the report adds the second pass's keys)
CURVE_KEYS = ("train/epoch", "eval/accuracy", *(k for k, _ in FIG19_KEYS))


# --------------------------------------------------------------------------------------------
# the run directories
# --------------------------------------------------------------------------------------------
def run_dir(out: Path, run: Run, seed: int) -> Path:
    return Path(out) / run.name / f"seed{seed}"


def seeds_on_disk(runs: Sequence[Run], out: str | Path, extra: Iterable[int] = ()) -> list[int]:
    """Sorted seeds ``k`` with an ``OUT/<run>/seed<k>`` directory for any of ``runs``, together
    with ``extra`` — so the tables always cover every seed run so far, whichever ``--seeds`` the
    last invocation had."""
    found = set(int(s) for s in extra)
    for run in runs:
        d = Path(out) / run.name
        if not d.is_dir():
            continue
        for sub in d.iterdir():
            if sub.is_dir() and sub.name.startswith("seed") and sub.name[4:].isdigit():
                found.add(int(sub.name[4:]))
    return sorted(found)


def read_status(workdir: Path) -> dict | None:
    f = Path(workdir) / STATUS_FILE
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None


def json_default(x):
    """``default=`` of the results / status JSON: NumPy scalars and arrays, else ``str``."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


# --------------------------------------------------------------------------------------------
# collecting results
# --------------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
    from ul_jax.train import read_jsonl

    return read_jsonl(path)


def _curves(workdir: Path, keys: Sequence[str]) -> dict[str, list]:
    rows = _read_jsonl(workdir / "metrics.jsonl")
    keys = tuple(dict.fromkeys(keys))
    out: dict[str, list] = {"step": []}
    for k in keys:
        out[k] = []
    for r in rows:
        out["step"].append(r.get("step"))
        for k in keys:
            v = r.get(k)
            out[k].append(_number_or_list(v))
    return out


def _number_or_list(v: Any) -> float | list[float] | None:
    """A logged value as a float, a per-class list as a list of floats, anything else None."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
        return [float(x) for x in v]
    return None


def _summary(ev: Mapping) -> dict:
    cls = ev["classification"]
    groups = cls.get("index_groups") or cls.get("shot_groups") or {}
    s: dict[str, Any] = {
        "top1": cls.get("top1"),
        "per_class": cls.get("per_class_accuracy"),
        "ece": ev["calibration"]["ece"],
        "mce": ev["calibration"]["mce"],
        "groups": {k: groups.get(k) for k in ("many", "medium", "few")} if groups else None,
        "groups_convention": (
            "MiSLAS index ranges"
            if cls.get("index_groups")
            else "OLTR train counts"
            if cls.get("shot_groups")
            else None
        ),
        "calibration_bins": {
            k: ev["calibration"][k]
            for k in ("bin_edges", "bin_counts", "bin_accuracy", "bin_confidence")
        },
        "mean_feature_norm": ev.get("neural_collapse", {}).get("mean_feature_norm"),
        "ood": {
            name: {score: o["metrics"][score] for score in SCORES}
            for name, o in ev.get("ood", {}).items()
        },
        "ood_files": {k: v for k, v in ev.get("files", {}).items() if k.startswith("ood_hist_")},
    }
    return s


def collect(
    runs: Sequence[Run], out: Path, seeds: Sequence[int], curve_keys: Sequence[str] = CURVE_KEYS
) -> dict:
    """``{run_name: {"run": Run fields, "seeds": {seed: {status, workdir, summary, curves}}}}``
    (``workdir`` and a non-finite run's last checkpoint relative to ``out``); ``curves`` has ``step`` and every key of ``curve_keys`` (``None`` where not logged)."""
    res: dict[str, Any] = {}
    for run in runs:
        per: dict[str, Any] = {}
        for seed in seeds:
            wd = run_dir(out, run, seed)
            st = read_status(wd)
            logged = (wd / "metrics.jsonl").exists()
            entry: dict[str, Any] = {
                "status": st.get("status") if st else ("in progress" if logged else "not run"),
                "workdir": _relative(wd, out),
            }
            if st:
                entry["status_detail"] = {k: v for k, v in st.items() if k != "traceback"}
                if entry["status_detail"].get("last_good_checkpoint"):
                    ckpt = Path(entry["status_detail"]["last_good_checkpoint"])
                    entry["status_detail"]["last_good_checkpoint"] = _relative(ckpt, out)
            if logged:
                entry["curves"] = _curves(wd, curve_keys)
                entry["total_steps"] = _total_steps(wd)
            if st and st.get("status") == "complete" and (wd / "eval.json").exists():
                entry["summary"] = _summary(json.loads((wd / "eval.json").read_text()))
            per[str(seed)] = entry
        res[run.name] = {"run": dataclasses.asdict(run), "seeds": per}
    return res


def _relative(path: Path, out: Path) -> str:
    """``path`` relative to ``out`` (``"<run>/seed<k>"``), so results files name no machine's
    directories; as given when it is not under ``out``."""
    try:
        return Path(path).resolve().relative_to(Path(out).resolve()).as_posix()
    except ValueError:
        return str(path)


def _total_steps(wd: Path) -> int | None:
    try:
        c = json.loads((wd / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return int(c.get("num_train_steps", -1))


def last_value(c: Mapping) -> dict:
    """The last logged (non-``None``) value of every curve."""
    out = {}
    for k, vs in c.items():
        for v in reversed(vs):
            if v is not None:
                out[k] = v
                break
    return out


# --------------------------------------------------------------------------------------------
# statistics and formatting
# --------------------------------------------------------------------------------------------
def seed_values(res: Mapping, name: str, getter) -> list[float]:
    out = []
    for e in res.get(name, {}).get("seeds", {}).values():
        if "summary" not in e:
            continue
        v = getter(e["summary"])
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out.append(float(v))
    return out


def mean_std(xs: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample std (ddof = 1; NaN for one value) and count."""
    n = len(xs)
    if n == 0:
        return float("nan"), float("nan"), 0
    a = np.asarray(xs, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if n > 1 else float("nan"), n


def fmt_pct(xs: Sequence[float]) -> str:
    m, s, n = mean_std(xs)
    if n == 0:
        return "—"
    return f"{100 * m:.2f}" if n == 1 else f"{100 * m:.2f} ± {100 * s:.2f}"


def fmt_num(xs: Sequence[float]) -> str:
    m, s, n = mean_std(xs)
    if n == 0:
        return "—"
    return f"{m:.3g}" if n == 1 else f"{m:.3g} ± {s:.2g}"


def runs_with_claim(runs: Sequence[Run], claim: str) -> list[Run]:
    """The runs whose ``claims`` list ``claim`` (a claim or section key), in order."""
    return [r for r in runs if claim in r.claims]


def _n_done(res: Mapping, runs: Sequence[Run]) -> tuple[int, int]:
    done = total = 0
    for r in runs:
        for e in res[r.name]["seeds"].values():
            total += 1
            done += e["status"] in FINISHED
    return done, total


def status_line(res, runs) -> str:
    d, t = _n_done(res, runs)
    return f"{d} of {t} run×seed finished"


def timing(res: Mapping, runs: Sequence[Run]) -> tuple[str, dict]:
    """Wall-clock budget of the finished runs, from their status files (training + evaluation
    seconds of the invocation that finished them): per seed the total and the longest run."""
    per: dict[str, list[tuple[float, str]]] = {}
    for r in runs:
        for seed, e in res[r.name]["seeds"].items():
            d = e.get("status_detail") or {}
            if e["status"] in FINISHED and "train_seconds" in d:
                per.setdefault(seed, []).append(
                    (float(d["train_seconds"]) + float(d.get("eval_seconds", 0.0)), r.name)
                )
    rows = ["| seed | finished runs | total (min) | longest run (min) |", "|---|---|---|---|"]
    out = {}
    for seed in sorted(per, key=int):
        ts = per[seed]
        tot, (mx, name) = sum(t for t, _ in ts), max(ts)
        out[seed] = {"runs": len(ts), "total_seconds": tot, "max_seconds": mx, "max_run": name}
        rows.append(f"| {seed} | {len(ts)} | {tot / 60:.1f} | {mx / 60:.1f} ({name}) |")
    return "\n".join(rows), out
