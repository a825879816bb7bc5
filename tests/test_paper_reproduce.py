"""The paper configs (``configs/paper/``), the CPU suite configs and the suite runner
(:mod:`ul_jax.paper`, ``python -m launch.reproduce``)."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.cpu import cifar10 as cpu_cifar10
from configs.paper import fig2, fig19, table2, table3
from launch import reproduce as cli
from ul_jax import paper as rp
from ul_jax.objectives import make_optimizer
from ul_jax.paper import runner
from ul_jax.train import (
    NUM_CLASSES,
    StepConfig,
    build_model_from_config,
    create_train_state,
    train_step,
    validate_config,
)

PAPER_MODULES = (fig2, fig19, table2, table3)
ARCH_OF = {
    "cifar10": "resnet18",
    "cifar10_split_id": "resnet18",
    "cifar100": "resnet34",
    "imagenet100": "resnet50",
}


def _all_paper_configs():
    for mod in PAPER_MODULES:
        for arg in mod.ARGS:
            yield mod.__name__, arg, mod.get_config(arg)


def test_paper_configs_are_the_paper_settings():
    n = 0
    for name, arg, c in _all_paper_configs():
        validate_config(c, device_count=1)
        where = f"{name}:{arg}"
        assert c.batch_size == 256, where
        assert (
            c.optimizer.lr,
            c.optimizer.momentum,
            c.optimizer.weight_decay,
            c.optimizer.schedule,
        ) == (0.1, 0.9, 5e-4, "cosine"), where
        assert c.num_train_steps == -1, where
        assert c.num_epochs == (100 if c.data.name == "imagenet100" else 200), where
        assert c.model.arch == ARCH_OF[c.data.name], where
        assert c.model.width_multiplier == 1.0 and c.model.dtype == "float32", where
        if c.variant.endswith("_efr"):
            assert c.objective.efr_weight > 0, where
        else:
            assert c.objective.efr_weight == 0, where
        n += 1
    assert n == sum(len(m.ARGS) for m in PAPER_MODULES) > 150
    # the λ values of the tables and the data settings
    assert table2.get_config("ce_efr,exp100").objective.efr_weight == 1e-5
    assert table2.get_config("ul_pal_efr,exp100").objective.efr_weight == 1e-6
    c = table2.get_config("ul_pal_efr,c100_step10,lam=5e-7")
    assert (c.data.name, c.data.imbalance_kind, c.data.imbalance_ratio, c.objective.efr_weight) == (
        "cifar100",
        "step",
        10.0,
        5e-7,
    )
    assert table2.get_config("ce,exp1").data.imbalance_ratio is None
    assert table3.get_config("ul_pal_efr,cifar10").objective.efr_weight == 5e-7  # Table 3
    assert table3.get_config("ce_efr,cifar100").objective.efr_weight == 1e-5
    f = fig19.get_config()
    assert (f.head.kind, f.objective.loss, f.model.final_relu) == ("linear", "ul", True)
    g = fig2.get_config("imagenet100,ul_fnpal_rlr")
    assert (g.model.stem, g.data.image_size, g.head.kind, g.objective.rlr) == (
        "imagenet",
        224,
        "fnpal",
        True,
    )
    for bad in ("ce,exp30", "ce,exp100,lam=1e-5", "bogus,exp100", "ce_efr,exp100,lr=1"):
        with pytest.raises(ValueError):
            table2.get_config(bad)


def _tiny_step_inputs(c, seed=0):
    """A copy of paper config ``c`` shrunk for one CPU step (the paper config is left intact)."""
    t = copy.deepcopy(c)
    num_classes = NUM_CLASSES[t.data.name]
    last = 2048 if t.model.arch == "resnet50" else 512
    t.model.width_multiplier = max(1 / 16, num_classes / last)  # PAL needs p >= C - 1
    size = 32 if t.model.stem == "imagenet" else 16
    model = build_model_from_config(t, num_classes)
    tx, sched = make_optimizer(
        learning_rate=t.optimizer.lr,
        total_steps=10,
        momentum=t.optimizer.momentum,
        weight_decay=t.optimizer.weight_decay,
        weight_decay_on=t.optimizer.weight_decay_on,
        schedule=t.optimizer.schedule,
        nesterov=t.optimizer.nesterov,
    )
    o = t.objective
    cfg = StepConfig(
        loss=o.loss,
        gamma=o.gamma,
        efr_weight=float(o.efr_weight),
        rlr=o.rlr,
        augment=t.data.augment,
        crop_padding=min(t.data.crop_padding, 2),
    )
    rng = np.random.default_rng(seed)
    batch = {
        "image": jnp.asarray(rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)),
        "label": jnp.asarray(rng.integers(0, num_classes, 4), jnp.int32),
    }
    return model, tx, sched, cfg, batch, (size, size, 3)


def test_paper_models_build_and_step():
    """Every distinct model/objective of the paper configs: one abstract step (eval_shape); one
    real jitted step per architecture family (basic-block CIFAR ResNet, bottleneck ImageNet ResNet),
    at 1/16 width and tiny inputs."""
    combos = {}
    for name, arg, c in _all_paper_configs():
        key = (
            c.model.arch,
            c.model.stem,
            c.data.name,
            c.head.kind,
            c.objective.loss,
            c.objective.rlr,
            c.objective.efr_weight > 0,
            c.model.final_relu,
        )
        combos.setdefault(key, c)
    assert len(combos) == 19  # 3 datasets x 6 variants (fig2) + plain UL (fig19)
    real = {("resnet18", "cifar"), ("resnet50", "imagenet")}
    stepped = set()
    for key, c in combos.items():
        model, tx, sched, cfg, batch, shape = _tiny_step_inputs(c)
        init = lambda k: create_train_state(model, tx, k, shape)
        fn = lambda s, b, k: train_step(model, tx, sched, cfg, s, b, k)
        abstract = jax.eval_shape(init, jax.random.key(0))
        family = (c.model.arch, c.model.stem)
        if family in real and family not in stepped and c.head.kind == "pal":
            # concrete random arrays of the abstract state's shapes (compiling the init, with its ETF
            # linear algebra, would double the test time); the step itself is the real jitted one
            rng = np.random.default_rng(0)
            state = jax.tree.map(
                lambda a: (
                    jnp.asarray(0.05 * rng.standard_normal(a.shape), a.dtype)
                    if jnp.issubdtype(a.dtype, jnp.floating)
                    else jnp.zeros(a.shape, a.dtype)
                ),
                abstract,
            )
            new, metrics = jax.jit(fn)(state, batch, jax.random.key(1))
            assert int(new.step) == 1
            assert np.isfinite(float(metrics["loss"]))
            assert int(metrics["nonfinite"]) == 0
            diff = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.params, state.params)
            assert max(jax.tree.leaves(diff)) > 0  # the step changed the parameters
            stepped.add(family)
        else:
            new, metrics = jax.eval_shape(fn, abstract, batch, jax.random.key(1))
            assert jax.tree.structure(new.params) == jax.tree.structure(abstract.params)
            assert metrics["loss"].shape == ()
    assert stepped == real


def test_second_pass_suites_use_a_validation_split():
    from ul_jax.paper import suites as cpu_suite

    sweep, scale = rp.load_suite("cpu_sweep"), rp.load_suite("cpu_scale")
    lams = {"ul_pal": [], "ce": []}
    for r in sweep + scale:
        c = rp.load_config(r.config, r.overrides, seed=1)
        validate_config(c, device_count=1)
        assert c.data.validation_per_class == cpu_suite.VAL_PER_CLASS > 0  # knobs chosen on val
        assert c.num_train_steps == cpu_cifar10.STEPS and c.seed == 1 and r.setting == "full_val"
        if r in sweep:
            lams["ul_pal" if c.head.kind == "pal" else "ce"].append(c.objective.efr_weight)
            assert c.objective.loss == ("ul" if c.head.kind == "pal" else "ce")
        else:
            assert c.head.kind == "fnpal" and c.objective.rlr == r.variant.endswith("rlr")
    # >= 5 log-spaced λ each plus λ = 0 ("Vanilla"), the overrides reach the config unscaled
    for v, grid in (("ul_pal", cpu_suite.UL_LAMBDAS), ("ce", cpu_suite.CE_LAMBDAS)):
        assert lams[v] == [0.0, *grid] and len(grid) >= 5
        ratios = np.diff(np.log(grid))
        np.testing.assert_allclose(ratios, ratios[0])
    assert {rp.load_config(r.config, r.overrides).head.scale for r in scale} == set(
        cpu_suite.FNPAL_SCALES
    )
    # the long runs use a λ of the sweep's grid (selected there on validation) and the same split
    assert cpu_suite.SELECTED_UL_LAMBDA in cpu_suite.UL_LAMBDAS
    for r in rp.load_suite("cpu_long2"):
        c = rp.load_config(r.config, r.overrides)
        validate_config(c, device_count=1)
        assert c.num_train_steps == 4 * cpu_cifar10.STEPS
        assert c.data.validation_per_class == cpu_suite.VAL_PER_CLASS
        assert c.objective.efr_weight in (0.0, cpu_suite.SELECTED_UL_LAMBDA)


def test_cpu_suite_configs():
    runs = rp.load_suite("cpu")
    assert len(runs) == 18 and len({r.name for r in runs}) == 18
    claims = {c for r in runs for c in r.claims}
    assert claims == set(rp.CLAIMS)
    for r in runs + rp.load_suite("cpu_step"):
        c = rp.load_config(r.config, r.overrides, seed=3)
        validate_config(c, device_count=1)
        assert c.seed == 3 and c.num_train_steps == cpu_cifar10.STEPS
        assert c.model.arch == "resnet8" and c.batch_size == 128
        assert c.data.source == "image_folder"  # the offline CIFAR-10 archive
        assert "svhn_cropped" not in r.ood
        assert c.variant == r.variant
    # EFR: the second pass's validation-selected batch-sum λ_b at B = 128 (configs/cpu/cifar10.py)
    assert cpu_cifar10.get_config("ce_efr,exp100").objective.efr_weight == pytest.approx(1e-4)
    assert cpu_cifar10.get_config("ul_pal_efr,split").objective.efr_weight == pytest.approx(2.5e-4)
    assert cpu_cifar10.get_config("ul_pal_efr,split").objective.efr_convention == "batch_sum"
    assert cpu_cifar10.get_config("ul,full").optimizer.schedule == "constant"
    # the first pass's runs keep the first pass's λ_b (pinned in the suite), whatever the defaults
    lams = {
        r.name: rp.load_config(r.config, r.overrides).objective.efr_weight
        for r in runs + rp.load_suite("cpu_step")
        if "efr" in r.variant
    }
    assert lams["c3_exp100_ce_efr"] == lams["c5_split_ce_efr"] == pytest.approx(2e-5)
    assert lams["c3_step100_ul_pal_efr"] == pytest.approx(2e-6)
    assert lams["c5_split_ul_pal_efr"] == pytest.approx(1e-6)
    # the claim-1 control differs from c1_ul only in the head/objective (same constant lr, logging)
    c1 = {r.name: rp.load_config(r.config, r.overrides) for r in runs if "claim1" in r.claims}
    assert set(c1) == {"c1_ul", "c1_ul_pal_const"}
    a, b = c1["c1_ul"], c1["c1_ul_pal_const"]
    assert b.optimizer.schedule == a.optimizer.schedule == "constant"
    assert (b.log_every, b.optimizer.lr, b.num_train_steps) == (
        a.log_every,
        a.optimizer.lr,
        a.num_train_steps,
    )
    assert b.head.kind == "pal" and a.head.kind == "linear"
    # the paper config the CPU config came from is not modified
    assert table2.get_config("ce_efr,exp100").model.arch == "resnet18"
    with pytest.raises(ValueError):
        cpu_cifar10.get_config("ul,exp100")
    for s in ("paper",):
        for r in rp.load_suite(s):
            validate_config(rp.load_config(r.config), device_count=1)


# --------------------------------------------------------------------------------------------
# the runner, end to end on a micro suite (sklearn digits, a few steps)
# --------------------------------------------------------------------------------------------
_DIGITS = {
    "num_train_steps": 20,
    "log_every": 5,
    "eval_every": 10,
    "checkpoint_every": 10,
    "tensorboard": False,
    "batch_size": 64,
}
MICRO = (
    rp.Run(
        "c1_ul",
        "configs/digits.py:ul",
        ("claim1",),
        "digits",
        "ul",
        overrides={**_DIGITS, "debug_nonfinite_at_step": 13},
        expect_nonfinite=True,
    ),
    rp.Run(
        "c2_ce",
        "configs/digits.py:ce",
        ("claim2", "claim4", "claim5"),
        "digits",
        "ce",
        ood=("uniform_noise",),
        overrides=_DIGITS,
    ),
    rp.Run(
        "c2_ce_efr",
        "configs/digits.py:ce_efr",
        ("claim4", "claim5"),
        "digits",
        "ce_efr",
        ood=("uniform_noise",),
        overrides=_DIGITS,
    ),
)

DOC = """# Test doc

Claim 1. Verdict: <!-- VERDICT micro:claim1 -->pending — not yet run<!-- /VERDICT -->

<!-- BEGIN micro:claim1 -->
(placeholder)
<!-- END micro:claim1 -->

Claim 3. Verdict: <!-- VERDICT micro:claim3 -->pending — not yet run<!-- /VERDICT -->
tail text stays

<!-- BEGIN micro:timing -->
<!-- END micro:timing -->
"""


def test_runner_end_to_end(tmp_path, monkeypatch):
    out, figs, docs = tmp_path / "runs", tmp_path / "figs", tmp_path / "REPRODUCTION.md"
    docs.write_text(DOC)
    res = rp.run_suite(MICRO, out, seeds=(0,), suite="micro", fig_dir=figs, docs=docs)
    assert res["failed"] == [] and len(res["ran"]) == 3 and res["skipped"] == []

    st = rp.read_status(out / "c1_ul" / "seed0")
    assert st["status"] == "nonfinite" and st["step"] == 13
    assert st["last_good_checkpoint"].endswith("10")
    for name in ("c2_ce", "c2_ce_efr"):
        st = rp.read_status(out / name / "seed0")
        assert st["status"] == "complete" and st["step"] == 20
        ev = json.loads((out / name / "seed0" / "eval.json").read_text())
        assert "uniform_noise" in ev["ood"]
        assert st["top1"] == ev["classification"]["top1"]

    payload = json.loads((figs / "results_micro.json").read_text())
    claims = payload["claims"]
    assert set(claims) == {"claim1", "claim2", "claim4", "claim5"}
    assert claims["claim1"]["verdict"].startswith(
        "1 of 1 finished plain-UL run(s) hit a non-finite"
    )
    assert "non-finite at step 13 of 20" in claims["claim1"]["table"]
    ev_ce = json.loads((out / "c2_ce" / "seed0" / "eval.json").read_text())
    assert f"{100 * ev_ce['classification']['top1']:.2f}" in claims["claim2"]["table"]
    assert f"{100 * ev_ce['calibration']['ece']:.2f}" in claims["claim4"]["table"]
    assert claims["claim4"]["verdict"].startswith("EFR lowered ECE in ")
    assert " of 1 baseline/EFR pairs" in claims["claim4"]["verdict"]
    assert "of 3 (pair, OOD set, score) comparisons" in claims["claim5"]["verdict"]
    # claim 2 has no CE/UL+PAL pair here: no verdict may be invented
    assert claims["claim2"]["verdict"] == rp.PENDING
    for f in (
        "micro_claim1_fig19.png",
        "micro_claim2_accuracy.png",
        "micro_claim4_reliability.png",
        "micro_c2_ce_seed0_ood_hist_uniform_noise.png",
    ):
        assert (figs / f).stat().st_size > 1000, f
    # the fig. 19 curves stop at the last finite log (step 10)
    curves = payload["runs"]["c1_ul"]["seeds"]["0"]["curves"]
    assert max(curves["step"]) == 10 and curves["train/prototype_norm_ratio"][-1] >= 1

    text = docs.read_text()
    assert "(placeholder)" not in text and "tail text stays" in text
    assert "<!-- VERDICT micro:claim1 -->1 of 1 finished" in text
    assert "<!-- VERDICT micro:claim3 -->pending — not yet run<!-- /VERDICT -->" in text
    assert "## Results: suite micro" in text and "<!-- BEGIN micro:claim4 -->" in text
    assert "micro_claim1_fig19.png" in text
    # the budget table: 3 finished runs of seed 0, times from their status files
    secs = [rp.read_status(out / n / "seed0") for n in ("c1_ul", "c2_ce", "c2_ce_efr")]
    total = sum(st["train_seconds"] + st.get("eval_seconds", 0.0) for st in secs)
    assert payload["timing"]["0"]["runs"] == 3
    assert payload["timing"]["0"]["total_seconds"] == pytest.approx(total)
    assert f"| 0 | 3 | {total / 60:.1f} |" in text

    # second invocation: everything is finished and skipped; the docs are rewritten in place
    mtime = (out / "c2_ce" / "seed0" / "eval.json").stat().st_mtime_ns
    res2 = rp.run_suite(MICRO, out, seeds=(0,), suite="micro", fig_dir=figs, docs=docs)
    assert res2["ran"] == [] and len(res2["skipped"]) == 3
    assert (out / "c2_ce" / "seed0" / "eval.json").stat().st_mtime_ns == mtime
    text2 = docs.read_text()
    assert text2.count("<!-- BEGIN micro:claim4 -->") == 1 and text2.count("## Results") == 1

    # the CLI's --tables_only path on the same runs (suite "micro" resolved by monkeypatch)
    monkeypatch.setattr(runner, "load_suite", lambda name: MICRO)
    monkeypatch.setattr(runner, "report_suite", lambda name: ("micro", MICRO))
    rc = cli.main(
        [
            "--suite",
            "micro",
            "--out",
            str(out),
            "--tables_only",
            "--fig_dir",
            str(figs),
            "--docs",
            str(docs),
        ]
    )
    assert rc == 0
    assert docs.read_text().count("<!-- BEGIN micro:claim1 -->") == 1

    # a second seed on disk (a copy of seed 0) enters every table without --seeds: n = 2, std 0
    shutil.copytree(out / "c2_ce" / "seed0", out / "c2_ce" / "seed1")
    assert rp.seeds_on_disk(MICRO, out) == [0, 1]
    rc = cli.main(
        [
            "--suite",
            "micro",
            "--out",
            str(out),
            "--tables_only",
            "--fig_dir",
            str(figs),
            "--docs",
            str(docs),
        ]
    )
    assert rc == 0
    payload = json.loads((figs / "results_micro.json").read_text())
    assert payload["seeds"] == [0, 1]
    ece = 100 * ev_ce["calibration"]["ece"]
    assert f"| {ece:.2f} ± 0.00 |" in payload["claims"]["claim4"]["table"]
    assert payload["runs"]["c1_ul"]["seeds"]["1"]["status"] == "not run"
    assert f"{ece:.2f} ± 0.00" in docs.read_text()
    # run folders are named relative to --out: the file names no directory of this machine
    assert payload["runs"]["c2_ce"]["seeds"]["1"]["workdir"] == "c2_ce/seed1"
    assert str(tmp_path) not in (figs / "results_micro.json").read_text()


def test_runner_selection_and_pending(tmp_path):
    with pytest.raises(ValueError, match="unknown run"):
        rp.run_suite(MICRO, tmp_path, only=["nope"], fig_dir=tmp_path, docs=None)
    with pytest.raises(ValueError, match="unknown suite"):
        rp.load_suite("nope")
    # cpu_step runs land in the cpu tables
    from ul_jax.paper import suites as cpu_suite

    every = cpu_suite.RUNS + cpu_suite.STEP_RUNS + cpu_suite.LONG_RUNS
    for name in ("cpu", "cpu_step", "cpu_long"):
        assert rp.report_suite(name) == ("cpu", every)
    long = rp.load_suite("cpu_long")
    assert [r.variant for r in long] == ["ce", "ul_pal"]
    for r in long:
        c = rp.load_config(r.config, r.overrides)
        validate_config(c, device_count=1)
        assert c.num_train_steps == 4 * cpu_cifar10.STEPS and r.setting == "full_long"
    assert rp.report_suite("paper")[0] == "paper"
    # the second pass reports on its own (cpu2), never on the first pass's tables
    for name in ("cpu_sweep", "cpu_scale", "cpu_long2"):
        assert rp.report_suite(name) == (
            "cpu2",
            cpu_suite.SWEEP_RUNS + cpu_suite.SCALE_RUNS + cpu_suite.LONG2_RUNS,
        )
    assert rp.seeds_on_disk(MICRO, tmp_path / "nothing", (3,)) == [3]
    doc = tmp_path / "DOC.md"
    doc.write_text(DOC)
    rp.report(MICRO, tmp_path / "empty", suite="micro", fig_dir=tmp_path / "f", docs=doc)
    assert doc.read_text() == DOC  # no run folder: measured tables are never blanked
    rep = rp.report(MICRO, tmp_path / "empty", suite="micro", fig_dir=tmp_path / "f", docs=None)
    assert all(s["verdict"] == rp.PENDING for s in rep["claims"].values())
    assert rp.mean_std([0.5, 0.7])[0] == pytest.approx(0.6)
    assert rp.fmt_pct([0.5, 0.7]) == "60.00 ± 14.14"
    assert rp.fmt_num([300.0, 310.0]) == "305 ± 7.1" and rp.fmt_num([]) == "—"


def test_runner_stops_the_suite_when_a_run_is_interrupted(tmp_path, monkeypatch):
    """After a SIGTERM the train loop checkpoints and returns ``preempted``; the suite must stop
    there (every later run would be interrupted at its first step) and the CLI exits 75."""
    calls = []

    def fake_run_one(run, seed, out):
        calls.append(run.name)
        return {"status": "interrupted", "step": 7}

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    res = rp.run_suite(
        MICRO, tmp_path, seeds=(0, 1), suite="micro", fig_dir=tmp_path / "f", docs=None
    )
    assert calls == ["c1_ul"] and res["interrupted"] == [("c1_ul", 0)] and res["ran"] == []
    monkeypatch.setattr(runner, "load_suite", lambda name: MICRO)
    monkeypatch.setattr(runner, "report_suite", lambda name: ("micro", MICRO))
    assert (
        cli.main(
            [
                "--suite",
                "micro",
                "--out",
                str(tmp_path),
                "--fig_dir",
                str(tmp_path / "f"),
                "--docs",
                str(tmp_path / "d.md"),
            ]
        )
        == 75
    )
    assert calls == ["c1_ul", "c1_ul"]


# --------------------------------------------------------------------------------------------
# the second pass (issue 14): knobs chosen on the validation split, end to end on digits
# --------------------------------------------------------------------------------------------
_VAL = {**_DIGITS, "data.validation_per_class": 8, "eval_every": 20}
MICRO2 = (
    rp.Run(
        "s_ul_pal",
        "configs/digits.py:ul_pal",
        ("sweep",),
        "digits_val",
        "ul_pal",
        overrides={**_VAL, "objective.efr_weight": 0.0},
    ),
    rp.Run(
        "s_ul_pal_efr_lam1e-3",
        "configs/digits.py:ul_pal_efr",
        ("sweep",),
        "digits_val",
        "ul_pal_efr",
        overrides={**_VAL, "objective.efr_weight": 1e-3},
    ),
    rp.Run(
        "s_ce",
        "configs/digits.py:ce",
        ("sweep",),
        "digits_val",
        "ce",
        overrides={**_VAL, "objective.efr_weight": 0.0},
    ),
    rp.Run(
        "s_ul_fnpal_s1",
        "configs/digits.py:ul_fnpal",
        ("scale",),
        "digits_val",
        "ul_fnpal",
        overrides={**_VAL, "head.scale": 1.0},
    ),
    rp.Run(
        "s_ul_fnpal_rlr_s1",
        "configs/digits.py:ul_fnpal_rlr",
        ("scale",),
        "digits_val",
        "ul_fnpal_rlr",
        overrides={**_VAL, "head.scale": 1.0},
    ),
)


def test_second_pass_report_end_to_end(tmp_path):
    out, figs = tmp_path / "runs", tmp_path / "figs"
    res = rp.run_suite(MICRO2, out, seeds=(0,), suite="micro2", fig_dir=figs, docs=None)
    assert res["failed"] == [] and len(res["ran"]) == 5
    payload = json.loads((figs / "results_micro2.json").read_text())
    sweep, scale = payload["claims"]["sweep"], payload["claims"]["scale"]
    # every run logged the validation metrics and the mechanism diagnostics
    for run in MICRO2:
        rows = [
            json.loads(x)
            for x in (out / run.name / "seed0" / "metrics.jsonl").read_text().splitlines()
        ]
        last = rows[-1]
        assert last["val/count"] == 80 and "val/accuracy" in last
        for k in ("eval/cos_feature_prototype", "train/last_bn_scale_norm", "train/grad_norm"):
            assert last[k] is not None, (run.name, k)
        assert ("eval/theorem6_distance" in last) == (run.name == "s_ul_pal_efr_lam1e-3")
    # the table's selection follows validation accuracy (never the test set)
    fam = [r for r in MICRO2 if r.variant.startswith("ul_pal")]
    vals = {
        r.name: payload["runs"][r.name]["seeds"]["0"]["curves"]["val/accuracy"][-1] for r in fam
    }
    best = max(fam, key=lambda r: (vals[r.name], -fam.index(r)))
    lines = [x for x in sweep["table"].splitlines() if "selected on val" in x]
    assert len(lines) == 2  # one UL+PAL row, one CE row
    assert ("0 (vanilla)" in lines[0]) == (best.name == "s_ul_pal")
    assert (
        "selected on validation" in sweep["verdict"]
        and "UL+PAL(+EFR) − CE(+EFR)" in sweep["verdict"]
    )
    assert "s = 1 fixed: RLR − no RLR" in scale["verdict"]
    assert (figs / "micro2_sweep.png").stat().st_size > 1000
    assert (figs / "micro2_mechanism.png").stat().st_size > 1000


def test_second_pass_selection_ignores_the_test_set():
    from ul_jax.paper.validation_sweeps import select

    runs = MICRO2[:2]

    def entry(val, test):
        return {
            "status": "complete",
            "summary": {"top1": test},
            "curves": {"val/accuracy": [0.1, val], "eval/accuracy": [0.1, test]},
        }

    res = {
        runs[0].name: {"seeds": {"0": entry(0.50, 0.90), "1": entry(0.52, 0.90)}},
        runs[1].name: {"seeds": {"0": entry(0.60, 0.10), "1": entry(0.40, 0.10)}},
    }
    assert select(res, runs) is runs[0]  # mean val 0.51 > 0.50, whatever the test says
    res[runs[1].name]["seeds"]["1"] = entry(0.44, 0.10)
    assert select(res, runs) is runs[1]  # 0.52 > 0.51
    res[runs[1].name]["seeds"]["1"]["status"] = "failed"  # only finished seeds count
    assert select(res, runs) is runs[1]  # 0.60 alone
    assert select({r.name: {"seeds": {}} for r in runs}, runs) is None


def test_paper_package_imports_no_config_module():
    """The suites are data inside ``ul_jax.paper`` (no ``importlib`` loop through ``configs``):
    importing the package and resolving every suite imports no ``configs`` module, and the old
    ``ul_jax.reproduce`` module is gone."""
    code = (
        "import importlib.util, sys\n"
        "import ul_jax.paper as rp\n"
        "for name in rp.SUITES:\n"
        "    rp.load_suite(name); rp.report_suite(name)\n"
        "print(sorted(m for m in sys.modules if m == 'configs' or m.startswith('configs.')))\n"
        "print(importlib.util.find_spec('ul_jax.reproduce'))\n"
    )
    root = Path(__file__).resolve().parents[1]  # `configs` is importable from here
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[-2:] == ["[]", "None"]
    assert set(rp.SUITES) == {
        "cpu",
        "cpu_step",
        "cpu_long",
        "cpu_sweep",
        "cpu_scale",
        "cpu_long2",
        "cpu_lt_sweep",
        "cpu_lt",
        "cpu_calib",
        "cpu_tp_b100",
        "cpu_tp_budget",
        "cpu_tp_lt",
        "cpu_tp_split",
        "paper",
    }


def test_update_docs_reference_table_without_verdict(tmp_path):
    """A section without a verdict (the λ-convention table) fills its block and appends no
    verdict line; an unknown section name is appended under its own name."""
    doc = tmp_path / "D.md"
    doc.write_text("x\n<!-- BEGIN s:conventions -->\nold\n<!-- END s:conventions -->\n")
    sec = {"table": "| a |", "verdict": "", "figures": []}
    rp.update_docs(doc, "s", {"conventions": sec, "other": {**sec, "verdict": "v"}}, tmp_path)
    text = doc.read_text()
    assert "| a |" in text and "old" not in text
    assert "Verdict (conventions)" not in text
    assert "### other: other" in text and "<!-- VERDICT s:other -->v<!-- /VERDICT -->" in text


# --------------------------------------------------------------------------------------------
# the long-tailed part of the second pass: λ sweep, long runs (partial rows), calibration pair
# --------------------------------------------------------------------------------------------
_LT = {**_VAL, "data.imbalance_ratio": 10.0}
_CAL = {**_VAL, "data.train_per_class": 30}
MICRO_LT = (
    rp.Run("lts_ul_pal", "configs/digits.py:ul_pal", ("lt_sweep",), "lt", "ul_pal", overrides=_LT),
    rp.Run(
        "lts_ul_pal_efr_lam1e-3",
        "configs/digits.py:ul_pal_efr",
        ("lt_sweep",),
        "lt",
        "ul_pal_efr",
        overrides={**_LT, "objective.efr_weight": 1e-3},
    ),
    rp.Run("lt_ce", "configs/digits.py:ce", ("lt",), "lt", "ce", overrides=_LT),
    rp.Run("cal_ce", "configs/digits.py:ce", ("calib",), "c", "ce", overrides=_CAL),
    rp.Run(
        "cal_ce_efr_lam1e-2",
        "configs/digits.py:ce_efr",
        ("calib",),
        "c",
        "ce_efr",
        overrides={**_CAL, "objective.efr_weight": 1e-2},
    ),
)


def test_long_tailed_report_end_to_end(tmp_path):
    """The LT / calibration sections from real (tiny) runs: per-class groups, ECE chosen on
    validation, a run still training shown as a partial row, both figures drawn."""
    from ul_jax.paper import long_tail_calibration

    out, figs = tmp_path / "runs", tmp_path / "figs"
    res = rp.run_suite(MICRO_LT, out, seeds=(0,), suite="microlt", fig_dir=figs, docs=None)
    assert res["failed"] == [] and len(res["ran"]) == 5
    payload = json.loads((figs / "results_microlt.json").read_text())
    runs = payload["runs"]
    # val/ece is logged; the calibration selection takes the lowest validation NLL
    vece = {n: runs[n]["seeds"]["0"]["curves"]["val/ece"][-1] for n in ("cal_ce_efr_lam1e-2",)}
    assert 0 <= vece["cal_ce_efr_lam1e-2"] <= 1
    calib = payload["claims"]["calib"]
    assert "chosen on validation NLL" in calib["verdict"] and "train accuracy" in calib["verdict"]
    lt = payload["claims"]["lt"]
    row = next(x for x in lt["table"].splitlines() if x.startswith("| lt_ce"))
    assert row.count("|") == 15 and "partial" not in row
    summary = runs["lt_ce"]["seeds"]["0"]["summary"]
    assert len(summary["per_class"]) == 10 and summary["groups"]["few"] is not None
    per_class_norm = runs["lt_ce"]["seeds"]["0"]["curves"]["eval/class_feature_norm"][-1]
    assert isinstance(per_class_norm, list) and len(per_class_norm) == 10
    assert (figs / "microlt_lt_classes.png").stat().st_size > 1000
    assert (figs / "microlt_calib_reliability.png").stat().st_size > 1000
    # a run that is still training (no status file yet) is a partial row, never a finished one
    fake = {
        "lt_ce": {
            "seeds": {
                "0": {
                    "status": "in progress",
                    "total_steps": 17446,
                    "curves": {"step": [1000, 2000], "eval/accuracy": [0.3, 0.41]},
                }
            }
        }
    }
    table, verdict = long_tail_calibration.lt_section(fake, [MICRO_LT[2]], [0])
    assert "partial: step 2,000/17,446, last test top-1 41.00 %" in table
    assert verdict.startswith("pending")
    # selection by the lowest validation NLL ignores the test set
    r0, r1 = MICRO_LT[3], MICRO_LT[4]

    def entry(ece, test):
        return {"status": "complete", "summary": {"top1": test}, "curves": {"val/loss": [ece]}}

    fake = {r0.name: {"seeds": {"0": entry(0.05, 0.9)}}, r1.name: {"seeds": {"0": entry(0.2, 1)}}}
    assert long_tail_calibration.select(fake, [r0, r1], "val/loss", lower=True) is r0
    assert long_tail_calibration.select(fake, [r0, r1], "val/loss") is r1


def test_generated_stamp_names_a_runnable_suite():
    """The stamp above each generated table must be a command that works: a report name such
    as ``cpu2`` is not a ``--suite``."""
    import re

    from ul_jax.paper.docs import regenerate_command
    from ul_jax.paper.suites import SUITES

    for report in {v[1] for v in SUITES.values()}:
        suite = re.search(r"--suite (\S+) --tables_only", regenerate_command(report)).group(1)
        assert suite in SUITES and SUITES[suite][1] == report
