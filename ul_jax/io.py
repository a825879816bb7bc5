"""Small file helpers shared by the training, evaluation and report code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["write_text_atomic", "write_json_atomic"]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically: a reader sees the old file or the whole new one,
    never a part (``path.tmp`` first, then ``os.replace``). Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json_atomic(
    path: str | os.PathLike,
    obj: Any,
    *,
    indent: int | None = 2,
    allow_nan: bool = False,
    default=None,
    sort_keys: bool = False,
) -> Path:
    """``json.dumps(obj, ...)`` plus a newline, written with :func:`write_text_atomic`.

    ``allow_nan=False`` (the default) refuses NaN/inf (not valid JSON); ``default`` converts
    values ``json`` does not know (e.g. NumPy scalars)."""
    text = json.dumps(obj, indent=indent, allow_nan=allow_nan, default=default, sort_keys=sort_keys)
    return write_text_atomic(path, text + "\n")
