"""Fault-injection helpers shared by the reliability tests (not a test module).

* ``python tests/_faults.py ARGS...`` runs ``python -m launch.train ARGS...`` with a *window*
  hook: ``UL_JAX_TEST_WINDOW=kind:step`` makes the run stop at one moment that matters, write
  ``$UL_JAX_TEST_WINDOW_DIR/entered`` and wait there until ``$UL_JAX_TEST_WINDOW_DIR/release``
  exists — so a test can ``SIGKILL`` it exactly there, or do something while it waits. Kinds:

  ``ckpt``      the asynchronous save of checkpoint ``step``: every array and metadata file is
                written into orbax's temporary directory, not yet renamed (committed);
  ``eval``      the evaluation of the test set at ``step`` (before its line is written);
  ``jsonl``     half of the ``metrics.jsonl`` line of ``step`` written and flushed;
  ``tb``        half of the TensorBoard scalars of ``step`` handed to the event writer;
  ``takeover``  the take-over of a stale lock: the take-over file exists, the new lock file is
                written but not yet renamed over the old one (``step`` is ignored).

  The hooks only wait: a run that is released goes on exactly as without them.
* :func:`read_only` makes a directory unwritable for the code under test (``chmod``; as root,
  whom permission bits do not stop, by making ``mkdir``/``open``/``access`` report ``EACCES``
  for paths in it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import runpy
import stat
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WINDOW_ENV, WINDOW_DIR_ENV = "UL_JAX_TEST_WINDOW", "UL_JAX_TEST_WINDOW_DIR"
KINDS = ("ckpt", "eval", "jsonl", "tb", "takeover")


def _hold(kind: str, step: int) -> None:
    """Announces the window, then waits for the release file (at most 10 minutes)."""
    d = Path(os.environ[WINDOW_DIR_ENV])
    (d / "entered.tmp").write_text(f"{kind} {step} {os.getpid()}\n")
    os.replace(d / "entered.tmp", d / "entered")
    t0 = time.monotonic()
    while not (d / "release").exists() and time.monotonic() - t0 < 600:
        time.sleep(0.005)


def install_window(spec: str) -> None:
    """Installs the hook of ``spec`` (``kind:step``) in this process."""
    kind, _, step_text = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"{WINDOW_ENV} kind must be one of {KINDS}; got {spec!r}")
    step = int(step_text or 0)
    if kind == "ckpt":
        import asyncio

        from orbax.checkpoint._src.path import atomicity

        cls = atomicity.AtomicRenameTemporaryPath
        original = cls.finalize

        async def finalize(self, *a, **kw):
            if self._final_path.name == str(step):
                await asyncio.to_thread(_hold, kind, step)
            return await original(self, *a, **kw)

        cls.finalize = finalize
    elif kind == "eval":
        from ul_jax.train import loop

        original = loop.evaluate

        def evaluate(eval_fn, state, *a, **kw):
            if kw.get("prefix", "eval") == "eval" and int(state.step) == step:
                _hold(kind, step)
            return original(eval_fn, state, *a, **kw)

        loop.evaluate = evaluate
    elif kind == "jsonl":
        from ul_jax.train import writers

        original = writers.JsonlWriter.write

        class _Split:
            def __init__(self, f):
                self.f = f

            def write(self, text):
                half = len(text) // 2
                self.f.write(text[:half])
                self.f.flush()
                _hold(kind, step)
                return self.f.write(text[half:])

            def flush(self):
                self.f.flush()

        def write(self, s, metrics):
            if s != step:
                return original(self, s, metrics)
            f, self._f = self._f, _Split(self._f)
            try:
                return original(self, s, metrics)
            finally:
                self._f = f

        writers.JsonlWriter.write = write
    elif kind == "tb":
        from ul_jax.train import writers

        original = writers.EventFileWriter.write

        def write(self, s, scalars):
            if s != step:
                return original(self, s, scalars)
            items = list(scalars.items())
            original(self, s, dict(items[: len(items) // 2]))
            _hold(kind, step)
            return original(self, s, dict(items[len(items) // 2 :]))

        writers.EventFileWriter.write = write
    else:  # takeover
        from ul_jax.train import lock

        original = lock._write_replace

        def write_replace(path, record):
            if Path(path).with_name(Path(path).name + ".takeover").exists():
                tmp = Path(path).with_name(f"{Path(path).name}.{record['token']}.tmp")
                tmp.write_bytes(lock._encode(record))
                _hold(kind, step)
            return original(path, record)

        lock._write_replace = write_replace


@contextlib.contextmanager
def read_only(directory: Path):
    """``directory`` cannot be written while the context is active (see the module docstring)."""
    directory = Path(directory).absolute()
    mode = directory.stat().st_mode
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR)
    patched = []
    if os.geteuid() == 0:

        def inside(path, itself: bool = False) -> bool:
            try:
                p = Path(os.fsdecode(path)).absolute()
            except TypeError:
                return False
            return (itself and p == directory) or directory in p.parents

        def deny(name, fn):
            def wrapper(path, *a, **kw):
                if inside(path) and (name != "open" or a and a[0] & (os.O_WRONLY | os.O_RDWR)):
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return fn(path, *a, **kw)

            return wrapper

        def access(path, m, *a, **kw):
            if inside(path, itself=True) and m & os.W_OK:
                return False
            return real_access(path, m, *a, **kw)

        real_access = os.access
        for name in ("mkdir", "open"):
            patched.append((name, getattr(os, name)))
            setattr(os, name, deny(name, getattr(os, name)))
        patched.append(("access", real_access))
        os.access = access
    try:
        yield directory
    finally:
        for name, fn in patched:
            setattr(os, name, fn)
        directory.chmod(mode)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if os.environ.get(WINDOW_ENV):
        install_window(os.environ[WINDOW_ENV])
    sys.argv = [str(REPO / "launch" / "train.py"), *sys.argv[1:]]
    runpy.run_module("launch.train", run_name="__main__", alter_sys=True)
