"""Data and cache locations, file hashing, and an atomic, verified ``.npy`` array cache.

Locations:
  * data directory: ``$UL_JAX_DATA_DIR``, default ``<repo>/../shared/data`` (the offline archives);
  * cache directory: ``$UL_JAX_CACHE_DIR``, default ``~/.cache/ul_jax``.

A cache entry is a directory holding one ``<name>.npy`` per array and a ``meta.json`` written
*last*; every file is written to a temporary name in the same directory, fsync'ed and renamed
(``os.replace`` is atomic on POSIX), so a run killed at any point leaves either no entry or a
complete one. :func:`load_arrays` checks every array's shape, dtype and sha256 (of its bytes)
against ``meta.json`` and treats a mismatch or an unreadable file as a miss (with a warning),
never as data; an entry without a sha256 (written before it was recorded) is rebuilt too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "ENV_DATA_DIR",
    "ENV_CACHE_DIR",
    "default_data_dir",
    "default_cache_dir",
    "sha256_file",
    "sha256_text",
    "array_sha256",
    "save_arrays",
    "load_arrays",
]

ENV_DATA_DIR = "UL_JAX_DATA_DIR"
ENV_CACHE_DIR = "UL_JAX_CACHE_DIR"
_META = "meta.json"
_log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """``$UL_JAX_DATA_DIR`` if set, else ``<repo>/../shared/data`` (``<repo>`` holds ``ul_jax/``)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "data"


def default_cache_dir() -> Path:
    """``$UL_JAX_CACHE_DIR`` if set, else ``~/.cache/ul_jax``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ul_jax"


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def array_sha256(arr: np.ndarray, chunk_rows: int = 4096) -> str:
    """Hex sha256 of an array's C-order bytes (hashed in chunks of rows: no full copy)."""
    h = hashlib.sha256()
    if arr.ndim == 0:
        h.update(np.ascontiguousarray(arr).tobytes())
    else:
        for start in range(0, arr.shape[0], chunk_rows):
            h.update(np.ascontiguousarray(arr[start : start + chunk_rows]).tobytes())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual file mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def save_arrays(directory: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    """Atomically writes ``arrays`` (``name -> ndarray``) and ``meta`` (JSON-able) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:  # an old meta.json must never vouch for arrays being rewritten
        (directory / _META).unlink()
    except FileNotFoundError:
        pass
    info = {}
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        _atomic_write(directory / f"{name}.npy", lambda f, a=arr: np.save(f, a, allow_pickle=False))
        info[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str, "sha256": array_sha256(arr)}
    payload = json.dumps({**meta, "arrays": info}, indent=1).encode("utf-8")
    _atomic_write(directory / _META, lambda f: f.write(payload))


def load_arrays(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """Loads a cache entry written by :func:`save_arrays`; ``None`` if absent or invalid."""
    directory = Path(directory)
    meta_path = directory / _META
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
        arrays = {}
        for name, spec in meta["arrays"].items():
            arr = np.load(directory / f"{name}.npy", allow_pickle=False)
            if list(arr.shape) != spec["shape"] or arr.dtype.str != spec["dtype"]:
                raise ValueError(
                    f"{name}.npy has shape {arr.shape} dtype {arr.dtype.str}; meta.json says "
                    f"{tuple(spec['shape'])} {spec['dtype']}"
                )
            if "sha256" not in spec:
                raise ValueError(f"meta.json records no sha256 for {name}.npy (an older entry)")
            if array_sha256(arr) != spec["sha256"]:
                raise ValueError(f"{name}.npy differs from the bytes that were written (sha256)")
            arrays[name] = arr
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        _log.warning("ignoring invalid cache entry %s (%s); rebuilding it", directory, e)
        return None
    return arrays, meta
