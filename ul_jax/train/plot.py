"""Training curves from ``metrics.jsonl``, drawn without TensorBoard (matplotlib, Agg canvas).

:func:`plot_curves` reads the ``metrics.jsonl`` of one or more work directories (with
:func:`ul_jax.train.read_jsonl`) and draws one panel per quantity into a PNG, every run in its
own colour (legend: the work directory's name) and the splits as line styles (train solid,
test dashed, validation dotted):

=====================  ==========================================================================
panel                  keys
=====================  ==========================================================================
loss                   ``train/loss``
accuracy               ``train/accuracy``, ``eval/accuracy`` (test), ``val/accuracy``
learning rate          ``train/lr``
mean ‖h‖               ``train/feature_norm``
cos(h, w_y)            ``eval/cos_feature_prototype`` (only if a run logged it; same below)
last BN ‖γ‖            ``train/last_bn_scale_norm``
gradient norm          ``train/grad_norm``
Theorem 6 distance     ``eval/theorem6_distance``
ECE                    ``val/ece``, ``eval/ece``
=====================  ==========================================================================

The first four panels are always drawn; the diagnostics (Fig. 19's mechanism, calibration) only
when at least one run logged them. Non-finite values (``null`` in the file) leave a gap.
:func:`write_run_curves` is what the training loop calls at the end of a run
(``WORKDIR/curves.png``); ``python -m launch.plot WORKDIR ...`` is the command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import logging
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ul_jax.train.writers import read_jsonl

__all__ = [
    "PANELS",
    "panels_for",
    "plot_curves",
    "read_curves",
    "run_labels",
    "write_run_curves",
]

# (title, ((key, split), ...), always drawn)
PANELS: tuple[tuple[str, tuple[tuple[str, str], ...], bool], ...] = (
    ("loss", (("train/loss", "train"),), True),
    (
        "accuracy",
        (("train/accuracy", "train"), ("eval/accuracy", "test"), ("val/accuracy", "val")),
        True,
    ),
    ("learning rate", (("train/lr", "train"),), True),
    ("mean ‖h‖", (("train/feature_norm", "train"),), True),
    ("cos(h, w_y)", (("eval/cos_feature_prototype", "test"),), False),
    ("last BN ‖γ‖", (("train/last_bn_scale_norm", "train"),), False),
    ("gradient norm", (("train/grad_norm", "train"),), False),
    ("Theorem 6 distance", (("eval/theorem6_distance", "test"),), False),
    ("ECE", (("val/ece", "val"), ("eval/ece", "test")), False),
)
_STYLE = {"train": "-", "test": "--", "val": ":"}

Curves = dict[str, tuple[np.ndarray, np.ndarray]]


def _number(v: object) -> float | None:
    """A JSON number as a float, ``null`` (a non-finite value) as NaN, anything else ``None``."""
    if v is None:
        return float("nan")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def read_curves(workdir: str | os.PathLike) -> Curves:
    """``{key: (steps, values)}`` of every numeric key of ``WORKDIR/metrics.jsonl`` (rows
    without the key are left out; ``null`` becomes NaN).

    Raises:
      FileNotFoundError: no ``metrics.jsonl`` in ``workdir``.
      ValueError: the file has no logged step.
    """
    path = Path(workdir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (is {workdir} a training work directory?)")
    rows = [r for r in read_jsonl(path) if isinstance(r.get("step"), int)]
    if not rows:
        raise ValueError(f"{path} has no logged step yet")
    points: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for k, v in r.items():
            x = _number(v)
            if k != "step" and x is not None:
                points.setdefault(k, []).append((r["step"], x))
    return {
        k: (np.array([s for s, _ in p], np.int64), np.array([x for _, x in p], np.float64))
        for k, p in points.items()
    }


def run_labels(workdirs: Sequence[str | os.PathLike]) -> list[str]:
    """The work directories' names, lengthened by parent folders where two would be equal
    (``runs/a/seed0``, ``runs/b/seed0`` → ``a/seed0``, ``b/seed0``)."""
    parts = [Path(os.path.abspath(w)).parts for w in workdirs]
    depth = [1] * len(parts)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clash = [
            i for i, l in enumerate(labels) if labels.count(l) > 1 and depth[i] < len(parts[i])
        ]
        if not clash:
            return labels
        for i in clash:
            depth[i] += 1


def panels_for(runs: Sequence[Curves]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """The ``(title, series)`` of :data:`PANELS` to draw for ``runs`` (:func:`read_curves`
    outputs): the four always drawn, and each diagnostic that at least one run logged."""
    return [
        (title, series)
        for title, series, always in PANELS
        if always or any(k in r for r in runs for k, _ in series)
    ]


def plot_curves(
    workdirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    labels: Sequence[str] | None = None,
) -> Path:
    """Draws the training curves of ``workdirs`` (overlaid, one colour each) into the PNG ``out``
    (parent folders are created); returns its path. Panels: the module docstring's table.

    Args:
      workdirs: one or more work directories of ``python -m launch.train``.
      out: the PNG to write.
      labels: legend entries (default :func:`run_labels`).

    Raises:
      ValueError: no work directory, labels of another length, or a ``metrics.jsonl`` with no
        logged step.
      FileNotFoundError: a work directory without ``metrics.jsonl``.
    """
    if not workdirs:
        raise ValueError("plot_curves needs at least one work directory")
    labels = list(labels) if labels is not None else run_labels(workdirs)
    if len(labels) != len(workdirs):
        raise ValueError(f"{len(labels)} labels for {len(workdirs)} work directories")
    runs = [read_curves(w) for w in workdirs]
    panels = panels_for(runs)
    ncols = 3 if len(panels) > 4 else 2
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.2 * nrows + 0.5), dpi=100)
    colors = [f"C{i % 10}" for i in range(len(runs))]
    for i, (title, series) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        drawn = set()
        for run, color in zip(runs, colors):
            for key, split in series:
                if key in run:
                    steps, values = run[key]
                    dots = "." if len(steps) <= 60 else None  # a point per log line if few
                    ax.plot(steps, values, _STYLE[split], color=color, lw=1.2, marker=dots, ms=3)
                    drawn.add(split)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        elif len(series) > 1:
            ax.legend(
                [Line2D([], [], ls=_STYLE[s], color="0.3") for _, s in series if s in drawn],
                [s for _, s in series if s in drawn],
                fontsize=7,
            )
    fig.legend(
        [Line2D([], [], color=c, lw=2) for c in colors],
        labels,
        loc="upper center",
        ncols=min(len(labels), 4),
        fontsize=8,
        frameon=False,
    )
    rows_of_legend = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.25 + 0.2 * rows_of_legend) / fig.get_figheight()))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out)
    return out


def write_run_curves(workdir: str | os.PathLike) -> Path | None:
    """``WORKDIR/curves.png`` from ``WORKDIR/metrics.jsonl``; a failure is logged as a warning
    and gives ``None`` (the end of a training run never fails on a plot)."""
    try:
        return plot_curves([workdir], Path(workdir) / "curves.png")
    except Exception as e:  # a plot must never fail the run
        logging.warning(
            "could not draw %s: %s: %s", Path(workdir) / "curves.png", type(e).__name__, e
        )
        return None
