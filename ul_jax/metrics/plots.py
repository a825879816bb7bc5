"""Figures: reliability diagrams (Fig. 10–11) and ID-vs-OOD score histograms (Fig. 3).

Uses matplotlib's object API with the Agg canvas (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no pyplot, no global backend switch, safe in headless jobs and threads;
imported when a figure is drawn, so ``import ul_jax.metrics`` does not load matplotlib.
Each function writes one PNG and returns its path.
"""

from __future__ import annotations

import os

import numpy as np

from ul_jax.metrics import _checks
from ul_jax.metrics.calibration import CalibrationBins

__all__ = ["plot_reliability_diagram", "plot_score_histogram", "plot_ood_histograms"]


def _figure(**kw):
    """A ``matplotlib.figure.Figure`` (matplotlib imported here, on first use)."""
    from matplotlib.figure import Figure

    return Figure(**kw)


def _save(fig, path) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=fig.dpi, bbox_inches="tight")
    return path


def plot_reliability_diagram(bins: CalibrationBins, path, title: str | None = None) -> str:
    """Reliability diagram: per-bin accuracy bars ("Outputs") with the gap to the bin's mean
    confidence stacked as red hatched bars ("Gap"), the identity line, and ECE/MCE (in %).

    Args:
      bins: from :func:`~ul_jax.metrics.calibration.calibration_bins` or a streaming finalize.
      path: output PNG path (parent directories are created).
      title: optional figure title.
    """
    if not isinstance(bins, CalibrationBins):
        raise ValueError(f"bins must be a CalibrationBins; got {type(bins).__name__}")
    edges = bins.edges
    width = np.diff(edges)
    left = edges[:-1]
    filled = bins.counts > 0
    acc = np.where(filled, bins.accuracy, 0.0)
    conf = np.where(filled, bins.confidence, 0.0)

    fig = _figure(figsize=(4.2, 4.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(
        left,
        acc,
        width=width,
        align="edge",
        color="#1f77b4",
        edgecolor="black",
        linewidth=0.6,
        label="Outputs",
    )
    lo, hi = np.minimum(acc, conf), np.maximum(acc, conf)
    ax.bar(
        left[filled],
        (hi - lo)[filled],
        bottom=lo[filled],
        width=width[filled],
        align="edge",
        color="#d62728",
        alpha=0.35,
        edgecolor="#d62728",
        hatch="//",
        linewidth=0.6,
        label="Gap",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1.0)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Confidence")
    ax.set_ylabel("Accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.text(
        0.97,
        0.04,
        f"ECE = {100 * bins.ece:.2f}%\nMCE = {100 * bins.mce:.2f}%",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=9,
        bbox=dict(boxstyle="round", facecolor="white", alpha=0.8),
    )
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _draw_hist(ax, s_in, s_out, name, num_bins, id_label, ood_label):
    lo = float(min(s_in.min(), s_out.min()))
    hi = float(max(s_in.max(), s_out.max()))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, num_bins + 1)
    ax.hist(s_in, bins=edges, density=True, alpha=0.55, color="#1f77b4", label=id_label)
    ax.hist(s_out, bins=edges, density=True, alpha=0.55, color="#ff7f0e", label=ood_label)
    ax.set_xlabel(name)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)


def plot_score_histogram(
    id_scores,
    ood_scores,
    path,
    score_name: str = "energy score",
    num_bins: int = 100,
    id_label: str = "in-distribution",
    ood_label: str = "OOD (SVHN)",
    title: str | None = None,
) -> str:
    """Density histograms of one score for ID vs OOD examples on shared bins (Fig. 3 panels)."""
    s_in = _checks.float_vector(id_scores, "id_scores")
    s_out = _checks.float_vector(ood_scores, "ood_scores")
    num_bins = _checks.positive_int(num_bins, "num_bins")
    fig = _figure(figsize=(4.5, 3.2), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    _draw_hist(ax, s_in, s_out, score_name, num_bins, id_label, ood_label)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_ood_histograms(
    id_scores: dict,
    ood_scores: dict,
    path,
    names: tuple[str, ...] = ("energy", "feature_norm"),
    num_bins: int = 100,
    id_label: str = "in-distribution",
    ood_label: str = "OOD (SVHN)",
    title: str | None = None,
) -> str:
    """Side-by-side ID/OOD histograms of several scores (default: energy and feature norm, the
    two rows of Fig. 3), e.g. from :func:`~ul_jax.metrics.streaming.score_buffer_finalize`."""
    names = tuple(names)
    for n in names:
        if n not in id_scores or n not in ood_scores:
            raise ValueError(
                f"score {n!r} missing: id_scores has {sorted(id_scores)}, "
                f"ood_scores has {sorted(ood_scores)}"
            )
    num_bins = _checks.positive_int(num_bins, "num_bins")
    labels = {"energy": "energy score", "feature_norm": "feature norm ‖f(x)‖", "msp": "max softmax"}
    fig = _figure(figsize=(4.2 * len(names), 3.2), dpi=120, layout="constrained")
    for j, n in enumerate(names):
        ax = fig.add_subplot(1, len(names), j + 1)
        s_in = _checks.float_vector(id_scores[n], f"id_scores[{n!r}]")
        s_out = _checks.float_vector(ood_scores[n], f"ood_scores[{n!r}]")
        _draw_hist(ax, s_in, s_out, labels.get(n, n), num_bins, id_label, ood_label)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
