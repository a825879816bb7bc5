"""What the training loop logs besides the step's own metrics: evaluation over a split (accuracy,
loss, feature norms and the mechanism diagnostics) and the average of the batch metrics over a
log interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from ul_jax import data as uldata
from ul_jax.metrics.calibration import CalibrationBins, bin_edges
from ul_jax.train.step import host_sums

__all__ = ["BATCH_METRICS", "evaluate", "theorem6_scale_from", "summarize"]

# Averaged over the log interval; the other train metrics are reported at the logged step.
BATCH_METRICS = ("loss", "objective", "efr_term", "accuracy", "grad_norm", "feature_norm")


def _without_index(batches):
    for b in batches:
        yield {k: v for k, v in b.items() if k != "index"}


def evaluate(
    eval_fn: Callable,
    state,
    batches: Iterator[dict],
    mesh,
    *,
    prefix: str = "eval",
    theorem6_scale: float | None = None,
) -> dict[str, Any]:
    """Accuracy, mean loss, mean feature norm and the mechanism diagnostics over every (masked)
    example of ``batches``, keys ``<prefix>/...``:

    * ``ece``: the expected calibration error (15 bins, eq. 103; as the evaluation job's);
    * ``class_prediction_share``: the fraction of predictions that go to each class (a list
      of C; 1/C each on a balanced set for a classifier without class bias — a long-tailed
      model's drift toward its head classes shows here);
    * ``cos_feature_prototype``: mean cos(h_i, w_{y_i});
    * ``class_feature_norm``: the per-class mean ‖h‖ (a list of C; NaN for an absent class);
    * with ``theorem6_scale = (1+γ)/(2λB)`` (UL with fixed prototypes and EFR λΣ_batch‖h‖², see
      :func:`ul_jax.objectives.efr_feature_target`): ``theorem6_target_norm`` (mean ‖h*_c‖ of the
      stationary features ``h*_c = theorem6_scale · w_c``) and ``theorem6_distance``
      (mean over classes of ‖μ_c − h*_c‖ / ‖h*_c‖, μ_c the class-mean feature; the deep-network
      counterpart of Fig. 15).
    """
    sums = [eval_fn(state, b) for b in uldata.prefetch_to_device(_without_index(batches), 2, mesh)]
    s = host_sums(sums)
    n = max(s["count"], 1.0)
    out: dict[str, Any] = {
        f"{prefix}/accuracy": s["correct"] / n,
        f"{prefix}/loss": s["loss_sum"] / n,
        f"{prefix}/feature_norm": s["feature_norm_sum"] / n,
        f"{prefix}/count": int(s["count"]),
    }
    if "calib_count" in s and s["count"] > 0:
        out[f"{prefix}/ece"] = CalibrationBins(
            bin_edges(), s["calib_count"], s["calib_correct"], s["calib_conf_sum"]
        ).ece
    if "pred_count" in s:
        out[f"{prefix}/class_prediction_share"] = [float(x) for x in s["pred_count"] / n]
    if "class_count" not in s:
        return out
    cnt = s["class_count"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"{prefix}/cos_feature_prototype"] = s["cos_sum"] / n
        out[f"{prefix}/class_feature_norm"] = [float(x) for x in s["class_norm_sum"] / cnt]
        if theorem6_scale is not None:
            from ul_jax.train.step import classifier_weights

            w = np.asarray(jax.device_get(classifier_weights(state)), np.float64)  # (p, C)
            target = theorem6_scale * w.T  # (C, p)
            means = s["class_feature_sum"] / cnt[:, None]
            tn = np.linalg.norm(target, axis=1)
            present = cnt > 0
            out[f"{prefix}/theorem6_target_norm"] = float(tn.mean())
            out[f"{prefix}/theorem6_distance"] = float(
                np.mean(np.linalg.norm(means - target, axis=1)[present] / tn[present])
            )
    return out


def theorem6_scale_from(config, num_classes: int, num_train: int | None = None) -> float | None:
    """``(1+γ)/(2λ_bB)`` for UL with a fixed-prototype PAL head and EFR λ_b > 0 (else ``None``):
    the class-``c`` features at which the batch objective's feature gradient vanishes are
    ``h*_c = (1+γ)/(2λ_bB) · w_c`` (:func:`ul_jax.objectives.efr_feature_target_scale`). λ_b is
    the weight the step uses (:func:`ul_jax.config.effective_efr_weight`: ``objective.efr_weight``
    read in ``objective.efr_convention``, with ``num_train`` the images trained on; a
    ``dataset_sum`` λ > 0 needs it)."""
    o = config.objective
    if o.loss != "ul" or config.head.kind != "pal" or config.head.bias:
        return None
    from ul_jax.config import effective_efr_weight
    from ul_jax.objectives import efr_feature_target_scale

    lam_b = effective_efr_weight(config, num_train)
    if not lam_b:
        return None
    return efr_feature_target_scale(lam_b, config.batch_size, num_classes, o.gamma)


def summarize(interval: list[dict[str, float]], last: dict[str, np.ndarray]) -> dict[str, float]:
    """Batch metrics averaged (float64) over ``interval`` (NaN if empty: every step skipped),
    the others taken from ``last``, the logged step."""
    out = {}
    for k, v in last.items():
        if k == "nonfinite":
            continue
        if k in BATCH_METRICS:
            val = np.mean([r[k] for r in interval], dtype=np.float64) if interval else math.nan
        else:
            val = v
        out[f"train/{k}"] = float(val)
    return out
