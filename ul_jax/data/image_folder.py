"""Offline image folders in the tfds ImageFolder layout ``split/class_name/image``.

The source is a directory or a ``.tar`` / ``.tar.gz`` archive (streamed member by member with
``tarfile`` mode ``r|*``: nothing is extracted to disk). Members may sit under any common prefix
(``cifar10/train/cat/0001.jpg`` works as well as ``train/cat/0001.jpg``): the last three path
components are ``split/class/file``. Files whose extension is not an image extension
(:data:`IMAGE_EXTENSIONS`) and hidden files (name starting with ``.``, e.g. macOS ``._x.jpg``) are
skipped, as tfds ImageFolder does.

Labels: ``class_names`` = the sorted union of class folder names over *all* splits (tfds
ImageFolder's convention), so a split that lacks a class keeps the same label ids. Examples are
ordered by ``(class_name, path)``, the same for a directory and its archive.

Decoded uint8 arrays are cached (:mod:`ul_jax.data._cache`) under
``<cache_dir>/image_folder/<key>/`` where ``key`` hashes the archive's sha256 (a directory: its
sorted file list with sizes and mtimes), the split and the resize option; the second load only
hashes the archive and reads two ``.npy`` files.
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ul_jax.data import _cache
from ul_jax.losses import validate_labels

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder", "decode_image"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_CACHE_FORMAT = 1
_log = logging.getLogger(__name__)


def decode_image(data: bytes, name: str, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decodes encoded image bytes to ``(H, W, 3)`` uint8 RGB (bilinear resize to
    ``image_size = (H, W)`` if given). An undecodable file raises ``ValueError`` naming ``name``."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            if image_size is not None and im.size != (image_size[1], image_size[0]):
                im = im.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode image {name}: {type(e).__name__}: {e}") from e


def _split_member(name: str) -> tuple[str, str, str] | None:
    """``[prefix/]split/class/file`` -> ``(split, class, relpath)``; ``None`` to skip."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "/")]
    if len(parts) < 3:
        return None
    split, cls, fname = parts[-3:]
    if fname.startswith(".") or cls.startswith(".") or split.startswith("."):
        return None
    if not fname.lower().endswith(IMAGE_EXTENSIONS):
        return None
    return split, cls, f"{split}/{cls}/{fname}"


def _is_archive(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def missing_path_error(path: Path) -> FileNotFoundError:
    """The error for an image folder ``path`` that does not exist (names the data directory)."""
    return FileNotFoundError(
        f"image folder {str(path)!r} does not exist. Pass an existing directory or .tar/.tar.gz "
        f"archive laid out as split/class_name/image, or set ${_cache.ENV_DATA_DIR} to the folder "
        "that holds it (default <repo>/../shared/data, which has cifar10.tar.gz on the project's "
        "machines; see ../shared/data/README.md). Or use source='tfds' with cifar10/cifar100/"
        "svhn_cropped prepared beforehand (`tfds build NAME --file_format=array_record`; "
        "ul_jax never downloads)."
    )


def _source_key(path: Path) -> str:
    if path.is_file():
        return "sha256:" + _cache.sha256_file(path)
    listing = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            st = p.stat()
            listing.append(f"{p.relative_to(path).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
    return "dirlist:" + _cache.sha256_text("\n".join(listing))


def _iter_archive(
    path: Path, split: str, classes: set[str], splits: set[str]
) -> Iterator[tuple[str, str, bytes]]:
    """Streams ``(class, relpath, bytes)`` of ``split``; fills ``classes``/``splits`` over all splits."""
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            parsed = _split_member(member.name)
            if parsed is None:
                continue
            s, cls, rel = parsed
            splits.add(s)
            classes.add(cls)
            if s != split:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            yield cls, member.name, f.read()


def _iter_directory(
    path: Path, split: str, classes: set[str], splits: set[str]
) -> Iterator[tuple[str, str, bytes]]:
    for split_dir in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        splits.add(split_dir.name)
        for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            if cls_dir.name.startswith("."):
                continue
            files = [
                f
                for f in sorted(cls_dir.iterdir())
                if f.is_file() and _split_member(f"{split_dir.name}/{cls_dir.name}/{f.name}")
            ]
            if files:
                classes.add(cls_dir.name)
            if split_dir.name != split:
                continue
            for f in files:
                yield cls_dir.name, str(f.relative_to(path)), f.read_bytes()


def _guard_archive(stream: Iterator[tuple[str, str, bytes]], where: str):
    """Re-raises the errors of a truncated or corrupt archive as a ``ValueError`` naming it
    (``tarfile`` / ``gzip`` say only "unexpected end of data")."""
    try:
        yield from stream
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ValueError(
            f"cannot read {where}: {type(e).__name__}: {e}. The archive is "
            "truncated or corrupt: copy or download it again"
        ) from e


def _decode_folder(
    path: Path, split: str, image_size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    classes: set[str] = set()
    splits: set[str] = set()
    where = f"archive {str(path)!r}" if path.is_file() else f"folder {str(path)!r}"
    if path.is_file():
        stream = _guard_archive(_iter_archive(path, split, classes, splits), where)
    else:
        stream = _iter_directory(path, split, classes, splits)
    records: list[tuple[str, str, np.ndarray]] = []
    shape = None
    for cls, name, data in stream:
        img = decode_image(data, f"{name!r} in {where}", image_size)
        if shape is None:
            shape = img.shape
        elif img.shape != shape:
            raise ValueError(
                f"image {name!r} in {where} has shape {img.shape}, but earlier images of split "
                f"{split!r} have {shape}; pass image_size=(H, W) to resize all images"
            )
        records.append((cls, name, img))
    if split not in splits:
        raise ValueError(
            f"split {split!r} not found in {where}; available splits: {sorted(splits)} "
            "(expected layout split/class_name/image)"
        )
    if not records:
        raise ValueError(f"split {split!r} of {where} holds no images")
    class_names = tuple(sorted(classes))
    if len(class_names) < 2:
        raise ValueError(f"{where} has {len(class_names)} class folder(s) {class_names}; need >= 2")
    records.sort(key=lambda r: (r[0], r[1]))
    index = {c: i for i, c in enumerate(class_names)}
    images = np.stack([r[2] for r in records])
    labels = np.array([index[r[0]] for r in records], np.int32)
    return images, labels, class_names


def load_image_folder(
    path: str | os.PathLike,
    split: str,
    *,
    image_size: int | tuple[int, int] | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Reads one split of an ImageFolder directory or tar archive into memory.

    Args:
      path: a directory or ``.tar``/``.tar.gz`` archive with ``[prefix/]split/class_name/image``.
      split: split folder name, e.g. ``"train"``.
      image_size: ``None`` (all images must share one size) or ``S``/``(H, W)``: bilinear resize.
      cache: read/write the decoded arrays under ``cache_dir``.
      cache_dir: default ``$UL_JAX_CACHE_DIR`` or ``~/.cache/ul_jax``.

    Returns:
      ``(images, labels, class_names)``: ``(n, H, W, 3)`` uint8, ``(n,)`` int32 and the sorted
      class folder names (label ``c`` is ``class_names[c]``).

    Raises:
      FileNotFoundError: ``path`` does not exist (the message says how to obtain the data).
      ValueError: unknown split, undecodable image (named inside the archive), mixed sizes.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise missing_path_error(path)
    if not (path.is_dir() or _is_archive(path)):
        raise ValueError(f"{str(path)!r} is neither a directory nor a tar archive")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    size = None if image_size is None else (int(image_size[0]), int(image_size[1]))

    entry = None
    if cache:
        key = _cache.sha256_text(f"{_source_key(path)}|{split}|{size}|v{_CACHE_FORMAT}")
        base = Path(cache_dir).expanduser() if cache_dir is not None else _cache.default_cache_dir()
        entry = base / "image_folder" / key
        hit = _cache.load_arrays(entry)
        if hit is not None:
            arrays, meta = hit
            images, labels = arrays["images"], arrays["labels"]
            if images.shape[0] == labels.shape[0] == meta.get("num_examples"):
                class_names = tuple(meta["class_names"])
                return images, validate_labels(labels, len(class_names)), class_names
            _log.warning("cache entry %s is inconsistent; rebuilding it", entry)

    images, labels, class_names = _decode_folder(path, split, size)
    if entry is not None:
        _cache.save_arrays(
            entry,
            {"images": images, "labels": labels},
            {
                "source": str(path),
                "split": split,
                "image_size": size,
                "num_examples": int(images.shape[0]),
                "class_names": list(class_names),
            },
        )
    return images, labels, class_names
