"""Small file helpers shared by the training, evaluation and report code (standard library only,
so the evaluation and report code can read run folders without loading :mod:`ul_jax.train`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["checkpoint_steps", "read_jsonl", "write_text_atomic", "write_json_atomic"]


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


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All objects of a JSON-lines file (a torn last line, from a crash mid-write, is skipped)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def checkpoint_steps(workdir: str | os.PathLike) -> list[int]:
    """The sorted steps of the checkpoint folders ``workdir/checkpoints/<step>`` on disk (``[]``
    if there are none; orbax's temporary folders are not steps). Reads only the directory, so
    it works without a :class:`Checkpointer` (and while one of another process writes)."""
    d = Path(workdir) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())
