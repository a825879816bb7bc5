"""The first-pass figures (matplotlib, Agg), drawn from :func:`ul_jax.paper.results.collect`.

* ``<suite>_claim1_fig19.png``: train accuracy, feature norm, prototype norm ratio, min
  prototype norm, min prototype angle vs epoch (:func:`_fig_claim1`);
* ``<suite>_claim2_accuracy.png``: test accuracy vs epoch, mean and min–max over seeds
  (:func:`claim2_figure`);
* ``<suite>_claim4_reliability.png``: reliability diagrams without / with EFR
  (:func:`_fig_claim4`);
* the per-run OOD histograms of :func:`ul_jax.eval.evaluate_run`, copied as
  ``<suite>_<run>_seed<k>_<file>`` (:func:`copy_ood_histograms`).

Each figure function returns the file name it wrote, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ul_jax.paper.results import FIG19_KEYS, VARIANT_LABEL
from ul_jax.paper.suites import Run

VARIANT_COLOR = {
    "ce": "C0",
    "ul_pal": "C1",
    "ul_fnpal": "C2",
    "ul_fnpal_rlr": "C3",
    "ce_efr": "C4",
    "ul_pal_efr": "C5",
    "ul": "C7",
}
_LOG_KEYS = ("train/feature_norm", "train/prototype_norm_ratio", "train/prototype_min_norm")


def pyplot():
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


def seed_curves(res, r: Run, key: str) -> tuple[list, np.ndarray | None]:
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


def _fig_claim1(res, runs, path: Path) -> str | None:
    curves = [
        (r.name, s, e["curves"])
        for r in runs
        for s, e in res[r.name]["seeds"].items()
        if e.get("curves")
    ]
    if not curves:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(FIG19_KEYS), figsize=(4 * len(FIG19_KEYS), 3.4))
    style = {r.name: "-" if r.expect_nonfinite else "--" for r in runs}
    for ax, (key, title) in zip(axes, FIG19_KEYS):
        for name, seed, c in curves:
            ax.plot(*_xy(c, key), style[name], label=f"{name} seed {seed}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if key in _LOG_KEYS:
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(
        "Plain UL, learnable linear head (solid; cf. Fig. 19; curves end at the last "
        "finite log) vs fixed-prototype controls (dashed)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def claim2_figure(res, runs, path: Path) -> str | None:
    settings = list(dict.fromkeys(r.setting for r in runs))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(settings), figsize=(6 * len(settings), 4), squeeze=False)
    drawn = False
    for ax, setting in zip(axes[0], settings):
        for r in (r for r in runs if r.setting == setting):
            xs, ys = seed_curves(res, r, "eval/accuracy")
            if ys is None:
                continue
            m = ys.mean(0)
            col = VARIANT_COLOR.get(r.variant)
            ax.plot(
                xs,
                m,
                marker="o",
                ms=3,
                color=col,
                label=f"{VARIANT_LABEL.get(r.variant, r.variant)} (n={len(ys)})",
            )
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


def _reliability(ax, r: Run, seed: str, s: Mapping) -> None:
    """One reliability diagram (accuracy bars, confidence gap hatched) into ``ax``."""
    b = s["calibration_bins"]
    edges = np.asarray(b["bin_edges"], float)
    acc = np.nan_to_num(np.asarray(b["bin_accuracy"], float))
    conf = np.nan_to_num(np.asarray(b["bin_confidence"], float))
    counts = np.asarray(b["bin_counts"], float)
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    acc = np.where(counts > 0, acc, 0.0)
    ax.bar(centers, acc, width=width, edgecolor="k", color="tab:blue", label="outputs")
    ax.bar(
        centers,
        np.where(counts > 0, conf - acc, 0),
        bottom=acc,
        width=width,
        color="tab:red",
        alpha=0.3,
        hatch="//",
        label="gap",
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_title(
        f"{r.setting} {VARIANT_LABEL.get(r.variant, r.variant)} s{seed}\n"
        f"ECE {100 * s['ece']:.2f}%  acc {100 * s['top1']:.1f}%",
        fontsize=8,
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)


def _fig_claim4(res, runs, path: Path) -> str | None:
    items = []
    for r in runs:
        for seed, e in res[r.name]["seeds"].items():
            if "summary" in e:
                items.append((r, seed, e["summary"]))
                break  # the first finished seed of each run
    if not items:
        return None
    plt = pyplot()
    cols = min(4, len(items))
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (r, seed, s) in zip(axes.flat, items):
        ax.axis("on")
        _reliability(ax, r, seed, s)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def copy_ood_histograms(res, runs, fig_dir: Path, suite: str, runs_dir: Path) -> list[str]:
    """Copies the OOD histograms of ``runs`` (``runs_dir/<workdir>/ood_hist_*.png``) next to
    the figures as ``<suite>_<run>_seed<k>_<file>``; returns the new names."""
    out = []
    for r in runs:
        for seed, e in res[r.name]["seeds"].items():
            for _, fname in (e.get("summary", {}).get("ood_files") or {}).items():
                src = Path(runs_dir) / e["workdir"] / fname
                if src.exists():
                    dst = fig_dir / f"{suite}_{r.name}_seed{seed}_{fname}"
                    shutil.copyfile(src, dst)
                    out.append(dst.name)
    return out


# claim → ((file name after ``<suite>_``, figure function), ...): the shape of every section's
# figures (ul_jax.paper.report.SECTIONS)
FIGURES = {
    "claim1": (("claim1_fig19.png", _fig_claim1),),
    "claim2": (("claim2_accuracy.png", claim2_figure),),
    "claim3": (),
    "claim4": (("claim4_reliability.png", _fig_claim4),),
    "claim5": (),
}
