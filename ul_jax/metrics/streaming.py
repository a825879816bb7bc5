"""Fixed-memory, batch-wise evaluation: accumulators whose finalized values equal the all-at-once
metrics of :mod:`classification`, :mod:`calibration`, :mod:`ood` and :mod:`collapse`.

Each accumulator is an immutable pytree (``flax.struct.dataclass``) with

* ``*_init(...)`` → an empty state,
* ``*_update(state, batch..., mask=None)`` → new state: pure and jit-able
  (``jax.jit(classification_update)``); ``mask (B,)`` marks real rows (1) vs padding (0) so a
  padded last batch can reuse the compiled step. Padded rows are sanitized before any arithmetic,
  so NaN/inf/out-of-range garbage there changes nothing.
* ``*_finalize(state, ...)`` → host-side metrics (NumPy/float64 where it matters).

Values cannot raise inside ``jit``: real rows with non-finite inputs or out-of-range labels are
*counted* in the state (``invalid``) and ``*_finalize`` raises ``ValueError`` if any were seen.

Memory: classification keeps ``O(C + B)`` counters (per-class counts/hits, top-k hits and the ECE
bin counts/hits/confidence sums); neural collapse keeps class counts, class means ``(C, p)`` and
the total within-class scatter ``(p, p)`` merged per batch with Chan et al.'s pairwise update (each
batch is centered on its own class means, so float32 accumulation stays accurate near collapse,
unlike the uncentered ``Σ hhᵀ − n μμᵀ``); OOD keeps only the scores themselves in a preallocated
``(capacity, k)`` buffer, because AUROC/AUPR/FPR95 need every score.

NC4 (nearest-class-center agreement) needs the final class means, so it is a second pass:
``collapse_*`` over the data, then ``ncc_update`` with ``collapse_class_means(state)`` — the same
two passes as Papyan et al.'s reference code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import core as _core

from ul_jax.metrics import _checks
from ul_jax.metrics import calibration as _cal
from ul_jax.metrics import classification as _acc
from ul_jax.metrics import collapse as _nc
from ul_jax.metrics import ood as _ood

Array = jax.Array

__all__ = [
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
]

_HIGHEST = jax.lax.Precision.HIGHEST  # float32 matmuls must not drop to bf16/TF32 on accelerators


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def _real_rows(mask, batch: int) -> Array:
    """``(B,)`` bool of real rows (mask ≠ 0); all True if ``mask is None``."""
    if mask is None:
        return jnp.ones((batch,), dtype=bool)
    if jnp.shape(mask) != (batch,):
        raise ValueError(f"mask.shape={jnp.shape(mask)} must be (B,)=({batch},)")
    if not isinstance(mask, _core.Tracer):
        m = np.asarray(mask)
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(
                f"mask must be 0/1 (1 = real, 0 = padding); got values {np.unique(m)[:5]}"
            )
    return jnp.asarray(mask) != 0


def _check_batch(x, name: str, ndim: int, trailing: tuple | None = None) -> None:
    shape = jnp.shape(x)
    if len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got {name}.shape={shape}")
    if trailing is not None and tuple(shape[1:]) != tuple(trailing):
        raise ValueError(f"{name}.shape={shape} must be (B, {', '.join(map(str, trailing))})")


def _check_labels_shape(labels, batch: int) -> None:
    if jnp.shape(labels) != (batch,):
        raise ValueError(f"labels.shape={jnp.shape(labels)} must be (B,)=({batch},)")
    if not jnp.issubdtype(jnp.asarray(labels).dtype, jnp.integer):
        raise ValueError(f"labels must be integers; got labels.dtype={jnp.asarray(labels).dtype}")


def _raise_invalid(count, what: str) -> None:
    count = int(count)
    if count:
        raise ValueError(f"{count} real (unmasked) row(s) had {what}; fix the inputs or the mask")


# --------------------------------------------------------------------------------------------
# classification: top-k, per-class accuracy, ECE bins
# --------------------------------------------------------------------------------------------
@struct.dataclass
class ClassificationState:
    """Counters for accuracy and calibration (all int32 except the confidence sums)."""

    class_count: Array  # (C,) examples per class
    class_correct: Array  # (C,) top-1 hits per class
    topk_correct: Array  # (K,) hits for each k in `topk`
    bin_count: Array  # (B,) examples per confidence bin
    bin_correct: Array  # (B,) correct predictions per bin
    bin_confidence: Array  # (B,) sum of confidences per bin
    invalid: Array  # () real rows with non-finite scores or bad labels
    topk: tuple = struct.field(pytree_node=False, default=(1,))
    num_bins: int = struct.field(pytree_node=False, default=_cal.DEFAULT_NUM_BINS)

    @property
    def num_classes(self) -> int:
        return int(self.class_count.shape[0])


def classification_init(
    num_classes: int,
    num_bins: int = _cal.DEFAULT_NUM_BINS,
    topk: Sequence[int] | None = None,
    dtype=jnp.float32,
) -> ClassificationState:
    """Empty :class:`ClassificationState`. ``topk=None`` means ``(1, 5)`` (``(1,)`` if C < 5)."""
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    num_bins = _checks.positive_int(num_bins, "num_bins")
    if topk is None:
        topk = (1, 5) if num_classes >= 5 else (1,)
    topk = tuple(int(k) for k in topk)
    if not topk or any(k < 1 or k > num_classes for k in topk):
        raise ValueError(
            f"topk entries must lie in [1, num_classes={num_classes}]; got topk={topk}"
        )
    zi = lambda n: jnp.zeros((n,), jnp.int32)
    return ClassificationState(
        class_count=zi(num_classes),
        class_correct=zi(num_classes),
        topk_correct=zi(len(topk)),
        bin_count=zi(num_bins),
        bin_correct=zi(num_bins),
        bin_confidence=jnp.zeros((num_bins,), dtype),
        invalid=jnp.zeros((), jnp.int32),
        topk=topk,
        num_bins=num_bins,
    )


def _classification_step(state, ranking, probs, labels, valid, invalid_rows):
    num_classes = state.num_classes
    y = labels
    w = valid.astype(jnp.int32)
    # top-k by rank with lower-index-first ties (== accuracy.topk_correct)
    z_y = jnp.take_along_axis(ranking, y[:, None], axis=1)
    lower = jnp.arange(num_classes)[None, :] < y[:, None]
    rank = jnp.sum(ranking > z_y, axis=1) + jnp.sum((ranking == z_y) & lower, axis=1)
    hits_k = jnp.stack([jnp.sum((rank < k) * w) for k in state.topk]).astype(jnp.int32)
    top1 = (rank < 1).astype(jnp.int32) * w
    onehot_y = jax.nn.one_hot(y, num_classes, dtype=jnp.int32)
    # calibration: max-softmax confidence, prediction = argmax of probs (== calibration_bins)
    conf = jnp.max(probs, axis=1)
    cal_correct = (jnp.argmax(probs, axis=1) == y).astype(jnp.int32) * w
    b = _cal.bin_index(conf, state.num_bins)
    onehot_b = jax.nn.one_hot(b, state.num_bins, dtype=jnp.int32) * w[:, None]
    cdt = state.bin_confidence.dtype
    return state.replace(
        class_count=state.class_count + jnp.sum(onehot_y * w[:, None], axis=0),
        class_correct=state.class_correct + jnp.sum(onehot_y * top1[:, None], axis=0),
        topk_correct=state.topk_correct + hits_k,
        bin_count=state.bin_count + jnp.sum(onehot_b, axis=0),
        bin_correct=state.bin_correct + jnp.sum(onehot_b * cal_correct[:, None], axis=0),
        bin_confidence=state.bin_confidence
        + jnp.sum(onehot_b.astype(cdt) * conf[:, None].astype(cdt), axis=0),
        invalid=state.invalid + jnp.sum(invalid_rows).astype(jnp.int32),
    )


def _valid_rows(x, labels, real, num_classes):
    finite = jnp.all(jnp.isfinite(x), axis=1)
    in_range = (labels >= 0) & (labels < num_classes)
    valid = real & finite & in_range
    return valid, real & ~valid


def classification_update(
    state: ClassificationState, logits: Array, labels: Array, mask: Array | None = None
) -> ClassificationState:
    """Adds a batch: ``logits (B, C)``, ``labels (B,)``, ``mask (B,)`` (1 = real, 0 = padding).

    Top-k and per-class accuracy rank the logits; the calibration bins use ``softmax(logits)``
    (computed in at least float32) exactly as :func:`~ul_jax.metrics.calibration.calibration_bins`
    does on probabilities.
    """
    _check_batch(logits, "logits", 2, (state.num_classes,))
    batch = jnp.shape(logits)[0]
    _check_labels_shape(labels, batch)
    real = _real_rows(mask, batch)
    valid, bad = _valid_rows(logits, labels, real, state.num_classes)
    z = jnp.where(valid[:, None], logits, 0)
    y = jnp.where(valid, labels, 0).astype(jnp.int32)
    probs = jax.nn.softmax(z.astype(jnp.promote_types(z.dtype, jnp.float32)), axis=1)
    return _classification_step(state, z, probs, y, valid, bad)


def classification_update_from_probs(
    state: ClassificationState, probs: Array, labels: Array, mask: Array | None = None
) -> ClassificationState:
    """As :func:`classification_update` but from probabilities ``(B, C)`` (ranked for top-k too).

    Real rows outside [0, 1] or not summing to 1 within
    :data:`~ul_jax.metrics._checks.PROB_SUM_ATOL` are counted as invalid.
    """
    _check_batch(probs, "probs", 2, (state.num_classes,))
    batch = jnp.shape(probs)[0]
    _check_labels_shape(labels, batch)
    real = _real_rows(mask, batch)
    valid, _ = _valid_rows(probs, labels, real, state.num_classes)
    p32 = jnp.where(valid[:, None], probs, 0)
    ok = (
        jnp.all(p32 >= 0, axis=1)
        & jnp.all(p32 <= 1 + _checks.PROB_SUM_ATOL, axis=1)
        & (jnp.abs(jnp.sum(p32.astype(jnp.float32), axis=1) - 1.0) <= _checks.PROB_SUM_ATOL)
    )
    valid = valid & ok
    bad = real & ~valid
    p = jnp.where(valid[:, None], probs, 1.0 / state.num_classes)
    p = jnp.minimum(p, jnp.asarray(1.0, p.dtype))
    y = jnp.where(valid, labels, 0).astype(jnp.int32)
    return _classification_step(state, p, p, y, valid, bad)


def classification_finalize(
    state: ClassificationState,
    train_class_counts=None,
    index_ranges: Mapping[str, tuple[int, int]] | str | None = None,
) -> dict:
    """Host-side metrics of a :class:`ClassificationState`.

    Args:
      train_class_counts: optional ``(C,)`` training images per class → ``"shot_groups"``
        (many/medium/few, :func:`~ul_jax.metrics.classification.shot_group_accuracy`).
      index_ranges: optional ``{name: (start, stop)}`` or ``"mislas"`` → ``"index_groups"``
        (:func:`~ul_jax.metrics.classification.index_range_group_accuracy`).

    Returns:
      ``top{k}`` for each k, ``per_class_accuracy (C,)`` (NaN for absent classes),
      ``mean_per_class_accuracy``, ``ece``, ``mce``, ``calibration_bins``
      (:class:`~ul_jax.metrics.calibration.CalibrationBins`), ``num_examples`` and the groups.
    """
    s = jax.device_get(state)
    _raise_invalid(s.invalid, "non-finite scores, invalid probabilities or labels outside [0, C)")
    n = int(np.sum(s.class_count))
    if n == 0:
        raise ValueError("no examples were accumulated (all rows masked?)")
    counts = np.asarray(s.class_count, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        hits = np.asarray(s.class_correct, np.float64)
        per_class = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    bins = _cal.CalibrationBins(
        edges=_cal.bin_edges(s.num_bins),
        counts=np.asarray(s.bin_count, np.int64),
        correct=np.asarray(s.bin_correct, np.float64),
        confidence_sum=np.asarray(s.bin_confidence, np.float64),
    )
    out = {f"top{k}": float(c) / n for k, c in zip(s.topk, np.asarray(s.topk_correct))}
    out.update(
        per_class_accuracy=per_class,
        mean_per_class_accuracy=_acc.mean_per_class_accuracy(per_class),
        ece=bins.ece,
        mce=bins.mce,
        calibration_bins=bins,
        num_examples=n,
    )
    if train_class_counts is not None:
        out["shot_groups"] = _acc.shot_group_accuracy(per_class, train_class_counts)
    if index_ranges is not None:
        if isinstance(index_ranges, str):
            if index_ranges != "mislas":
                raise ValueError(
                    f"index_ranges must be a mapping or 'mislas'; got {index_ranges!r}"
                )
            index_ranges = None
        out["index_groups"] = _acc.index_range_group_accuracy(per_class, index_ranges)
    return out


# --------------------------------------------------------------------------------------------
# neural collapse: class counts, means and within-class scatter (Chan et al. merge)
# --------------------------------------------------------------------------------------------
@struct.dataclass
class CollapseState:
    count: Array  # (C,) int32
    mean: Array  # (C, p) class means
    within_scatter: Array  # (p, p) Σ_i (h_i − μ_{y_i})(h_i − μ_{y_i})ᵀ
    feature_norm_sum: Array  # () Σ_i ‖h_i‖
    invalid: Array  # () int32


def collapse_init(num_classes: int, dim: int, dtype=jnp.float32) -> CollapseState:
    """Empty :class:`CollapseState` for C classes and p-dimensional features."""
    num_classes = _checks.positive_int(num_classes, "num_classes", minimum=2)
    dim = _checks.positive_int(dim, "dim")
    return CollapseState(
        count=jnp.zeros((num_classes,), jnp.int32),
        mean=jnp.zeros((num_classes, dim), dtype),
        within_scatter=jnp.zeros((dim, dim), dtype),
        feature_norm_sum=jnp.zeros((), dtype),
        invalid=jnp.zeros((), jnp.int32),
    )


def collapse_update(
    state: CollapseState, features: Array, labels: Array, mask: Array | None = None
) -> CollapseState:
    """Adds ``features (B, p)`` with ``labels (B,)`` (``mask (B,)``: 1 = real, 0 = padding).

    Pairwise merge (Chan, Golub & LeVeque, 1979) per class c with running ``(n_a, μ_a)`` and batch
    ``(n_b, μ_b, S_b = Σ_{i∈c} (h_i − μ_b)(h_i − μ_b)ᵀ)``, δ = μ_b − μ_a::

        μ ← μ_a + δ·n_b/(n_a+n_b)       S ← S_a + Σ_c S_b,c + Σ_c (n_a n_b/(n_a+n_b)) δ δᵀ
    """
    num_classes, dim = state.mean.shape
    _check_batch(features, "features", 2, (dim,))
    batch = jnp.shape(features)[0]
    _check_labels_shape(labels, batch)
    real = _real_rows(mask, batch)
    valid, bad = _valid_rows(features, labels, real, num_classes)
    dtype = state.mean.dtype
    h = jnp.where(valid[:, None], features, 0).astype(dtype)
    y = jnp.where(valid, labels, 0).astype(jnp.int32)
    wv = valid.astype(dtype)
    onehot = jax.nn.one_hot(y, num_classes, dtype=dtype) * wv[:, None]  # (B, C)
    n_b = jnp.sum(onehot, axis=0)  # (C,)
    mu_b = jnp.matmul(onehot.T, h, precision=_HIGHEST) / jnp.maximum(n_b, 1)[:, None]
    centered = (h - mu_b[y]) * wv[:, None]
    s_b = jnp.matmul(centered.T, centered, precision=_HIGHEST)
    n_a = state.count.astype(dtype)
    n_tot = n_a + n_b
    delta = mu_b - state.mean
    frac = jnp.where(n_b > 0, n_b / jnp.maximum(n_tot, 1), 0.0)
    coef = jnp.where(n_b > 0, n_a * n_b / jnp.maximum(n_tot, 1), 0.0)
    cross = jnp.matmul((delta * coef[:, None]).T, delta, precision=_HIGHEST)
    norms = jnp.linalg.norm(h, axis=1) * wv
    return state.replace(
        count=state.count + jnp.sum(onehot, axis=0).astype(jnp.int32),
        mean=state.mean + delta * frac[:, None],
        within_scatter=state.within_scatter + s_b + cross,
        feature_norm_sum=state.feature_norm_sum + jnp.sum(norms),
        invalid=state.invalid + jnp.sum(bad).astype(jnp.int32),
    )


def collapse_class_means(state: CollapseState) -> Array:
    """The accumulated class means ``(C, p)`` (input of :func:`ncc_update`'s second pass)."""
    return state.mean


def collapse_finalize(
    state: CollapseState, prototypes, ncc_state: NCCState | None = None
) -> dict[str, float]:
    """:func:`~ul_jax.metrics.collapse.neural_collapse`'s dict from the accumulated statistics.

    ``ncc_agreement`` is included only if ``ncc_state`` (the second pass) is given.
    """
    s = jax.device_get(state)
    _raise_invalid(s.invalid, "non-finite features or labels outside [0, C)")
    stats = _nc.CollapseStatistics(
        counts=np.asarray(s.count, np.float64),
        means=np.asarray(s.mean, np.float64),
        within_scatter=np.asarray(s.within_scatter, np.float64),
        feature_norm_sum=float(s.feature_norm_sum),
    )
    ncc = None
    if ncc_state is not None:
        t = jax.device_get(ncc_state)
        _raise_invalid(t.invalid, "non-finite features/logits in the NCC pass")
        if int(t.total) == 0:
            raise ValueError("ncc_state has no examples (all rows masked?)")
        if int(t.total) != int(np.sum(s.count)):
            raise ValueError(
                f"ncc_state counted {int(t.total)} examples but the collapse state "
                f"{int(np.sum(s.count))}; both passes must see the same data"
            )
        ncc = int(t.agree) / int(t.total)
    return _nc.collapse_from_statistics(stats, prototypes, ncc_agreement=ncc)


@struct.dataclass
class NCCState:
    agree: Array  # () int32: rows with NCC prediction == classifier prediction
    total: Array  # () int32
    invalid: Array  # () int32


def ncc_init() -> NCCState:
    """Empty :class:`NCCState` (NC4, second pass)."""
    z = jnp.zeros((), jnp.int32)
    return NCCState(agree=z, total=z, invalid=z)


def ncc_update(
    state: NCCState,
    features: Array,
    logits: Array,
    class_means: Array,
    mask: Array | None = None,
) -> NCCState:
    """Counts ``argmin_c ‖h − μ_c‖ == argmax_c z_c`` over ``features (B, p)``, ``logits (B, C)``
    (the classifier's ``Wᵀh + b``) and fixed ``class_means (C, p)`` (first ties win)."""
    _check_batch(class_means, "class_means", 2)
    num_classes, dim = jnp.shape(class_means)
    _check_batch(features, "features", 2, (dim,))
    batch = jnp.shape(features)[0]
    _check_batch(logits, "logits", 2, (num_classes,))
    if jnp.shape(logits)[0] != batch:
        raise ValueError(f"logits.shape={jnp.shape(logits)} must have B={batch} rows like features")
    real = _real_rows(mask, batch)
    finite = jnp.all(jnp.isfinite(features), axis=1) & jnp.all(jnp.isfinite(logits), axis=1)
    valid = real & finite
    mu = jnp.asarray(class_means)
    h = jnp.where(valid[:, None], features, 0).astype(mu.dtype)
    d = jnp.sum(mu * mu, axis=1)[None, :] - 2.0 * jnp.matmul(h, mu.T, precision=_HIGHEST)
    pred = jnp.argmax(jnp.where(valid[:, None], logits, 0), axis=1)
    agree = (jnp.argmin(d, axis=1) == pred) & valid
    return NCCState(
        agree=state.agree + jnp.sum(agree).astype(jnp.int32),
        total=state.total + jnp.sum(valid).astype(jnp.int32),
        invalid=state.invalid + jnp.sum(real & ~finite).astype(jnp.int32),
    )


# --------------------------------------------------------------------------------------------
# OOD scores: a preallocated buffer (AUROC needs every score)
# --------------------------------------------------------------------------------------------
OOD_SCORE_NAMES = ("msp", "energy", "feature_norm")


@struct.dataclass
class ScoreBuffer:
    values: Array  # (capacity, K)
    count: Array  # () int32 real rows seen (may exceed capacity → finalize raises)
    invalid: Array  # () int32 real rows with non-finite scores
    names: tuple = struct.field(pytree_node=False, default=OOD_SCORE_NAMES)


def score_buffer_init(
    capacity: int, names: Sequence[str] = OOD_SCORE_NAMES, dtype=jnp.float32
) -> ScoreBuffer:
    """Buffer for up to ``capacity`` real rows of the named per-example scores."""
    capacity = _checks.positive_int(capacity, "capacity")
    names = tuple(names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names must be non-empty and unique; got names={names}")
    return ScoreBuffer(
        values=jnp.zeros((capacity, len(names)), dtype),
        count=jnp.zeros((), jnp.int32),
        invalid=jnp.zeros((), jnp.int32),
        names=names,
    )


def score_buffer_update(
    buf: ScoreBuffer, scores: Mapping[str, Array], mask: Array | None = None
) -> ScoreBuffer:
    """Appends the real rows of ``scores`` (``{name: (B,)}``, the buffer's names) in order."""
    if set(scores) != set(buf.names):
        raise ValueError(
            f"scores keys {sorted(scores)} must equal the buffer names {sorted(buf.names)}"
        )
    cols = []
    batch = None
    for name in buf.names:
        v = scores[name]
        if jnp.ndim(v) != 1 or (batch is not None and jnp.shape(v)[0] != batch):
            raise ValueError(f"scores[{name!r}].shape={jnp.shape(v)} must be (B,), same B for all")
        batch = jnp.shape(v)[0]
        cols.append(jnp.asarray(v, buf.values.dtype))
    vals = jnp.stack(cols, axis=1)
    real = _real_rows(mask, batch)
    finite = jnp.all(jnp.isfinite(vals), axis=1)
    capacity = buf.values.shape[0]
    pos = buf.count + jnp.cumsum(real.astype(jnp.int32)) - 1
    idx = jnp.where(real, pos, capacity)  # padding → out of bounds → dropped
    values = buf.values.at[idx].set(jnp.where(real[:, None], vals, 0), mode="drop")
    return buf.replace(
        values=values,
        count=buf.count + jnp.sum(real).astype(jnp.int32),
        invalid=buf.invalid + jnp.sum(real & ~finite).astype(jnp.int32),
    )


def ood_score_update(
    buf: ScoreBuffer,
    logits: Array,
    features: Array,
    mask: Array | None = None,
    temperature: float = 1.0,
) -> ScoreBuffer:
    """Appends the paper's three scores (MSP, energy ``T·logsumexp(z/T)``, ``‖h‖``) of a batch."""
    if set(buf.names) != set(OOD_SCORE_NAMES):
        raise ValueError(f"buffer names {buf.names} must be {OOD_SCORE_NAMES} for ood_score_update")
    _check_batch(logits, "logits", 2)
    _check_batch(features, "features", 2)
    if jnp.shape(logits)[0] != jnp.shape(features)[0]:
        raise ValueError(
            f"logits.shape={jnp.shape(logits)} and features.shape={jnp.shape(features)} "
            "need the same B"
        )
    scores = {
        "msp": _ood.msp_score(logits),
        "energy": _ood.energy_score(logits, temperature),
        "feature_norm": _ood.feature_norm_score(features),
    }
    return score_buffer_update(buf, scores, mask)


def score_buffer_finalize(buf: ScoreBuffer) -> dict[str, np.ndarray]:
    """``{name: (n,) np.ndarray}`` of the stored scores, in insertion order."""
    b = jax.device_get(buf)
    n, capacity = int(b.count), int(b.values.shape[0])
    if n > capacity:
        raise ValueError(f"{n} real rows were added but capacity={capacity}; increase capacity")
    _raise_invalid(b.invalid, "non-finite scores")
    vals = np.asarray(b.values)[:n]
    return {name: vals[:, j].copy() for j, name in enumerate(b.names)}
