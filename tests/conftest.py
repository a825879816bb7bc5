"""Pytest fixtures shared by the tests; plain helpers are in ``tests/helpers.py``.

Loading this file applies ul_jax's XLA:CPU defaults before any test starts JAX, as every launch
command does (one numerics everywhere).
"""

from __future__ import annotations

import pytest
from helpers import tiny_config

from ul_jax.console import apply_cpu_defaults

apply_cpu_defaults()


@pytest.fixture
def tiny_config_factory():
    """:func:`helpers.tiny_config` as a fixture."""
    return tiny_config
