"""Terminal-phase report (issue 23): every claim where it lives, with paired-seed verdicts.

Runs: :func:`ul_jax.paper.suites.tp_runs` of a setting of
:data:`~ul_jax.paper.suites.TP_SETTINGS` (section key ``tp_<setting>``). Each setting trains a
small CIFAR-10 training set for the paper's 200 epochs, and every run logs an evaluation pass
over its *un-augmented* training images (``train_eval/*``): the phase is "terminal" when CE
fits them (≥ :data:`TERMINAL_ACC`).

Selection (at the reported budget, never the test set): on the selection seed
(:data:`~ul_jax.paper.suites.TP_SELECTION_SEED`) only, so that adding seeds to the selected runs
cannot change which run was selected —

* ``ul_pal_sel``: the UL+PAL run (λ = 0 or an EFR λ) with the best validation top-1;
* ``ce_sel``: the same among CE / CE+EFR;
* ``ce_efr_nll``: the CE / CE+EFR run with the lowest validation NLL (``val/loss``; calibration);
* ``ul_fnpal_sel`` / ``ul_fnpal_rlr_sel``: the FNPAL scale s with the best validation top-1,
  without / with RLR;
* ``ce`` / ``ul_pal``: the λ = 0 baselines.

Every claim of :data:`ul_jax.paper.verdicts.RULES` is judged on the paired per-seed
differences of these roles (test top-1, test ECE, mean test top-1 over the evaluations), in
points. The section's table lists every run (grid and headline), a second table the claims.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ul_jax.objectives import efr_feature_target_scale
from ul_jax.paper.claims import PENDING
from ul_jax.paper.figures import _plt
from ul_jax.paper.results import VARIANT_LABEL, _last, _status_line, fmt_num, fmt_pct
from ul_jax.paper.verdicts import RULES, judge

TERMINAL_ACC = 0.99
BATCH = 128
NUM_CLASSES = 10
CURVE_KEYS = (
    "train_eval/accuracy",
    "train_eval/loss",
    "val/accuracy",
    "val/loss",
    "eval/accuracy",
    "eval/loss",
    "eval/feature_norm",
)
# the claims of RULES a balanced setting judges (long-tailed / OOD settings add theirs)
BALANCED_CLAIMS = ("2a", "2a_vanilla", "2b", "4", "4_ul")


def _lam(run) -> float:
    return float(run.overrides.get("objective.efr_weight", 0.0))


def _scale(run) -> float | None:
    s = run.overrides.get("head.scale")
    return None if s is None else float(s)


def _family(run) -> str:
    if run.variant.startswith("ul_pal"):
        return "ul_pal"
    if run.variant.startswith("ce"):
        return "ce"
    return run.variant  # ul_fnpal / ul_fnpal_rlr


def per_seed(res: Mapping, name: str) -> dict[int, dict[str, Any]]:
    """``{seed: metrics}`` of the finished (``complete``) seeds of run ``name``: ``top1``,
    ``ece`` (test, fractions), ``mean_top1`` (mean test top-1 over the evaluations),
    ``train_acc`` (un-augmented training accuracy at the end), ``val_top1``, ``val_nll``
    (validation loss; NLL for CE), ``feature_norm`` (test), ``test_loss``."""
    out: dict[int, dict[str, Any]] = {}
    for seed, e in res.get(name, {}).get("seeds", {}).items():
        if e.get("status") != "complete" or not e.get("curves"):
            continue
        c = e["curves"]
        last = _last(c)
        summ = e.get("summary") or {}
        evals = [a for a in c.get("eval/accuracy", []) if a is not None]
        out[int(seed)] = {
            "top1": summ.get("top1", last.get("eval/accuracy")),
            "ece": summ.get("ece"),
            "mean_top1": float(np.mean(evals)) if evals else None,
            "train_acc": last.get("train_eval/accuracy"),
            "val_top1": last.get("val/accuracy"),
            "val_nll": last.get("val/loss"),
            "feature_norm": last.get("eval/feature_norm"),
            "test_loss": last.get("eval/loss"),
        }
    return out


def _pick(res: Mapping, runs: Sequence, key: str, seed: int, lower: bool = False):
    """The run of ``runs`` with the best ``key`` on ``seed`` (ties: the earlier run, i.e. the
    smaller λ / s); ``None`` if none has finished that seed."""
    best, best_v = None, None
    for r in runs:
        v = per_seed(res, r.name).get(seed, {}).get(key)
        if v is None:
            continue
        v = -float(v) if lower else float(v)
        if best_v is None or v > best_v + 1e-12:
            best, best_v = r, v
    return best


def roles(res: Mapping, runs: Sequence, seed: int) -> dict[str, Any]:
    """Role → run (module docstring), selected on validation on ``seed`` only."""
    fam: dict[str, list] = {}
    for r in runs:
        fam.setdefault(_family(r), []).append(r)
    for v in fam.values():
        v.sort(key=lambda r: (_lam(r), _scale(r) or 0.0))
    ul, ce = fam.get("ul_pal", []), fam.get("ce", [])
    out = {
        "ce": next((r for r in ce if _lam(r) == 0), None),
        "ul_pal": next((r for r in ul if _lam(r) == 0), None),
        "ul_pal_sel": _pick(res, ul, "val_top1", seed),
        "ce_sel": _pick(res, ce, "val_top1", seed),
        "ce_efr_nll": _pick(res, ce, "val_nll", seed, lower=True),
        "ul_fnpal_sel": _pick(res, fam.get("ul_fnpal", []), "val_top1", seed),
        "ul_fnpal_rlr_sel": _pick(res, fam.get("ul_fnpal_rlr", []), "val_top1", seed),
    }
    return out


def role_values(res: Mapping, role_runs: Mapping[str, Any]) -> dict[str, dict[str, dict]]:
    """``{role: {metric: {seed: value in points}}}`` for :func:`ul_jax.paper.verdicts.judge`."""
    out: dict[str, dict[str, dict]] = {}
    for role, run in role_runs.items():
        if run is None:
            continue
        ps = per_seed(res, run.name)
        out[role] = {
            m: {k: 100.0 * float(v[m]) for k, v in ps.items() if v.get(m) is not None}
            for m in ("top1", "ece", "mean_top1", "train_acc")
        }
    return out


def _knob(run) -> str:
    if _scale(run) is not None:
        return f"s = {_scale(run):g}"
    lam = _lam(run)
    return f"λ_b = {lam:.3g}" if lam else "λ = 0"


def _hstar(run) -> str:
    lam = _lam(run)
    if _family(run) != "ul_pal":
        return "—"
    return f"{efr_feature_target_scale(lam, BATCH, NUM_CLASSES):.3g}" if lam else "∞"


def _cells(ps: Mapping[int, Mapping], key: str, pct: bool = True) -> str:
    xs = [float(v[key]) for v in ps.values() if v.get(key) is not None]
    return fmt_pct(xs) if pct else fmt_num(xs)


def terminal_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """The run table (selection marks on the selection seed), the claim table and the
    one-line verdict of one terminal-phase setting."""
    from ul_jax.paper.suites import TP_SELECTION_SEED

    sel = roles(res, runs, TP_SELECTION_SEED)
    marks: dict[str, list[str]] = {}
    for role in ("ul_pal_sel", "ce_sel", "ce_efr_nll", "ul_fnpal_sel", "ul_fnpal_rlr_sel"):
        if sel.get(role) is not None:
            marks.setdefault(sel[role].name, []).append(
                "val NLL" if role == "ce_efr_nll" else "val top-1"
            )
    rows = [
        "| model | knob | ‖h*‖ (Thm 6) | train acc, un-augmented (%) | val top-1 (%) | val loss | "
        "test top-1 (%) | test ECE (%) | mean test top-1 over the evals (%) | final test ‖h‖ | "
        "seeds | selected on seed 0 by |",
        "|" + "---|" * 12,
    ]
    for r in runs:
        ps = per_seed(res, r.name)
        st = res.get(r.name, {}).get("seeds", {})
        if not ps:
            state = "running" if any(e.get("status") == "in progress" for e in st.values()) else ""
            rows.append(
                f"| {VARIANT_LABEL.get(r.variant, r.variant)} | {_knob(r)} | {_hstar(r)} | "
                f"{state or 'not run'} |" + " |" * 8
            )
            continue
        m = ", ".join(dict.fromkeys(marks.get(r.name, []))) or ""
        rows.append(
            f"| {VARIANT_LABEL.get(r.variant, r.variant)} | {_knob(r)} | {_hstar(r)} | "
            f"{_cells(ps, 'train_acc')} | {_cells(ps, 'val_top1')} | "
            f"{_cells(ps, 'val_nll', False)} | {_cells(ps, 'top1')} | {_cells(ps, 'ece')} | "
            f"{_cells(ps, 'mean_top1')} | {_cells(ps, 'feature_norm', False)} | "
            f"{', '.join(str(k) for k in sorted(ps))} | {m} |"
        )
    vals = role_values(res, sel)
    crow = [
        "",
        "| claim | statement | comparison (paired by seed) | metric | difference (95 % CI) | "
        "rule (written before the runs) | outcome |",
        "|" + "---|" * 7,
    ]
    parts = []
    for key in BALANCED_CLAIMS:
        cr = RULES[key]
        v = judge(cr, vals)
        a, b = sel.get(cr.a), sel.get(cr.b)
        who = (
            f"{a.name if a else cr.a} vs {b.name if b else cr.b}"
            if (a is not None or b is not None)
            else "—"
        )
        sign = "b − a" if cr.lower_is_better else "a − b"
        guard = ""
        if v.guard_diff is not None:
            guard = f"; guard {cr.guard[0]}: {v.guard_diff.text()} → {v.guard_outcome}"
        crow.append(
            f"| {key} | {cr.statement} | {who} | {cr.metric} ({sign}, pts) | "
            f"{v.diff.text()}{guard} | {cr.rule.describe()} | **{v.outcome}** |"
        )
        parts.append(f"{key} {v.outcome} ({v.diff.text()})")
    ce_runs = per_seed(res, sel["ce"].name) if sel.get("ce") is not None else {}
    ce_train = [v["train_acc"] for v in ce_runs.values() if v.get("train_acc") is not None]
    if ce_train:
        reached = min(ce_train) >= TERMINAL_ACC
        phase = (
            f"CE's un-augmented train accuracy {fmt_pct(ce_train)} % "
            f"({'terminal phase reached' if reached else 'terminal phase NOT reached'})"
        )
    else:
        phase = "terminal phase not measured yet"
    if not any(per_seed(res, r.name) for r in runs):
        return "\n".join(rows + crow), PENDING
    verdict = f"{phase}; " + "; ".join(parts) + f"; {_status_line(res, runs)}"
    return "\n".join(rows + crow), verdict


# figures ------------------------------------------------------------------------------------
def fig_terminal(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """Along training, for each headline role (mean over finished seeds; band: min–max): the
    un-augmented training accuracy (the terminal-phase check) and the test accuracy."""
    from ul_jax.paper.suites import TP_SELECTION_SEED

    sel = roles(res, runs, TP_SELECTION_SEED)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    drawn = False
    seen = set()
    for role, run in sel.items():
        if run is None or run.name in seen or role == "ce_sel":
            continue
        seen.add(run.name)
        for ax, key in zip(axes, ("train_eval/accuracy", "eval/accuracy")):
            xs, ys = None, []
            for e in res[run.name]["seeds"].values():
                if e.get("status") != "complete":
                    continue
                c = e.get("curves") or {}
                pts = [(s, v) for s, v in zip(c.get("step", []), c.get(key, [])) if v is not None]
                if not pts:
                    continue
                sx, sy = zip(*pts)
                if xs is None or len(sx) == len(xs):
                    xs = sx
                    ys.append(sy)
            if not ys:
                continue
            a = 100 * np.asarray(ys)
            lab = f"{VARIANT_LABEL.get(run.variant, run.variant)} {_knob(run)} (n={len(ys)})"
            (ln,) = ax.plot(xs, a.mean(0), marker="o", label=lab)
            ax.fill_between(xs, a.min(0), a.max(0), color=ln.get_color(), alpha=0.15)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    axes[0].axhline(100 * TERMINAL_ACC, color="k", ls=":", lw=1)
    axes[0].set_title("accuracy on the un-augmented training images")
    axes[1].set_title("test accuracy")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path).with_suffix(".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _setting_sections() -> dict:
    from ul_jax.paper.suites import TP_SETTINGS

    return {f"tp_{s}": terminal_section for s in TP_SETTINGS}


SECTIONS = _setting_sections()
FIGURES = {key: ((key, fig_terminal),) for key in SECTIONS}
