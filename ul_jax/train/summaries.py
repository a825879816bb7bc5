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
from ul_jax.metrics.streaming import classification_finalize, collapse_class_means
from ul_jax.train.step import EvalSums

__all__ = ["BATCH_METRICS", "evaluate", "eval_metrics", "theorem6_scale_from", "summarize"]

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
    """One pass of ``eval_fn`` (:func:`~ul_jax.train.step.jit_eval_step`) over every (masked)
    example of ``batches``, then :func:`eval_metrics` of the sums."""
    from ul_jax.train.step import classifier_weights, init_eval_sums

    dim, num_classes = classifier_weights(state).shape  # (p, C)
    acc = init_eval_sums(num_classes, dim, mesh)
    for b in uldata.prefetch_to_device(_without_index(batches), 2, mesh):
        acc = eval_fn(acc, state, b)
    return eval_metrics(acc, state, prefix=prefix, theorem6_scale=theorem6_scale)


def eval_metrics(
    acc: EvalSums, state, *, prefix: str = "eval", theorem6_scale: float | None = None
) -> dict[str, Any]:
    """The logged metrics of an evaluation pass, keys ``<prefix>/...``. Accuracy and ``ece``
    (15 bins, eq. 103) come from
    :func:`~ul_jax.metrics.streaming.classification_finalize`, the class means and the mean
    ‖h‖ (``feature_norm``) from the neural-collapse accumulator: the evaluation job's own
    finalization, so the two report the same numbers on the same checkpoint. Besides:

    * ``loss``: mean classification loss; ``count``: examples seen;
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

    Rows whose logits or features are not finite cannot be scored: their number is logged as
    ``nonfinite_count`` and every metric but ``count`` is NaN (the evaluation job refuses such a
    checkpoint with an error instead).
    """
    s = jax.device_get(acc)
    count = int(round(float(s.count)))
    out: dict[str, Any] = {f"{prefix}/count": count}
    bad = max(int(s.classification.invalid), int(s.collapse.invalid))
    seen = int(np.sum(s.classification.class_count))
    if bad or seen == 0:
        if bad:
            out[f"{prefix}/nonfinite_count"] = bad
        for k in ("accuracy", "loss", "feature_norm", "ece", "cos_feature_prototype"):
            out[f"{prefix}/{k}"] = math.nan
        return out
    cls = classification_finalize(s.classification)
    n = float(seen)
    cnt = np.asarray(s.classification.class_count, np.float64)
    out.update(
        {
            f"{prefix}/accuracy": cls["top1"],
            f"{prefix}/loss": float(s.loss_sum) / n,
            f"{prefix}/feature_norm": float(s.collapse.feature_norm_sum) / n,
            f"{prefix}/ece": cls["ece"],
            f"{prefix}/class_prediction_share": [float(x) / n for x in s.pred_count],
            f"{prefix}/cos_feature_prototype": float(s.cos_sum) / n,
        }
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        out[f"{prefix}/class_feature_norm"] = [
            float(x) for x in np.asarray(s.class_norm_sum, np.float64) / cnt
        ]
    if theorem6_scale is not None:
        from ul_jax.train.step import classifier_weights

        w = np.asarray(jax.device_get(classifier_weights(state)), np.float64)  # (p, C)
        target = theorem6_scale * w.T  # (C, p)
        means = np.asarray(collapse_class_means(s.collapse), np.float64)
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
