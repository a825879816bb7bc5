"""Confidence calibration: expected / maximum calibration error and reliability-diagram bins.

Convention (eq. 103 of the paper; MiSLAS ``utils/metric.py::calibration``, Zhong et al. 2021;
Guo et al. 2017). Each example's confidence is its max-softmax probability ``conf_i = max_j p_ij``
and its prediction ``argmax_j p_ij`` (first maximum). With ``B`` equal-width bins whose edges are
``np.linspace(0, 1, B + 1)`` (float64) and bin ``b = 1..B`` the half-open interval
``(e_{b-1}, e_b]`` (``np.digitize(conf, edges, right=True)``, so a confidence exactly on an edge
goes to the bin *below* it and ``conf = 1`` to the last bin)::

    ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|      MCE = max_{b: |B_b|>0} |acc(B_b) − conf(B_b)|

where ``acc(B_b)`` is the fraction of correct predictions in bin b and ``conf(B_b)`` its mean
confidence. Both are returned as *fractions* (the paper prints ECE × 100 %). Default B = 15.

Edge comparisons are exact in float64: a confidence is compared as the exact value of its own
dtype against the float64 edge (e.g. float32(0.6) = 0.6000000238… lies *above* the edge
``linspace(0, 1, 16)[9] = 0.6`` and goes to bin (0.6, 0.667]). The jit-able binning used by the
streaming accumulators (:func:`bin_index`) reproduces this exactly for float32 inputs by comparing
against the edges rounded *down* to float32.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ul_jax.metrics import _checks

Array = jax.Array

__all__ = [
    "DEFAULT_NUM_BINS",
    "CalibrationBins",
    "bin_edges",
    "bin_index",
    "calibration_bins",
    "calibration_bins_from_confidence",
    "expected_calibration_error",
    "maximum_calibration_error",
]

DEFAULT_NUM_BINS = 15


def bin_edges(num_bins: int = DEFAULT_NUM_BINS) -> np.ndarray:
    """The ``B + 1`` float64 bin edges ``np.linspace(0, 1, B + 1)``."""
    num_bins = _checks.positive_int(num_bins, "num_bins")
    return np.linspace(0.0, 1.0, num_bins + 1)


def _interior_edges_for(dtype, num_bins: int) -> np.ndarray:
    """Interior edges ``e_1..e_{B-1}`` in ``dtype`` such that ``c > e'`` ⇔ ``c > e`` (float64)
    for every ``c`` of that dtype: the edges rounded toward −∞ to ``dtype``."""
    e64 = bin_edges(num_bins)[1:-1]
    e = e64.astype(dtype)
    above = e.astype(np.float64) > e64
    e[above] = np.nextafter(e[above], np.array(-np.inf, dtype=dtype))
    return e


def bin_index(confidence: Array, num_bins: int = DEFAULT_NUM_BINS) -> Array:
    """0-based bin index of each confidence in ``(0, 1]``: ``b`` with ``e_b < c ≤ e_{b+1}``.

    jit-able; equals ``np.digitize(np.float64(c), bin_edges(num_bins), right=True) − 1`` exactly
    for float16/bfloat16/float32 (and float64 under x64). Values ``≤ 0`` map to bin 0 and
    ``> 1`` to the last bin (callers validate the range).

    Args:
      confidence: ``(...)`` floats.
    Returns:
      ``(...)`` int32.
    """
    num_bins = _checks.positive_int(num_bins, "num_bins")
    c = jnp.asarray(confidence)
    if c.dtype != jnp.float64:
        c = c.astype(jnp.float32)  # exact for float16/bfloat16
    edges = jnp.asarray(_interior_edges_for(np.dtype(c.dtype), num_bins))
    return jnp.sum(c[..., None] > edges, axis=-1).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class CalibrationBins:
    """Per-bin sufficient statistics (host NumPy) of a reliability diagram.

    Attributes:
      edges: ``(B+1,)`` float64 bin edges; bin b is ``(edges[b], edges[b+1]]``.
      counts: ``(B,)`` number of examples per bin.
      correct: ``(B,)`` number of correct predictions per bin.
      confidence_sum: ``(B,)`` sum of confidences per bin.
    """

    edges: np.ndarray
    counts: np.ndarray
    correct: np.ndarray
    confidence_sum: np.ndarray

    def __post_init__(self):
        b = self.edges.shape[0] - 1
        for name in ("counts", "correct", "confidence_sum"):
            if getattr(self, name).shape != (b,):
                raise ValueError(
                    f"{name}.shape={getattr(self, name).shape} must be ({b},) for "
                    f"edges.shape={self.edges.shape}"
                )

    @property
    def num_bins(self) -> int:
        return int(self.counts.shape[0])

    @property
    def num_examples(self) -> int:
        return int(np.sum(self.counts))

    @property
    def accuracy(self) -> np.ndarray:
        """``(B,)`` acc(B_b); NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, self.correct / np.maximum(self.counts, 1), np.nan)

    @property
    def confidence(self) -> np.ndarray:
        """``(B,)`` conf(B_b) (mean confidence); NaN for empty bins."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.counts > 0, self.confidence_sum / np.maximum(self.counts, 1), np.nan
            )

    @property
    def gaps(self) -> np.ndarray:
        """``(B,)`` |acc(B_b) − conf(B_b)|; NaN for empty bins."""
        return np.abs(self.accuracy - self.confidence)

    def _require_examples(self):
        if self.num_examples == 0:
            raise ValueError("calibration bins are empty (no examples); nothing to evaluate")

    @property
    def ece(self) -> float:
        """Expected calibration error ``Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|`` (fraction)."""
        self._require_examples()
        filled = self.counts > 0
        return float(np.sum(self.counts[filled] * self.gaps[filled]) / self.num_examples)

    @property
    def mce(self) -> float:
        """Maximum calibration error over non-empty bins (fraction)."""
        self._require_examples()
        return float(np.max(self.gaps[self.counts > 0]))

    @property
    def accuracy_overall(self) -> float:
        self._require_examples()
        return float(np.sum(self.correct) / self.num_examples)

    @property
    def confidence_overall(self) -> float:
        self._require_examples()
        return float(np.sum(self.confidence_sum) / self.num_examples)


def calibration_bins_from_confidence(
    confidence, correct, num_bins: int = DEFAULT_NUM_BINS
) -> CalibrationBins:
    """Bins from per-example confidences ``(n,)`` in ``(0, 1]`` and correctness ``(n,)`` (bool/0-1)."""
    conf = _checks.float_vector(confidence, "confidence")
    corr = _checks.to_numpy(correct, "correct")
    if corr.shape != conf.shape:
        raise ValueError(f"correct.shape={corr.shape} must equal confidence.shape={conf.shape}")
    if not np.all((corr == 0) | (corr == 1)):
        raise ValueError("correct must be boolean or 0/1")
    if np.any(conf <= 0.0) or np.any(conf > 1.0):
        raise ValueError(
            f"confidence must lie in (0, 1]; got min={conf.min():.6g}, max={conf.max():.6g}"
        )
    edges = bin_edges(num_bins)
    idx = np.digitize(conf.astype(np.float64), edges, right=True) - 1
    conf64 = conf.astype(np.float64)
    return CalibrationBins(
        edges=edges,
        counts=np.bincount(idx, minlength=num_bins).astype(np.int64),
        correct=np.bincount(idx, weights=corr.astype(np.float64), minlength=num_bins),
        confidence_sum=np.bincount(idx, weights=conf64, minlength=num_bins),
    )


def calibration_bins(probs, labels, num_bins: int = DEFAULT_NUM_BINS) -> CalibrationBins:
    """Reliability-diagram bins of max-softmax confidence (module docstring convention).

    Args:
      probs: ``(n, C)`` class probabilities (rows sum to 1; apply softmax to logits first).
      labels: ``(n,)`` integers in ``[0, C)``.
      num_bins: number of equal-width bins B (default 15).
    """
    p = _checks.float_matrix(probs, "probs", min_cols=2)
    _checks.check_probs(p, "probs")
    y = _checks.int_labels(labels, p.shape[0], p.shape[1])
    num_bins = _checks.positive_int(num_bins, "num_bins")
    conf = np.minimum(np.max(p, axis=1), np.asarray(1.0, dtype=p.dtype))  # rounding above 1
    pred = np.argmax(p, axis=1)
    return calibration_bins_from_confidence(conf, pred == y, num_bins)


def expected_calibration_error(probs, labels, num_bins: int = DEFAULT_NUM_BINS) -> float:
    """ECE, eq. (103): ``Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|`` with B equal-width bins
    ``(lo, hi]`` over the max-softmax confidence; a fraction in [0, 1].

    Args:
      probs: ``(n, C)`` probabilities; labels: ``(n,)``; num_bins: B (default 15, as MiSLAS).
    """
    return calibration_bins(probs, labels, num_bins).ece


def maximum_calibration_error(probs, labels, num_bins: int = DEFAULT_NUM_BINS) -> float:
    """MCE: ``max_b |acc(B_b) − conf(B_b)|`` over non-empty bins (same bins as the ECE)."""
    return calibration_bins(probs, labels, num_bins).mce
