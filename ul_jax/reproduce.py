"""The reproduction suite runner: train → evaluate → tables, figures, results JSON and docs.

:func:`run_suite` runs every :class:`Run` of a suite (``configs/<suite>/suite.py``: ``RUNS``) for
every seed in ``OUT/<run>/seed<k>/``: :func:`ul_jax.train.train_and_evaluate` (which resumes from
the run's latest checkpoint) and then :func:`ul_jax.evaluation.evaluate_run` with the run's OOD
sets. The outcome goes to ``OUT/<run>/seed<k>/reproduce_status.json``:

* ``complete``: trained to the last step and evaluated (``eval.json``);
* ``nonfinite``: the loop stopped with :class:`ul_jax.train.NonFiniteError` (the Fig. 19
  outcome); the step, the non-finite quantities and the last good checkpoint are recorded and the
  run is not evaluated.

Runs with one of these statuses are skipped by later invocations, so a suite can span sessions;
an interrupted run (preempted, killed, a crash) has no status and is resumed from its checkpoint.
A run that raises anything else is recorded as ``failed`` (retried next time) and the suite
continues.

:func:`report` (also run at the end of :func:`run_suite`, and alone by ``--tables_only``) reads
every status / ``eval.json`` / ``metrics.jsonl`` and writes

* ``FIG_DIR/results_<suite>.json``: per run and seed the status, headline metrics and curves;
* figures: ``<suite>_claim1_fig19.png`` (train accuracy, feature norm, prototype norm ratio, min
  prototype norm, min prototype angle vs epoch), ``<suite>_claim2_accuracy.png`` (test accuracy
  vs epoch), ``<suite>_claim4_reliability.png`` (reliability diagrams without / with EFR) and the
  per-run OOD histograms of :func:`evaluate_run` copied as ``<suite>_<run>_seed<k>_<file>``;
* markdown tables (mean ± sample std over the finished seeds) and a one-line verdict per claim,
  written between the ``<!-- BEGIN <suite>:<claim> -->`` / ``<!-- END <suite>:<claim> -->`` and
  ``<!-- VERDICT <suite>:<claim> -->`` … ``<!-- /VERDICT -->`` markers of the docs file
  (``docs/REPRODUCTION.md``); missing markers are appended in a new section.

Verdicts are mechanical comparisons stated in their text (no judgement is invented): a claim
with no finished run stays ``pending — not yet run``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

_log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
STATUS_FILE = "reproduce_status.json"
FINISHED = ("complete", "nonfinite")
CLAIMS = {
    "claim1": "Fig. 19: plain UL with a learnable linear head is unstable",
    "claim2": "Fig. 2: UL+PAL ≈ CE; UL+FNPAL with RLR converges faster than without",
    "claim3": "Table 2: EFR on long-tailed CIFAR-10",
    "claim4": "Tables 4/5, Figs. 10/11: calibration (ECE) with and without EFR",
    "claim5": "Table 3 / Fig. 3: OOD detection with and without EFR",
}
PENDING = "pending — not yet run"
EFR_PAIRS = (("ce", "ce_efr"), ("ul_pal", "ul_pal_efr"))
VARIANT_LABEL = {"ce": "CE", "ce_efr": "CE+EFR", "ul": "UL (linear head)", "ul_pal": "UL+PAL",
                 "ul_pal_efr": "UL+PAL+EFR", "ul_fnpal": "UL+FNPAL",
                 "ul_fnpal_rlr": "UL+FNPAL+RLR"}
FIG19_KEYS = (("train/accuracy", "train accuracy"), ("train/feature_norm", "mean ‖h‖"),
              ("train/prototype_norm_ratio", "max‖w‖ / min‖w‖"),
              ("train/prototype_min_norm", "min‖w‖"),
              ("train/prototype_min_angle", "min prototype angle (deg)"))
SCORES = ("msp", "energy", "feature_norm")


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of a suite.

  Attributes:
    name: unique directory name.
    config: ``path/to/config.py:arg`` (as for ``python -m launch.train --config``).
    claims: the claims (keys of :data:`CLAIMS`) whose tables use this run.
    setting: the data setting, e.g. ``full``, ``exp100`` (table rows group by it).
    variant: the config variant (``ce``, ``ul_pal_efr``, ...).
    ood: OOD sets of :data:`ul_jax.evaluation.OOD_SETS` scored at evaluation.
    overrides: ``{"dotted.field": value}`` applied after ``get_config`` (tests, small suites).
    expect_nonfinite: the claim predicts a NonFiniteError (Fig. 19); informational.
  """

  name: str
  config: str
  claims: tuple[str, ...]
  setting: str
  variant: str
  ood: tuple[str, ...] = ()
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  expect_nonfinite: bool = False


# --------------------------------------------------------------------------------------------
# suites and configs
# --------------------------------------------------------------------------------------------
def report_suite(name: str) -> tuple[str, tuple[Run, ...]]:
  """``(report name, runs)`` whose tables ``--suite name`` regenerates. ``cpu`` / ``cpu_step`` /
  ``cpu_long`` report together as ``cpu`` (``configs/cpu/suite.py: REPORT_RUNS``); the second
  pass (``cpu_sweep`` / ``cpu_scale``, every knob chosen on a validation split) reports as
  ``cpu2`` (``REPORT2_RUNS``); another suite reports its own ``RUNS``."""
  module, _, report_name, report_attr = SUB_SUITES.get(name, (name, "RUNS", name, None))
  runs = load_suite(name)
  mod = importlib.import_module(f"configs.{module}.suite")
  return report_name, tuple(getattr(mod, report_attr or "REPORT_RUNS", runs))


# --suite name → (configs/<module>/suite.py, its run list, report name, the report's run list)
SUB_SUITES = {
    "cpu": ("cpu", "RUNS", "cpu", "REPORT_RUNS"),
    "cpu_step": ("cpu", "STEP_RUNS", "cpu", "REPORT_RUNS"),
    "cpu_long": ("cpu", "LONG_RUNS", "cpu", "REPORT_RUNS"),
    "cpu_sweep": ("cpu", "SWEEP_RUNS", "cpu2", "REPORT2_RUNS"),
    "cpu_scale": ("cpu", "SCALE_RUNS", "cpu2", "REPORT2_RUNS"),
    "cpu_long2": ("cpu", "LONG2_RUNS", "cpu2", "REPORT2_RUNS"),
}


def load_suite(name: str) -> tuple[Run, ...]:
  """The runs of ``--suite name``: ``cpu`` / ``paper`` (``configs/<name>/suite.py: RUNS``) and
  the sub-suites of :data:`SUB_SUITES`."""
  _ensure_repo_on_path()
  module, attr = SUB_SUITES.get(name, (name, "RUNS"))[:2]
  try:
    mod = importlib.import_module(f"configs.{module}.suite")
  except ModuleNotFoundError as e:
    raise ValueError(f"unknown suite {name!r} (no configs/{module}/suite.py)") from e
  runs = tuple(getattr(mod, attr))
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise ValueError(f"suite {name!r} has duplicate run names")
  return runs


def _ensure_repo_on_path() -> None:
  from ul_jax.config import ensure_on_path
  ensure_on_path(REPO_ROOT)


def load_config(spec: str, overrides: Mapping[str, Any] | None = None, seed: int | None = None):
  """``"configs/cpu/cifar10.py:ce,full"`` → the ConfigDict, with ``overrides`` and ``seed``."""
  from ul_jax.config import load_config_file
  return load_config_file(spec, overrides, seed)


def run_dir(out: Path, run: Run, seed: int) -> Path:
  return Path(out) / run.name / f"seed{seed}"


def seeds_on_disk(runs: Sequence[Run], out: str | Path,
                  extra: Iterable[int] = ()) -> list[int]:
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


def _write_json(path: Path, obj: Any) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=1, default=_json_default, allow_nan=True))
  tmp.replace(path)


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  return str(x)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def run_one(run: Run, seed: int, out: Path) -> dict:
  """Trains (resuming) and evaluates one run/seed; returns and writes its status."""
  from ul_jax.eval import evaluate_run
  from ul_jax.train import NonFiniteError, train_and_evaluate

  workdir = run_dir(out, run, seed)
  config = load_config(run.config, run.overrides, seed)
  total = int(config.num_train_steps)
  status: dict[str, Any] = {"run": run.name, "seed": seed, "config": run.config,
                            "overrides": dict(run.overrides), "ood": list(run.ood)}
  t0 = time.perf_counter()
  try:
    res = train_and_evaluate(config, workdir)
  except NonFiniteError as e:
    status.update(status="nonfinite", step=int(e.step), quantities=list(e.quantities),
                  last_good_checkpoint=str(e.checkpoint) if e.checkpoint else None,
                  train_seconds=time.perf_counter() - t0)
    _write_json(workdir / STATUS_FILE, status)
    return status
  status["train_seconds"] = time.perf_counter() - t0
  if res.get("preempted"):
    status.update(status="interrupted", step=int(res["step"]))
    return status            # no status file: the next invocation resumes it
  t1 = time.perf_counter()
  ev = evaluate_run(workdir, ood=run.ood, plots=True)
  status.update(status="complete", step=int(res["step"]), total_steps=total,
                eval_seconds=time.perf_counter() - t1, top1=ev["classification"]["top1"])
  _write_json(workdir / STATUS_FILE, status)
  return status


def run_suite(runs: Sequence[Run], out: str | Path, *, seeds: Sequence[int] = (0,),
              suite: str = "suite", fig_dir: str | Path | None = None,
              docs: str | Path | None = None, only: Iterable[str] | None = None,
              report_runs: Sequence[Run] | None = None) -> dict:
  """Runs every unfinished (run, seed), then :func:`report` over ``report_runs`` (default
  ``runs``) and every seed found on disk. A run interrupted by SIGTERM stops the suite (it
  resumes on the next invocation). Returns ``{"ran": [...], "skipped": [...], "failed": [...],
  "interrupted": [...], "report": ...}``."""
  out = Path(out)
  selected = _select(runs, only)
  ran, skipped, failed, interrupted = [], [], [], []
  for run in selected:
    if interrupted:
      break
    for seed in seeds:
      wd = run_dir(out, run, seed)
      st = read_status(wd)
      if st is not None and st.get("status") in FINISHED:
        _log.info("skip %s seed %d: %s", run.name, seed, st["status"])
        skipped.append((run.name, seed))
        continue
      _log.info("run %s seed %d (%s) in %s", run.name, seed, run.config, wd)
      try:
        st = run_one(run, seed, out)
      except Exception as e:  # noqa: BLE001 - recorded, retried next invocation
        _log.error("run %s seed %d failed: %s", run.name, seed, e)
        _write_json(wd / STATUS_FILE, {"run": run.name, "seed": seed, "status": "failed",
                                       "error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc()})
        failed.append((run.name, seed))
        continue
      _log.info("%s seed %d: %s", run.name, seed, {k: st.get(k) for k in
                                                  ("status", "step", "top1", "train_seconds")})
      if st.get("status") == "interrupted":
        # SIGTERM (preemption): the run checkpointed; stop the whole suite here, since every
        # later run would be interrupted at its first step too. The next invocation resumes.
        _log.warning("suite stopped: %s seed %d was interrupted at step %s", run.name, seed,
                     st.get("step"))
        interrupted.append((run.name, seed))
        break
      ran.append((run.name, seed))
  report_runs = tuple(report_runs) if report_runs is not None else tuple(runs)
  rep = report(report_runs, out, seeds=seeds_on_disk(report_runs, out, seeds), suite=suite,
               fig_dir=fig_dir, docs=docs)
  return {"ran": ran, "skipped": skipped, "failed": failed, "interrupted": interrupted,
          "report": rep}


def _select(runs: Sequence[Run], only: Iterable[str] | None) -> list[Run]:
  if not only:
    return list(runs)
  only = list(only)
  known = {r.name for r in runs}
  bad = [n for n in only if n not in known]
  if bad:
    raise ValueError(f"unknown run(s) {bad}; the suite has {sorted(known)}")
  return [r for r in runs if r.name in only]


# --------------------------------------------------------------------------------------------
# collecting results
# --------------------------------------------------------------------------------------------
def _read_jsonl(path: Path) -> list[dict]:
  from ul_jax.train import read_jsonl
  return read_jsonl(path)


def _curves(workdir: Path) -> dict[str, list]:
  rows = _read_jsonl(workdir / "metrics.jsonl")
  from ul_jax.paper.second_pass import CURVE_KEYS
  keys = {"train/epoch", "eval/accuracy", *(k for k, _ in FIG19_KEYS), *CURVE_KEYS}
  out: dict[str, list] = {"step": []}
  for k in keys:
    out[k] = []
  for r in rows:
    out["step"].append(r.get("step"))
    for k in keys:
      v = r.get(k)
      out[k].append(float(v) if isinstance(v, (int, float)) else None)
  return out


def _summary(ev: Mapping) -> dict:
  cls = ev["classification"]
  groups = cls.get("index_groups") or cls.get("shot_groups") or {}
  s: dict[str, Any] = {
      "top1": cls.get("top1"), "ece": ev["calibration"]["ece"], "mce": ev["calibration"]["mce"],
      "groups": {k: groups.get(k) for k in ("many", "medium", "few")} if groups else None,
      "groups_convention": ("MiSLAS index ranges" if cls.get("index_groups") else
                            "OLTR train counts" if cls.get("shot_groups") else None),
      "calibration_bins": {k: ev["calibration"][k] for k in
                           ("bin_edges", "bin_counts", "bin_accuracy", "bin_confidence")},
      "mean_feature_norm": ev.get("neural_collapse", {}).get("mean_feature_norm"),
      "ood": {name: {score: o["metrics"][score] for score in SCORES}
              for name, o in ev.get("ood", {}).items()},
      "ood_files": {k: v for k, v in ev.get("files", {}).items() if k.startswith("ood_hist_")},
  }
  return s


def collect(runs: Sequence[Run], out: Path, seeds: Sequence[int]) -> dict:
  """``{run_name: {"run": Run fields, "seeds": {seed: {status, summary, curves}}}}``."""
  res: dict[str, Any] = {}
  for run in runs:
    per: dict[str, Any] = {}
    for seed in seeds:
      wd = run_dir(out, run, seed)
      st = read_status(wd)
      entry: dict[str, Any] = {"status": st.get("status") if st else
                               ("in progress" if (wd / "metrics.jsonl").exists() else "not run"),
                               "workdir": str(wd)}
      if st:
        entry["status_detail"] = {k: v for k, v in st.items() if k != "traceback"}
      if (wd / "metrics.jsonl").exists():
        entry["curves"] = _curves(wd)
        entry["total_steps"] = _total_steps(wd)
      if st and st.get("status") == "complete" and (wd / "eval.json").exists():
        entry["summary"] = _summary(json.loads((wd / "eval.json").read_text()))
      per[str(seed)] = entry
    res[run.name] = {"run": dataclasses.asdict(run), "seeds": per}
  return res


def _total_steps(wd: Path) -> int | None:
  try:
    c = json.loads((wd / "config.json").read_text())
  except (OSError, json.JSONDecodeError):
    return None
  return int(c.get("num_train_steps", -1))


# --------------------------------------------------------------------------------------------
# statistics and formatting
# --------------------------------------------------------------------------------------------
def _vals(res: Mapping, name: str, getter) -> list[float]:
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


def _by(runs: Sequence[Run], claim: str) -> list[Run]:
  return [r for r in runs if claim in r.claims]


def _n_done(res: Mapping, runs: Sequence[Run]) -> tuple[int, int]:
  done = total = 0
  for r in runs:
    for e in res[r.name]["seeds"].values():
      total += 1
      done += e["status"] in FINISHED
  return done, total


def _status_line(res, runs) -> str:
  d, t = _n_done(res, runs)
  return f"{d} of {t} run×seed finished"


# claim 1 ------------------------------------------------------------------------------------
def _claim1(res, runs, seeds) -> tuple[str, str]:
  rows = ["| run | seed | outcome | last logged epoch | train acc | mean ‖h‖ (first → last) | "
          "max‖w‖/min‖w‖ | min‖w‖ | min angle (deg) |", "|" + "---|" * 9]
  outcomes = []
  for r in runs:
    for seed, e in res[r.name]["seeds"].items():
      c = e.get("curves")
      st = e["status"]
      if st == "nonfinite":
        d = e["status_detail"]
        tot = e.get("total_steps")
        outcome = f"non-finite at step {d['step']}" + (f" of {tot}" if tot else "") + \
            f" ({', '.join(d.get('quantities', []))}); stopped cleanly"
      elif st == "complete":
        outcome = f"finite through all {e.get('total_steps')} steps"
      else:
        outcome = st
      outcomes.append((r, st))
      last = _last(c) if c else {}
      first_h = _first_val(c, "train/feature_norm") if c else None
      rows.append(f"| {r.name} | {seed} | {outcome} | {_g(last.get('train/epoch'))} | "
                  f"{_g(last.get('train/accuracy'))} | {_g(first_h)} → "
                  f"{_g(last.get('train/feature_norm'))} | "
                  f"{_g(last.get('train/prototype_norm_ratio'))} | "
                  f"{_g(last.get('train/prototype_min_norm'))} | "
                  f"{_g(last.get('train/prototype_min_angle'))} |")
  ul = [s for (r, s) in outcomes if r.expect_nonfinite and s in FINISHED]
  ctrl = [s for (r, s) in outcomes if not r.expect_nonfinite and s in FINISHED]
  n_nan, n_fin = sum(s == "nonfinite" for s in ul), len(ul)
  if n_fin == 0:
    verdict = PENDING
  else:
    ok = n_nan == n_fin and all(s == "complete" for s in ctrl)
    verdict = f"{n_nan} of {n_fin} finished plain-UL run(s) hit a non-finite step and stopped cleanly"
    if ctrl:
      verdict += (f"; {sum(s == 'complete' for s in ctrl)} of {len(ctrl)} control run(s) "
                  f"(fixed prototypes, same lr) stayed finite")
    verdict += (f" ({'consistent with' if ok else 'partly contradicts'} Fig. 19); "
                f"{_status_line(res, runs)}")
  return "\n".join(rows), verdict


def _last(c: Mapping) -> dict:
  out = {}
  for k, vs in c.items():
    for v in reversed(vs):
      if v is not None:
        out[k] = v
        break
  return out


def _first_val(c: Mapping, key: str):
  for v in c.get(key, []):
    if v is not None:
      return v
  return None


def _g(v) -> str:
  if v is None:
    return "—"
  return f"{v:.4g}"


# claim 2 ------------------------------------------------------------------------------------
def _eval_curve_mean(e: Mapping) -> float | None:
  c = e.get("curves") or {}
  acc = [a for a in c.get("eval/accuracy", []) if a is not None]
  return float(np.mean(acc)) if acc else None


def _claim2(res, runs, seeds) -> tuple[str, str]:
  rows = ["| setting | run | final test top-1 (%) | mean test top-1 over the evals (%) | "
          "n |", "|---|---|---|---|---|"]
  parts = []
  for setting in dict.fromkeys(r.setting for r in runs):
    final, area = {}, {}
    for r in (r for r in runs if r.setting == setting):
      f = _vals(res, r.name, lambda s: s["top1"])
      a = [v for v in (_eval_curve_mean(e) for e in res[r.name]["seeds"].values()
                       if e["status"] == "complete") if v is not None]
      final[r.variant], area[r.variant] = f, a
      rows.append(f"| {r.setting} | {r.name} ({VARIANT_LABEL.get(r.variant, r.variant)}) | "
                  f"{fmt_pct(f)} | {fmt_pct(a)} | {len(f)} |")
    if final.get("ce") and final.get("ul_pal"):
      d = 100 * (mean_std(final["ul_pal"])[0] - mean_std(final["ce"])[0])
      parts.append(f"{setting}: UL+PAL − CE final top-1 = {d:+.2f} pts "
                   f"({'within' if abs(d) <= 2 else 'outside'} ±2 pts)")
    if area.get("ul_fnpal") and area.get("ul_fnpal_rlr"):
      d = 100 * (mean_std(area["ul_fnpal_rlr"])[0] - mean_std(area["ul_fnpal"])[0])
      parts.append(f"{setting}: RLR − no-RLR mean eval top-1 over training = {d:+.2f} pts "
                   f"({'faster with RLR' if d > 0 else 'not faster with RLR'})")
  verdict = "; ".join(parts) + f"; {_status_line(res, runs)}" if parts else PENDING
  return "\n".join(rows), verdict


# claims 3, 4, 5 ------------------------------------------------------------------------------
def _pairs(runs: Sequence[Run]) -> list[tuple[str, Run, Run]]:
  out = []
  by = {(r.setting, r.variant): r for r in runs}
  for setting in dict.fromkeys(r.setting for r in runs):
    for base, efr in EFR_PAIRS:
      if (setting, base) in by and (setting, efr) in by:
        out.append((setting, by[(setting, base)], by[(setting, efr)]))
  return out


def _cmp_count(res, pairs, getter, better) -> tuple[int, int, list[str]]:
  wins = n = 0
  lines = []
  for setting, a, b in pairs:
    va, vb = _vals(res, a.name, getter), _vals(res, b.name, getter)
    if not va or not vb:
      continue
    ma, mb = mean_std(va)[0], mean_std(vb)[0]
    n += 1
    wins += better(mb, ma)
    lines.append(f"{setting} {VARIANT_LABEL[a.variant]}: {100 * ma:.2f} → {100 * mb:.2f}")
  return wins, n, lines


def _claim3(res, runs, seeds) -> tuple[str, str]:
  rows = ["| setting | run | top-1 (%) | many (%) | medium (%) | few (%) | groups | "
          "test mean ‖h‖ | n |", "|---|---|---|---|---|---|---|---|---|"]
  for r in runs:
    f = _vals(res, r.name, lambda s: s["top1"])
    g = {k: _vals(res, r.name, lambda s, k=k: (s["groups"] or {}).get(k)) for k in
         ("many", "medium", "few")}
    conv = next((e["summary"]["groups_convention"] for e in res[r.name]["seeds"].values()
                 if "summary" in e), None)
    rows.append(f"| {r.setting} | {r.name} ({VARIANT_LABEL.get(r.variant, r.variant)}) | "
                f"{fmt_pct(f)} | {fmt_pct(g['many'])} | {fmt_pct(g['medium'])} | "
                f"{fmt_pct(g['few'])} | {conv or '—'} | "
                f"{fmt_num(_vals(res, r.name, lambda s: s['mean_feature_norm']))} | {len(f)} |")
  wins, n, lines = _cmp_count(res, _pairs(runs), lambda s: s["top1"], lambda b, a: b > a)
  verdict = (f"EFR raised top-1 in {wins} of {n} baseline/EFR pairs ({'; '.join(lines)}); "
             f"{_status_line(res, runs)}" if n else PENDING)
  return "\n".join(rows), verdict


def _claim4(res, runs, seeds) -> tuple[str, str]:
  rows = ["| setting | run | ECE (%) | MCE (%) | top-1 (%) | n |", "|---|---|---|---|---|---|"]
  for r in runs:
    rows.append(f"| {r.setting} | {r.name} ({VARIANT_LABEL.get(r.variant, r.variant)}) | "
                f"{fmt_pct(_vals(res, r.name, lambda s: s['ece']))} | "
                f"{fmt_pct(_vals(res, r.name, lambda s: s['mce']))} | "
                f"{fmt_pct(_vals(res, r.name, lambda s: s['top1']))} | "
                f"{len(_vals(res, r.name, lambda s: s['ece']))} |")
  wins, n, lines = _cmp_count(res, _pairs(runs), lambda s: s["ece"], lambda b, a: b < a)
  verdict = (f"EFR lowered ECE in {wins} of {n} baseline/EFR pairs ({'; '.join(lines)}); "
             f"{_status_line(res, runs)}" if n else PENDING)
  return "\n".join(rows), verdict


def _claim5(res, runs, seeds) -> tuple[str, str]:
  rows = ["| setting | run | OOD set | FPR95 ↓ (MSP / energy / ‖h‖) | AUROC ↑ | AUPR ↑ | n |",
          "|---|---|---|---|---|---|---|"]
  for r in runs:
    for ood in r.ood:
      cells = []
      for metric in ("fpr95", "auroc", "aupr"):
        cells.append(" / ".join(
            fmt_pct(_vals(res, r.name, lambda s, sc=sc, m=metric, o=ood:
                          s["ood"].get(o, {}).get(sc, {}).get(m)))
            for sc in SCORES))
      n = len(_vals(res, r.name, lambda s, o=ood: s["ood"].get(o, {}).get("msp", {}).get("auroc")))
      rows.append(f"| {r.setting} | {r.name} ({VARIANT_LABEL.get(r.variant, r.variant)}) | "
                  f"{ood} | {cells[0]} | {cells[1]} | {cells[2]} | {n} |")
  wins = n = 0
  detail = []
  for setting, a, b in _pairs(runs):
    for ood in a.ood:
      for sc in SCORES:
        get = lambda s, o=ood, sc=sc: s["ood"].get(o, {}).get(sc, {}).get("auroc")  # noqa: E731
        va, vb = _vals(res, a.name, get), _vals(res, b.name, get)
        if va and vb:
          n += 1
          wins += mean_std(vb)[0] > mean_std(va)[0]
    if any(_vals(res, x.name, lambda s: s["top1"]) for x in (a, b)):
      detail.append(f"{setting}/{a.variant}")
  verdict = (f"EFR raised AUROC in {wins} of {n} (pair, OOD set, score) comparisons "
             f"(pairs: {', '.join(detail)}); {_status_line(res, runs)}" if n else PENDING)
  return "\n".join(rows), verdict


def timing(res: Mapping, runs: Sequence[Run]) -> tuple[str, dict]:
  """Wall-clock budget of the finished runs, from their status files (training + evaluation
  seconds of the invocation that finished them): per seed the total and the longest run."""
  per: dict[str, list[tuple[float, str]]] = {}
  for r in runs:
    for seed, e in res[r.name]["seeds"].items():
      d = e.get("status_detail") or {}
      if e["status"] in FINISHED and "train_seconds" in d:
        per.setdefault(seed, []).append(
            (float(d["train_seconds"]) + float(d.get("eval_seconds", 0.0)), r.name))
  rows = ["| seed | finished runs | total (min) | longest run (min) |", "|---|---|---|---|"]
  out = {}
  for seed in sorted(per, key=int):
    ts = per[seed]
    tot, (mx, name) = sum(t for t, _ in ts), max(ts)
    out[seed] = {"runs": len(ts), "total_seconds": tot, "max_seconds": mx, "max_run": name}
    rows.append(f"| {seed} | {len(ts)} | {tot / 60:.1f} | {mx / 60:.1f} ({name}) |")
  return "\n".join(rows), out


_CLAIM_FNS = {"claim1": _claim1, "claim2": _claim2, "claim3": _claim3, "claim4": _claim4,
              "claim5": _claim5}


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _xy(c: Mapping, key: str) -> tuple[list, list]:
  xs, ys = [], []
  for x, y in zip(c.get("train/epoch", []), c.get(key, [])):
    if x is not None and y is not None and math.isfinite(y):
      xs.append(x)
      ys.append(y)
  return xs, ys


def _fig_claim1(res, runs, path: Path) -> str | None:
  curves = [(r.name, s, e["curves"]) for r in runs for s, e in res[r.name]["seeds"].items()
            if e.get("curves")]
  if not curves:
    return None
  plt = _plt()
  fig, axes = plt.subplots(1, len(FIG19_KEYS), figsize=(4 * len(FIG19_KEYS), 3.4))
  style = {r.name: "-" if r.expect_nonfinite else "--" for r in runs}
  for ax, (key, title) in zip(axes, FIG19_KEYS):
    for name, seed, c in curves:
      ax.plot(*_xy(c, key), style[name], label=f"{name} seed {seed}")
    ax.set_title(title)
    ax.set_xlabel("epoch")
    if key in ("train/feature_norm", "train/prototype_norm_ratio", "train/prototype_min_norm"):
      ax.set_yscale("log")
  axes[0].legend(fontsize=7)
  fig.suptitle("Plain UL, learnable linear head (solid; cf. Fig. 19; curves end at the last "
               "finite log) vs fixed-prototype controls (dashed)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path.name


VARIANT_COLOR = {"ce": "C0", "ul_pal": "C1", "ul_fnpal": "C2", "ul_fnpal_rlr": "C3",
                 "ce_efr": "C4", "ul_pal_efr": "C5", "ul": "C7"}


def _seed_curves(res, r: Run, key: str) -> tuple[list, np.ndarray | None]:
  """Epochs and a (seeds, points) array of ``key`` for the seeds of ``r`` whose curves share
  the same evaluation points (finished and in-progress seeds alike)."""
  xs0, rows = None, []
  for e in res[r.name]["seeds"].values():
    xs, ys = _xy(e.get("curves") or {}, key)
    if not xs:
      continue
    if xs0 is None or len(xs) > len(xs0):
      xs0, rows = xs, [r_ for r_ in rows if len(r_) == len(xs)]
    if len(xs) == len(xs0):
      rows.append(ys)
  return (xs0 or []), (np.asarray(rows) if rows else None)


def _fig_claim2(res, runs, path: Path) -> str | None:
  settings = list(dict.fromkeys(r.setting for r in runs))
  plt = _plt()
  fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
  drawn = False
  for ax, setting in zip(axes[0], settings):
    for r in (r for r in runs if r.setting == setting):
      xs, ys = _seed_curves(res, r, "eval/accuracy")
      if ys is None:
        continue
      m = ys.mean(0)
      col = VARIANT_COLOR.get(r.variant)
      ax.plot(xs, m, marker="o", ms=3, color=col,
              label=f"{VARIANT_LABEL.get(r.variant, r.variant)} (n={len(ys)})")
      if len(ys) > 1:
        ax.fill_between(xs, ys.min(0), ys.max(0), color=col, alpha=0.2, lw=0)
      drawn = True
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{setting}: test accuracy vs epoch (cf. Fig. 2)")
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
    else:
      ax.text(0.5, 0.5, "not run yet", ha="center", va="center", transform=ax.transAxes)
  if not drawn:
    plt.close(fig)
    return None
  fig.text(0.01, 0.01, "line: mean over seeds; band: min–max", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path.name


def _fig_claim4(res, runs, path: Path) -> str | None:
  items = []
  for r in runs:
    for seed, e in res[r.name]["seeds"].items():
      if "summary" in e:
        items.append((r, seed, e["summary"]))
        break                                     # the first finished seed of each run
  if not items:
    return None
  plt = _plt()
  cols = min(4, len(items))
  rows = math.ceil(len(items) / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, (r, seed, s) in zip(axes.flat, items):
    ax.axis("on")
    b = s["calibration_bins"]
    edges = np.asarray(b["bin_edges"], float)
    acc = np.nan_to_num(np.asarray(b["bin_accuracy"], float))
    conf = np.nan_to_num(np.asarray(b["bin_confidence"], float))
    counts = np.asarray(b["bin_counts"], float)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc = np.where(counts > 0, acc, 0.0)
    ax.bar(centers, acc, width=width, edgecolor="k", color="tab:blue", label="outputs")
    ax.bar(centers, np.where(counts > 0, conf - acc, 0), bottom=acc, width=width,
           color="tab:red", alpha=0.3, hatch="//", label="gap")
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_title(f"{r.setting} {VARIANT_LABEL.get(r.variant, r.variant)} s{seed}\n"
                 f"ECE {100 * s['ece']:.2f}%  acc {100 * s['top1']:.1f}%", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path.name


def _copy_ood_hists(res, runs, fig_dir: Path, suite: str) -> list[str]:
  out = []
  for r in runs:
    for seed, e in res[r.name]["seeds"].items():
      for _, fname in (e.get("summary", {}).get("ood_files") or {}).items():
        src = Path(e["workdir"]) / fname
        if src.exists():
          dst = fig_dir / f"{suite}_{r.name}_seed{seed}_{fname}"
          shutil.copyfile(src, dst)
          out.append(dst.name)
  return out


# --------------------------------------------------------------------------------------------
# report and docs
# --------------------------------------------------------------------------------------------
def report(runs: Sequence[Run], out: str | Path, *, seeds: Sequence[int] | None = None,
           suite: str = "suite", fig_dir: str | Path | None = None,
           docs: str | Path | None = None) -> dict:
  """Tables, verdicts, figures and results JSON from whatever has finished; updates ``docs``.
  ``seeds=None``: every seed found on disk (:func:`seeds_on_disk`; ``[0]`` when none)."""
  out = Path(out)
  if seeds is None:
    seeds = seeds_on_disk(runs, out) or [0]
  fig_dir = Path(fig_dir) if fig_dir is not None else REPO_ROOT / "figures" / "reproduction"
  fig_dir.mkdir(parents=True, exist_ok=True)
  res = collect(runs, out, seeds)
  sections: dict[str, dict[str, Any]] = {}
  figs = {"claim1": _fig_claim1, "claim2": _fig_claim2, "claim4": _fig_claim4}
  fig_names = {"claim1": "claim1_fig19.png", "claim2": "claim2_accuracy.png",
               "claim4": "claim4_reliability.png"}
  for claim, fn in _CLAIM_FNS.items():
    rs = _by(runs, claim)
    if not rs:
      continue
    table, verdict = fn(res, rs, seeds)
    files = []
    if claim in figs:
      f = figs[claim](res, rs, fig_dir / f"{suite}_{fig_names[claim]}")
      if f:
        files.append(f)
    if claim == "claim5":
      files += _copy_ood_hists(res, rs, fig_dir, suite)
    sections[claim] = {"table": table, "verdict": verdict, "figures": files}
  from ul_jax.paper import second_pass
  for claim, fn in second_pass.SECTIONS.items():
    rs = _by(runs, claim)
    if not rs:
      continue
    table, verdict = fn(res, rs, seeds)
    files = [f for name, fig in second_pass.FIGURES[claim]
             if (f := fig(res, rs, fig_dir / f"{suite}_{name}"))]
    sections[claim] = {"table": table, "verdict": verdict, "figures": files}
  if any(_by(runs, c) for c in second_pass.SECTIONS):
    sections["conventions"] = {"table": second_pass.conventions_table(), "verdict": "",
                               "figures": []}
  t_table, t_data = timing(res, runs)
  payload = {"suite": suite, "seeds": list(seeds), "out": str(out),
             "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "claims": sections,
             "timing": t_data, "runs": res}
  _write_json(fig_dir / f"results_{suite}.json", payload)
  on_disk = any(run_dir(out, r, k).is_dir() for r in runs for k in seeds)
  if docs is not None and not on_disk:
    # e.g. --tables_only on a fresh clone: never replace measured tables by empty ones
    _log.warning("no run folder of suite %s under %s: %s left unchanged", suite, out, docs)
  elif docs is not None:
    update_docs(docs, suite, sections, fig_dir, extra={"timing": t_table})
  return payload


def _begin(suite, claim):
  return f"<!-- BEGIN {suite}:{claim} -->"


def _end(suite, claim):
  return f"<!-- END {suite}:{claim} -->"


def _verdict_open(suite, claim):
  return f"<!-- VERDICT {suite}:{claim} -->"


VERDICT_CLOSE = "<!-- /VERDICT -->"


def _relpath(target: Path, start: Path) -> str:
  import os
  return os.path.relpath(target, start)


def update_docs(docs: str | Path, suite: str, sections: Mapping[str, Mapping],
                fig_dir: Path, extra: Mapping[str, str] | None = None) -> None:
  """Replaces the marked results block and verdict of each claim in ``docs`` (appends missing
  ones under a ``## Results: suite <suite>`` heading). ``extra``: ``{key: text}`` blocks
  written between ``<!-- BEGIN suite:key -->`` markers only where those markers exist."""
  docs = Path(docs)
  text = docs.read_text() if docs.exists() else "# Reproduction\n"
  for key, body in (extra or {}).items():
    b, e = _begin(suite, key), _end(suite, key)
    if b in text and e in text:
      i, j = text.index(b) + len(b), text.index(e)
      text = text[:i] + "\n" + body + "\n" + text[j:]
  appended = []
  for claim, sec in sections.items():
    figs = "".join(f"\n![{f}]({_relpath(fig_dir / f, docs.parent)})" for f in sec["figures"]
                   if "ood_hist_" not in f)
    hist = [f for f in sec["figures"] if "ood_hist_" in f]
    if hist:
      figs += "\n\nOOD histograms: " + ", ".join(
          f"[{f}]({_relpath(fig_dir / f, docs.parent)})" for f in hist)
    body = (f"_Generated by `python -m launch.reproduce --suite {suite}` at "
            f"{time.strftime('%Y-%m-%d %H:%M')}; mean ± sample std over finished seeds "
            f"(one value: a single seed)._\n\n{sec['table']}\n{figs}\n")
    b, e = _begin(suite, claim), _end(suite, claim)
    if b in text and e in text:
      i, j = text.index(b) + len(b), text.index(e)
      text = text[:i] + "\n" + body + text[j:]
    else:
      appended.append(f"### {claim}: {CLAIMS[claim]}\n\n{b}\n{body}{e}\n")
    vo = _verdict_open(suite, claim)
    if vo in text and VERDICT_CLOSE in text[text.index(vo):]:
      i = text.index(vo) + len(vo)
      j = text.index(VERDICT_CLOSE, i)
      text = text[:i] + sec["verdict"] + text[j:]
    else:
      appended.append(f"Verdict ({claim}): {vo}{sec['verdict']}{VERDICT_CLOSE}\n")
  if appended:
    text = text.rstrip("\n") + f"\n\n## Results: suite {suite}\n\n" + "\n".join(appended)
  tmp = docs.with_name(docs.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(docs)
