"""The text at the end of ``python -m launch.train``: :func:`format_train_summary`.

What a researcher needs once a run stops: the final metrics rounded as one reads them
(accuracies and ECE in % to 2 decimals, losses and norms to 4 significant digits), the wall time
and training throughput, the files of the work directory (what each is, how to look at it) and
the next command. The number formats (:func:`fmt_pct`, :func:`fmt_sig`, :func:`fmt_duration`,
:func:`fmt_rate`) and :func:`format_files` live in :mod:`ul_jax.console` (shared with the
evaluation and reproduction summaries; re-exported here).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ul_jax.console import fmt_duration, fmt_pct, fmt_rate, fmt_sig, format_files

__all__ = [
    "fmt_duration",
    "fmt_pct",
    "fmt_rate",
    "fmt_sig",
    "format_files",
    "format_train_summary",
    "workdir_files",
]

EVALUATE = "python -m launch.evaluate"


def _checkpoint_steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def workdir_files(workdir: str | Path) -> list[tuple[str, str]]:
    """``(name, what it is)`` for every file of a run in ``workdir`` that exists: metrics,
    checkpoints, TensorBoard events, curves, a profiler trace, config, evaluation outputs."""
    wd = Path(workdir)
    q = shlex.quote(str(wd))
    out = []
    if (wd / "metrics.jsonl").is_file():
        out.append(("metrics.jsonl", f"the logged metrics (python -m launch.plot {q} redraws)"))
    steps = _checkpoint_steps(wd / "checkpoints")
    if steps:
        shown = ", ".join(map(str, steps))
        out.append(("checkpoints/", f"step{'s' if len(steps) > 1 else ''} {shown}"))
    if (wd / "tensorboard").is_dir():
        out.append(("tensorboard/", f"event files: tensorboard --logdir {q}"))
    if (wd / "curves.png").is_file():
        out.append(("curves.png", "training curves"))
    if (wd / "profile").is_dir():
        out.append(
            (
                "profile/",
                "jax.profiler trace (config.profile_steps): TensorBoard's profile plugin, Perfetto",
            )
        )
    if (wd / "config.json").is_file():
        out.append(("config.json", "the run's config"))
    for p in sorted(wd.glob("eval*.json")):
        out.append((p.name, f"evaluation ({EVALUATE})"))
    for p in sorted([*wd.glob("reliability*.png"), *wd.glob("ood_hist_*.png")]):
        out.append((p.name, "evaluation figure"))
    return out


def _metric_line(label: str, out: Mapping[str, Any], prefix: str) -> str | None:
    if f"{prefix}/accuracy" not in out:
        return None
    parts = [f"accuracy {fmt_pct(out[f'{prefix}/accuracy']):>8}"]
    if f"{prefix}/loss" in out:
        parts.append(f"loss {fmt_sig(out[f'{prefix}/loss'])}")
    if f"{prefix}/ece" in out:
        parts.append(f"ECE {fmt_pct(out[f'{prefix}/ece'])}")
    if f"{prefix}/feature_norm" in out:
        parts.append(f"mean ‖h‖ {fmt_sig(out[f'{prefix}/feature_norm'])}")
    return f"  {label:<10}  " + "   ".join(parts)


def format_train_summary(
    out: Mapping[str, Any], workdir: str | Path, *, wall_seconds: float | None = None
) -> str:
    """The end-of-run text of a :func:`ul_jax.train.train_and_evaluate` result ``out``: status
    (step of total, epoch, wall time, img/s), final test / validation / train metrics, the
    files of ``workdir`` and the next command."""
    step, total = int(out["step"]), out.get("total_steps")
    of = f" of {total}" if total is not None else ""
    when = []
    if wall_seconds is not None:
        when.append(f"wall time {fmt_duration(wall_seconds)}")
    if "perf/images_per_sec" in out:
        when.append(f"training {fmt_rate(float(out['perf/images_per_sec']))}")
    epoch = f" (epoch {float(out['train/epoch']):.2f})" if "train/epoch" in out else ""
    if "train/loss" not in out:
        head = f"nothing to train: the run is at step {step}{of}; evaluated its last checkpoint"
    elif total is not None and step < total:
        head = f"stopped at step {step}{of}{epoch} (--until_step), checkpoint written"
    else:
        head = f"finished: step {step}{of}{epoch}"
    lines = ["; ".join([head, *when])]
    for label, prefix in (("test", "eval"), ("validation", "val"), ("train", "train")):
        line = _metric_line(label, out, prefix)
        if line is not None:
            lines.append(line + ("   (mean of the last log interval)" if prefix == "train" else ""))
    lines += format_files(workdir, workdir_files(workdir), "files in")
    q = shlex.quote(str(workdir))
    if total is not None and step < total and "train/loss" in out:
        lines.append("next: the same command without --until_step continues the run")
    lines.append(f"next: {EVALUATE} --workdir {q}   (accuracy groups, calibration, NC, OOD)")
    return "\n".join(lines)
