"""Checkpoints of a training run: an orbax ``CheckpointManager`` plus the run's config as JSON.

Layout of a work directory::

    WORKDIR/config.json            the config of the run that created the work directory
    WORKDIR/checkpoints/<step>/    orbax checkpoints (the last ``keep`` are kept)
    WORKDIR/metrics.jsonl          (written by :mod:`ul_jax.train`)

What a checkpoint holds: the whole :class:`ul_jax.train.TrainState` — ``step``, ``params``,
``batch_stats``, the fixed PAL/FNPAL ``prototypes`` and ``opt_state`` (momentum buffers and the
schedule's step count). Nothing else is needed to resume bit-exactly: the batch of global step
``k`` and its augmentation key are pure functions of ``(seed, k)`` (see
:mod:`ul_jax.data.pipeline` and :func:`ul_jax.data.augment_key`), so the data iterator and the
RNG are re-created from the restored step, not stored.

Safety checks, all raising ``ValueError`` that names the offending field:

* :func:`check_resume_config` — a stored ``config.json`` whose *shape-relevant* fields
  (:data:`SHAPE_FIELDS`) differ from the new config refuses the resume;
* :meth:`Checkpointer.restore` compares the stored tree (paths, shapes, dtypes) with the state
  built from the config *before* reading any array, and names every mismatching leaf.

Every process calls :meth:`Checkpointer.save` / :meth:`Checkpointer.restore` (orbax coordinates
multi-host writes); only process 0 writes ``config.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = [
    "SHAPE_FIELDS",
    "CONFIG_FILE",
    "Checkpointer",
    "flatten_config",
    "save_config",
    "load_config",
    "check_resume_config",
    "tree_signature",
]

CONFIG_FILE = "config.json"

# Config fields that change the shapes or the structure of the saved state.
SHAPE_FIELDS: tuple[str, ...] = (
    "data.name",              # number of classes (head shapes)
    "model.arch",
    "model.stem",             # 3×3 vs 7×7 first kernel
    "model.width_multiplier",
    "head.kind",              # linear kernel in params vs fixed prototypes
    "head.bias",
    "head.prototype_seed",    # the stored prototypes would silently replace the new ones
    "optimizer.momentum",     # compared as "momentum > 0": SGD without momentum has no buffers
)


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


def _shape_view(flat: dict[str, Any], field: str):
    v = flat.get(field)
    if field == "optimizer.momentum" and v is not None:
        return bool(v > 0)
    return v


def save_config(workdir: str | os.PathLike, config: Any, name: str = CONFIG_FILE) -> Path:
    """Writes ``config`` as JSON to ``workdir/name`` (process 0 only; returns the path)."""
    path = Path(workdir) / name
    if jax.process_index() == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(config.to_json(indent=2, sort_keys=True) if hasattr(config, "to_json")
                       else json.dumps(config, indent=2, sort_keys=True))
        os.replace(tmp, path)
    return path


def load_config(workdir: str | os.PathLike, name: str = CONFIG_FILE) -> dict[str, Any] | None:
    """The stored config as a nested dict, or ``None`` if there is none."""
    path = Path(workdir) / name
    if not path.exists():
        return None
    return json.loads(path.read_text())


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
    bad = [f"{f}: checkpoint has {old.get(f)!r}, config has {new.get(f)!r}"
           for f in SHAPE_FIELDS if _shape_view(old, f) != _shape_view(new, f)]
    if bad:
        raise ValueError(
            "refusing to resume: the work directory's config.json differs from this config in "
            "shape-relevant field(s): " + "; ".join(bad)
            + ". Use a new --workdir, or the stored values.")
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _key_str(entry) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def tree_signature(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"params/head/kernel": (shape, dtype), ...}`` for arrays, ``ShapeDtypeStruct`` s and
    orbax ``ArrayMetadata`` leaves (namedtuple fields and dict keys both become path parts)."""
    leaves = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=lambda x: x is None or hasattr(x, "shape"))[0]
    out = {}
    for path, leaf in leaves:
        if leaf is None or not hasattr(leaf, "shape"):
            continue
        out["/".join(_key_str(p) for p in path)] = (tuple(int(s) for s in leaf.shape),
                                                    str(np.dtype(leaf.dtype)))
    return out


class Checkpointer:
    """``CheckpointManager`` over ``directory`` keeping the last ``keep`` checkpoints.

    Args:
      directory: where the step folders go (created).
      keep: number of checkpoints kept (older ones are deleted after a save commits).
      async_save: orbax's asynchronous saving (the device→host copy happens in :meth:`save`,
        the file writes in a background thread; :meth:`wait` blocks until they are committed).
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"keep_checkpoints must be >= 1; got keep_checkpoints={keep}")
        self.directory = Path(directory).absolute()
        self._mngr = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                                 enable_async_checkpointing=async_save),
            item_handlers=ocp.StandardCheckpointHandler())

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def path(self, step: int) -> Path:
        return self.directory / str(int(step))

    def save(self, step: int, state: Any) -> Path:
        """Saves ``state`` as checkpoint ``step`` (every process must call this)."""
        self._mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)
        return self.path(step)

    def wait(self) -> None:
        """Blocks until every started save is committed."""
        self._mngr.wait_until_finished()

    def restore(self, step: int, target: Any) -> Any:
        """Restores checkpoint ``step`` into the structure, shapes, dtypes and shardings of
        ``target`` (a state or its ``jax.ShapeDtypeStruct`` tree with ``.sharding``).

        Raises:
          ValueError: the stored tree differs from ``target`` (missing or extra leaves, other
            shapes or dtypes), naming each differing leaf path and both shapes.
        """
        self.wait()
        stored = tree_signature(self._mngr.item_metadata(int(step)).tree)
        wanted = tree_signature(target)
        problems = []
        rank = {"params": 0, "prototypes": 1, "batch_stats": 2}   # most telling first
        for k in sorted(set(stored) | set(wanted), key=lambda k: (rank.get(k.split("/")[0], 3), k)):
            if k not in stored:
                problems.append(f"{k}: missing in the checkpoint (model has shape {wanted[k][0]})")
            elif k not in wanted:
                problems.append(f"{k}: in the checkpoint (shape {stored[k][0]}) but not in the model")
            elif stored[k] != wanted[k]:
                problems.append(f"{k}: checkpoint has shape {stored[k][0]} {stored[k][1]}, "
                                f"model has {wanted[k][0]} {wanted[k][1]}")
        if problems:
            shown = problems[:8] + ([f"... {len(problems) - 8} more"] if len(problems) > 8 else [])
            raise ValueError(
                f"checkpoint {self.path(step)} does not match the state built from the config "
                f"({len(problems)} difference(s)): " + "; ".join(shown)
                + ". Check the shape-relevant config fields "
                + ", ".join(SHAPE_FIELDS) + ".")

        def abstract(x):
            sharding = getattr(x, "sharding", None)
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

        return self._mngr.restore(int(step),
                                  args=ocp.args.StandardRestore(jax.tree.map(abstract, target)))

    def close(self) -> None:
        self.wait()
        self._mngr.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
