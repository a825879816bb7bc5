"""Precision and determinism on accelerators: the bfloat16 policy and ``deterministic_ops``.

**The bfloat16 policy** (``model.dtype="bfloat16"``; :func:`policy` returns it as data and
``tests/test_precision.py`` checks every line of it on a compiled step):

==========================  ===================================================================
what                        dtype
==========================  ===================================================================
parameters, optimizer       float32 (Flax ``param_dtype`` stays float32; SGD momentum and the
state, weight decay         update are float32: no loss of small updates)
input images                uint8 on the host → float32 normalization/augmentation → cast to
                            bfloat16 by the first convolution
convolutions, ReLU,         bfloat16 (the MXU / tensor-core rate; activations stored for the
residual adds               backward pass in bfloat16: half the memory of float32)
BatchNorm                   batch mean/variance reduced in float32 (Flax's
                            ``force_float32_reductions``), normalized output in bfloat16;
                            running statistics (``batch_stats``) float32
pooled features ``h``       cast to float32 at the end of the trunk (``ResNet.__call__``)
head and logits             float32 (``h @ W`` with float32 prototypes / weights)
loss, EFR term, RLR         float32 (computed from float32 logits and features)
weights, metrics
gradients                   float32 for the parameters (the cotangents of bfloat16
                            activations are bfloat16 inside the trunk)
==========================  ===================================================================

Why this split: the losses' per-example values and the EFR term ``λΣ‖h‖²`` (features with norms
in the hundreds on UL+PAL runs) would lose digits in bfloat16's 8-bit mantissa, while the
convolutions, where the time goes, do not need float32. A bfloat16 run of the digits config
reaches the float32 run's accuracy within a stated margin (``tests/test_precision.py``).

**Determinism** (``deterministic_ops``, a config field, default False). On GPUs some XLA ops
(scatter-add, some reductions, cuDNN algorithm choice) may differ run to run. With
``deterministic_ops=True`` the training command starts JAX with
``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (deterministic, typically somewhat slower
kernels). :func:`apply_deterministic_ops` must run before JAX starts its backend — ``launch.train``
calls it first thing, :func:`ul_jax.train.train_and_evaluate` again (a no-op then); called
after a GPU backend started without the flag it raises ``ValueError`` naming the field and the
remedy. XLA:CPU and TPU programs are run-to-run deterministic for a fixed device count already
(the bit-identical resume tests of ``docs/RELIABILITY.md`` rely on it), so there the field
has no effect (logged).

**XLA:CPU defaults** (:func:`apply_cpu_defaults`, applied by every ``python -m launch.*`` command
and by the test suite before JAX starts; ``UL_JAX_XLA_CPU_DEFAULTS=0`` turns it off):
``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list of YNNPACK fusion types), which keeps
XLA:CPU from routing the convolutions through its YNNPACK fusions. Measured on a 2-core AMD EPYC
(``docs/PROFILE.md``): the stage-1 3×3 convolution of ResNet-18 at batch 128 forward 86 → 47 ms,
input gradient 84 → 46 ms, filter gradient 227 → 89 ms; the whole CIFAR ResNet-18 train step
37.2 → 46.8 img/s; ResNet-8 ×0.5 unchanged within noise. The numbers of a step agree with the
plain path to float32 rounding (``tests/test_precision.py``); checkpoints are the same either way.
Flags of other backends ignore it.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from absl import logging

from ul_jax.console import CPU_DEFAULTS_ENV, CPU_FAST_FLAGS, apply_cpu_defaults

__all__ = [
    "CPU_DEFAULTS_ENV",
    "CPU_FAST_FLAGS",
    "DETERMINISTIC_FLAG",
    "apply_cpu_defaults",
    "apply_deterministic_ops",
    "policy",
]

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def policy(dtype: str) -> dict[str, str]:
    """The dtype of each part of a training step for ``model.dtype`` (module docstring)."""
    compute = {"float32": "float32", "bfloat16": "bfloat16"}.get(dtype)
    if compute is None:
        raise ValueError(f"model.dtype must be 'float32' or 'bfloat16'; got {dtype!r}")
    return {
        "params": "float32",
        "opt_state": "float32",
        "batch_stats": "float32",
        "conv_activations": compute,
        "features": "float32",
        "logits": "float32",
        "loss": "float32",
        "grads": "float32",
    }


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - jax internals moved: assume started (safe side)
        return True
    started = getattr(xla_bridge, "backends_are_initialized", None)
    return True if started is None else bool(started())


def apply_deterministic_ops(config: Any, environ: MutableMapping[str, str] = os.environ) -> str:
    """Puts :data:`DETERMINISTIC_FLAG` into ``XLA_FLAGS`` when ``config.deterministic_ops`` is
    true and JAX has not started its backend yet. Returns what happened: ``"off"``,
    ``"present"`` (already in ``XLA_FLAGS``), ``"set"``, or ``"no effect on cpu"`` / ``"... tpu"``.

    Raises:
      ValueError: ``deterministic_ops`` is true, the flag is not set and a GPU backend has
        already started (the flag can no longer take effect).
    """
    if not bool(config.get("deterministic_ops", False)):
        return "off"
    xla = environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" in xla:
        return "present"
    if not _backends_started():
        environ["XLA_FLAGS"] = f"{xla} {DETERMINISTIC_FLAG}".strip()
        logging.info("deterministic_ops: XLA_FLAGS += %s", DETERMINISTIC_FLAG)
        return "set"
    import jax

    backend = jax.default_backend()
    if backend == "gpu":
        raise ValueError(
            "deterministic_ops=True, but JAX's GPU backend started before "
            f"{DETERMINISTIC_FLAG} could be set; start the process with "
            f"XLA_FLAGS={DETERMINISTIC_FLAG} (python -m launch.train sets it itself)"
        )
    logging.info("deterministic_ops: no effect on %s (its programs are deterministic)", backend)
    return f"no effect on {backend}"
