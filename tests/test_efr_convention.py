"""``objective.efr_convention``: how a config's EFR λ is read, converted once at setup to the
batch-sum λ_b the step uses (``ul_jax.config.effective_efr_weight``); the paper configs take the
paper's λ as printed with ``reading=`` (default eq. 11's data-set sum), the CPU configs an
explicit batch-sum λ_b; configs saved before the field existed read as ``batch_sum``."""

from __future__ import annotations

import logging

import ml_collections
import pytest
from helpers import tiny_config

from ul_jax.config import check_fields, effective_efr_weight, load_config_file
from ul_jax.eval.format import run_label
from ul_jax.objectives import EFR_CONVENTIONS, efr_feature_target_scale, efr_weight_from
from ul_jax.train import validate_config
from ul_jax.train.summaries import theorem6_scale_from

N, B = 45_000, 128


def _config(value: float, convention: str | None, batch_size: int = B) -> dict:
    objective = {"efr_weight": value}
    if convention is not None:
        objective["efr_convention"] = convention
    return {"objective": objective, "batch_size": batch_size}


@pytest.mark.parametrize(
    ("convention", "expected"),
    [
        ("batch_sum", 1e-6),  # λ_b = λ
        ("per_example", 1e-6 / 128),  # λ_b = λ / B
        ("dataset_sum", 1e-6 * 45_000 / 256),  # λ_b = λ·n/(2B) = 1.7578125e-4
        (None, 1e-6),  # a config saved before the field existed: batch_sum
    ],
)
def test_each_reading_gives_the_documented_batch_sum_weight(convention, expected):
    assert effective_efr_weight(_config(1e-6, convention), N) == pytest.approx(expected, rel=1e-12)
    assert efr_weight_from(1e-6, convention or "batch_sum", B, N) == pytest.approx(expected)


def test_the_paper_lambda_read_as_eq11_gives_theorem6_norm_22_on_cifar10():
    # docs/REPRODUCTION.md: λ = 1e-6, n = 50,000, B = 256, unit prototypes, γ = 1/9 → ‖h*‖ ≈ 22.2
    lb = efr_weight_from(1e-6, "dataset_sum", 256, 50_000)
    assert lb == pytest.approx(9.765625e-5)
    assert efr_feature_target_scale(lb, 256, 10) == pytest.approx(22.2, abs=0.05)
    assert efr_feature_target_scale(1e-6, 256, 10) == pytest.approx(2170, abs=1)  # read as A


def test_zero_lambda_needs_no_n_and_dataset_sum_without_n_is_an_error():
    assert effective_efr_weight(_config(0.0, "dataset_sum"), None) == 0.0
    assert effective_efr_weight(_config(1e-3, "per_example"), None) == pytest.approx(1e-3 / B)
    with pytest.raises(ValueError, match=r"dataset_sum.*number of training images"):
        effective_efr_weight(_config(1e-6, "dataset_sum"), None)


def test_a_bad_convention_names_the_field_and_the_value():
    with pytest.raises(ValueError, match=r"objective\.efr_convention.*'mean'"):
        effective_efr_weight(_config(1e-6, "mean"), N)
    c = load_config_file("configs/digits.py:ul_pal_efr")
    c.objective.efr_convention = "mean"
    with pytest.raises(ValueError, match=r"objective\.efr_convention must be .*got "):
        check_fields(c)
    with pytest.raises(ValueError, match=r"objective\.efr_convention='mean'"):
        validate_config(c, device_count=1)
    assert EFR_CONVENTIONS == ("batch_sum", "per_example", "dataset_sum")


# ---- paper and CPU configs ------------------------------------------------------------------
def test_paper_configs_take_the_printed_lambda_read_as_eq11_by_default():
    c = load_config_file("configs/paper/table2.py:ul_pal_efr,exp100")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (1e-6, "dataset_sum")
    validate_config(c, device_count=1)
    c = load_config_file("configs/paper/table2.py:ul_pal_efr,exp100,reading=batch_sum")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (1e-6, "batch_sum")
    c = load_config_file("configs/paper/table2.py:ce_efr,exp10,lam=5e-5,reading=per_example")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (5e-5, "per_example")
    c = load_config_file("configs/paper/table3.py:ul_pal_efr,cifar10")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (5e-7, "dataset_sum")
    c = load_config_file("configs/paper/fig2.py:cifar10,ce_efr")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (1e-5, "dataset_sum")
    c = load_config_file("configs/paper/fig2.py:cifar100,ul_pal_efr,lam=5e-6,reading=batch_sum")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (5e-6, "batch_sum")
    assert load_config_file("configs/paper/fig2.py:cifar10,ul_pal").objective.efr_weight == 0.0
    with pytest.raises(ValueError, match=r"reading must be one of .*got 'mean'"):
        load_config_file("configs/paper/table3.py:ce_efr,cifar10,reading=mean")
    with pytest.raises(ValueError, match=r"unknown config argument\(s\) \['lamda'\]"):
        load_config_file("configs/paper/table2.py:ce_efr,exp100,lamda=1e-5")
    with pytest.raises(ValueError, match="EFR variants only"):
        load_config_file("configs/paper/fig2.py:cifar10,ce,lam=1e-5")


@pytest.mark.parametrize("data", ["full", "exp100", "exp10", "step100", "split"])
def test_cpu_configs_state_the_validation_selected_batch_sum_lambda(data):
    c = load_config_file(f"configs/cpu/cifar10.py:ul_pal_efr,{data}")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (2.5e-4, "batch_sum")
    c = load_config_file(f"configs/cpu/cifar10.py:ce_efr,{data}")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (1e-4, "batch_sum")
    validate_config(c, device_count=1)
    # lam= overrides, as λ_b (no rescaling by batch size, no reading of the paper config)
    c = load_config_file(f"configs/cpu/cifar10.py:ce_efr,{data},lam=5e-4")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (5e-4, "batch_sum")
    c = load_config_file(f"configs/cpu/cifar10.py:ce,{data}")
    assert (c.objective.efr_weight, c.objective.efr_convention) == (0.0, "batch_sum")


def test_cpu_config_refuses_a_reading():
    with pytest.raises(ValueError, match=r"unknown config argument\(s\) \['reading'\]"):
        load_config_file("configs/cpu/cifar10.py:ul_pal_efr,full,reading=dataset_sum")


def test_a_config_saved_before_the_field_existed_reads_as_batch_sum():
    stored = load_config_file("configs/cpu/cifar10.py:ul_pal_efr,full").to_dict()
    del stored["objective"]["efr_convention"]  # an old run folder's config.json
    old = ml_collections.ConfigDict(stored)
    validate_config(old, device_count=1)
    assert effective_efr_weight(old, 50_000) == effective_efr_weight(stored, 10) == 2.5e-4
    assert theorem6_scale_from(old, 10) == pytest.approx(efr_feature_target_scale(2.5e-4, B, 10))


# ---- setup uses the conversion --------------------------------------------------------------
def test_setup_step_config_and_theorem6_use_the_converted_weight(caplog):
    import jax

    from ul_jax import data as uldata
    from ul_jax.train.setup import compile_run, load_train_data, step_config_from

    lam = 1e-3
    config = tiny_config(
        "ul_pal_efr",
        **{
            "objective.efr_weight": lam,
            "objective.efr_convention": "dataset_sum",
            "data.validation_per_class": 5,
        },
    )
    validate_config(config, device_count=1)
    data = load_train_data(config)
    n = data.num_train  # the images trained on, after the validation hold-out
    assert 0 < n and data.num_val == 5 * data.num_classes
    lb = lam * n / (2 * config.batch_size)
    assert effective_efr_weight(config, n) == pytest.approx(lb)
    assert step_config_from(config, data).efr_weight == pytest.approx(lb)
    t6 = theorem6_scale_from(config, data.num_classes, n)
    assert t6 == pytest.approx(efr_feature_target_scale(lb, config.batch_size, data.num_classes))
    with pytest.raises(ValueError, match="dataset_sum"):
        theorem6_scale_from(config, data.num_classes)  # n is needed
    mesh = uldata.data_mesh(jax.devices()[:1])
    with caplog.at_level(logging.INFO):
        fns = compile_run(config, data, 12, 4, mesh)
    assert fns.step_cfg.efr_weight == pytest.approx(lb)
    assert f"lambda_b={lb:.6g}" in caplog.text and "dataset_sum" in caplog.text
    # the same config read as a batch sum compiles its own step (the cache key has λ_b)
    config.objective.efr_convention = "batch_sum"
    assert compile_run(config, data, 12, 4, mesh).step_cfg.efr_weight == lam


def test_evaluation_records_stated_and_effective_lambda():
    from ul_jax.eval.job import _run_info

    config = load_config_file("configs/paper/table2.py:ul_pal_efr,exp100")
    info = _run_info(config, "w", 1, 10, 512, 12_406)
    assert info["efr_weight"] == 1e-6 and info["efr_convention"] == "dataset_sum"
    assert info["efr_lambda_b"] == pytest.approx(1e-6 * 12_406 / 512)
    assert run_label({"run": info}) == "ul_pal_efr (λ=1e-06 [dataset_sum: λ_b=2.42305e-05])"
    cpu = load_config_file("configs/cpu/cifar10.py:ul_pal_efr,full")
    info = _run_info(cpu, "w", 1, 10, 32, 45_000)
    assert info["efr_lambda_b"] == info["efr_weight"] == 2.5e-4
    assert run_label({"run": info}) == "ul_pal_efr (λ=0.00025)"
