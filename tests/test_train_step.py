"""Train/eval steps: fixed prototypes, the non-finite guard, masked eval, Fig. 19 metrics, and the
sharded step on 8 fake CPU devices against 1 device."""

import functools
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ul_jax import data as D
from ul_jax.models import build_model
from ul_jax.objectives import make_optimizer
from ul_jax.prototypes import simplex_etf
from ul_jax.train import (
    StepConfig,
    decode_nonfinite,
    evaluate,
    jit_eval_step,
    jit_init_state,
    jit_train_step,
    prototype_metrics,
)
from ul_jax.train.step import last_block_bn_scale_norm, schedule_count, train_step

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits8():
    train = D.load_dataset("digits", "train", source="digits", image_size=8)
    test = D.load_dataset("digits", "test", source="digits", image_size=8)
    mean, std = D.channel_stats(train.images)
    return train, test, tuple(map(float, mean)), tuple(map(float, std))


def _setup(head, loss, digits8, *, debug_step=-1, lr=0.1):
    train, _, mean, std = digits8
    model = build_model(
        "resnet8",
        10,
        head=head,
        final_relu=head == "linear",
        head_bias=head != "fnpal",
        width_multiplier=0.25,
    )
    tx, sched = make_optimizer(learning_rate=lr, total_steps=20, momentum=0.9, weight_decay=5e-4)
    cfg = StepConfig(
        loss=loss,
        mean=mean,
        std=std,
        augment="crop",
        crop_padding=2,
        debug_nonfinite_at_step=debug_step,
    )
    mesh = D.data_mesh()
    state = jit_init_state(model, tx, 0, (8, 8, 3), mesh)
    step = jit_train_step(model, tx, sched, cfg, mesh, seed=0)
    batches = D.train_batches(train.images, train.labels, D.batch_layout(64), seed=0)
    return model, cfg, mesh, state, step, batches


def _run3(head, digits8):
    model, cfg, mesh, state, step, batches = _setup(head, "ul", digits8)
    state0 = jax.device_get(state)
    for _ in range(3):
        state, m = step(state, D.to_global_array(next(batches), mesh))
        assert int(m["nonfinite"]) == 0
    return model, cfg, mesh, state0, state


@pytest.fixture(scope="module")
def pal_run(digits8):
    return _run3("pal", digits8)


@pytest.mark.parametrize("head", ["pal", "fnpal"])
def test_prototypes_fixed_bit_exact(head, digits8, pal_run):
    _, _, _, state0, state = pal_run if head == "pal" else _run3(head, digits8)
    protos0 = np.asarray(state0.prototypes["head"]["kernel"])
    params0 = state0.params
    np.testing.assert_array_equal(np.asarray(state.prototypes["head"]["kernel"]), protos0)
    # the prototypes are the ETF of the model's seed and not among the trained parameters
    np.testing.assert_allclose(
        protos0, np.asarray(simplex_etf(jax.random.PRNGKey(0), 10, 16)), atol=1e-6
    )
    assert "kernel" not in state.params.get("head", {})
    # while the trunk did train
    k0 = params0["trunk"]["conv_init"]["kernel"]
    assert np.max(np.abs(np.asarray(state.params["trunk"]["conv_init"]["kernel"]) - k0)) > 1e-4
    assert int(state.step) == 3


def test_nonfinite_update_is_refused(digits8):
    _, _, mesh, state, step, batches = _setup("linear", "ce", digits8, debug_step=2)
    state, m1 = step(state, D.to_global_array(next(batches), mesh))
    assert int(m1["nonfinite"]) == 0
    before = jax.device_get(state)
    state, m2 = step(state, D.to_global_array(next(batches), mesh))
    names = decode_nonfinite(int(m2["nonfinite"]))
    assert "updated parameters" in names and "loss" not in names
    after = jax.device_get(state)
    assert int(after.step) == 2  # the step counter advances, and so does the lr schedule's ...
    assert int(schedule_count(after.opt_state, after.step)) == 2
    assert int(schedule_count(before.opt_state, before.step)) == 1
    # ... but params, BN statistics and the optimizer's buffers keep their old (finite) values
    for name in ("params", "batch_stats"):
        jax.tree.map(np.testing.assert_array_equal, getattr(after, name), getattr(before, name))
    trace = optax.tree_utils.tree_get
    jax.tree.map(
        np.testing.assert_array_equal,
        trace(after.opt_state, "trace"),
        trace(before.opt_state, "trace"),
    )
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(after.params))


def test_lr_after_a_refused_update_follows_the_step(digits8):
    """Update 2 after a refused update 1 applies η(1), as the schedule of the step says, and
    logs the lr it applied. Measured on the update itself: from the same parameters, batch and
    augmentation key (the refused update changed neither params nor the zero momentum), the
    update is ``−η·(g + λθ)`` with the same ``g + λθ``, so ``Δ₂ / Δ_fresh = η(1) / η(0)``
    (cosine over 4 steps: 0.854)."""
    train, _, mean, std = digits8
    model = build_model("resnet8", 10, head="pal", width_multiplier=0.25)
    tx, sched = make_optimizer(learning_rate=0.1, total_steps=4)
    mesh = D.data_mesh()
    state0 = jax.device_get(jit_init_state(model, tx, 0, (8, 8, 3), mesh))
    batch = next(D.train_batches(train.images, train.labels, D.batch_layout(64), seed=0))
    rng = jax.random.key(3)

    def step_fn(debug_step):
        cfg = StepConfig(
            loss="ul", mean=mean, std=std, augment="crop", crop_padding=2,
            debug_nonfinite_at_step=debug_step,
        )  # fmt: skip
        return jax.jit(functools.partial(train_step, model, tx, sched, cfg))

    fresh, m_fresh = step_fn(-1)(state0, batch, rng)
    refused = step_fn(1)
    state1, m1 = refused(state0, batch, rng)
    assert int(m1["nonfinite"]) != 0 and int(state1.step) == 1
    state2, m2 = refused(state1, batch, rng)
    assert int(m2["nonfinite"]) == 0

    def delta(s):
        return np.concatenate(
            [
                np.ravel(a - b)
                for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(state0.params))
            ]
        )

    d_fresh, d2 = delta(fresh), delta(state2)
    ratio = float(d2 @ d_fresh / (d_fresh @ d_fresh))
    np.testing.assert_allclose(ratio, float(sched(1) / sched(0)), rtol=1e-3)
    np.testing.assert_allclose(float(m2["lr"]), float(sched(1)), rtol=1e-6)  # the applied lr
    np.testing.assert_allclose(float(m_fresh["lr"]), float(sched(0)), rtol=1e-6)
    assert int(schedule_count(state2.opt_state, state2.step)) == 2


def test_eval_metrics_count_nonfinite_rows_instead_of_scoring_them():
    """A row with a NaN logit cannot be scored: it is counted (``nonfinite_count``) and the
    metrics are NaN; finite rows alone give the streaming accumulator's numbers."""
    from ul_jax.metrics.streaming import classification_update, collapse_update
    from ul_jax.train.step import eval_init
    from ul_jax.train.summaries import eval_metrics

    def sums(logits):
        acc = eval_init(3, 2)
        y, m = jnp.array([0, 1]), jnp.array([1, 1])
        h = jnp.array([[3.0, 4.0], [0.0, 1.0]])
        return acc.replace(
            classification=classification_update(acc.classification, logits, y, m),
            collapse=collapse_update(acc.collapse, h, y, m),
            count=jnp.asarray(2.0),
        )

    bad = eval_metrics(sums(jnp.array([[1.0, 0, 0], [jnp.nan, 0, 0]])), None, prefix="val")
    assert bad["val/count"] == 2 and bad["val/nonfinite_count"] == 1
    assert math.isnan(bad["val/accuracy"]) and math.isnan(bad["val/ece"])
    good = eval_metrics(sums(jnp.array([[1.0, 0, 0], [2.0, 0, 0]])), None, prefix="val")
    assert good["val/accuracy"] == 0.5 and good["val/feature_norm"] == pytest.approx(3.0)
    assert "val/nonfinite_count" not in good


def test_eval_counts_every_example_once(digits8, pal_run):
    _, test, mean, std = digits8
    model, cfg, mesh, _, state = pal_run
    eval_fn = jit_eval_step(model, cfg, mesh)
    out = evaluate(
        eval_fn, state, D.eval_batches(test.images, test.labels, D.batch_layout(128)), mesh
    )
    assert out["eval/count"] == len(test) == 450  # 4 batches, the last one padded with 62 rows
    # reference: one unbatched forward pass over the whole test set
    x = D.cifar_eval_transform(test.images, mean, std)
    logits, feats = model.apply(state.variables(), x, train=False)
    acc = float(np.mean(np.argmax(np.asarray(logits), -1) == test.labels))
    assert out["eval/accuracy"] == pytest.approx(acc, abs=1e-9)
    assert out["eval/feature_norm"] == pytest.approx(
        float(np.mean(np.linalg.norm(np.asarray(feats), axis=-1))), rel=1e-5
    )
    # mechanism diagnostics (issue 14), against the same unbatched pass, computed by hand
    h = np.asarray(feats, np.float64)
    w = np.asarray(state.prototypes["head"]["kernel"], np.float64)  # (p, C), fixed ETF
    norms = np.linalg.norm(h, axis=1)
    cos = np.sum(h * w.T[test.labels], 1) / (norms * np.linalg.norm(w.T[test.labels], axis=1))
    assert out["eval/cos_feature_prototype"] == pytest.approx(cos.mean(), rel=1e-5)
    per_class = [norms[test.labels == c].mean() for c in range(10)]
    np.testing.assert_allclose(out["eval/class_feature_norm"], per_class, rtol=1e-5)
    kappa = 3.0
    out6 = evaluate(
        eval_fn,
        state,
        D.eval_batches(test.images, test.labels, D.batch_layout(128)),
        mesh,
        prefix="val",
        theorem6_scale=kappa,
    )
    means = np.stack([h[test.labels == c].mean(0) for c in range(10)])
    target = kappa * w.T
    dist = np.linalg.norm(means - target, axis=1) / np.linalg.norm(target, axis=1)
    assert out6["val/theorem6_distance"] == pytest.approx(dist.mean(), rel=1e-5)
    assert out6["val/theorem6_target_norm"] == pytest.approx(
        kappa * np.linalg.norm(w, axis=0).mean()
    )
    assert out6["val/accuracy"] == out["eval/accuracy"]


def test_last_block_bn_scale_norm(digits8, pal_run):
    _, _, _, _, state = pal_run
    trunk = jax.device_get(state.params["trunk"])
    last = trunk["BasicBlock_2"]  # resnet8: blocks 0..2
    ref = np.sqrt(
        sum(
            np.sum(np.square(np.asarray(v["scale"], np.float64)))
            for v in last.values()
            if "scale" in v
        )
    )
    assert float(last_block_bn_scale_norm(state.params)) == pytest.approx(ref, rel=1e-6)


def test_prototype_metrics_fig19():
    w = simplex_etf(jax.random.PRNGKey(1), 10, 16, scale=2.0)
    m = jax.device_get(prototype_metrics(w))
    assert m["prototype_norm_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert m["prototype_min_norm"] == pytest.approx(2.0, rel=1e-5)
    assert m["prototype_min_angle"] == pytest.approx(math.degrees(math.acos(-1 / 9)), abs=1e-3)
    # two prototypes 30° apart, one 3× longer
    w2 = np.zeros((3, 3), np.float32)
    w2[:, 0] = [1, 0, 0]
    w2[:, 1] = [3 * math.cos(math.radians(30)), 3 * math.sin(math.radians(30)), 0]
    w2[:, 2] = [0, 0, -1.5]
    m2 = jax.device_get(prototype_metrics(jnp.asarray(w2)))
    assert m2["prototype_norm_ratio"] == pytest.approx(3.0, rel=1e-5)
    assert m2["prototype_min_norm"] == pytest.approx(1.0, rel=1e-5)
    assert m2["prototype_min_angle"] == pytest.approx(30.0, abs=1e-2)


_SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from ul_jax import data as D
    from ul_jax.models import build_model
    from ul_jax.objectives import make_optimizer
    from ul_jax.train import StepConfig, jit_init_state, jit_train_step
    from ul_jax.train import step as S
    import chex

    _train_step = S.train_step
    assert jax.device_count() == 8, jax.devices()
    ds = D.load_dataset("digits", "train", source="digits", image_size=8)
    mean, std = (tuple(map(float, v)) for v in D.channel_stats(ds.images))
    tx, sched = make_optimizer(learning_rate=0.1, total_steps=10, momentum=0.9, weight_decay=5e-4)

    def maxdiff(a, b):
        return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                   for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    def maxabs(a):
        return max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(a))

    # (name, loss, head, EFR λ, RLR): the objective set of the paper's variants
    variants = json.loads(sys.argv[1])
    out = {}
    for name, loss, head, efr, rlr in variants:
        model = build_model("resnet8", 10, head=head, final_relu=False, width_multiplier=0.25)
        cfg = StepConfig(loss=loss, efr_weight=efr, rlr=rlr, mean=mean, std=std,
                         augment="crop_flip", crop_padding=2)
        states, metrics, r = {}, {}, {}
        for ndev in (8, 1):
            mesh = D.data_mesh(jax.devices()[:ndev])
            state = jit_init_state(model, tx, 0, (8, 8, 3), mesh)
            # a fresh trace budget per compiled step: a retrace in the 3 steps raises (chex)
            chex.clear_trace_counter()  # the counter is keyed by where the wrapper is made
            S.train_step = chex.assert_max_traces(_train_step, n=1)
            step = jit_train_step(model, tx, sched, cfg, mesh, seed=0)
            for b in D.train_batches(ds.images, ds.labels, D.batch_layout(64), 0, 0, 3):
                gb = D.to_global_array(b, mesh)
                assert len(gb["image"].sharding.device_set) == ndev
                assert len(gb["image"].addressable_shards) == ndev
                state, m = step(state, gb)
            leaf = state.params["trunk"]["conv_init"]["kernel"]
            assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == ndev
            states[ndev] = jax.device_get(state)
            metrics[ndev] = {k: float(v) for k, v in jax.device_get(m).items()}
            r[f"nonfinite_{ndev}"] = int(m["nonfinite"])
        for part in ("params", "batch_stats", "opt_state"):
            r[f"{part}_maxdiff"] = maxdiff(getattr(states[8], part), getattr(states[1], part))
            r[f"{part}_maxabs"] = maxabs(getattr(states[1], part))
        r["metrics_8"], r["metrics_1"] = metrics[8], metrics[1]
        r["step"] = [int(states[8].step), int(states[1].step)]
        out[name] = r
        if len(out) == 1:  # the first variant's model and state, for the BatchNorm check below
            bn_model, bn_state = model, states[1]

    # BatchNorm over a sharded batch uses the *global* batch mean: the first BN's statistics
    # equal the 1-device ones and differ from those of device 0's 8-example shard alone.
    x = D.cifar_eval_transform(next(D.train_batches(ds.images, ds.labels, D.batch_layout(64), 0))["image"], mean, std)
    variables = bn_state.variables()
    def bn_stats(xx):
        _, new = bn_model.apply(variables, xx, train=True, mutable=["batch_stats"])
        return new["batch_stats"]["trunk"]["bn_init"]["mean"]
    mesh8 = D.data_mesh()
    xs = jax.device_put(x, D.data_sharding(mesh8))
    sharded = np.asarray(jax.jit(bn_stats)(xs))
    single = np.asarray(jax.jit(bn_stats)(x))
    shard0 = np.asarray(jax.jit(bn_stats)(x[:8]))
    out["bn_global_vs_single"] = float(np.max(np.abs(sharded - single)))
    out["bn_global_vs_shard0"] = float(np.max(np.abs(sharded - shard0)))
    print("RESULT " + json.dumps(out))
""")


# (name, loss, head, EFR λ, RLR): UL+PAL (the default suite), then the paper's objectives
# that add terms to the step — EFR (UL+PAL+EFR) and RLR (UL+FNPAL+RLR) — in the slow suite.
_PAL = [["ul_pal", "ul", "pal", 0.0, False]]
_OBJECTIVES = [
    ["ul_pal_efr", "ul", "pal", 1e-3, False],
    ["ul_fnpal_rlr", "ul", "fnpal", 0.0, True],
]


@pytest.mark.parametrize(
    "variants", [_PAL, pytest.param(_PAL + _OBJECTIVES, marks=pytest.mark.slow)], ids=["pal", "all"]
)
def test_sharded_step_matches_single_device(tmp_path, variants):
    """8 forced CPU devices vs 1: after 3 steps the parameters, BN statistics, optimizer state
    and the step's metrics agree to float32 tolerance for every objective, each sharded step
    compiles once, and BatchNorm normalizes with the global-batch statistics."""
    script = tmp_path / "sharded.py"
    script.write_text(_SHARDED_SCRIPT)
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(variants)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT ") :])
    assert [k for k in res if not k.startswith("bn_")] == [v[0] for v in variants]
    for name, *_ in variants:
        r = res[name]
        assert r["step"] == [3, 3] and r["nonfinite_8"] == r["nonfinite_1"] == 0, (name, r)
        for part in ("params", "batch_stats", "opt_state"):
            assert r[f"{part}_maxdiff"] <= 1e-5 * max(1.0, r[f"{part}_maxabs"]), (name, part, r)
        m8, m1 = r["metrics_8"], r["metrics_1"]
        assert set(m8) == set(m1)
        for k in m1:
            assert m8[k] == pytest.approx(m1[k], rel=1e-4, abs=1e-5), (name, k)
    assert res["bn_global_vs_single"] < 1e-5, res
    assert res["bn_global_vs_shard0"] > 1e-3, res
