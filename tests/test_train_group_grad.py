"""The per-group trunk-gradient diagnostic (ul_jax/train/group_grad.py, ``group_grad_every``):
against brute-force ``jax.grad`` of each group's masked objective, in the training loop's
``metrics.jsonl``, on a 2-device mesh against 1 device, and the config field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from ul_jax import data as D
from ul_jax import losses
from ul_jax.metrics.classification import SHOT_GROUPS, shot_groups
from ul_jax.models import build_model
from ul_jax.objectives import classification_objective, make_optimizer
from ul_jax.train import StepConfig, jit_init_state, read_jsonl, train_and_evaluate
from ul_jax.train.group_grad import (
    GROUP_GRAD_KEYS,
    class_groups,
    gradient_shares,
    group_trunk_gradients,
    per_example_objective,
)
from ul_jax.train.step import train_inputs
from ul_jax.train.validate import validate_config

REPO = Path(__file__).resolve().parents[1]
# a three-way split of the 10 digit classes (the real digits are balanced: all many-shot)
GROUPS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2], np.int32)


@pytest.fixture(scope="module")
def digits8():
    train = D.load_dataset("digits", "train", source="digits", image_size=8)
    mean, std = D.channel_stats(train.images)
    return train, tuple(map(float, mean)), tuple(map(float, std))


def _model_state_batch(digits8, head, cfg_kw, batch_size=32):
    train, mean, std = digits8
    model = build_model(
        "resnet8",
        10,
        head=head,
        final_relu=head == "linear",
        head_bias=head == "linear",
        width_multiplier=0.25,
    )
    tx, _ = make_optimizer(learning_rate=0.1, total_steps=10)
    state = jit_init_state(model, tx, 0, (8, 8, 3), D.data_mesh(jax.devices()[:1]))
    cfg = StepConfig(mean=mean, std=std, augment="crop", crop_padding=1, **cfg_kw)
    batch = next(D.train_batches(train.images, train.labels, D.batch_layout(batch_size), seed=0))
    batch = {"image": jnp.asarray(batch["image"]), "label": jnp.asarray(batch["label"])}
    return model, cfg, state, batch


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


# UL + PAL + EFR (the loss and the EFR sum per example), CE with a learned linear head (the head
# is left out of the trunk), UL + FNPAL + RLR (stop-gradient weights)
VARIANTS = {
    "ul_pal_efr": ("pal", dict(loss="ul", efr_weight=1e-3)),
    "ce_linear": ("linear", dict(loss="ce")),
    "ul_fnpal_rlr": ("fnpal", dict(loss="ul", rlr=True)),
}


@pytest.mark.parametrize(
    "name",
    [
        "ul_pal_efr",
        *(pytest.param(n, marks=pytest.mark.slow) for n in VARIANTS if n != "ul_pal_efr"),
    ],
)
def test_group_gradients_match_brute_force(digits8, name):
    """g_G = jax.grad of the masked objective Σ_{y_i∈G} [r_i ℓ_i/B + λ‖h_i‖²] w.r.t. the trunk
    (BatchNorm on the whole batch); Σ_G g_G = jax.grad of the full classification objective;
    the shares sum to 1 and the logged values are those of the brute-force gradients."""
    head, kw = VARIANTS[name]
    model, cfg, state, batch = _model_state_batch(digits8, head, kw)
    rng = jax.random.key(3)
    images = train_inputs(cfg, rng, batch["image"])
    labels = batch["label"].astype(jnp.int32)
    b = labels.shape[0]

    def forward(params):
        (logits, h), _ = model.apply(
            {**state.variables(), "params": params}, images, train=True, mutable=["batch_stats"]
        )
        return logits, h

    def masked_objective(params, m):  # written out independently of group_grad.py
        logits, h = forward(params)
        if cfg.loss == "ul":
            per_ex = losses.unhinged_loss(logits, labels, cfg.gamma)
        else:
            per_ex = losses.cross_entropy_loss(logits, labels)
        r = jax.lax.stop_gradient(jnp.linalg.norm(h, axis=-1)) if cfg.rlr else 1.0
        return jnp.sum(m * r * per_ex) / b + cfg.efr_weight * jnp.sum(m * jnp.sum(h * h, -1))

    def full_objective(params):
        logits, h = forward(params)
        obj, _ = classification_objective(
            logits, h, labels, loss=cfg.loss, efr_weight=cfg.efr_weight, rlr=cfg.rlr
        )
        return obj

    def trunk(tree):
        return {k: v for k, v in tree.items() if k != "head"}

    group_of = GROUPS[np.asarray(labels)]
    assert all(np.any(group_of == k) for k in range(3))  # every group is in the batch
    masks = jnp.asarray(group_of[None, :] == np.arange(3)[:, None], jnp.float32)  # (3, B)

    @jax.jit
    def under_test(s, bt):
        grads, member = group_trunk_gradients(model, cfg, s, bt, rng, GROUPS)
        return grads, member, gradient_shares(grads, member)

    brute_grad = jax.jit(lambda params, m: trunk(jax.grad(masked_objective)(params, m)))

    @jax.jit
    def objectives(params):
        logits, h = forward(params)
        ones = jnp.ones((b,), jnp.float32)
        terms = per_example_objective(logits, h, labels, cfg)
        return terms, full_objective(params), masked_objective(params, ones)

    grads, member, out = under_test(state, batch)
    ref_grads = [brute_grad(state.params, masks[k]) for k in range(3)]
    ref_full = brute_grad(state.params, jnp.ones((b,), jnp.float32))  # the whole objective
    c, obj, obj_masked_all = objectives(state.params)
    # the brute-force objective with every example kept is the step's objective
    np.testing.assert_allclose(float(obj_masked_all), float(obj), rtol=1e-6)
    assert np.array_equal(np.asarray(member), np.eye(3)[group_of])
    brute = []
    for gk, ref in zip(grads, ref_grads):
        assert "head" not in gk and "trunk" in gk
        assert jax.tree.structure(gk) == jax.tree.structure(ref)
        brute.append(_flat(ref))
        np.testing.assert_allclose(
            _flat(gk), brute[-1], rtol=1e-4, atol=1e-6 * np.abs(brute[-1]).max()
        )
    g_full = _flat(ref_full)
    np.testing.assert_allclose(
        sum(_flat(gk) for gk in grads), g_full, rtol=1e-4, atol=1e-6 * np.abs(g_full).max()
    )
    # the per-example terms sum to the step's objective
    assert c.shape == (b,)
    np.testing.assert_allclose(float(jnp.sum(c)), float(obj), rtol=1e-5)

    share = np.asarray(out["trunk_grad_share"])
    assert share.shape == (3,) and abs(share.sum() - 1.0) < 1e-5
    gg = g_full @ g_full
    np.testing.assert_allclose(share, [gb @ g_full / gg for gb in brute], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(out["trunk_grad_norm_ratio"]),
        [np.linalg.norm(gb) / np.sqrt(gg) for gb in brute],
        rtol=1e-3,
    )
    np.testing.assert_allclose(float(out["trunk_grad_norm"]), np.sqrt(gg), rtol=1e-4)
    np.testing.assert_allclose(
        np.asarray(out["group_batch_share"]), np.bincount(group_of, minlength=3) / b, rtol=1e-6
    )


def test_shot_groups_and_class_groups():
    counts = np.array([500, 101, 100, 20, 19, 0])
    assert shot_groups(counts).tolist() == [0, 0, 1, 1, 2, 2]
    assert SHOT_GROUPS == ("many", "medium", "few")
    assert class_groups(np.full(10, 5000)).tolist() == [0] * 10  # balanced: one group
    with pytest.raises(ValueError, match="group_grad_every"):
        class_groups(None)  # a streamed data set has no class counts
    with pytest.raises(ValueError, match="non-negative integers"):
        shot_groups([3, -1])


def test_loop_writes_group_grad_keys(tmp_path):
    """A 20-step long-tailed digits run with group_grad_every=10 writes the keys at steps 10 and
    20 only: step 10 (not a log, eval or checkpoint step) on its own line, step 20 (the last)
    with the log line."""
    c = tiny_config(
        "ul_pal",
        **{
            "num_train_steps": 20,
            "log_every": 4,
            "eval_every": 8,
            "checkpoint_every": 8,
            "group_grad_every": 10,
            "data.imbalance_ratio": 10.0,  # digits per class 143 … 14: many, medium and few
        },
    )
    train_and_evaluate(c, tmp_path / "run")
    rows = {r["step"]: r for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")}
    with_keys = sorted(s for s, r in rows.items() if "train/trunk_grad_share" in r)
    assert with_keys == [10, 20], sorted(rows)
    assert set(rows[10]) == {"step", *GROUP_GRAD_KEYS}
    assert "train/loss" in rows[20] and "eval/accuracy" in rows[20]
    for s in (10, 20):
        r = rows[s]
        for k in (
            "train/trunk_grad_share",
            "train/trunk_grad_norm_ratio",
            "train/group_batch_share",
        ):
            assert len(r[k]) == 3 and all(np.isfinite(r[k])), (s, k, r[k])
        assert abs(sum(r["train/trunk_grad_share"]) - 1.0) < 1e-5
        assert abs(sum(r["train/group_batch_share"]) - 1.0) < 1e-6
        assert min(r["train/group_batch_share"]) > 0  # all three groups in a batch of 64
        assert r["train/trunk_grad_norm"] > 0


def test_config_without_the_field_validates():
    c = tiny_config()
    assert c.group_grad_every == 0
    del c["group_grad_every"]  # a config.json saved before the field existed
    validate_config(c, device_count=1)
    bad = tiny_config(group_grad_every=-1)
    with pytest.raises(ValueError, match="group_grad_every"):
        validate_config(bad, device_count=1)


_SHARDED_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from ul_jax import data as D
    from ul_jax.models import build_model
    from ul_jax.objectives import make_optimizer
    from ul_jax.train import StepConfig, jit_init_state
    from ul_jax.train.group_grad import jit_group_gradients

    assert jax.device_count() == 2
    train = D.load_dataset("digits", "train", source="digits", image_size=8)
    mean, std = D.channel_stats(train.images)
    model = build_model("resnet8", 10, head="pal", final_relu=False, head_bias=False,
                        width_multiplier=0.25)
    tx, _ = make_optimizer(learning_rate=0.1, total_steps=10)
    cfg = StepConfig(loss="ul", efr_weight=1e-3, mean=tuple(map(float, mean)),
                     std=tuple(map(float, std)), augment="crop", crop_padding=1)
    groups = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    batch = next(D.train_batches(train.images, train.labels, D.batch_layout(32), seed=0))
    batch = {k: batch[k] for k in ("image", "label")}
    out = {}
    for name, devs in (("2", jax.devices()), ("1", jax.devices()[:1])):
        mesh = D.data_mesh(devs)
        state = jit_init_state(model, tx, 0, (8, 8, 3), mesh)
        fn = jit_group_gradients(model, cfg, mesh, 0, groups)
        m = fn(state, D.to_global_array(batch, mesh))
        out[name] = {k: np.asarray(v).tolist() for k, v in m.items()}
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow  # ~25 s: a subprocess with 2 forced CPU devices compiles twice
def test_sharded_matches_single_device(tmp_path):
    """2 forced CPU devices (batch sharded, BatchNorm on the global batch) give the 1-device
    values."""
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED_SCRIPT)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    for k, v1 in res["1"].items():
        np.testing.assert_allclose(res["2"][k], v1, rtol=1e-4, atol=1e-6, err_msg=k)
    assert abs(sum(res["2"]["trunk_grad_share"]) - 1.0) < 1e-5
