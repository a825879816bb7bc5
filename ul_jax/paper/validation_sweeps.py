"""Knobs chosen on a validation split (the second pass of docs/REPRODUCTION.md): the EFR λ and
the FNPAL scale s.

Two groups of runs (:mod:`ul_jax.paper.suites`: ``SWEEP_RUNS``, ``SCALE_RUNS``), all trained on
45,000 CIFAR-10 images with a balanced 5,000-image validation split held out
(``data.validation_per_class = 500``):

* ``sweep``: the EFR strength λ for CE+EFR and UL+PAL+EFR, λ = 0 included ("Vanilla"). The
  table states each λ in the three normalizations the paper's text admits
  (:func:`ul_jax.objectives.efr_lambda_conventions`) and, for UL+PAL, the Theorem-6 stationary
  feature norm ``‖h*‖ = (1+γ)/(2λB)·‖w‖`` it implies; λ is **selected by mean validation
  accuracy** over the finished seeds (the test set is only reported).
* ``scale``: the FNPAL logit scale ``s`` with and without RLR; the RLR verdict is stated at the
  first pass's fixed ``s = 1`` and with ``s`` selected on validation for each variant.

Each section is ``(markdown table, mechanical verdict)``; the figures are
``<suite>_sweep.png`` (accuracy vs λ, measured vs predicted ‖h‖) and ``<suite>_mechanism.png``
(‖h‖, cos(h, w_y), the last block's BN scale norm, the gradient norm and the distance to the
Theorem-6 target along training — the deep-network counterpart of Fig. 15).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ul_jax.objectives import efr_feature_target_scale, efr_lambda_conventions
from ul_jax.paper.claims import PENDING
from ul_jax.paper.figures import claim2_figure, pyplot, seed_curves
from ul_jax.paper.results import VARIANT_LABEL, fmt_num, fmt_pct, last_value, mean_std, status_line

# CPU-suite constants the table needs (the runs' config.json holds them too; checked there)
BATCH = 128
NUM_TRAIN = 45_000
NUM_CLASSES = 10
MECH_KEYS = (
    "train/feature_norm",
    "eval/cos_feature_prototype",
    "train/last_bn_scale_norm",
    "train/grad_norm",
    "eval/theorem6_distance",
)
MECH_LABELS = (
    "mean ‖h‖ (train batches)",
    "mean cos(h_i, w_{y_i}) (test)",
    "‖γ‖ of the last block's BN scales",
    "gradient norm",
    "‖μ_c − h*_c‖ / ‖h*_c‖ (test; Theorem 6)",
)
CURVE_KEYS = ("val/accuracy", "eval/feature_norm", "val/feature_norm", *MECH_KEYS)


def finished_finals(res: Mapping, name: str) -> list[dict[str, Any]]:
    """The last logged value of every curve key, per finished (``complete``) seed."""
    out = []
    for e in res.get(name, {}).get("seeds", {}).values():
        if e.get("status") == "complete" and e.get("curves"):
            f = last_value(e["curves"])
            f["top1"] = (e.get("summary") or {}).get("top1", f.get("eval/accuracy"))
            out.append(f)
    return out


def column(finals: Sequence[Mapping], key: str) -> list[float]:
    return [float(f[key]) for f in finals if f.get(key) is not None]


def run_lambda(run) -> float:
    return float(run.overrides.get("objective.efr_weight", 0.0))


def fmt_cell(xs: Sequence[float], pct: bool = False) -> str:
    return fmt_pct(xs) if pct else fmt_num(xs)


def select(res: Mapping, runs: Sequence, key: str = "val/accuracy", lower: bool = False):
    """The run with the highest (``lower``: the lowest, e.g. ``val/ece``) mean ``key`` over its
    finished seeds (ties: the earlier run in ``runs``, i.e. the smaller λ / s); ``None`` if none
    finished. Used with validation keys only: never looks at the test set."""
    sign = -1.0 if lower else 1.0
    best, best_v = None, -np.inf
    for r in runs:
        v = column(finished_finals(res, r.name), key)
        if v and sign * np.mean(v) > best_v + 1e-12:
            best, best_v = r, sign * float(np.mean(v))
    return best


def _family(run) -> str:
    return "ul_pal" if run.variant.startswith("ul_pal") else "ce"


def sweep_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """The λ-sweep table (one block per loss) and its verdict."""
    rows = [
        "| loss | λ_b (batch sum, B=128) | λ per example (λ_b·B) | λ data-set sum (2λ_b·B/n) | "
        "paper λ at B=256, same per-example weight | ‖h*‖ (Thm 6) | val top-1 (%) | "
        "test top-1 (%) | final test ‖h‖ | Thm-6 distance | cos(h, w_y) | n |",
        "|" + "---|" * 12,
    ]
    chosen, parts = {}, []
    for fam, label in (("ul_pal", "UL+PAL"), ("ce", "CE")):
        fr = sorted((r for r in runs if _family(r) == fam), key=run_lambda)
        if not fr:
            continue
        best = select(res, fr)
        chosen[fam] = best
        for r in fr:
            fin = finished_finals(res, r.name)
            lam = run_lambda(r)
            if lam > 0:
                conv = efr_lambda_conventions(lam, BATCH, NUM_TRAIN)
                lam_cells = (
                    f"{lam:.3g} | {conv['per_example']:.3g} | "
                    f"{conv['dataset_sum']:.3g} | {lam * BATCH / 256:.3g}"
                )
                hstar = (
                    f"{efr_feature_target_scale(lam, BATCH, NUM_CLASSES):.4g}"
                    if fam == "ul_pal"
                    else "—"
                )
            else:
                lam_cells, hstar = "0 (vanilla) | 0 | 0 | 0", "∞" if fam == "ul_pal" else "—"
            mark = " **← selected on val**" if r is best else ""
            rows.append(
                f"| {label} | {lam_cells} | {hstar} | "
                f"{fmt_cell(column(fin, 'val/accuracy'), True)}{mark} | "
                f"{fmt_cell(column(fin, 'top1'), True)} | {fmt_cell(column(fin, 'eval/feature_norm'))} | "
                f"{fmt_cell(column(fin, 'eval/theorem6_distance'))} | "
                f"{fmt_cell(column(fin, 'eval/cos_feature_prototype'))} | {len(fin)} |"
            )
        vanilla = next((r for r in fr if run_lambda(r) == 0), None)
        if best is not None and vanilla is not None:
            tb = column(finished_finals(res, best.name), "top1")
            tv = column(finished_finals(res, vanilla.name), "top1")
            if tb and tv:
                parts.append(
                    f"{label}: λ_b = {run_lambda(best):.3g} selected on validation; test top-1 "
                    f"{fmt_cell(tb, True)} vs vanilla {fmt_cell(tv, True)} "
                    f"({100 * (mean_std(tb)[0] - mean_std(tv)[0]):+.2f} pts)"
                )
    if chosen.get("ul_pal") and chosen.get("ce"):
        u = column(finished_finals(res, chosen["ul_pal"].name), "top1")
        c = column(finished_finals(res, chosen["ce"].name), "top1")
        if u and c:
            parts.append(
                f"UL+PAL(+EFR) − CE(+EFR), both selected on validation: "
                f"{100 * (mean_std(u)[0] - mean_std(c)[0]):+.2f} pts test top-1"
            )
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else _pending()
    return "\n".join(rows), verdict


def _pending() -> str:
    return PENDING


def _mean_eval(e: Mapping, key: str = "eval/accuracy") -> float | None:
    c = e.get("curves") or {}
    acc = [a for a in c.get(key, []) if a is not None]
    return float(np.mean(acc)) if acc else None


def _areas(res: Mapping, name: str) -> list[float]:
    """Mean test top-1 over the evaluations (the area under the accuracy curve: a speed
    measure), per finished seed of run ``name``."""
    vals = (_mean_eval(e) for e in res[name]["seeds"].values() if e.get("status") == "complete")
    return [a for a in vals if a is not None]


def scale_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """The FNPAL-scale table (s × RLR) and the RLR verdict at fixed and at tuned s."""
    rows = [
        "| s | variant | val top-1 (%) | test top-1 (%) | mean test top-1 over the evals (%) | "
        "final test ‖h‖ | n |",
        "|---|---|---|---|---|---|---|",
    ]
    by_var: dict[str, list] = {}
    for r in sorted(runs, key=lambda r: (float(r.overrides.get("head.scale", 1.0)), r.variant)):
        by_var.setdefault(r.variant, []).append(r)
    best = {v: select(res, rs) for v, rs in by_var.items()}
    for r in sorted(runs, key=lambda r: (float(r.overrides.get("head.scale", 1.0)), r.variant)):
        fin = finished_finals(res, r.name)
        area = _areas(res, r.name)
        mark = " **← selected on val**" if best.get(r.variant) is r else ""
        rows.append(
            f"| {r.overrides.get('head.scale', 1.0):g} | {variant_label(r.variant)} | "
            f"{fmt_cell(column(fin, 'val/accuracy'), True)}{mark} | "
            f"{fmt_cell(column(fin, 'top1'), True)} | {fmt_cell(area, True)} | "
            f"{fmt_cell(column(fin, 'eval/feature_norm'))} | {len(fin)} |"
        )
    parts = []

    def cmp(a, b, what):
        fa, fb = (
            column(finished_finals(res, a.name), "top1"),
            column(finished_finals(res, b.name), "top1"),
        )
        if not fa or not fb:
            return
        aa, ab = _areas(res, a.name), _areas(res, b.name)
        parts.append(
            f"{what}: RLR − no RLR = {100 * (mean_std(fb)[0] - mean_std(fa)[0]):+.2f} "
            f"pts final test top-1, {100 * (mean_std(ab)[0] - mean_std(aa)[0]):+.2f} "
            f"pts mean over the evals"
        )

    plain, rlr = by_var.get("ul_fnpal", []), by_var.get("ul_fnpal_rlr", [])
    s1 = [
        (a, b)
        for a in plain
        for b in rlr
        if a.overrides.get("head.scale") == b.overrides.get("head.scale") == 1.0
    ]
    if s1:
        cmp(*s1[0], "s = 1 fixed")
    if best.get("ul_fnpal") and best.get("ul_fnpal_rlr"):
        cmp(
            best["ul_fnpal"],
            best["ul_fnpal_rlr"],
            f"s tuned on val (no RLR: s = {best['ul_fnpal'].overrides.get('head.scale'):g}, "
            f"RLR: s = {best['ul_fnpal_rlr'].overrides.get('head.scale'):g})",
        )
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else _pending()
    return "\n".join(rows), verdict


def variant_label(v: str) -> str:
    return VARIANT_LABEL.get(v, v)


# figures ------------------------------------------------------------------------------------
def fig_sweep(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """(a, b) validation and test top-1 vs λ for UL+PAL and CE (λ = 0 as dashed lines);
    (c) UL+PAL: final test ‖h‖ against the Theorem-6 prediction ‖h*‖ (one point per seed)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    drawn = False
    for ax, fam, label in ((axes[0], "ul_pal", "UL+PAL(+EFR)"), (axes[1], "ce", "CE(+EFR)")):
        fr = sorted((r for r in runs if _family(r) == fam), key=run_lambda)
        for key, col, name in (
            ("val/accuracy", "tab:blue", "validation"),
            ("top1", "tab:red", "test"),
        ):
            xs, ms, lo, hi = [], [], [], []
            for r in fr:
                v = column(finished_finals(res, r.name), key)
                if not v:
                    continue
                if run_lambda(r) == 0:
                    ax.axhline(
                        100 * np.mean(v), color=col, ls="--", lw=1, label=f"{name}, λ = 0 (vanilla)"
                    )
                    continue
                xs.append(run_lambda(r))
                ms.append(100 * np.mean(v))
                lo.append(100 * np.min(v))
                hi.append(100 * np.max(v))
            if xs:
                ax.plot(xs, ms, marker="o", color=col, label=f"{name} (mean; bar: min–max)")
                ax.errorbar(
                    xs,
                    ms,
                    yerr=[np.subtract(ms, lo), np.subtract(hi, ms)],
                    fmt="none",
                    color=col,
                    capsize=3,
                )
                drawn = True
        best = select(res, fr)
        if best is not None and run_lambda(best) > 0:
            ax.axvline(run_lambda(best), color="0.5", ls=":", label="selected on validation")
        ax.set_xscale("log")
        ax.set_xlabel("λ_b (EFR batch sum, B = 128)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(f"{label}: accuracy vs λ")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax = axes[2]
    pred, meas = [], []
    for r in runs:
        if _family(r) != "ul_pal" or run_lambda(r) == 0:
            continue
        h = efr_feature_target_scale(run_lambda(r), BATCH, NUM_CLASSES)
        for v in column(finished_finals(res, r.name), "eval/feature_norm"):
            pred.append(h)
            meas.append(v)
    if pred:
        ax.loglog(pred, meas, "o", color="tab:green", label="UL+PAL+EFR runs (per seed)")
        lim = [min(pred + meas) / 2, max(pred + meas) * 2]
        ax.loglog(lim, lim, "k--", lw=1, label="measured = predicted")
        for r in runs:
            if _family(r) == "ul_pal" and run_lambda(r) == 0:
                for v in column(finished_finals(res, r.name), "eval/feature_norm"):
                    ax.axhline(v, color="0.6", lw=1, ls=":")
        ax.legend(fontsize=7)
        drawn = True
    ax.set_xlabel("predicted ‖h*‖ = (1+γ)/(2λB) (Theorem 6)")
    ax.set_ylabel("final mean test ‖h‖")
    ax.set_title("Does EFR engage? (dotted: λ = 0)")
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig_mechanism(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """The mechanism along training for vanilla and validation-selected UL+PAL / CE (mean over
    seeds), and the Theorem-6 distance of every UL+PAL+EFR λ."""
    sweep = [r for r in runs if "sweep" in r.claims]
    picks = []
    for fam in ("ul_pal", "ce"):
        fr = sorted((r for r in sweep if _family(r) == fam), key=run_lambda)
        vanilla = next((r for r in fr if run_lambda(r) == 0), None)
        best = select(res, fr)
        picks += [r for r in (vanilla, best if best is not vanilla else None) if r is not None]
    if not picks:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(MECH_KEYS), figsize=(4.2 * len(MECH_KEYS), 3.8))
    colors = {
        "ul_pal": "tab:orange",
        "ul_pal_efr": "tab:red",
        "ce": "tab:blue",
        "ce_efr": "tab:cyan",
    }
    drawn = False
    for ax, key, ylab in zip(axes[:-1], MECH_KEYS[:-1], MECH_LABELS[:-1]):
        for r in picks:
            xs, ys = seed_curves(res, r, key)
            if ys is None:
                continue
            lab = variant_label(r.variant) + (f" λ={run_lambda(r):.3g}" if run_lambda(r) else "")
            ax.plot(xs, ys.mean(0), color=colors.get(r.variant), label=lab)
            drawn = True
        ax.set_xlabel("epoch")
        ax.set_title(ylab, fontsize=9)
        if key == "train/feature_norm":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    ul = sorted((r for r in sweep if _family(r) == "ul_pal" and run_lambda(r) > 0), key=run_lambda)
    cmap = plt.get_cmap("viridis")
    for i, r in enumerate(ul):
        xs, ys = seed_curves(res, r, MECH_KEYS[-1])
        if ys is None:
            continue
        ax.plot(
            xs,
            ys.mean(0),
            color=cmap(i / max(len(ul) - 1, 1)),
            marker="o",
            ms=3,
            label=f"λ={run_lambda(r):.3g}, ‖h*‖={efr_feature_target_scale(run_lambda(r), BATCH, 10):.3g}",
        )
        drawn = True
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(MECH_LABELS[-1], fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
    if not drawn:
        plt.close(fig)
        return None
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def long_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """Claim 2a at 4× the steps with the validation-selected λ: final and mean-over-training
    top-1 of CE, vanilla UL+PAL and UL+PAL+EFR, and their differences to CE."""
    rows = [
        "| run | λ_b | val top-1 (%) | test top-1 (%) | mean test top-1 over the evals (%) | "
        "final test ‖h‖ | cos(h, w_y) | n |",
        "|" + "---|" * 8,
    ]
    tops = {}
    for r in runs:
        fin = finished_finals(res, r.name)
        area = _areas(res, r.name)
        tops[r.variant] = column(fin, "top1")
        rows.append(
            f"| {r.name} ({variant_label(r.variant)}) | {run_lambda(r):.3g} | "
            f"{fmt_cell(column(fin, 'val/accuracy'), True)} | {fmt_cell(tops[r.variant], True)} | "
            f"{fmt_cell(area, True)} | {fmt_cell(column(fin, 'eval/feature_norm'))} | "
            f"{fmt_cell(column(fin, 'eval/cos_feature_prototype'))} | {len(fin)} |"
        )
    parts = []
    for v in ("ul_pal_efr", "ul_pal"):
        if tops.get(v) and tops.get("ce"):
            d = 100 * (mean_std(tops[v])[0] - mean_std(tops["ce"])[0])
            parts.append(
                f"{variant_label(v)} − CE = {d:+.2f} pts final test top-1 "
                f"({'within' if abs(d) <= 2 else 'outside'} ±2 pts)"
            )
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else _pending()
    return "\n".join(rows), verdict


def fig_long(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """Test accuracy vs epoch of the long runs (the first pass's claim-2 figure)."""
    return claim2_figure(res, runs, path)


SECTIONS = {"sweep": sweep_section, "scale": scale_section, "long": long_section}
FIGURES = {
    "sweep": (("sweep.png", fig_sweep), ("mechanism.png", fig_mechanism)),
    "scale": (),
    "long": (("long_accuracy.png", fig_long),),
}


# the paper's λ values under each normalization ---------------------------------------------
PAPER_LAMBDAS = (
    ("UL, Table 2", "ul", (1e-7, 5e-7, 1e-6, 5e-6)),
    ("UL, Table 3", "ul", (5e-7,)),
    ("CE, Tables 2/3/6", "ce", (1e-6, 5e-6, 1e-5, 5e-5)),
)
PAPER_BATCH = 256
PAPER_SETS = (
    ("CIFAR-10", 10, 50_000),
    ("CIFAR-10-LT ρ=100", 10, 12_406),
    ("CIFAR-100", 100, 50_000),
)


def conventions_table() -> str:
    """What the paper's λ values mean in each normalization at the paper's scale (batch 256,
    unit prototypes): the batch-sum λ_b we would have to use, and for UL the Theorem-6 norm
    ‖h*‖ = (1+γ)/(2λ_b B) it implies (γ = 1/(C−1)). Reading A: λ multiplies Σ_batch ‖h‖² (ours,
    the first pass's reading); B: λ multiplies mean_batch ‖h‖²; C: eq. 11's (λ/2)‖H‖²_F over the
    whole training set next to a mean loss."""
    from ul_jax.objectives import efr_weight_from

    rows = [
        "| paper λ (where) | data set (n) | A: batch sum → λ_b | ‖h*‖ (A) | "
        "B: per example → λ_b | ‖h*‖ (B) | C: data-set sum (eq. 11) → λ_b | ‖h*‖ (C) |",
        "|" + "---|" * 8,
    ]
    for where, loss, lams in PAPER_LAMBDAS:
        for name, c, n in PAPER_SETS:
            if loss == "ul" and "Table 3" in where and name != "CIFAR-10":
                continue
            for lam in lams:
                cells = []
                for conv in ("batch_sum", "per_example", "dataset_sum"):
                    lb = efr_weight_from(lam, conv, PAPER_BATCH, n)
                    h = (
                        f"{efr_feature_target_scale(lb, PAPER_BATCH, c):.3g}"
                        if loss == "ul"
                        else "—"
                    )
                    cells.append(f"{lb:.3g} | {h}")
                rows.append(f"| {lam:g} ({where}) | {name} ({n:,}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)
