"""Neural-collapse geometry of last-layer features and prototypes (Papyan, Han & Donoho, 2020).

Notation: features ``h_i ∈ R^p`` with labels ``y_i``, prototypes (classifier weights)
``W = [w_1 … w_C] ∈ R^{p×C}`` and optional bias ``b``; logits ``z = Wᵀh + b``. Class means
``μ_c``, global mean ``μ_G = (1/C) Σ_c μ_c`` (the unweighted mean of class means, as in Papyan et
al.'s reference code; equal to the mean of all features for balanced classes), centered class
means ``M = [μ_1 − μ_G, …, μ_C − μ_G] ∈ R^{p×C}``, and with ``n`` examples in total::

    Σ_W = (1/n) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ          Σ_B = (1/C) M Mᵀ

Metrics (the keys of :func:`neural_collapse`'s dict; all computed in float64 on the host):

* ``nc1``: ``tr(Σ_W Σ_B⁺)/C`` with ``Σ_B⁺`` the rank-``min(C−1, p)`` pseudo-inverse (Papyan:
  ``svds(Σ_B, k=C−1)``), evaluated as ``Σ_k q_k/s_k²`` from the SVD ``M = U S Vᵀ`` with
  ``q_k = u_kᵀ Σ_W⁺ u_k`` and ``Σ_W⁺`` the nearest positive-semidefinite matrix to ``Σ_W``
  (eigenvalues clipped at 0), each ``q_k`` summed from non-negative terms, so **NC1 ≥ 0 always**
  (a float32 ``Σ_W`` built from uncentered second moments can have negative eigenvalues and
  give NC1 < 0). Singular values below ``s_max·max(p, C)·eps`` are dropped (numerical zeros).
* ``within_class_variation``: ``tr(Σ_W)``.
* ``equinorm_means`` / ``equinorm_prototypes`` (NC2): ``std(‖m_c‖)/mean(‖m_c‖)`` of the columns
  of M / W, with the unbiased std (``ddof=1``, ``torch.std`` in the reference code).
* ``equiangular_means`` / ``equiangular_prototypes`` (NC2):
  ``mean_{c≠c'} |cos(m_c, m_c') + 1/(C−1)|``.
* ``etf_distance`` (NC2): ``‖MᵀM/‖MᵀM‖_F − (I_C − 11ᵀ/C)/√(C−1)‖_F`` (both terms have unit
  Frobenius norm, so the value lies in [0, 2]; Zhu et al., 2021); ``etf_distance_prototypes`` is
  the same for ``W`` (uncentered, as their ``compute_ETF``).
* ``self_duality`` (NC3): ``‖W/‖W‖_F − M/‖M‖_F‖²_F``.
* ``ncc_agreement`` (NC4): fraction of examples whose nearest-class-center prediction
  ``argmin_c ‖h − μ_c‖₂`` equals the classifier prediction ``argmax_c (Wᵀh + b)_c``
  (``1 −`` Papyan's "NCC mismatch"). Ties go to the lower class index.
* Fig. 19 diagnostics: ``mean_feature_norm`` (``(1/n) Σ_i ‖h_i‖``), ``max_prototype_norm``,
  ``min_prototype_norm``, ``prototype_norm_ratio`` (``max_c ‖w_c‖ / min_c ‖w_c‖``) and
  ``min_prototype_angle_deg`` (``arccos max_{i≠j} cos(w_i, w_j)`` in degrees).

Every class must have at least one example. For the layer-peeled model use
:func:`neural_collapse_ufm`. For batch-wise evaluation in fixed memory use
:mod:`ul_jax.metrics.streaming`, which accumulates exactly the statistics of
:class:`CollapseStatistics` and finalizes with :func:`collapse_from_statistics`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ul_jax.metrics import _checks

__all__ = [
    "CollapseStatistics",
    "collapse_statistics",
    "collapse_from_statistics",
    "prototype_geometry",
    "nearest_class_center_agreement",
    "neural_collapse",
    "neural_collapse_ufm",
]


@dataclasses.dataclass(frozen=True)
class CollapseStatistics:
    """Sufficient statistics of the features for every NC metric except NC4.

    Attributes:
      counts: ``(C,)`` examples per class.
      means: ``(C, p)`` class means ``μ_c``.
      within_scatter: ``(p, p)`` ``Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ`` (= n·Σ_W).
      feature_norm_sum: ``Σ_i ‖h_i‖₂``.
    """

    counts: np.ndarray
    means: np.ndarray
    within_scatter: np.ndarray
    feature_norm_sum: float


def _check_prototypes(prototypes, bias=None) -> tuple[np.ndarray, np.ndarray | None]:
    w = _checks.to_numpy(prototypes, "prototypes")
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"prototypes must be (p, C) with C >= 2; got prototypes.shape={w.shape}")
    w = w.astype(np.float64)
    _checks.check_finite(w, "prototypes")
    b = None
    if bias is not None:
        b = _checks.to_numpy(bias, "bias").astype(np.float64)
        if b.shape != (w.shape[1],):
            raise ValueError(f"bias.shape={b.shape} must be (C,)=({w.shape[1]},)")
        _checks.check_finite(b, "bias")
    return w, b


def _check_features_labels(features, labels, prototypes) -> tuple[np.ndarray, np.ndarray]:
    h = _checks.float_matrix(features, "features").astype(np.float64)
    p, num_classes = prototypes.shape
    if h.shape[1] != p:
        raise ValueError(
            f"features.shape={h.shape} must be (n, p) with p={p} = prototypes.shape[0] "
            f"(prototypes.shape={prototypes.shape})"
        )
    y = _checks.int_labels(labels, h.shape[0], num_classes)
    return h, y


def _require_all_classes(counts: np.ndarray) -> None:
    missing = np.flatnonzero(counts <= 0)
    if missing.size:
        raise ValueError(
            f"every class needs at least one example for class means; {missing.size} of "
            f"{counts.size} classes have none, e.g. {missing[:10].tolist()}"
        )


def collapse_statistics(features, labels, num_classes: int) -> CollapseStatistics:
    """:class:`CollapseStatistics` of ``features (n, p)`` and ``labels (n,)`` (float64, centered)."""
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    h = _checks.float_matrix(features, "features").astype(np.float64)
    y = _checks.int_labels(labels, h.shape[0], num_classes)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    onehot = np.zeros((h.shape[0], num_classes))
    onehot[np.arange(h.shape[0]), y] = 1.0
    means = (onehot.T @ h) / np.maximum(counts, 1.0)[:, None]
    centered = h - means[y]
    return CollapseStatistics(
        counts=counts,
        means=means,
        within_scatter=centered.T @ centered,
        feature_norm_sum=float(np.sum(np.linalg.norm(h, axis=1))),
    )


def _cosines(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = v / norms
    return u.T @ u


def _equinorm(v: np.ndarray) -> float:
    norms = np.linalg.norm(v, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.std(norms, ddof=1) / np.mean(norms))


def _equiangular(v: np.ndarray) -> float:
    c = v.shape[1]
    cos = _cosines(v)
    off = ~np.eye(c, dtype=bool)
    return float(np.mean(np.abs(cos[off] + 1.0 / (c - 1))))


def _etf_distance(v: np.ndarray) -> float:
    c = v.shape[1]
    gram = v.T @ v
    target = (np.eye(c) - np.ones((c, c)) / c) / math.sqrt(c - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.linalg.norm(gram / np.linalg.norm(gram) - target))


def prototype_geometry(prototypes) -> dict[str, float]:
    """Fig. 19 prototype diagnostics of ``W (p, C)``.

    Returns:
      ``max_prototype_norm``, ``min_prototype_norm``, ``prototype_norm_ratio`` (max/min) and
      ``min_prototype_angle_deg`` = ``degrees(arccos(max_{i≠j} cos(w_i, w_j)))``.
    """
    w, _ = _check_prototypes(prototypes)
    norms = np.linalg.norm(w, axis=0)
    cos = _cosines(w)
    np.fill_diagonal(cos, -np.inf)
    max_cos = float(np.clip(np.max(cos), -1.0, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = float(np.max(norms) / np.min(norms))
    return {
        "max_prototype_norm": float(np.max(norms)),
        "min_prototype_norm": float(np.min(norms)),
        "prototype_norm_ratio": ratio,
        "min_prototype_angle_deg": (
            math.degrees(math.acos(max_cos)) if math.isfinite(max_cos) else float("nan")
        ),
    }


def collapse_from_statistics(
    stats: CollapseStatistics, prototypes, ncc_agreement: float | None = None
) -> dict[str, float]:
    """All NC metrics (module docstring) from accumulated statistics and prototypes ``(p, C)``.

    ``ncc_agreement`` (NC4 needs the class means *before* it can be counted, so it comes from a
    second pass, see :func:`ul_jax.metrics.streaming.ncc_update`) is passed through when given.
    """
    w, _ = _check_prototypes(prototypes)
    p, num_classes = w.shape
    counts = np.asarray(stats.counts, dtype=np.float64)
    means = np.asarray(stats.means, dtype=np.float64)
    scatter = np.asarray(stats.within_scatter, dtype=np.float64)
    if counts.shape != (num_classes,) or means.shape != (num_classes, p) or scatter.shape != (p, p):
        raise ValueError(
            f"statistics shapes counts={counts.shape}, means={means.shape}, "
            f"within_scatter={scatter.shape} do not match prototypes.shape={w.shape} "
            f"(expected ({num_classes},), ({num_classes}, {p}), ({p}, {p}))"
        )
    for name, arr in (("counts", counts), ("means", means), ("within_scatter", scatter)):
        _checks.check_finite(arr, f"stats.{name}")
    _require_all_classes(counts)
    n = float(np.sum(counts))

    mu_g = np.mean(means, axis=0)
    m = (means - mu_g).T  # (p, C)

    # Σ_W projected onto the PSD cone; q_k = u_kᵀ Σ_W u_k as a sum of non-negative terms.
    sym = 0.5 * (scatter + scatter.T) / n
    evals, evecs = np.linalg.eigh(sym)
    evals = np.clip(evals, 0.0, None)
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    rank = min(num_classes - 1, p)
    u, s = u[:, :rank], s[:rank]
    keep = s > (s[0] if s.size else 0.0) * max(p, num_classes) * np.finfo(np.float64).eps
    u, s = u[:, keep], s[keep]
    q = np.square(evecs.T @ u).T @ evals  # (r,)
    nc1 = float(np.sum(q / np.square(s))) if s.size else float("nan")

    with np.errstate(invalid="ignore", divide="ignore"):
        self_duality = float(np.sum(np.square(w / np.linalg.norm(w) - m / np.linalg.norm(m))))
    out = {
        "nc1": nc1,
        "within_class_variation": float(np.sum(evals)),
        "equinorm_means": _equinorm(m),
        "equinorm_prototypes": _equinorm(w),
        "equiangular_means": _equiangular(m),
        "equiangular_prototypes": _equiangular(w),
        "etf_distance": _etf_distance(m),
        "etf_distance_prototypes": _etf_distance(w),
        "self_duality": self_duality,
        "mean_feature_norm": float(stats.feature_norm_sum) / n,
        "num_examples": int(round(n)),
    }
    out.update(prototype_geometry(w))
    if ncc_agreement is not None:
        out["ncc_agreement"] = float(ncc_agreement)
    return out


def nearest_class_center_agreement(features, class_means, logits) -> float:
    """NC4: fraction of rows with ``argmin_c ‖h − μ_c‖ = argmax_c z_c`` (first index on ties).

    Args:
      features: ``(n, p)``; class_means: ``(C, p)``; logits: ``(n, C)`` of the classifier.
    """
    h = _checks.float_matrix(features, "features").astype(np.float64)
    mu = _checks.float_matrix(class_means, "class_means", min_cols=1).astype(np.float64)
    z = _checks.float_matrix(logits, "logits", min_cols=2)
    if mu.shape[1] != h.shape[1]:
        raise ValueError(f"class_means.shape={mu.shape} must be (C, p) with p={h.shape[1]}")
    if z.shape != (h.shape[0], mu.shape[0]):
        raise ValueError(f"logits.shape={z.shape} must be (n, C)=({h.shape[0]}, {mu.shape[0]})")
    # ‖h − μ_c‖² = ‖h‖² − 2hᵀμ_c + ‖μ_c‖²; ‖h‖² is constant over c.
    ncc = np.argmin(np.sum(mu * mu, axis=1)[None, :] - 2.0 * (h @ mu.T), axis=1)
    return float(np.mean(ncc == np.argmax(z, axis=1)))


def neural_collapse(features, labels, prototypes, bias=None) -> dict[str, float]:
    """Neural-collapse metrics NC1–NC4 and the Fig. 19 diagnostics (module docstring).

    Args:
      features: ``(n, p)`` penultimate features ``h_i``.
      labels: ``(n,)`` integers in ``[0, C)``; every class must occur.
      prototypes: ``(p, C)`` classifier weights ``W``.
      bias: optional ``(C,)``; the classifier for NC4 is ``argmax_c (Wᵀh + b)_c``.

    Returns:
      dict with ``nc1``, ``within_class_variation``, ``equinorm_means``, ``equinorm_prototypes``,
      ``equiangular_means``, ``equiangular_prototypes``, ``etf_distance``,
      ``etf_distance_prototypes``, ``self_duality``, ``ncc_agreement``, ``mean_feature_norm``,
      ``max_prototype_norm``, ``min_prototype_norm``, ``prototype_norm_ratio``,
      ``min_prototype_angle_deg``, ``num_examples``.
    """
    w, b = _check_prototypes(prototypes, bias)
    h, y = _check_features_labels(features, labels, w)
    stats = collapse_statistics(h, y, w.shape[1])
    _require_all_classes(stats.counts)
    logits = h @ w + (0.0 if b is None else b)
    ncc = nearest_class_center_agreement(h, stats.means, logits)
    return collapse_from_statistics(stats, w, ncc_agreement=ncc)


def neural_collapse_ufm(H, W, num_per_class: int, bias=None) -> dict[str, float]:
    """:func:`neural_collapse` for the layer-peeled model's ``H (p, C·N)`` and ``W (p, C)``.

    ``H`` is class-major: column ``c·N + i`` is example i of class c (``N = num_per_class``), i.e.
    labels ``I_C ⊗ 1_Nᵀ``.
    """
    h = _checks.to_numpy(H, "H")
    w = _checks.to_numpy(W, "W")
    n_per = _checks.positive_int(num_per_class, "num_per_class")
    if h.ndim != 2 or w.ndim != 2:
        raise ValueError(
            f"H must be (p, C*N) and W (p, C); got H.shape={h.shape}, W.shape={w.shape}"
        )
    p, num_classes = w.shape
    if h.shape != (p, num_classes * n_per):
        raise ValueError(
            f"H.shape={h.shape} must be (p, C*N)=({p}, {num_classes * n_per}) for "
            f"W.shape={w.shape} and num_per_class={n_per}"
        )
    labels = np.repeat(np.arange(num_classes), n_per)
    return neural_collapse(h.T, labels, w, bias)
