"""Evaluation metrics of the paper, each following the field's reference definition.

Submodules:
  classification -- top-k, per-class, many/medium/few-shot (OLTR, by train counts) and MiSLAS
                    index-range groups.
  calibration    -- ECE / MCE, 15 equal-width (lo, hi] bins over max-softmax (eq. 103, MiSLAS).
  ood            -- MSP, energy and feature-norm scores; FPR95 / AUROC / AUPR with ID as
                    positives (energy_ood, Liu et al. 2020).
  collapse       -- neural collapse NC1–NC4 (Papyan et al. 2020), ETF distance (Zhu et al. 2021),
                    Fig. 19 prototype diagnostics; an adapter for the layer-peeled model.
  streaming      -- jit-able, fixed-memory accumulators with masked padding that finalize to the
                    same values as the all-at-once functions.
  plots          -- reliability diagrams and ID/OOD score histograms (Agg, PNG).

All-at-once metrics run on the host in NumPy (float64 where numerics matter) and return fractions;
per-example scores and streaming updates are pure JAX.
"""

from ul_jax.metrics.calibration import (
    DEFAULT_NUM_BINS,
    CalibrationBins,
    bin_edges,
    bin_index,
    calibration_bins,
    calibration_bins_from_confidence,
    expected_calibration_error,
    maximum_calibration_error,
)
from ul_jax.metrics.classification import (
    FEW_SHOT_THRESHOLD,
    MANY_SHOT_THRESHOLD,
    MISLAS_CLASS_RANGES,
    accuracy,
    index_range_group_accuracy,
    mean_per_class_accuracy,
    per_class_accuracy,
    shot_group_accuracy,
    topk_accuracy,
    topk_correct,
)
from ul_jax.metrics.collapse import (
    CollapseStatistics,
    collapse_from_statistics,
    collapse_statistics,
    nearest_class_center_agreement,
    neural_collapse,
    neural_collapse_ufm,
    prototype_geometry,
)
from ul_jax.metrics.ood import (
    aupr,
    auroc,
    energy_score,
    feature_norm_score,
    fpr_at_recall,
    msp_score,
    ood_metrics,
)
from ul_jax.metrics.plots import plot_ood_histograms, plot_reliability_diagram, plot_score_histogram
from ul_jax.metrics.streaming import (
    OOD_SCORE_NAMES,
    ClassificationState,
    CollapseState,
    NCCState,
    ScoreBuffer,
    classification_finalize,
    classification_init,
    classification_update,
    classification_update_from_probs,
    collapse_class_means,
    collapse_finalize,
    collapse_init,
    collapse_update,
    ncc_init,
    ncc_update,
    ood_score_update,
    score_buffer_finalize,
    score_buffer_init,
    score_buffer_update,
)

# Aliases under the names used in the paper / issue.
many_medium_few_accuracy = shot_group_accuracy

__all__ = [
    # accuracy
    "MANY_SHOT_THRESHOLD",
    "FEW_SHOT_THRESHOLD",
    "MISLAS_CLASS_RANGES",
    "topk_correct",
    "topk_accuracy",
    "accuracy",
    "per_class_accuracy",
    "mean_per_class_accuracy",
    "shot_group_accuracy",
    "many_medium_few_accuracy",
    "index_range_group_accuracy",
    # calibration
    "DEFAULT_NUM_BINS",
    "CalibrationBins",
    "bin_edges",
    "bin_index",
    "calibration_bins",
    "calibration_bins_from_confidence",
    "expected_calibration_error",
    "maximum_calibration_error",
    # ood
    "msp_score",
    "energy_score",
    "feature_norm_score",
    "fpr_at_recall",
    "auroc",
    "aupr",
    "ood_metrics",
    # collapse
    "CollapseStatistics",
    "collapse_statistics",
    "collapse_from_statistics",
    "prototype_geometry",
    "nearest_class_center_agreement",
    "neural_collapse",
    "neural_collapse_ufm",
    # streaming
    "ClassificationState",
    "classification_init",
    "classification_update",
    "classification_update_from_probs",
    "classification_finalize",
    "CollapseState",
    "collapse_init",
    "collapse_update",
    "collapse_class_means",
    "collapse_finalize",
    "NCCState",
    "ncc_init",
    "ncc_update",
    "ScoreBuffer",
    "OOD_SCORE_NAMES",
    "score_buffer_init",
    "score_buffer_update",
    "ood_score_update",
    "score_buffer_finalize",
    # plots
    "plot_reliability_diagram",
    "plot_score_histogram",
    "plot_ood_histograms",
]
