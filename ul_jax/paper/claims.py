"""The five first-pass claims: one markdown table and one mechanical verdict each.

Each ``_claimN(res, runs, seeds)`` reads the output of :func:`ul_jax.paper.results.collect` for
the runs that list the claim and returns ``(table, verdict)``. Verdicts are comparisons stated
in their text (no judgement is invented); a claim with no finished run stays :data:`PENDING`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ul_jax.paper.results import (
    FINISHED,
    SCORES,
    VARIANT_LABEL,
    fmt_num,
    fmt_pct,
    last_value,
    mean_std,
    seed_values,
    status_line,
)
from ul_jax.paper.suites import Run

CLAIMS = {
    "claim1": "Fig. 19: plain UL with a learnable linear head is unstable",
    "claim2": "Fig. 2: UL+PAL ≈ CE; UL+FNPAL with RLR converges faster than without",
    "claim3": "Table 2: EFR on long-tailed CIFAR-10",
    "claim4": "Tables 4/5, Figs. 10/11: calibration (ECE) with and without EFR",
    "claim5": "Table 3 / Fig. 3: OOD detection with and without EFR",
}
PENDING = "pending — not yet run"
EFR_PAIRS = (("ce", "ce_efr"), ("ul_pal", "ul_pal_efr"))


def _label(r: Run) -> str:
    return f"{r.name} ({VARIANT_LABEL.get(r.variant, r.variant)})"


# claim 1 ------------------------------------------------------------------------------------
def _outcome(e: Mapping) -> str:
    st = e["status"]
    if st == "nonfinite":
        d = e["status_detail"]
        tot = e.get("total_steps")
        return (
            f"non-finite at step {d['step']}"
            + (f" of {tot}" if tot else "")
            + f" ({', '.join(d.get('quantities', []))}); stopped cleanly"
        )
    if st == "complete":
        return f"finite through all {e.get('total_steps')} steps"
    return st


def _claim1(res, runs, seeds) -> tuple[str, str]:
    rows = [
        "| run | seed | outcome | last logged epoch | train acc | mean ‖h‖ (first → last) | "
        "max‖w‖/min‖w‖ | min‖w‖ | min angle (deg) |",
        "|" + "---|" * 9,
    ]
    outcomes = []
    for r in runs:
        for seed, e in res[r.name]["seeds"].items():
            c = e.get("curves")
            outcomes.append((r, e["status"]))
            last = last_value(c) if c else {}
            first_h = _first_val(c, "train/feature_norm") if c else None
            rows.append(
                f"| {r.name} | {seed} | {_outcome(e)} | {_g(last.get('train/epoch'))} | "
                f"{_g(last.get('train/accuracy'))} | {_g(first_h)} → "
                f"{_g(last.get('train/feature_norm'))} | "
                f"{_g(last.get('train/prototype_norm_ratio'))} | "
                f"{_g(last.get('train/prototype_min_norm'))} | "
                f"{_g(last.get('train/prototype_min_angle'))} |"
            )
    ul = [s for (r, s) in outcomes if r.expect_nonfinite and s in FINISHED]
    ctrl = [s for (r, s) in outcomes if not r.expect_nonfinite and s in FINISHED]
    n_nan, n_fin = sum(s == "nonfinite" for s in ul), len(ul)
    if n_fin == 0:
        verdict = PENDING
    else:
        ok = n_nan == n_fin and all(s == "complete" for s in ctrl)
        verdict = (
            f"{n_nan} of {n_fin} finished plain-UL run(s) hit a non-finite step and stopped cleanly"
        )
        if ctrl:
            verdict += (
                f"; {sum(s == 'complete' for s in ctrl)} of {len(ctrl)} control run(s) "
                f"(fixed prototypes, same lr) stayed finite"
            )
        verdict += (
            f" ({'consistent with' if ok else 'partly contradicts'} Fig. 19); "
            f"{status_line(res, runs)}"
        )
    return "\n".join(rows), verdict


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
    rows = [
        "| setting | run | final test top-1 (%) | mean test top-1 over the evals (%) | n |",
        "|---|---|---|---|---|",
    ]
    parts = []
    for setting in dict.fromkeys(r.setting for r in runs):
        final, area = {}, {}
        for r in (r for r in runs if r.setting == setting):
            f = seed_values(res, r.name, lambda s: s["top1"])
            a = [
                v
                for v in (
                    _eval_curve_mean(e)
                    for e in res[r.name]["seeds"].values()
                    if e["status"] == "complete"
                )
                if v is not None
            ]
            final[r.variant], area[r.variant] = f, a
            rows.append(f"| {r.setting} | {_label(r)} | {fmt_pct(f)} | {fmt_pct(a)} | {len(f)} |")
        if final.get("ce") and final.get("ul_pal"):
            d = 100 * (mean_std(final["ul_pal"])[0] - mean_std(final["ce"])[0])
            parts.append(
                f"{setting}: UL+PAL − CE final top-1 = {d:+.2f} pts "
                f"({'within' if abs(d) <= 2 else 'outside'} ±2 pts)"
            )
        if area.get("ul_fnpal") and area.get("ul_fnpal_rlr"):
            d = 100 * (mean_std(area["ul_fnpal_rlr"])[0] - mean_std(area["ul_fnpal"])[0])
            parts.append(
                f"{setting}: RLR − no-RLR mean eval top-1 over training = {d:+.2f} pts "
                f"({'faster with RLR' if d > 0 else 'not faster with RLR'})"
            )
    verdict = "; ".join(parts) + f"; {status_line(res, runs)}" if parts else PENDING
    return "\n".join(rows), verdict


# claims 3, 4, 5 -----------------------------------------------------------------------------
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
        va, vb = seed_values(res, a.name, getter), seed_values(res, b.name, getter)
        if not va or not vb:
            continue
        ma, mb = mean_std(va)[0], mean_std(vb)[0]
        n += 1
        wins += better(mb, ma)
        lines.append(f"{setting} {VARIANT_LABEL[a.variant]}: {100 * ma:.2f} → {100 * mb:.2f}")
    return wins, n, lines


def _claim3(res, runs, seeds) -> tuple[str, str]:
    rows = [
        "| setting | run | top-1 (%) | many (%) | medium (%) | few (%) | groups | "
        "test mean ‖h‖ | n |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        f = seed_values(res, r.name, lambda s: s["top1"])
        g = {
            k: seed_values(res, r.name, lambda s, k=k: (s["groups"] or {}).get(k))
            for k in ("many", "medium", "few")
        }
        conv = next(
            (
                e["summary"]["groups_convention"]
                for e in res[r.name]["seeds"].values()
                if "summary" in e
            ),
            None,
        )
        rows.append(
            f"| {r.setting} | {_label(r)} | "
            f"{fmt_pct(f)} | {fmt_pct(g['many'])} | {fmt_pct(g['medium'])} | "
            f"{fmt_pct(g['few'])} | {conv or '—'} | "
            f"{fmt_num(seed_values(res, r.name, lambda s: s['mean_feature_norm']))} | "
            f"{len(f)} |"
        )
    wins, n, lines = _cmp_count(res, _pairs(runs), lambda s: s["top1"], lambda b, a: b > a)
    verdict = (
        f"EFR raised top-1 in {wins} of {n} baseline/EFR pairs ({'; '.join(lines)}); "
        f"{status_line(res, runs)}"
        if n
        else PENDING
    )
    return "\n".join(rows), verdict


def _claim4(res, runs, seeds) -> tuple[str, str]:
    rows = ["| setting | run | ECE (%) | MCE (%) | top-1 (%) | n |", "|---|---|---|---|---|---|"]
    for r in runs:
        rows.append(
            f"| {r.setting} | {_label(r)} | "
            f"{fmt_pct(seed_values(res, r.name, lambda s: s['ece']))} | "
            f"{fmt_pct(seed_values(res, r.name, lambda s: s['mce']))} | "
            f"{fmt_pct(seed_values(res, r.name, lambda s: s['top1']))} | "
            f"{len(seed_values(res, r.name, lambda s: s['ece']))} |"
        )
    wins, n, lines = _cmp_count(res, _pairs(runs), lambda s: s["ece"], lambda b, a: b < a)
    verdict = (
        f"EFR lowered ECE in {wins} of {n} baseline/EFR pairs ({'; '.join(lines)}); "
        f"{status_line(res, runs)}"
        if n
        else PENDING
    )
    return "\n".join(rows), verdict


def _ood_getter(ood: str, score: str, metric: str):
    return lambda s: s["ood"].get(ood, {}).get(score, {}).get(metric)


def _claim5(res, runs, seeds) -> tuple[str, str]:
    rows = [
        "| setting | run | OOD set | FPR95 ↓ (MSP / energy / ‖h‖) | AUROC ↑ | AUPR ↑ | n |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        for ood in r.ood:
            cells = [
                " / ".join(
                    fmt_pct(seed_values(res, r.name, _ood_getter(ood, sc, metric))) for sc in SCORES
                )
                for metric in ("fpr95", "auroc", "aupr")
            ]
            n = len(seed_values(res, r.name, _ood_getter(ood, "msp", "auroc")))
            rows.append(
                f"| {r.setting} | {_label(r)} | "
                f"{ood} | {cells[0]} | {cells[1]} | {cells[2]} | {n} |"
            )
    wins = n = 0
    detail = []
    for setting, a, b in _pairs(runs):
        for ood in a.ood:
            for sc in SCORES:
                get = _ood_getter(ood, sc, "auroc")
                va, vb = seed_values(res, a.name, get), seed_values(res, b.name, get)
                if va and vb:
                    n += 1
                    wins += mean_std(vb)[0] > mean_std(va)[0]
        if any(seed_values(res, x.name, lambda s: s["top1"]) for x in (a, b)):
            detail.append(f"{setting}/{a.variant}")
    verdict = (
        f"EFR raised AUROC in {wins} of {n} (pair, OOD set, score) comparisons "
        f"(pairs: {', '.join(detail)}); {status_line(res, runs)}"
        if n
        else PENDING
    )
    return "\n".join(rows), verdict


CLAIM_FNS = {
    "claim1": _claim1,
    "claim2": _claim2,
    "claim3": _claim3,
    "claim4": _claim4,
    "claim5": _claim5,
}
