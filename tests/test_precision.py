"""The bfloat16 policy and the ``deterministic_ops`` switch (``ul_jax/train/precision.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config
from ml_collections import ConfigDict

from configs import digits
from ul_jax import train as T
from ul_jax.config import REPO_ROOT
from ul_jax.objectives import classification_objective
from ul_jax.train import precision


def _dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree) if hasattr(x, "dtype")}


def test_bfloat16_policy_holds_in_the_model_and_the_step():
    """Every line of ``precision.policy('bfloat16')``: float32 parameters, optimizer state,
    BN statistics, features, logits, loss and gradients; bfloat16 convolutions."""
    c = tiny_config("ul_pal_efr", **{"model.dtype": "bfloat16"})
    want = precision.policy("bfloat16")
    model = T.build_model_from_config(c, 10)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((2, 8, 8, 3)), train=False))(
        jax.random.PRNGKey(0)
    )
    assert _dtypes(variables["params"]) == {want["params"]}
    assert _dtypes(variables["batch_stats"]) == {want["batch_stats"]}
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))

    def fwd(params):
        (logits, h), _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        obj, _ = classification_objective(
            logits, h, jnp.arange(4) % 10, loss="ul", gamma=None, efr_weight=1e-3, rlr=False
        )
        return obj, (logits, h)

    step = jax.jit(jax.value_and_grad(fwd, has_aux=True))
    (obj, (logits, h)), grads = step(variables["params"])
    assert str(logits.dtype) == want["logits"] and str(h.dtype) == want["features"]
    assert str(obj.dtype) == want["loss"] and _dtypes(grads) == {want["grads"]}
    jaxpr = jax.make_jaxpr(fwd)(variables["params"])
    convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert convs and all(str(e.outvars[0].aval.dtype) == "bfloat16" for e in convs)
    tx, _ = T.build_optimizer_from_config(c, total_steps=10, steps_per_epoch=5)
    assert _dtypes(tx.init(variables["params"])) <= {want["opt_state"], "int32"}
    # float32: nothing is bfloat16
    f32 = T.build_model_from_config(tiny_config("ul_pal"), 10)
    jf = jax.make_jaxpr(lambda k: f32.apply(f32.init(k, x, train=False), x, train=False))(
        jax.random.PRNGKey(0)
    )
    assert "bf16" not in str(jf)
    with pytest.raises(ValueError, match="model.dtype must be 'float32' or 'bfloat16'; got 'f16'"):
        precision.policy("f16")


@pytest.mark.slow
def test_digits_demo_bfloat16_reaches_float32_accuracy(tmp_path):
    """The CPU demo as shipped (configs/digits.py states 98.4 % after 300 steps) in float32 and
    in bfloat16: both ≥ 97 %, and bfloat16 within 1.5 points (7 of 450 test images) of float32."""
    out = {}
    for dtype in ("float32", "bfloat16"):
        c = digits.get_config()
        c.model.dtype = dtype
        out[dtype] = T.train_and_evaluate(c, tmp_path / dtype)
        assert out[dtype]["step"] == 300 and out[dtype]["eval/count"] == 450
        assert out[dtype]["eval/accuracy"] >= 0.97, (dtype, out[dtype]["eval/accuracy"])
    gap = abs(out["bfloat16"]["eval/accuracy"] - out["float32"]["eval/accuracy"])
    assert gap <= 0.015, gap


def _cfg(on: bool) -> ConfigDict:
    return ConfigDict({"deterministic_ops": on})


def test_deterministic_ops_switch(monkeypatch):
    env: dict[str, str] = {}
    assert precision.apply_deterministic_ops(_cfg(False), env) == "off" and env == {}
    assert precision.apply_deterministic_ops(ConfigDict({}), env) == "off"  # older configs
    env = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=true"}
    assert precision.apply_deterministic_ops(_cfg(True), env) == "present"
    jax.devices()  # this process's backend has started: on a CPU the switch has no effect
    env = {}
    assert precision.apply_deterministic_ops(_cfg(True), env) == "no effect on cpu"
    assert env == {}
    # a GPU backend started without the flag: too late, a named error
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(ValueError, match="deterministic_ops=True, but JAX's GPU backend started"):
        precision.apply_deterministic_ops(_cfg(True), {})


def test_deterministic_ops_sets_xla_flags_before_jax_starts():
    """In a fresh process: the flag lands in XLA_FLAGS (after what was there) and XLA accepts
    it (an unknown flag would abort the process)."""
    code = (
        "import os; from ml_collections import ConfigDict;"
        "from ul_jax.train.precision import apply_deterministic_ops as a;"
        "print(a(ConfigDict({'deterministic_ops': True})));"
        "import jax.numpy as jnp; print(float(jnp.ones(3).sum()), os.environ['XLA_FLAGS'])"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [
        "set",
        "3.0",
        "--xla_cpu_enable_fast_math=false",
        "--xla_gpu_deterministic_ops=true",
    ]
    np.testing.assert_equal(r.stdout.count("deterministic"), 1)


def test_cpu_defaults_respect_the_user_and_the_opt_out():
    env: dict[str, str] = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert precision.apply_cpu_defaults(env) == list(precision.CPU_FAST_FLAGS)
    assert env["XLA_FLAGS"].split() == [
        "--xla_force_host_platform_device_count=2",
        *precision.CPU_FAST_FLAGS,
    ]
    assert precision.apply_cpu_defaults(env) == []  # idempotent
    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=mine"}
    assert precision.apply_cpu_defaults(mine) == [] and "=mine" in mine["XLA_FLAGS"]
    off = {precision.CPU_DEFAULTS_ENV: "0"}
    assert precision.apply_cpu_defaults(off) == [] and "XLA_FLAGS" not in off


_STEP_CODE = """
import json, os, sys
import numpy as np
sys.path.insert(0, 'tests')
from ul_jax.console import apply_cpu_defaults
apply_cpu_defaults()  # as every launch command (and tests/conftest.py) does, before JAX starts
from helpers import tiny_config
import jax, jax.numpy as jnp
from ul_jax import train as T
from ul_jax.objectives import classification_objective
c = tiny_config('ul_pal_efr', **{'data.image_size': 16, 'model.width_multiplier': 0.5})
model = T.build_model_from_config(c, 10)
x = jax.random.normal(jax.random.PRNGKey(1), (8, 16, 16, 3))
v = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.PRNGKey(0))
def f(p):
    (z, h), _ = model.apply({**v, 'params': p}, x, train=True, mutable=['batch_stats'])
    return classification_objective(z, h, jnp.arange(8) % 10, loss='ul', gamma=None,
                                    efr_weight=1e-3, rlr=False)[0]
g = jax.jit(jax.value_and_grad(f))
hlo = g.lower(v['params']).compile().as_text()
loss, grads = g(v['params'])
np.savez(sys.argv[1], loss=np.asarray(loss), *[np.asarray(a) for a in jax.tree.leaves(grads)])
print(json.dumps({'ynn': 'ynn_fusion' in hlo, 'flags': os.environ.get('XLA_FLAGS', '')}))
"""


def test_cpu_defaults_engage_and_keep_the_numerics(tmp_path):
    """The flag changes the compiled program (no YNNPACK fusions left) and the loss and every
    gradient of a ResNet step agree with the plain path to float32 rounding."""
    import json

    out = {}
    for on in ("0", "1"):
        env = {
            **os.environ,
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "",
            precision.CPU_DEFAULTS_ENV: on,
        }
        path = tmp_path / f"g{on}.npz"
        r = subprocess.run(
            [sys.executable, "-c", _STEP_CODE, str(path)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        out[on] = (json.loads(r.stdout.strip().splitlines()[-1]), np.load(path))
    (info0, a), (info1, b) = out["0"], out["1"]
    assert info0["ynn"] and not info1["ynn"], (info0, info1)
    assert "--xla_cpu_experimental_ynn_fusion_type=" in info1["flags"]
    assert sorted(a.files) == sorted(b.files) and len(a.files) > 10
    for k in a.files:
        np.testing.assert_allclose(b[k], a[k], rtol=2e-4, atol=2e-5, err_msg=k)
