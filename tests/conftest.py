"""Pytest fixtures shared by the tests; plain helpers are in ``tests/helpers.py``.

Loading this file applies ul_jax's XLA:CPU defaults before any test starts JAX, as every launch
command does (one numerics everywhere), and gives each pytest process a persistent XLA
compilation cache (``JAX_COMPILATION_CACHE_DIR``, a fresh temporary directory, removed at the
end) that the many ``python -m launch.train`` children of the suite inherit: the tiny digits
programs they all compile are compiled once (a CLI child takes ~6 s instead of ~12 s). A cached
executable is the compiled binary itself, so numerics are unchanged; tests that need their own
cache (the kill/resume tests) still set theirs.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from helpers import tiny_config

from ul_jax.console import apply_cpu_defaults

apply_cpu_defaults()

_CACHE_ENV = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}


def pytest_configure(config):
    if "JAX_COMPILATION_CACHE_DIR" in os.environ:  # the caller chose a cache: keep it
        return
    path = tempfile.mkdtemp(prefix="ul_jax_test_xla_cache_")
    config._ul_jax_xla_cache = path
    os.environ.update({"JAX_COMPILATION_CACHE_DIR": path, **_CACHE_ENV})
    import jax  # the in-process tests use it too (jax reads the variables only at import)

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    path = getattr(config, "_ul_jax_xla_cache", None)
    if path:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tiny_config_factory():
    """:func:`helpers.tiny_config` as a fixture."""
    return tiny_config
