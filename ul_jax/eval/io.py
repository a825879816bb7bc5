"""Eval files: their names, :func:`to_jsonable` and :func:`load_eval` (written with
:func:`ul_jax.io.write_json_atomic`)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EVAL_FORMAT_VERSION",
    "eval_filename",
    "load_eval",
    "to_jsonable",
]

EVAL_FORMAT_VERSION = 1


def eval_filename(step: int | None) -> str:
    """``eval.json`` for the latest checkpoint, ``eval_step<k>.json`` for a requested step."""
    return "eval.json" if step is None else f"eval_step{int(step)}.json"


def to_jsonable(x: Any) -> Any:
    """Nested dicts/lists/tuples/NumPy values → plain JSON values; non-finite floats → ``None``."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def load_eval(path: str | os.PathLike) -> dict:
    """Reads an eval JSON: a file, or a work directory's ``eval.json``."""
    p = Path(path).expanduser()
    if p.is_dir():
        f = p / "eval.json"
        if not f.is_file():
            others = sorted(x.name for x in p.glob("eval_step*.json"))
            hint = (
                f"; it has {', '.join(others)} (pass one of those files)"
                if others
                else f"; run python -m launch.evaluate --workdir {p} first"
            )
            raise FileNotFoundError(f"no eval.json in {p}{hint}")
        p = f
    elif not p.is_file():
        raise FileNotFoundError(f"{p} does not exist (expected a work directory or an eval JSON)")
    try:
        out = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not valid JSON: {e}") from e
    if not isinstance(out, dict) or "classification" not in out or "run" not in out:
        raise ValueError(f"{p} is not an eval JSON of ul_jax.eval (no run/classification)")
    out.setdefault("path", str(p))
    return out
