"""The command-line entry points (``python -m launch.X``). Importing the package applies ul_jax's
XLA:CPU defaults before any command starts JAX (``ul_jax.console.apply_cpu_defaults``;
``UL_JAX_XLA_CPU_DEFAULTS=0`` turns them off)."""

from ul_jax.console import apply_cpu_defaults as _apply_cpu_defaults

_apply_cpu_defaults()
