"""Out-of-distribution detection: per-example scores and threshold-free metrics.

Scores (jit-able, larger = more in-distribution):

* :func:`msp_score`: maximum softmax probability ``max_j softmax(z)_j`` (Hendrycks & Gimpel, 2017).
* :func:`energy_score`: negative free energy ``T·log Σ_j exp(z_j/T)`` (Liu et al., 2020; T = 1).
* :func:`feature_norm_score`: ``‖f(x)‖₂`` of the penultimate feature (the paper's Sec. 4.2 score).

Metrics (host NumPy), following energy_ood (Liu et al., 2020, ``utils/display_results.py``,
``get_measures(-in_score, -out_score)`` with the default ``out_as_pos=False``): the
*in-distribution* set is the positive class and a larger score means "more in-distribution".

* AUROC = ``sklearn.metrics.roc_auc_score(y, s)``; AUPR = ``average_precision_score(y, s)``
  (AUPR-In: precision/recall of the ID class), with ``y = 1`` for ID and ``0`` for OOD.
* FPR at 95 % TPR = energy_ood's ``fpr_and_fdr_at_recall(y, s, 0.95)``, reproduced exactly
  (:func:`fpr_at_recall`, whose docstring states the semantics, including where they differ from
  "the first threshold with TPR ≥ 95 %").

All metric values are fractions (the paper's tables print them × 100). energy_ood additionally
subsamples the OOD set to ``len(ID)/5`` and averages over draws; that is an evaluation protocol
choice of the caller, not part of these metrics.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import core as _core
from sklearn.metrics import average_precision_score, roc_auc_score

from ul_jax.metrics import _checks

Array = jax.Array

__all__ = [
    "msp_score",
    "energy_score",
    "feature_norm_score",
    "fpr_at_recall",
    "auroc",
    "aupr",
    "ood_metrics",
]


# --------------------------------------------------------------------------------------------
# scores (jit-able)
# --------------------------------------------------------------------------------------------
def _check_class_axis(logits) -> None:
    if jnp.ndim(logits) < 1 or jnp.shape(logits)[-1] < 1:
        raise ValueError(
            f"logits must have a trailing class axis (..., C); got logits.shape={jnp.shape(logits)}"
        )


def msp_score(logits: Array) -> Array:
    """Maximum softmax probability ``max_j exp(z_j)/Σ_k exp(z_k)``: ``(..., C) → (...)``."""
    _check_class_axis(logits)
    return jnp.max(jax.nn.softmax(logits, axis=-1), axis=-1)


def energy_score(logits: Array, temperature: float = 1.0) -> Array:
    """Energy score ``T·logsumexp(z/T)`` = −E(x; f) of Liu et al. (2020): ``(..., C) → (...)``.

    Larger = more in-distribution (energy_ood evaluates ``−E`` with ID as positives).

    Args:
      logits: ``(..., C)``.
      temperature: T > 0 (default 1).
    """
    _check_class_axis(logits)
    if not isinstance(temperature, _core.Tracer):
        t = float(temperature)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be finite and > 0; got temperature={temperature}")
    return temperature * jax.nn.logsumexp(logits / temperature, axis=-1)


def feature_norm_score(features: Array) -> Array:
    """Feature-norm score ``‖h‖₂`` over the last axis: ``(..., p) → (...)``; larger = ID."""
    if jnp.ndim(features) < 1:
        raise ValueError(
            f"features must have a feature axis (..., p); got features.shape={jnp.shape(features)}"
        )
    return jnp.linalg.norm(features, axis=-1)


# --------------------------------------------------------------------------------------------
# metrics (host)
# --------------------------------------------------------------------------------------------
def _binary_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    s = _checks.float_vector(scores, "scores").astype(np.float64)
    y = _checks.to_numpy(labels, "labels")
    if y.shape != s.shape:
        raise ValueError(f"labels.shape={y.shape} must equal scores.shape={s.shape}")
    if not np.all((y == 0) | (y == 1)):
        vals = np.unique(y[(y != 0) & (y != 1)])[:5].tolist()
        raise ValueError(f"labels must be binary (1 = in-distribution, 0 = OOD); got values {vals}")
    y = y.astype(bool)
    n_pos = int(np.sum(y))
    if n_pos == 0 or n_pos == y.size:
        which = "in-distribution (1)" if n_pos == 0 else "OOD (0)"
        raise ValueError(
            f"labels contain only one class (no {which} example); AUROC/AUPR/FPR need both"
        )
    return y, s


def fpr_at_recall(labels, scores, recall_level: float = 0.95) -> float:
    """False-positive rate at a recall (TPR) level — energy_ood's ``fpr_and_fdr_at_recall``.

    Reproduces that function exactly (an independent implementation, same semantics):

    1. Candidate thresholds are the *distinct* score values ``t``, descending; at each,
       ``TP(t) = #{positives with s ≥ t}``, ``FP(t) = #{negatives with s ≥ t}`` and
       ``recall(t) = TP(t)/#positives`` (tied scores enter together).
    2. Keep thresholds from the highest down to the first one with ``recall = 1``.
    3. Pick the threshold whose recall is *closest* to ``recall_level``:
       ``argmin_t |recall(t) − recall_level|`` (float64), ties going to the *lowest* threshold
       (energy_ood scans the reversed curve and ``np.argmin`` takes the first minimum).
    4. Return ``FP(t*)/#negatives``.

    Consequences (all intended, to match published numbers): when several thresholds share the
    chosen recall (OOD scores between two consecutive ID scores), the *lowest* one is taken, so
    those OOD scores count as false positives; the chosen recall can be *below* the level when it
    is closer (with 10 positives, recall 0.9 is picked over 1.0 because in float64
    ``|0.9 − 0.95| < |1.0 − 0.95|``). It is therefore not "FPR at the first threshold with
    TPR ≥ 95 %" (``roc_curve`` + ``argmax(tpr ≥ 0.95)``), which can be smaller.

    Args:
      labels: ``(n,)`` binary, 1 = positive (in-distribution), 0 = negative (OOD).
      scores: ``(n,)`` finite; larger = more positive.
      recall_level: in (0, 1]; default 0.95.
    """
    y, s = _binary_inputs(labels, scores)
    level = float(recall_level)
    if not 0.0 < level <= 1.0:
        raise ValueError(f"recall_level must lie in (0, 1]; got recall_level={recall_level}")
    # distinct thresholds in descending order; inverse maps each example to its threshold
    _, inverse = np.unique(-s, return_inverse=True)
    inverse = inverse.ravel()
    num_t = int(inverse.max()) + 1
    tps = np.cumsum(np.bincount(inverse, weights=y.astype(np.float64), minlength=num_t))
    fps = np.cumsum(np.bincount(inverse, weights=(~y).astype(np.float64), minlength=num_t))
    recall = tps / tps[-1]
    last = int(np.searchsorted(tps, tps[-1]))  # first threshold with recall = 1
    recall_rev = recall[last::-1]
    fps_rev = fps[last::-1]
    cutoff = int(np.argmin(np.abs(recall_rev - level)))
    return float(fps_rev[cutoff] / np.sum(~y))


def auroc(labels, scores) -> float:
    """Area under the ROC curve, positives = label 1 (``sklearn.metrics.roc_auc_score``)."""
    y, s = _binary_inputs(labels, scores)
    return float(roc_auc_score(y.astype(np.int32), s))


def aupr(labels, scores) -> float:
    """Area under the precision–recall curve of the positive (label-1) class, as average
    precision ``Σ_k (R_k − R_{k−1}) P_k`` (``sklearn.metrics.average_precision_score``)."""
    y, s = _binary_inputs(labels, scores)
    return float(average_precision_score(y.astype(np.int32), s))


def ood_metrics(id_scores, ood_scores, recall_level: float = 0.95) -> dict[str, float]:
    """FPR@95%TPR, AUROC and AUPR(-In) of in-distribution vs OOD scores (energy_ood convention).

    The in-distribution examples are the positive class; a larger score means more
    in-distribution (use :func:`msp_score`, :func:`energy_score` or :func:`feature_norm_score`).

    Args:
      id_scores: ``(n_in,)`` scores of in-distribution test examples (n_in ≥ 1).
      ood_scores: ``(n_out,)`` scores of OOD examples (n_out ≥ 1).
      recall_level: TPR level of the FPR (default 0.95 → key ``"fpr95"``).

    Returns:
      ``{"fpr95": ..., "auroc": ..., "aupr": ...}`` as fractions (the FPR key is
      ``f"fpr{round(100 * recall_level)}"``).
    """
    s_in = _checks.float_vector(id_scores, "id_scores").astype(np.float64)
    s_out = _checks.float_vector(ood_scores, "ood_scores").astype(np.float64)
    scores = np.concatenate([s_in, s_out])
    labels = np.concatenate([np.ones(s_in.size, np.int32), np.zeros(s_out.size, np.int32)])
    key = f"fpr{int(round(100 * float(recall_level)))}"
    return {
        key: fpr_at_recall(labels, scores, recall_level),
        "auroc": auroc(labels, scores),
        "aupr": aupr(labels, scores),
    }
