"""Text of eval results: :func:`format_eval` (one run, ``python -m launch.evaluate``), with
:func:`format_eval_outputs` (where its JSON and figures went, the next commands),
:func:`format_report` (a Table 2/3-style comparison of runs, ``python -m launch.report``) and
:func:`run_label`."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from ul_jax.console import fmt_duration, format_files
from ul_jax.metrics import OOD_SCORE_NAMES as SCORE_NAMES  # ("msp", "energy", "feature_norm")

__all__ = ["run_label", "format_eval", "format_eval_outputs", "format_report"]


def _g(v: float | None) -> str:
    return f"{v:g}"


def run_label(result: Mapping) -> str:
    """``variant`` (or ``loss-head``) plus EFR λ and RLR, e.g. ``"ul_pal_efr (λ=1e-06)"``."""
    r = result["run"]
    name = r.get("variant") or f"{r.get('loss')}-{r.get('head')}"
    extra = []
    if r.get("efr_weight"):
        extra.append(f"λ={_g(r['efr_weight'])}{_efr_reading(r)}")
    if r.get("rlr") and "rlr" not in name:
        extra.append("RLR")
    return name + (f" ({', '.join(extra)})" if extra else "")


def _efr_reading(r: Mapping) -> str:
    """`` [dataset_sum: λ_b=…]`` for an EFR λ not stated as the batch sum (else empty)."""
    conv = r.get("efr_convention") or "batch_sum"
    if conv == "batch_sum" or r.get("efr_lambda_b") is None:
        return ""
    return f" [{conv}: λ_b={_g(r['efr_lambda_b'])}]"


def _data_label(r: Mapping) -> str:
    s = r["dataset"]
    if r.get("imbalance_ratio") is not None:
        kind = "LT" if r.get("imbalance_kind") in (None, "exp") else r["imbalance_kind"]
        s += f"-{kind} ρ={_g(r['imbalance_ratio'])}"
    return s


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.2f}"


def _f(v, fmt: str = ".4g") -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _groups(c: Mapping) -> tuple[Mapping | None, str]:
    if c.get("shot_groups"):
        return c["shot_groups"], "OLTR"
    if c.get("index_groups"):
        return c["index_groups"], "MiSLAS"
    return None, ""


def format_eval(result: Mapping) -> str:
    """A readable multi-line summary of one :func:`evaluate_run` result (percentages)."""
    r, c, cal, nc = (
        result["run"],
        result["classification"],
        result["calibration"],
        result["neural_collapse"],
    )
    t = result["test_set"]
    lines = [
        f"run      {r['workdir']}",
        f"         {run_label(result)}: loss={r['loss']} head={r['head']} "
        f"efr={_g(r['efr_weight'])}{_efr_reading(r)} rlr={r['rlr']} | {r['arch']} "
        f"x{_g(r['width_multiplier'])}, p={r['feature_dim']} | step {r['step']}",
        f"test set {_data_label(r)} {t['split']}: {t['num_examples']} images "
        f"{'x'.join(map(str, t['image_shape']))}, batch {t['batch_size']}",
        "",
        "accuracy (%)",
        f"  top-1 {_pct(c['top1'])}   top-5 {_pct(c.get('top5'))}   "
        f"mean per-class {_pct(c['mean_per_class_accuracy'])}",
    ]
    loop = result.get("train_loop_eval")
    if loop is not None:
        lines.append(f"  (training loop's eval at step {loop['step']}: {_pct(loop['accuracy'])})")
    for key, conv in (
        ("shot_groups", "OLTR, by train counts"),
        ("index_groups", "MiSLAS class-index ranges"),
    ):
        g = c.get(key)
        if g:
            lines.append(
                f"  many {_pct(g['many'])}   medium {_pct(g['medium'])}   "
                f"few {_pct(g['few'])}   ({conv})"
            )
    if not c.get("shot_groups"):
        lines.append("  many/medium/few: – (balanced training set)")
    pc = c["per_class_accuracy"]
    lines.append(
        "  per class: "
        + " ".join(_pct(v) for v in pc[:20])
        + (f" … ({len(pc)} classes)" if len(pc) > 20 else "")
    )
    lines += [
        "",
        f"calibration ({cal['num_bins']} bins): ECE {_pct(cal['ece'])}   MCE {_pct(cal['mce'])}",
        "",
        "neural collapse (test features, run's classifier W)",
        f"  NC1 {_f(nc['nc1'])}   tr(Σ_W) {_f(nc['within_class_variation'])}   "
        f"NC4 agreement {_pct(nc.get('ncc_agreement'))}%",
        f"  equinorm means/W {_f(nc['equinorm_means'])}/{_f(nc['equinorm_prototypes'])}   "
        f"equiangular means/W {_f(nc['equiangular_means'])}/{_f(nc['equiangular_prototypes'])}",
        f"  ETF distance means/W {_f(nc['etf_distance'])}/{_f(nc['etf_distance_prototypes'])}   "
        f"self-duality {_f(nc['self_duality'])}",
        f"  Fig. 19: mean ‖h‖ {_f(nc['mean_feature_norm'])}   ‖w‖ max/min "
        f"{_f(nc['max_prototype_norm'])}/{_f(nc['min_prototype_norm'])} "
        f"(ratio {_f(nc['prototype_norm_ratio'])})   min angle "
        f"{_f(nc['min_prototype_angle_deg'], '.2f')}°",
    ]
    if result.get("ood"):
        lines += ["", "OOD detection (%, ID = positive; MSP / energy T=1 / feature norm)"]
        rows = [("set", "n", "resized", "FPR95 ↓", "AUROC ↑", "AUPR ↑")]
        for name, o in result["ood"].items():
            m = o["metrics"]
            cell = lambda k: " / ".join(_pct(m[s][k]) for s in SCORE_NAMES)
            rs = f"{o['native_size'][0]}→{o['image_shape'][0]}" if o["resized"] else "no"
            rows.append(
                (name, str(o["num_examples"]), rs, cell("fpr95"), cell("auroc"), cell("aupr"))
            )
        lines += ["  " + l for l in _align(rows)]
    return "\n".join(lines)


def format_eval_outputs(result: Mapping) -> str:
    """Where an :func:`evaluate_run` result went — its JSON (``result["path"]``) and figures,
    one line each with what it shows — and the next commands (compare runs, draw curves)."""
    path = Path(result["path"])
    what = {"json": "every number above (python -m launch.report reads it)"}
    what["reliability_diagram"] = "reliability diagram (calibration)"
    files = [(path.name, what["json"])]
    for key, name in result.get("files", {}).items():
        if key == "json":
            continue
        if key.startswith("ood_hist_"):
            files.append((name, f"ID vs OOD ({key[len('ood_hist_') :]}) score histograms"))
        else:
            files.append((name, what.get(key, key)))
    workdir = shlex.quote(str(result["run"]["workdir"]))
    arg = shlex.quote(str(path)) if path.name != "eval.json" else shlex.quote(str(path.parent))
    took = (
        [f"evaluated step {result['run']['step']} in {fmt_duration(float(result['seconds']))}"]
        if "seconds" in result
        else []
    )
    return "\n".join(
        took
        + format_files(path.parent, files, "wrote to")
        + [
            f"next: python -m launch.report {arg} [OTHER_RUN ...]   (runs side by side, "
            "Tables 2-3 layout)",
            f"      python -m launch.plot {workdir}   (training curves)",
        ]
    )


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    out = ["  ".join(v.ljust(wd) for v, wd in zip(r, widths)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * wd for wd in widths))
    return out


def format_report(results: Sequence[Mapping], markdown: bool = False) -> str:
    """A Table 2/3-style comparison of several :func:`evaluate_run` results.

    Rows are runs (run directory, method label, data, step); columns top-1, many/medium/few,
    ECE, and per OOD set (in order of first appearance) FPR95 / AUROC / AUPR, each cell
    ``MSP / energy / feature norm``. All values in %; "–" where a run lacks the value.
    """
    if not results:
        raise ValueError("no eval results to report")
    ood_names: list[str] = []
    for res in results:
        for n in res.get("ood", {}):
            if n not in ood_names:
                ood_names.append(n)
    header = ["run", "method", "data", "step", "top-1", "many", "med.", "few", "ECE"]
    for n in ood_names:
        header += [f"{n} FPR95↓", f"{n} AUROC↑", f"{n} AUPR↑"]
    rows = [header]
    group_conv = set()
    for res in results:
        r, c = res["run"], res["classification"]
        groups, conv = _groups(c)
        if conv:
            group_conv.add(conv)
        row = [
            Path(r["workdir"]).name,
            run_label(res),
            _data_label(r),
            str(r["step"]),
            _pct(c["top1"]),
        ]
        row += [_pct(groups[k]) if groups else "–" for k in ("many", "medium", "few")]
        row.append(_pct(res["calibration"]["ece"]))
        for n in ood_names:
            o = res.get("ood", {}).get(n)
            for k in ("fpr95", "auroc", "aupr"):
                row.append(" / ".join(_pct(o["metrics"][s][k]) for s in SCORE_NAMES) if o else "–")
        rows.append(row)
    groups_note = {
        "OLTR": "OLTR groups by training-class counts (>100 / 20–100 / <20)",
        "MiSLAS": "MiSLAS class-index ranges",
    }
    notes = [
        "All values are percentages. many/med./few: "
        + (
            "; ".join(groups_note[g] for g in sorted(group_conv))
            if group_conv
            else "– (no long-tailed run)"
        )
        + ". ECE: 15 equal-width bins."
    ]
    if ood_names:
        notes.append(
            "OOD cells: MSP / energy (T=1) / feature norm; ID test set = positive "
            "class; FPR95 at 95% TPR."
        )
        for n in ood_names:
            desc = next(res["ood"][n]["description"] for res in results if n in res.get("ood", {}))
            notes.append(f"{n}: {desc}.")
    if markdown:
        esc = lambda s: s.replace("|", "\\|")
        lines = [
            "| " + " | ".join(esc(h) for h in rows[0]) + " |",
            "|" + "|".join(["---"] * 4 + ["---:"] * (len(rows[0]) - 4)) + "|",
        ]
        lines += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows[1:]]
        return "\n".join(lines + [""] + notes)
    return "\n".join(_align(rows) + [""] + notes)
