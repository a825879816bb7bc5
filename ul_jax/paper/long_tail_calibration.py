"""Long-tailed and calibration sections (claims 3/4; the second pass of docs/REPRODUCTION.md):
CIFAR-10-LT ρ = 100 at the paper's 200 epochs, and calibration in the terminal phase.

Runs (:mod:`ul_jax.paper.suites`): ``LT_SWEEP_RUNS`` / ``LT_RUNS`` / ``CALIB_RUNS``, all with the
balanced 500-per-class validation split held out *before* the long-tailed (or capped) training
subset is drawn, so validation is balanced like the test set and never overlaps training.

* ``lt_sweep``: λ of CE+EFR and UL+PAL+EFR chosen by validation top-1 at a shortened budget
  (:data:`~ul_jax.paper.suites.LT_SWEEP_STEPS`), λ = 0 a candidate;
* ``lt``: the 200-epoch runs — test top-1, many/medium/few (MiSLAS index ranges of the 10
  classes: 0–2 / 3–6 / 7–9, i.e. ≥ 969 / 125–581 / ≤ 75 training images here), ECE/MCE
  (15 bins), far-OOD AUROC, the head/tail feature norms; runs still training appear as
  **partial** rows with their last evaluation and step;
* ``calib``: CE against CE+EFR on a balanced 100-per-class subset trained for 200 epochs into
  the terminal phase; λ chosen by the **lowest validation NLL** (``val/loss`` of CE: a proper
  scoring rule, so an over-regularized model that predicts the uniform distribution — ECE ≈ 0 at
  chance accuracy — cannot win, as it could on the validation ECE), ECE/MCE/top-1
  reported on the test set, with the final training accuracy that shows the phase was reached.

Figures: ``<suite>_lt_classes.png`` (per-class test accuracy and mean test ‖h‖, head → tail)
and ``<suite>_calib_reliability.png`` (reliability diagrams of CE and the selected CE+EFR).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ul_jax.objectives import efr_feature_target_scale
from ul_jax.paper.claims import PENDING
from ul_jax.paper.figures import pyplot
from ul_jax.paper.results import last_value, mean_std, seed_values, status_line
from ul_jax.paper.validation_sweeps import (
    BATCH,
    NUM_CLASSES,
    column,
    finished_finals,
    fmt_cell,
    run_lambda,
    select,
    variant_label,
)

# in-loop keys these sections read (the report adds them to the collected curves)
CURVE_KEYS = (
    "train/accuracy",
    "val/ece",
    "eval/ece",
    "eval/class_feature_norm",
    "eval/class_prediction_share",
    "eval/loss",
    "val/loss",
)
FAR_OOD = "digits_far_ood"


def _family(run) -> str:
    return "ul_pal" if run.variant.startswith("ul_pal") else "ce"


def _hstar(run) -> str:
    if _family(run) != "ul_pal":
        return "—"
    lam = run_lambda(run)
    return f"{efr_feature_target_scale(lam, BATCH, NUM_CLASSES):.3g}" if lam else "∞"


def _summ(res: Mapping, name: str, getter) -> list[float]:
    return seed_values(res, name, getter)


def lt_sweep_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """λ grid per loss with validation top-1 (selection) and test top-1 (reported only)."""
    rows = [
        "| loss | λ_b (batch sum, B=128) | ‖h*‖ (Thm 6) | val top-1 (%) | test top-1 (%) | "
        "final test ‖h‖ | n |",
        "|---|---|---|---|---|---|---|",
    ]
    parts = []
    for fam, label in (("ul_pal", "UL+PAL"), ("ce", "CE")):
        fr = sorted((r for r in runs if _family(r) == fam), key=run_lambda)
        if not fr:
            continue
        best = select(res, fr)
        for r in fr:
            fin = finished_finals(res, r.name)
            mark = " **← selected on val**" if r is best else ""
            rows.append(
                f"| {label} | {run_lambda(r):.3g}{' (vanilla)' if not run_lambda(r) else ''} | "
                f"{_hstar(r)} | {fmt_cell(column(fin, 'val/accuracy'), True)}{mark} | "
                f"{fmt_cell(column(fin, 'top1'), True)} | {fmt_cell(column(fin, 'eval/feature_norm'))} | "
                f"{len(fin)} |"
            )
        if best is not None:
            parts.append(f"{label}: λ_b = {run_lambda(best):.3g} selected on validation")
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else PENDING
    return "\n".join(rows), verdict


def _partial(res: Mapping, name: str) -> str | None:
    """``partial: step k/N, last test top-1 x %`` of the most advanced unfinished seed."""
    best = None
    for e in res.get(name, {}).get("seeds", {}).values():
        if e.get("status") == "complete" or not e.get("curves"):
            continue
        last = last_value(e["curves"])
        step, total = last.get("step"), e.get("total_steps")
        if step is None or (best is not None and step <= best[0]):
            continue
        best = (step, total, last.get("eval/accuracy"))
    if best is None:
        return None
    step, total, acc = best
    acc_s = f", last test top-1 {100 * acc:.2f} %" if acc is not None else ""
    return f"partial: step {step:,}/{total or '?':,}{acc_s}"


def _groups(res: Mapping, name: str, g: str) -> list[float]:
    return _summ(res, name, lambda s: (s.get("groups") or {}).get(g))


def _auroc(res: Mapping, name: str, score: str) -> list[float]:
    return _summ(res, name, lambda s: s["ood"].get(FAR_OOD, {}).get(score, {}).get("auroc"))


def _head_tail(res: Mapping, name: str) -> list[float]:
    """Per seed: mean test ‖h‖ of the 3 head classes / of the 3 tail classes (final eval)."""
    out = []
    for f in finished_finals(res, name):
        v = f.get("eval/class_feature_norm")
        if isinstance(v, list) and len(v) == NUM_CLASSES:
            out.append(float(np.mean(v[:3]) / np.mean(v[-3:])))
    return out


def _head_share(res: Mapping, name: str) -> list[float]:
    """Per seed: the share of (balanced) test predictions that go to the 3 head classes."""
    out = []
    for f in finished_finals(res, name):
        v = f.get("eval/class_prediction_share")
        if isinstance(v, list) and len(v) == NUM_CLASSES:
            out.append(float(np.sum(v[:3])))
    return out


def _selection_note(res: Mapping, run) -> str:
    """`` (not the validation choice: λ_b = x was)`` for an EFR run whose λ is not the one the
    finished λ sweep of its family selects (empty when it is, or when no sweep has finished)."""
    from ul_jax.paper.suites import LT_SWEEP_RUNS

    fam = [r for r in LT_SWEEP_RUNS if _family(r) == _family(run) and r.name in res]
    best = select(res, fam) if fam else None
    if best is None or run_lambda(run) == 0 or run_lambda(best) == run_lambda(run):
        return ""
    return f" (not the validation choice: λ_b = {run_lambda(best):.3g} was)"


def lt_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """The 200-epoch CIFAR-10-LT table (finished seeds; in-progress runs as partial rows)."""
    rows = [
        "| run | λ_b | test top-1 (%) | many (%) | medium (%) | few (%) | ECE (%) | MCE (%) | "
        "far-OOD AUROC MSP / energy / ‖h‖ (%) | val top-1 (%) | final train acc (%) | "
        "‖h‖ head/tail | test predictions in the 3 head classes (%; balanced: 30) | n |",
        "|" + "---|" * 14,
    ]
    tops = {}
    for r in runs:
        fin = finished_finals(res, r.name)
        top = column(fin, "top1")
        tops[r.variant] = top
        if not fin:
            p = _partial(res, r.name) or "not run"
            rows.append(
                f"| {r.name} ({variant_label(r.variant)}) | {run_lambda(r):.3g} | {p} |" + " |" * 11
            )
            continue
        ood = " / ".join(
            fmt_cell(_auroc(res, r.name, s), True) for s in ("msp", "energy", "feature_norm")
        )
        rows.append(
            f"| {r.name} ({variant_label(r.variant)}) | {run_lambda(r):.3g}{_selection_note(res, r)} | "
            f"{fmt_cell(top, True)} | "
            + " | ".join(fmt_cell(_groups(res, r.name, g), True) for g in ("many", "medium", "few"))
            + f" | {fmt_cell(_summ(res, r.name, lambda s: s['ece']), True)} | "
            f"{fmt_cell(_summ(res, r.name, lambda s: s['mce']), True)} | {ood} | "
            f"{fmt_cell(column(fin, 'val/accuracy'), True)} | "
            f"{fmt_cell(column(fin, 'train/accuracy'), True)} | {fmt_cell(_head_tail(res, r.name))} | "
            f"{fmt_cell(_head_share(res, r.name), True)} | {len(fin)} |"
        )
    parts = []
    for a, b in (
        ("ul_pal", "ce"),
        ("ul_pal_efr", "ce"),
        ("ul_pal_efr", "ul_pal"),
        ("ce_efr", "ce"),
    ):
        if tops.get(a) and tops.get(b):
            d = 100 * (mean_std(tops[a])[0] - mean_std(tops[b])[0])
            parts.append(f"{variant_label(a)} − {variant_label(b)} = {d:+.2f} pts test top-1")
    few = {r.variant: _groups(res, r.name, "few") for r in runs}
    for a, b in (("ul_pal_efr", "ce"), ("ul_pal_efr", "ul_pal")):
        if few.get(a) and few.get(b):
            d = 100 * (mean_std(few[a])[0] - mean_std(few[b])[0])
            parts.append(f"few-shot {variant_label(a)} − {variant_label(b)} = {d:+.2f} pts")
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else PENDING
    return "\n".join(rows), verdict


def calib_section(res: Mapping, runs: Sequence, seeds) -> tuple[str, str]:
    """CE vs CE+EFR in the terminal phase: λ by validation NLL; test ECE/MCE/top-1."""
    rows = [
        "| run | λ_b | final train acc (%, augmented batches) | val NLL | val ECE (%) | "
        "val top-1 (%) | test ECE (%) | test MCE (%) | test top-1 (%) | test NLL | n |",
        "|" + "---|" * 11,
    ]
    fr = sorted(runs, key=run_lambda)
    best = select(res, [r for r in fr if run_lambda(r) > 0], "val/loss", lower=True)
    base = next((r for r in fr if run_lambda(r) == 0), None)
    for r in fr:
        fin = finished_finals(res, r.name)
        if not fin:
            rows.append(
                f"| {r.name} | {run_lambda(r):.3g} | {_partial(res, r.name) or 'not run'} |"
                + " |" * 8
            )
            continue
        mark = " **← selected on val**" if r is best else ""
        rows.append(
            f"| {r.name} | {run_lambda(r):.3g} | {fmt_cell(column(fin, 'train/accuracy'), True)} | "
            f"{fmt_cell(column(fin, 'val/loss'))}{mark} | {fmt_cell(column(fin, 'val/ece'), True)} | "
            f"{fmt_cell(column(fin, 'val/accuracy'), True)} | "
            f"{fmt_cell(_summ(res, r.name, lambda s: s['ece']), True)} | "
            f"{fmt_cell(_summ(res, r.name, lambda s: s['mce']), True)} | {fmt_cell(column(fin, 'top1'), True)} | "
            f"{fmt_cell(column(fin, 'eval/loss'))} | {len(fin)} |"
        )
    parts = []
    if base is not None and best is not None:
        eb = _summ(res, base.name, lambda s: s["ece"])
        ee = _summ(res, best.name, lambda s: s["ece"])
        tr = column(finished_finals(res, base.name), "train/accuracy")
        if eb and ee:
            parts.append(
                f"CE+EFR (λ_b = {run_lambda(best):.3g}, chosen on validation NLL) − CE = "
                f"{100 * (mean_std(ee)[0] - mean_std(eb)[0]):+.2f} pts test ECE "
                f"({fmt_cell(ee, True)} vs {fmt_cell(eb, True)} %)"
            )
        if tr:
            # the augmented batches understate the fit; the un-augmented check is the
            # terminal-phase report's (ul_jax.paper.terminal, train_eval/accuracy)
            reached = float(np.mean(tr)) >= 0.99
            parts.append(
                f"CE's final train accuracy on augmented batches {fmt_cell(tr, True)} % "
                f"({'≥ 99 % on average' if reached else 'below 99 % on average'}; "
                "un-augmented: the terminal-phase report)"
            )
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else PENDING
    return "\n".join(rows), verdict


# figures ------------------------------------------------------------------------------------
def fig_lt_classes(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """Per class (0 = head … 9 = tail): test accuracy and mean test ‖h‖ (final evaluation,
    mean over finished seeds) of every 200-epoch LT run; ‖h‖ normalized by the run's mean so
    that CE and UL+PAL (different scales) share an axis."""
    plt = pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    colors = {
        "ce": "tab:blue",
        "ce_efr": "tab:cyan",
        "ul_pal": "tab:orange",
        "ul_pal_efr": "tab:red",
    }
    for r in runs:
        pcs = [
            e["summary"]["per_class"]
            for e in res[r.name]["seeds"].values()
            if (e.get("summary") or {}).get("per_class")
        ]
        lab = variant_label(r.variant) + (f" λ={run_lambda(r):.3g}" if run_lambda(r) else "")
        if pcs:
            a1.plot(
                range(NUM_CLASSES),
                100 * np.mean(pcs, 0),
                "o-",
                color=colors.get(r.variant),
                label=lab,
            )
            drawn = True
        norms = [
            np.asarray(f["eval/class_feature_norm"], float)
            for f in finished_finals(res, r.name)
            if isinstance(f.get("eval/class_feature_norm"), list)
        ]
        if norms:
            n = np.mean([v / v.mean() for v in norms], 0)
            a2.plot(range(NUM_CLASSES), n, "o-", color=colors.get(r.variant), label=lab)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    a1.set(xlabel="class (0 = head, 4,500 images … 9 = tail, 45)", ylabel="test accuracy (%)")
    a1.set_title("per-class test accuracy, CIFAR-10-LT ρ = 100, 200 epochs", fontsize=9)
    a2.set(xlabel="class (head → tail)", ylabel="class mean ‖h‖ / mean over classes")
    a2.set_title("per-class feature norm (test)", fontsize=9)
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def fig_calib(res: Mapping, runs: Sequence, path: Path) -> str | None:
    """Reliability diagrams (test, 15 bins, seed-pooled counts) of CE and of the CE+EFR run
    selected on validation NLL."""
    fr = sorted(runs, key=run_lambda)
    base = next((r for r in fr if run_lambda(r) == 0), None)
    best = select(res, [r for r in fr if run_lambda(r) > 0], "val/loss", lower=True)
    picks = [r for r in (base, best) if r is not None]
    bins = {
        r.name: [
            e["summary"]["calibration_bins"]
            for e in res[r.name]["seeds"].values()
            if e.get("summary")
        ]
        for r in picks
    }
    picks = [r for r in picks if bins[r.name]]
    if not picks:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 4), squeeze=False)
    for ax, r in zip(axes[0], picks):
        bs = bins[r.name]
        edges = np.asarray(bs[0]["bin_edges"], float)
        cnt = np.sum([np.asarray(b["bin_counts"], float) for b in bs], 0)
        acc = np.nansum(
            [
                np.nan_to_num(np.asarray(b["bin_accuracy"], float))
                * np.asarray(b["bin_counts"], float)
                for b in bs
            ],
            0,
        )
        conf = np.nansum(
            [
                np.nan_to_num(np.asarray(b["bin_confidence"], float))
                * np.asarray(b["bin_counts"], float)
                for b in bs
            ],
            0,
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            acc, conf = acc / cnt, conf / cnt
        mid = (edges[:-1] + edges[1:]) / 2
        w = np.diff(edges)
        ax.bar(
            mid,
            np.nan_to_num(acc),
            width=w,
            edgecolor="k",
            color="tab:blue",
            alpha=0.7,
            label="accuracy",
        )
        ax.bar(
            mid,
            np.nan_to_num(conf - acc),
            bottom=np.nan_to_num(acc),
            width=w,
            color="tab:red",
            alpha=0.3,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ece = _summ(res, r.name, lambda s: s["ece"])
        ax.set_title(
            f"{variant_label(r.variant)}{f' λ={run_lambda(r):.3g}' if run_lambda(r) else ''}: test ECE {fmt_cell(ece, True)} %",
            fontsize=9,
        )
        ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


SECTIONS = {"lt_sweep": lt_sweep_section, "lt": lt_section, "calib": calib_section}
FIGURES = {
    "lt_sweep": (),
    "lt": (("lt_classes.png", fig_lt_classes),),
    "calib": (("calib_reliability.png", fig_calib),),
}
