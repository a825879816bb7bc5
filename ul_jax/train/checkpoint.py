"""Checkpoints of a training run: an orbax ``CheckpointManager`` plus the run's config as JSON.

Layout of a work directory::

    WORKDIR/config.json            the config of the run that created the work directory
    WORKDIR/checkpoints/<step>/    orbax checkpoints (the last ``keep`` are kept)
    WORKDIR/metrics.jsonl          (written by :mod:`ul_jax.train.loop`)
    WORKDIR/damaged_checkpoints/   damaged checkpoints moved out of the way by a resume
    WORKDIR/previous_<time>/       an earlier run's files, moved aside by ``config.restart``

What a checkpoint holds: the whole :class:`ul_jax.train.TrainState` — ``step``, ``params``,
``batch_stats``, the fixed PAL/FNPAL ``prototypes`` and ``opt_state`` (momentum buffers and the
schedule's step count). Nothing else is needed to resume bit-exactly: the batch of global step
``k`` and its augmentation key are pure functions of ``(seed, k)`` (see
:mod:`ul_jax.data.pipeline` and :func:`ul_jax.data.augment_key`), so the data iterator and the
RNG are re-created from the restored step, not stored.

Integrity. Every checkpoint carries, in orbax's ``_CHECKPOINT_METADATA`` (written into the
temporary directory *before* orbax's atomic rename commits the step), a ``ul_jax`` record: a
fingerprint of every leaf (shape, dtype and a BLAKE2b digest of its bytes, see
:func:`state_fingerprint`) plus whatever the caller passes as ``extra`` (the loop stores the
metrics of the steps since the last log line there, so a resumed log is identical). A restore
re-computes the fingerprint of what it read and compares. So a checkpoint is *usable* only if
orbax reads it without error **and** every restored byte is the saved one; anything else —
truncated or deleted files, an unreadable ``_METADATA`` or ``_CHECKPOINT_METADATA``, flipped
bits — raises :class:`CheckpointCorruptError` naming the checkpoint and the reason, and
:meth:`Checkpointer.restore_latest` falls back to the previous checkpoint. orbax's temporary
directories (``<step>.orbax-checkpoint-tmp*``, left by a kill during a save) are never listed as
checkpoints and are replaced by the next save of that step.

Safety checks, all raising ``ValueError`` that names the offending field:

* :func:`check_resume_config` — a stored ``config.json`` whose *shape-relevant* fields
  (:data:`ul_jax.config.SHAPE_FIELDS`: the schema's fields marked as changing shapes) differ
  from the new config refuses the resume;
* :meth:`Checkpointer.restore` compares the stored tree (paths, shapes, dtypes) with the state
  built from the config *before* reading any array, and names every mismatching leaf
  (:class:`CheckpointMismatchError`).

A full disk (``ENOSPC``, or ``EDQUOT``: a quota) while a checkpoint is written — orbax reports it
from its background thread at the next save or wait, TensorStore as a ``ValueError`` with
``[os_error_code='28']`` — becomes :class:`CheckpointDiskFullError`: one line naming the
checkpoint, the space it needs (the disk usage of the previous checkpoint, or the size of the
state's arrays for a first one), the space free, and the previous checkpoint, which is untouched
(orbax deletes old checkpoints only after a save commits). The failed save's temporary directory
is deleted (it frees what it had taken). The first checkpoint of a directory is committed
synchronously (see :meth:`Checkpointer.save`).

Every process calls :meth:`Checkpointer.save` / :meth:`Checkpointer.restore` (orbax coordinates
multi-host writes); only process 0 writes ``config.json``. In a multi-process run ``save`` also
compares the fingerprints of every process's replica of the (replicated) state and refuses to
save replicas that differ (:class:`ReplicaMismatchError`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from ul_jax.config import SHAPE_FIELDS, shape_view
from ul_jax.io import checkpoint_steps, write_text_atomic

__all__ = [
    "SHAPE_FIELDS",
    "CONFIG_FILE",
    "Checkpointer",
    "checkpoint_steps",
    "CheckpointCorruptError",
    "CheckpointDiskFullError",
    "CheckpointMismatchError",
    "ReplicaMismatchError",
    "flatten_config",
    "save_config",
    "load_config",
    "check_resume_config",
    "tree_signature",
    "state_fingerprint",
    "fingerprint_digest",
    "sync_processes",
]

CONFIG_FILE = "config.json"
METADATA_KEY = "ul_jax"  # key of our record in orbax's custom checkpoint metadata
FORMAT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The stored tree (leaf paths, shapes, dtypes) differs from the state built from the config:
    a config problem, not a damaged checkpoint (no fallback to an older checkpoint)."""


class CheckpointCorruptError(RuntimeError):
    """A checkpoint cannot be read, or what was read is not what was saved.

    Attributes: ``path`` (the step directory), ``reason`` (one line)."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"checkpoint {path} is damaged: {reason}")


class CheckpointDiskFullError(OSError):
    """A checkpoint could not be written for lack of space (``ENOSPC``) or quota (``EDQUOT``).

    Attributes: ``path`` (the checkpoint that failed), ``needed`` (bytes: the disk usage of the
    previous checkpoint, or the size of the state's arrays if there is none), ``free`` (bytes
    free on its filesystem afterwards), ``previous`` (the newest earlier checkpoint, left intact,
    or ``None``), ``errno``."""

    def __init__(self, path: Path, code: int, needed: int, free: int | None, previous):
        self.path, self.needed, self.free, self.previous = Path(path), needed, free, previous
        what = (
            "disk quota exceeded"
            if code == getattr(errno, "EDQUOT", -1)
            else "no space left on device"
        )
        free_text = f", {_size(free)} free" if free is not None else ""
        basis = (
            f"the disk usage of checkpoint {Path(previous).name}"
            if previous is not None
            else "the train state's arrays"
        )
        if previous is not None:
            then = (
                f"the previous checkpoint {previous} is intact: free space and rerun the same "
                "command to resume from it"
            )
        else:
            then = (
                "no checkpoint had been written yet: free space and rerun the same command "
                "(it starts from step 0)"
            )
        super().__init__(
            f"{what} writing checkpoint {path}: it needs about {_size(needed)} "
            f"({basis}){free_text}; {then}"
        )
        self.errno = code


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _disk_full_code(e: BaseException) -> int | None:
    """``ENOSPC``/``EDQUOT`` if ``e`` or an exception it wraps reports a full disk, else
    ``None`` (TensorStore raises ``ValueError`` with ``[os_error_code='28']``)."""
    seen, todo = set(), [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in _DISK_FULL:
            return x.errno
        text = str(x)
        for code in _DISK_FULL:
            if f"os_error_code='{code}'" in text or f"[Errno {code}]" in text:
                return code
        if os.strerror(errno.ENOSPC) in text:
            return errno.ENOSPC
        todo += [x.__cause__, x.__context__, *getattr(x, "exceptions", ())]
    return None


def _disk_usage(path: Path) -> int:
    """Bytes allocated to ``path`` and everything under it (``du``)."""
    return sum(p.lstat().st_blocks * 512 for p in [path, *path.rglob("*")])


def _nbytes(tree: Any) -> int:
    return sum(
        int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
        for x in jax.tree_util.tree_leaves(tree)
        if hasattr(x, "shape") and hasattr(x, "dtype")
    )


class ReplicaMismatchError(RuntimeError):
    """The processes of a multi-process run hold different copies of the replicated state."""


def flatten_config(config: Any) -> dict[str, Any]:
    """``{"data.name": "cifar10", ...}`` from a ``ConfigDict`` or a nested dict."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    out: dict[str, Any] = {}

    def walk(prefix, node):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(key + ".", v)
            else:
                out[key] = list(v) if isinstance(v, tuple) else v

    walk("", d)
    return out


def save_config(workdir: str | os.PathLike, config: Any, name: str = CONFIG_FILE) -> Path:
    """Writes ``config`` as JSON to ``workdir/name`` (process 0 only; returns the path)."""
    path = Path(workdir) / name
    if jax.process_index() == 0:
        text = (
            config.to_json(indent=2, sort_keys=True)
            if hasattr(config, "to_json")
            else json.dumps(config, indent=2, sort_keys=True)
        )
        write_text_atomic(path, text)
    return path


def load_config(workdir: str | os.PathLike, name: str = CONFIG_FILE) -> dict[str, Any] | None:
    """The stored config as a nested dict, or ``None`` if there is none.

    Raises:
      ValueError: the file exists but is not a JSON object (truncated or edited by hand).
    """
    path = Path(workdir) / name
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); restore it from the run's "
            "previous_*/ or a copy, or move it away to start over"
        ) from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path} must hold a JSON object (a config); got {type(stored).__name__}")
    return stored


def check_resume_config(stored: dict[str, Any] | None, config: Any) -> list[str]:
    """Refuses a resume whose shape-relevant fields differ from the stored config.

    Returns the other fields that differ (``"field: stored -> new"``), which a resume allows (for
    example a longer ``num_epochs``) but the caller should report.

    Raises:
      ValueError: naming each differing field of :data:`SHAPE_FIELDS` with both values.
    """
    if stored is None:
        return []
    old, new = flatten_config(stored), flatten_config(config)
    bad = [
        f"{f}: checkpoint has {old.get(f)!r}, config has {new.get(f)!r}"
        for f in SHAPE_FIELDS
        if shape_view(f, old) != shape_view(f, new)
    ]
    if bad:
        raise ValueError(
            "refusing to resume: the work directory's config.json differs from this config in "
            "shape-relevant field(s): "
            + "; ".join(bad)
            + ". Use a new --workdir, or the stored values."
        )
    return [
        f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
        for k in sorted(set(old) | set(new))
        if old.get(k) != new.get(k)
    ]


def _key_str(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def tree_signature(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"params/head/kernel": (shape, dtype), ...}`` for arrays, ``ShapeDtypeStruct`` s and
    orbax ``ArrayMetadata`` leaves (namedtuple fields and dict keys both become path parts)."""
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: x is None or hasattr(x, "shape")
    )[0]
    out = {}
    for path, leaf in leaves:
        if leaf is None or not hasattr(leaf, "shape"):
            continue
        out["/".join(_key_str(p) for p in path)] = (
            tuple(int(s) for s in leaf.shape),
            str(np.dtype(leaf.dtype)),
        )
    return out


def _local_copy(x: Any) -> np.ndarray:
    """This process's copy of ``x`` on the host: the whole array if this process can address
    it, else its first local replica (replicated arrays), else the gathered global array."""
    if isinstance(x, jax.Array):
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_shards[0].data)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def state_fingerprint(tree: Any) -> dict[str, str]:
    """``{"params/head/kernel": "(16, 10) float32 <blake2b-128 hex>", ...}`` of every array leaf.

    Computed from this process's copy (see :func:`_local_copy`); equal fingerprints mean equal
    shapes, dtypes and bytes (NaN payloads and -0.0 included)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in leaves:
        if not hasattr(leaf, "shape"):
            continue
        a = np.ascontiguousarray(_local_copy(leaf))
        digest = hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest()
        out["/".join(_key_str(p) for p in path)] = f"{tuple(a.shape)} {a.dtype} {digest}"
    return out


def fingerprint_digest(fingerprint: dict[str, str]) -> str:
    """One hex digest (sha256) of a whole :func:`state_fingerprint` (what processes compare)."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


_BARRIERS = [0]


def sync_processes(name: str) -> None:
    """A barrier over all processes (no-op in a single-process run). Every process must make
    the same sequence of calls (the barrier's key counts them)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        _BARRIERS[0] += 1
        multihost_utils.sync_global_devices(f"{name}_{_BARRIERS[0]}")


def _check_replicas(fingerprint: dict[str, str], step: int) -> None:
    """Raises :class:`ReplicaMismatchError` if another process's copy differs from this one's."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    digest = bytes.fromhex(fingerprint_digest(fingerprint))
    all_digests = np.asarray(multihost_utils.process_allgather(np.frombuffer(digest, np.uint8)))
    differ = [
        p for p in range(all_digests.shape[0]) if not np.array_equal(all_digests[p], all_digests[0])
    ]
    if differ:
        raise ReplicaMismatchError(
            f"the replicated train state differs between processes at step {step}: processes "
            f"{differ} hold other values than process 0 (fingerprint of process "
            f"{jax.process_index()}: {digest.hex()[:16]}); refusing to save it"
        )
    logging.info(
        "checkpoint %d: the state is identical on all %d processes (fingerprint %s)",
        step,
        all_digests.shape[0],
        digest.hex()[:16],
    )


class Checkpointer:
    """``CheckpointManager`` over ``directory`` keeping the last ``keep`` checkpoints.

    Args:
      directory: where the step folders go (created).
      keep: number of checkpoints kept (older ones are deleted after a save commits). With
        ``keep >= 2`` a damaged latest checkpoint can fall back to the one before it.
      async_save: orbax's asynchronous saving (the device→host copy happens in :meth:`save`,
        the file writes in a background thread; :meth:`wait` blocks until they are committed).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1; got keep_checkpoints={keep}")
        self.directory = Path(directory).absolute()
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, create=True, enable_async_checkpointing=async_save
            ),
            item_handlers=ocp.StandardCheckpointHandler(),
        )
        self._pending: tuple[int, int] | None = None  # (step, bytes) of a save not yet waited on

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(int(s) for s in self._mngr.all_steps())

    def path(self, step: int) -> Path:
        return self.directory / str(int(step))

    def reload(self) -> None:
        """Re-reads the list of checkpoints from the directory."""
        self._mngr.reload()

    def save(self, step: int, state: Any, extra: dict[str, Any] | None = None) -> Path:
        """Saves ``state`` as checkpoint ``step`` (every process must call this), with its
        fingerprint and the JSON-serializable ``extra`` (see :meth:`extra`) in the checkpoint's
        metadata. Asynchronous (see the class), except the first checkpoint of the directory,
        which is committed before this returns.

        Raises:
          ReplicaMismatchError: (multi-process) the processes' copies of the state differ.
          CheckpointDiskFullError: no space (or quota) left to write this checkpoint or the
            previous one (an asynchronous save reports its failure here or in :meth:`wait`).
        """
        self.wait()  # orbax waits for the previous save anyway; its failure names its own step
        first = not self.all_steps()
        fingerprint = state_fingerprint(state)
        _check_replicas(fingerprint, int(step))
        record = {"format": FORMAT_VERSION, "fingerprint": fingerprint, "extra": extra or {}}
        self._pending = (int(step), _nbytes(state))
        try:
            self._mngr.save(
                int(step),
                args=ocp.args.StandardSave(state),
                force=True,
                custom_metadata={METADATA_KEY: record},
            )
        except Exception as e:
            self._raise_if_disk_full(e)
            raise
        if first:
            # The first checkpoint of a directory is committed before training goes on, so a
            # run's metrics.jsonl never gets past a first checkpoint that a kill could still
            # lose (a fresh start over such a log is refused: ul_jax.train.workdir).
            self.wait()
        return self.path(step)

    def wait(self) -> None:
        """Blocks until every started save is committed.

        Raises:
          CheckpointDiskFullError: the save ran out of space (see :meth:`save`).
        """
        try:
            self._mngr.wait_until_finished()
        except Exception as e:
            self._raise_if_disk_full(e)
            raise
        finally:
            self._pending = None

    def _raise_if_disk_full(self, e: BaseException) -> None:
        """Raises :class:`CheckpointDiskFullError` (from ``e``) if ``e`` reports a full disk
        while the pending save was written; deletes that save's temporary directory."""
        code, pending = _disk_full_code(e), self._pending
        self._pending = None
        if code is None or pending is None:
            return
        step, needed = pending
        if jax.process_index() == 0:
            for tmp in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)
        earlier = [
            int(p.name)
            for p in self.directory.iterdir()
            if p.is_dir() and p.name.isdigit() and int(p.name) < step
        ]
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError:
            free = None
        previous = self.path(max(earlier)) if earlier else None
        if previous is not None:  # the same tree: its size on disk is the best estimate
            try:
                needed = max(needed, _disk_usage(previous))
            except OSError:
                pass
        raise CheckpointDiskFullError(self.path(step), code, needed, free, previous) from e

    def _record(self, step: int) -> dict[str, Any] | None:
        try:
            custom = self._mngr.metadata(int(step)).custom_metadata or {}
        except Exception:
            return None
        record = custom.get(METADATA_KEY)
        return record if isinstance(record, dict) and "fingerprint" in record else None

    def extra(self, step: int) -> dict[str, Any]:
        """The ``extra`` dict saved with checkpoint ``step`` (``{}`` if none)."""
        record = self._record(step)
        return dict(record.get("extra") or {}) if record else {}

    def restore(self, step: int, target: Any, verify: bool = True) -> Any:
        """Restores checkpoint ``step`` into the structure, shapes, dtypes and shardings of
        ``target`` (a state or its ``jax.ShapeDtypeStruct`` tree with ``.sharding``).

        Args:
          verify: require the saved fingerprint and compare it with what was read. ``False``
            restores checkpoints written before fingerprints existed (unverified).

        Raises:
          CheckpointMismatchError: the stored tree differs from ``target`` (missing or extra
            leaves, other shapes or dtypes), naming each differing leaf path and both shapes.
          CheckpointCorruptError: the checkpoint cannot be read, has no fingerprint (with
            ``verify``), or what was read differs from what was saved.
        """
        self.wait()
        path = self.path(step)
        if not path.is_dir():
            raise CheckpointCorruptError(path, "the step directory does not exist")
        try:
            stored = tree_signature(self._mngr.item_metadata(int(step)).tree)
        except Exception as e:
            raise CheckpointCorruptError(
                path, f"its tree metadata cannot be read ({type(e).__name__}: {_one_line(e)})"
            ) from e
        wanted = tree_signature(target)
        problems = []
        rank = {"params": 0, "prototypes": 1, "batch_stats": 2}  # most telling first
        for k in sorted(set(stored) | set(wanted), key=lambda k: (rank.get(k.split("/")[0], 3), k)):
            if k not in stored:
                problems.append(f"{k}: missing in the checkpoint (model has shape {wanted[k][0]})")
            elif k not in wanted:
                problems.append(
                    f"{k}: in the checkpoint (shape {stored[k][0]}) but not in the model"
                )
            elif stored[k] != wanted[k]:
                problems.append(
                    f"{k}: checkpoint has shape {stored[k][0]} {stored[k][1]}, "
                    f"model has {wanted[k][0]} {wanted[k][1]}"
                )
        if problems:
            shown = problems[:8] + ([f"... {len(problems) - 8} more"] if len(problems) > 8 else [])
            raise CheckpointMismatchError(
                f"checkpoint {path} does not match the state built from the config "
                f"({len(problems)} difference(s)): "
                + "; ".join(shown)
                + ". Check the shape-relevant config fields "
                + ", ".join(SHAPE_FIELDS)
                + "."
            )
        record = self._record(step)
        if verify and record is None:
            raise CheckpointCorruptError(
                path,
                "it has no ul_jax fingerprint in its _CHECKPOINT_METADATA (the file is "
                "missing or unreadable, or the checkpoint predates fingerprints: "
                "restore(..., verify=False) reads it unverified)",
            )

        def abstract(x):
            sharding = getattr(x, "sharding", None)
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

        try:
            restored = self._mngr.restore(
                int(step), args=ocp.args.StandardRestore(jax.tree.map(abstract, target))
            )
        except Exception as e:
            raise CheckpointCorruptError(
                path, f"orbax cannot read it ({type(e).__name__}: {_one_line(e)})"
            ) from e
        if verify:
            saved, got = record["fingerprint"], state_fingerprint(restored)
            bad = sorted(k for k in set(saved) | set(got) if saved.get(k) != got.get(k))
            if bad:
                raise CheckpointCorruptError(
                    path,
                    f"{len(bad)} restored array(s) differ from the saved ones (fingerprint "
                    f"mismatch): {', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}",
                )
        return restored

    def restore_latest(self, target: Any) -> tuple[int | None, Any, list[CheckpointCorruptError]]:
        """Restores the newest usable checkpoint: ``(step, state, damaged)``.

        Tries the checkpoints from the newest down; a damaged one (:class:`CheckpointCorruptError`)
        is recorded in ``damaged`` (newest first) and the next older one is tried. ``step`` is
        ``None`` (and ``state`` is ``target``) when none is usable. A
        :class:`CheckpointMismatchError` is raised at once (the config does not fit the run).
        """
        damaged: list[CheckpointCorruptError] = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                return step, self.restore(step, target), damaged
            except CheckpointCorruptError as e:
                damaged.append(e)
        return None, target, damaged

    def move_aside(self, steps: list[int], destination: str | os.PathLike) -> list[Path]:
        """Moves the step directories ``steps`` to ``destination/<step>`` (``<step>.1`` ... if
        taken) — process 0 moves, every process must call this — and re-reads the list."""
        self.wait()
        dest_dir, moved = Path(destination), []
        for step in steps:
            target = dest_dir / str(int(step))
            n = 0
            while target.exists():
                n += 1
                target = dest_dir / f"{int(step)}.{n}"
            moved.append(target)
            if jax.process_index() == 0 and self.path(step).exists():
                dest_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(str(self.path(step)), str(target))
        sync_processes("ul_jax_move_aside")
        self.reload()
        return moved

    def close(self) -> None:
        self.wait()
        self._mngr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _one_line(e: BaseException, limit: int = 300) -> str:
    """The error on one line, without TensorStore's spec dumps, at most ``limit`` characters."""
    s = " ".join(str(e).split())
    for cut in (" See full TensorStore details", " [tensorstore_spec="):
        s = s.split(cut)[0]
    return s if len(s) <= limit else s[:limit] + " ..."
