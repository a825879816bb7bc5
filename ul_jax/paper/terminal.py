"""Terminal-phase report: every claim where it lives, with paired-seed verdicts.

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
from ul_jax.paper.figures import pyplot
from ul_jax.paper.results import VARIANT_LABEL, fmt_num, fmt_pct, last_value, status_line
from ul_jax.paper.verdicts import RULES, judge, paired_difference

TERMINAL_ACC = 0.99
BATCH = 128
NUM_CLASSES = 10
GROUPS = ("many", "medium", "few")
CURVE_KEYS = (
    "train/trunk_grad_share",
    "train/group_batch_share",
    "train_eval/accuracy",
    "train_eval/loss",
    "val/accuracy",
    "val/loss",
    "eval/accuracy",
    "eval/loss",
    "eval/feature_norm",
)
# the claims of RULES each kind of setting judges (the setting's name starts with the kind)
SETTING_CLAIMS = {
    "b": ("2a", "2a_vanilla", "2b", "4", "4_ul"),
    "lt": ("3_ul", "3_ce", "3_vanilla", "3_sel", "4", "4_ul"),
    "split": ("5_ce", "5_ul", "2a", "4", "4_ul"),
}
NEAR_OOD = "cifar10_split_near_ood"
FAR_OOD = "digits_far_ood"
METRICS = ("top1", "ece", "mean_top1", "train_acc", "few", "near_auroc")
# the OOD detail table of a class-split setting (Table 3's layout: every score, both OOD sets)
OOD_SETS = ((NEAR_OOD, "near-OOD (classes 6–9)"), (FAR_OOD, "far-OOD (digits, not SVHN)"))
OOD_SCORES = (("msp", "MSP"), ("energy", "energy"), ("feature_norm", "‖h‖"))


def setting_claims(setting: str) -> tuple[str, ...]:
    """The claims judged for ``setting`` (``b100`` → balanced, ``lt100`` → long-tailed, ...)."""
    for kind in sorted(SETTING_CLAIMS, key=len, reverse=True):
        if setting.startswith(kind):
            return SETTING_CLAIMS[kind]
    raise ValueError(f"no claims for terminal-phase setting {setting!r}")


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
    ``ece`` (test, fractions), ``ood`` (``{(set, score, "auroc" | "fpr95"): value}`` over
    :data:`OOD_SETS` × :data:`OOD_SCORES`, ``None`` where not scored), ``mean_top1`` (mean
    test top-1 over the evaluations),
    ``train_acc`` (un-augmented training accuracy at the end), ``val_top1``, ``val_nll``
    (validation loss; NLL for CE), ``feature_norm`` (test), ``test_loss``."""
    out: dict[int, dict[str, Any]] = {}
    for seed, e in res.get(name, {}).get("seeds", {}).items():
        if e.get("status") != "complete" or not e.get("curves"):
            continue
        c = e["curves"]
        last = last_value(c)
        summ = e.get("summary") or {}
        evals = [a for a in c.get("eval/accuracy", []) if a is not None]
        groups = summ.get("groups") or {}
        near = (summ.get("ood") or {}).get(NEAR_OOD, {}).get("msp", {})
        ood = summ.get("ood") or {}
        out[int(seed)] = {
            "ood": {
                (name, score, m): ood.get(name, {}).get(score, {}).get(m)
                for name, _ in OOD_SETS
                for score, _ in OOD_SCORES
                for m in ("auroc", "fpr95")
            },
            "few": groups.get("few"),
            "near_auroc": near.get("auroc"),
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


# the grid each selected role is chosen from (roles of the same family share it)
SELECTED_FAMILY = {
    "ul_pal_sel": "ul_pal",
    "ce_sel": "ce",
    "ce_efr_nll": "ce",
    "ul_fnpal_sel": "ul_fnpal",
    "ul_fnpal_rlr_sel": "ul_fnpal_rlr",
}


def grid_progress(res: Mapping, runs: Sequence, seed: int) -> dict[str, tuple[int, int]]:
    """``{family: (finished, total)}``: how many runs of each knob grid (λ or s, the
    family's λ = 0 run included) have finished ``seed``."""
    out: dict[str, tuple[int, int]] = {}
    for r in runs:
        done, total = out.get(_family(r), (0, 0))
        out[_family(r)] = (done + (seed in per_seed(res, r.name)), total + 1)
    return out


def selected_roles(
    res: Mapping, runs: Sequence, seed: int
) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    """:func:`roles`, with every selected role whose grid has not finished on ``seed`` set to
    ``None`` — a choice among part of a grid is not a selection, so the claims that use it stay
    pending — and ``{family: (finished, total)}`` of those incomplete grids."""
    sel = dict(roles(res, runs, seed))
    prog = grid_progress(res, runs, seed)
    partial = {f: dt for f, dt in prog.items() if dt[0] < dt[1]}
    for role, fam in SELECTED_FAMILY.items():
        if fam in partial:
            sel[role] = None
    return sel, partial


def role_values(res: Mapping, role_runs: Mapping[str, Any]) -> dict[str, dict[str, dict]]:
    """``{role: {metric: {seed: value in points}}}`` for :func:`ul_jax.paper.verdicts.judge`."""
    out: dict[str, dict[str, dict]] = {}
    for role, run in role_runs.items():
        if run is None:
            continue
        ps = per_seed(res, run.name)
        out[role] = {
            m: {k: 100.0 * float(v[m]) for k, v in ps.items() if v.get(m) is not None}
            for m in METRICS
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

    sel, partial = selected_roles(res, runs, TP_SELECTION_SEED)
    marks: dict[str, list[str]] = {}
    for role in ("ul_pal_sel", "ce_sel", "ce_efr_nll", "ul_fnpal_sel", "ul_fnpal_rlr_sel"):
        if sel.get(role) is not None:
            marks.setdefault(sel[role].name, []).append(
                "val NLL" if role == "ce_efr_nll" else "val top-1"
            )
    claims = setting_claims(runs[0].setting)
    extra = [
        (key, head)
        for key, head, used in (
            ("few", "few-shot test top-1 (%)", any(c.startswith("3") for c in claims)),
            ("near_auroc", "near-OOD AUROC, MSP (%)", any(c.startswith("5") for c in claims)),
        )
        if used
    ]
    rows = [
        "| model | knob | ‖h*‖ (Thm 6) | train acc, un-augmented (%) | val top-1 (%) | val loss | "
        "test top-1 (%) | test ECE (%) | mean test top-1 over the evals (%) | final test ‖h‖ | "
        + "".join(f"{h} | " for _, h in extra)
        + "seeds | selected on seed 0 by |",
        "|" + "---|" * (12 + len(extra)),
    ]
    for r in runs:
        ps = per_seed(res, r.name)
        st = res.get(r.name, {}).get("seeds", {})
        if not ps:
            steps = [
                last_value(e["curves"]).get("step")
                for e in st.values()
                if e.get("status") == "in progress" and e.get("curves")
            ]
            steps = [k for k in steps if k is not None]
            state = f"unfinished (step {max(steps):,})" if steps else ""
            rows.append(
                f"| {VARIANT_LABEL.get(r.variant, r.variant)} | {_knob(r)} | {_hstar(r)} | "
                f"{state or 'not run'} |" + " |" * (8 + len(extra))
            )
            continue
        m = ", ".join(dict.fromkeys(marks.get(r.name, []))) or ""
        rows.append(
            f"| {VARIANT_LABEL.get(r.variant, r.variant)} | {_knob(r)} | {_hstar(r)} | "
            f"{_cells(ps, 'train_acc')} | {_cells(ps, 'val_top1')} | "
            f"{_cells(ps, 'val_nll', False)} | {_cells(ps, 'top1')} | {_cells(ps, 'ece')} | "
            f"{_cells(ps, 'mean_top1')} | {_cells(ps, 'feature_norm', False)} | "
            + "".join(f"{_cells(ps, k)} | " for k, _ in extra)
            + f"{', '.join(str(k) for k in sorted(ps))} | {m} |"
        )
    vals = role_values(res, sel)
    crow = [
        "",
        "| claim | statement | comparison (paired by seed) | metric | difference (95 % CI) | "
        "rule (written before the runs) | outcome |",
        "|" + "---|" * 7,
    ]
    parts = []
    for key in claims:
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
    if any(c.startswith("5") for c in claims):
        crow += ["", *ood_table(res, sel)]
    waiting = sorted(
        f
        for f in partial
        if partial[f][0] and any(SELECTED_FAMILY.get(r) == f for r in _claim_roles(claims))
    )
    if waiting:
        note = ", ".join(
            f"{VARIANT_LABEL.get(f, f)} {partial[f][0]} of {partial[f][1]}" for f in waiting
        )
        parts.append(f"selection pending: grid incomplete on seed {TP_SELECTION_SEED} ({note})")
    verdict = f"{phase}; " + "; ".join(parts) + f"; {status_line(res, runs)}"
    return "\n".join(rows + crow), verdict


def _claim_roles(claims: Sequence[str]) -> set[str]:
    return {x for c in claims for x in (RULES[c].a, RULES[c].b)}


def ood_table(res: Mapping, sel: Mapping[str, Any]) -> list[str]:
    """Table 3's layout for the headline runs of a class-split setting: AUROC and FPR95 of
    every score (MSP / energy / ‖h‖, larger = more in-distribution) on the near- and far-OOD
    sets (mean over finished seeds), then the paired EFR − λ = 0 AUROC difference
    of each score with its 95 % interval. Descriptive: the pre-registered claim (5_ce / 5_ul)
    is the near-OOD MSP AUROC of the claim table alone."""
    shown = []
    for role in ("ce", "ce_sel", "ul_pal", "ul_pal_sel"):
        r = sel.get(role)
        if r is not None and r not in shown and per_seed(res, r.name):
            shown.append(r)
    scores = " / ".join(lab for _, lab in OOD_SCORES)
    head = "".join(
        f"{lab}: {m} ({scores}, %) | " for _, lab in OOD_SETS for m in ("AUROC", "FPR95")
    )
    rows = [
        "OOD detection, every score (descriptive; the claims above use the near-OOD MSP AUROC "
        "alone):",
        "",
        f"| model | knob | seeds | {head}",
        "|" + "---|" * (3 + 2 * len(OOD_SETS)),
    ]

    def vals(run, key) -> dict[int, float]:
        return {
            k: 100.0 * float(v["ood"][key])
            for k, v in per_seed(res, run.name).items()
            if v["ood"].get(key) is not None
        }

    for r in shown:
        cells = []
        for name, _ in OOD_SETS:
            for m in ("auroc", "fpr95"):
                per = []
                for score, _ in OOD_SCORES:
                    xs = list(vals(r, (name, score, m)).values())
                    per.append(f"{np.mean(xs):.1f}" if xs else "—")
                cells.append(" / ".join(per))
        seeds = ", ".join(str(k) for k in sorted(per_seed(res, r.name)))
        rows.append(
            f"| {VARIANT_LABEL.get(r.variant, r.variant)} | {_knob(r)} | {seeds} | "
            + "".join(f"{c} | " for c in cells)
        )
    pairs = [
        (sel.get(a), sel.get(b))
        for a, b in (("ce_sel", "ce"), ("ul_pal_sel", "ul_pal"))
        if sel.get(a) is not None and sel.get(b) is not None and sel.get(a) is not sel.get(b)
    ]
    if pairs:
        rows += [
            "",
            "| paired AUROC difference (EFR − λ = 0, pts) | "
            + "".join(f"{lab}, {s_lab} | " for _, lab in OOD_SETS for _, s_lab in OOD_SCORES),
            "|" + "---|" * (1 + len(OOD_SETS) * len(OOD_SCORES)),
        ]
        for a, b in pairs:
            cells = [
                paired_difference(vals(a, (name, score, "auroc")), vals(b, (name, score, "auroc")))
                .text()
                .replace("95 % CI ", "")
                for name, _ in OOD_SETS
                for score, _ in OOD_SCORES
            ]
            rows.append(
                f"| {VARIANT_LABEL.get(a.variant, a.variant)} {_knob(a)} − {_knob(b)} | "
                + "".join(f"{c} | " for c in cells)
            )
    return [r.rstrip() for r in rows]


def budget_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """λ across budgets (issue 23 item 5): in the b100 setting, the UL+PAL λ selected on
    validation (selection seed) at 25, 50 and 200 epochs, its Theorem-6 ‖h*‖, and the
    UL+PAL(+EFR) − CE gap with λ re-selected at each budget (the 200-epoch runs are
    ``cpu_tp_b100``'s)."""
    from ul_jax.paper.suites import TP_B100_RUNS, TP_EPOCHS, TP_SELECTION_SEED

    by_budget: dict[int, list] = {}
    for r in runs:
        by_budget.setdefault(int(r.setting.rsplit("_e", 1)[1]), []).append(r)
    by_budget[TP_EPOCHS] = [r for r in TP_B100_RUNS if _family(r) in ("ce", "ul_pal")]
    lams = sorted({_lam(r) for rs in by_budget.values() for r in rs if _family(r) == "ul_pal"})
    k = TP_SELECTION_SEED
    rows = [
        "| epochs (steps) | CE train acc, un-aug. (%) | CE test top-1 (%) | "
        + "".join(
            f"UL+PAL val top-1 at {'λ = 0' if lam == 0 else f'λ_b = {lam:.3g}'} (%) | "
            for lam in lams
        )
        + "selected λ_b | ‖h*‖ | UL+PAL(sel) test top-1 (%) | UL+PAL(sel) − CE (pts) |",
        "|" + "---|" * (7 + len(lams)),
    ]
    picks = []
    for epochs in sorted(by_budget):
        rs = by_budget[epochs]
        ce = next((r for r in rs if _family(r) == "ce" and _lam(r) == 0), None)
        ul = sorted((r for r in rs if _family(r) == "ul_pal"), key=_lam)
        cev = per_seed(res, ce.name).get(k, {}) if ce is not None else {}
        steps = (ce or ul[0]).overrides.get("num_train_steps") if (ce or ul) else "?"
        cells = []
        for lam in lams:
            r = next((r for r in ul if _lam(r) == lam), None)
            v = per_seed(res, r.name).get(k, {}).get("val_top1") if r is not None else None
            cells.append("—" if v is None else f"{100 * v:.2f}")
        sel = _pick(res, ul, "val_top1", k)
        sv = per_seed(res, sel.name).get(k, {}) if sel is not None else {}

        def pct(x):
            return "—" if x is None else f"{100 * x:.2f}"

        gap = (
            f"{100 * (sv['top1'] - cev['top1']):+.2f}"
            if sv.get("top1") is not None and cev.get("top1") is not None
            else "—"
        )
        lam_s = "—" if sel is None else ("0" if _lam(sel) == 0 else f"{_lam(sel):.3g}")
        rows.append(
            f"| {epochs} ({steps}) | {pct(cev.get('train_acc'))} | {pct(cev.get('top1'))} | "
            + "".join(f"{c} | " for c in cells)
            + f"{lam_s} | {_hstar(sel) if sel is not None else '—'} | {pct(sv.get('top1'))} | "
            f"{gap} |"
        )
        if sel is not None:
            picks.append(f"{epochs} epochs: λ_b = {lam_s} (gap {gap} pts)")
    if not picks:
        return "\n".join(rows), PENDING
    verdict = (
        f"validation-selected UL+PAL λ on seed {k}: " + "; ".join(picks) + f"; "
        f"{status_line(res, list(runs) + by_budget[TP_EPOCHS])}"
    )
    return "\n".join(rows), verdict


# figures ------------------------------------------------------------------------------------
def fig_terminal(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """Along training, for each headline role (mean over finished seeds; band: min–max): the
    un-augmented training accuracy (the terminal-phase check) and the test accuracy."""
    from ul_jax.paper.suites import TP_SELECTION_SEED

    sel, _ = selected_roles(res, runs, TP_SELECTION_SEED)
    plt = pyplot()
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


def fig_group_grad(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """The mechanism of claim 3, measured: along training, each class group's share of the
    trunk gradient ``s_G = ⟨g_G, g⟩/‖g‖²`` (solid; mean over finished seeds) against its share
    of the batch's examples (dotted), for the λ = 0 baselines and the validation-selected
    models (one panel each). A loss whose per-example gradient does not shrink as examples are
    fitted (UL with fixed prototypes) keeps ``s_G`` at the count share; one whose gradient fades
    on fitted examples (CE) shifts it toward the groups still being learned."""
    from ul_jax.paper.suites import TP_SELECTION_SEED

    sel, _ = selected_roles(res, runs, TP_SELECTION_SEED)
    shown = []
    for role in ("ce", "ce_sel", "ul_pal", "ul_pal_sel"):
        r = sel.get(role)
        if r is not None and r not in shown:
            shown.append(r)
    panels = []
    for r in shown:
        series = []
        for e in res[r.name]["seeds"].values():
            c = e.get("curves") or {}
            pts = [
                (st, g, b)
                for st, g, b in zip(
                    c.get("step", []),
                    c.get("train/trunk_grad_share", []),
                    c.get("train/group_batch_share", []),
                )
                if isinstance(g, list) and isinstance(b, list)
            ]
            if pts:
                series.append(pts)
        if series:
            n = min(len(p) for p in series)
            steps = [p[0] for p in series[0][:n]]
            g = np.mean([[p[1] for p in s_[:n]] for s_ in series], axis=0)
            b = np.mean([[p[2] for p in s_[:n]] for s_ in series], axis=0)
            panels.append((r, steps, g, b, len(series)))
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    colors = ("tab:blue", "tab:orange", "tab:red")
    for ax, (r, steps, g, b, n) in zip(axes[0], panels):
        for j, name in enumerate(GROUPS):
            ax.plot(steps, g[:, j], color=colors[j], label=f"{name}: gradient share")
            ax.plot(steps, b[:, j], color=colors[j], ls=":", label=f"{name}: batch share")
        ax.set_title(f"{VARIANT_LABEL.get(r.variant, r.variant)} {_knob(r)} (n={n})", fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("share of the trunk gradient / of the batch")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path).with_suffix(".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _setting_sections() -> dict:
    from ul_jax.paper.suites import TP_SETTINGS

    return {f"tp_{s}": terminal_section for s in TP_SETTINGS}


SECTIONS = {**_setting_sections(), "tp_budget": budget_section}
FIGURES = {
    key: ((key, fig_terminal),)
    + (((f"{key}_group_grad", fig_group_grad),) if key.startswith("tp_lt") else ())
    for key in SECTIONS
    if key != "tp_budget"
}
FIGURES["tp_budget"] = ()
