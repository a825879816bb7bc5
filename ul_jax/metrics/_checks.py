"""Host-side argument checks shared by the metrics (NumPy; every error names the bad argument)."""

from __future__ import annotations

import numpy as np

# Rows of ``probs`` must sum to 1 within this absolute tolerance (float32 softmax over 1000
# classes is off by ~1e-6; a bug such as passing logits or unnormalized scores is off by far more).
PROB_SUM_ATOL = 1e-3


def to_numpy(x, name: str) -> np.ndarray:
    """``np.asarray(x)``; rejects ``None`` and object arrays with a message naming ``name``."""
    if x is None:
        raise ValueError(f"{name} must be an array; got {name}=None")
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array; got dtype=object")
    if arr.dtype.name.startswith(("bfloat16", "float8", "float4")):  # ml_dtypes: exact in float32
        arr = arr.astype(np.float32)
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raises if ``arr`` has NaN/inf, naming the first offending flat index."""
    if arr.size and not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr.ravel()))
        raise ValueError(
            f"{name} must be finite; found {bad.size} NaN/inf value(s), first at flat index "
            f"{int(bad[0])} (value {arr.ravel()[bad[0]]})"
        )


def _finite_float(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as a float array (integers and booleans → float64, floats kept), checked finite."""
    if not np.issubdtype(arr.dtype, np.floating):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            raise ValueError(f"{name} must be numeric; got {name}.dtype={arr.dtype}")
        arr = arr.astype(np.float64)
    check_finite(arr, name)
    return arr


def float_matrix(x, name: str, *, min_cols: int = 1) -> np.ndarray:
    """A finite ``(n, k)`` float array with ``n ≥ 1`` and ``k ≥ min_cols`` (dtype kept if float)."""
    arr = to_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, k); got {name}.shape={arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must have at least one row; got {name}.shape={arr.shape}")
    if arr.shape[1] < min_cols:
        raise ValueError(f"{name} needs at least {min_cols} columns; got {name}.shape={arr.shape}")
    return _finite_float(arr, name)


def float_vector(x, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """A finite 1-D float array (``(n,)``); empty only if ``allow_empty``."""
    arr = to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got {name}.shape={arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; need at least one value")
    return _finite_float(arr, name)


def int_labels(labels, n: int, num_classes: int | None, name: str = "labels") -> np.ndarray:
    """Integer labels of shape ``(n,)`` in ``[0, num_classes)`` (range unchecked if ``None``)."""
    arr = to_numpy(labels, name)
    if arr.shape != (n,):
        raise ValueError(f"{name}.shape={arr.shape} must be ({n},), one label per row")
    if not np.issubdtype(arr.dtype, np.integer):
        if arr.size and (
            not np.issubdtype(arr.dtype, np.floating)
            or not np.all(np.isfinite(arr))
            or not np.all(np.mod(arr, 1) == 0)
        ):
            raise ValueError(f"{name} must be integers; got {name}.dtype={arr.dtype}")
        arr = arr.astype(np.int64)
    if num_classes is not None:
        bad = (arr < 0) | (arr >= num_classes)
        if np.any(bad):
            idx = np.flatnonzero(bad)
            raise ValueError(
                f"{name} out of range [0, {num_classes}): {idx.size} bad value(s), e.g. "
                f"{arr[idx[:5]].tolist()} at index {idx[:5].tolist()}"
            )
    return arr.astype(np.int64)


def check_probs(probs: np.ndarray, name: str = "probs") -> None:
    """Entries in [0, 1] and rows summing to 1 within :data:`PROB_SUM_ATOL`."""
    lo, hi = float(np.min(probs)), float(np.max(probs))
    if lo < 0.0 or hi > 1.0 + PROB_SUM_ATOL:
        raise ValueError(
            f"{name} must lie in [0, 1] (did you pass logits?); got min={lo:.6g}, max={hi:.6g}"
        )
    sums = np.sum(probs, axis=1, dtype=np.float64)
    dev = np.abs(sums - 1.0)
    if np.any(dev > PROB_SUM_ATOL):
        i = int(np.argmax(dev))
        raise ValueError(
            f"{name} rows must sum to 1 (within {PROB_SUM_ATOL}); row {i} sums to {sums[i]:.6g} "
            "(apply softmax to logits first)"
        )


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {name}={value!r}")
    return int(value)
