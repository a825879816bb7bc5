"""``launch.bench profile``: the HLO parsing and attribution on a hand-written module, and a real
profile of a tiny train step in which every part of the step is found; the PyTorch baseline's
model matches the Flax one (only where PyTorch is installed: the optional ``bench`` extra)."""

from __future__ import annotations

import pytest

from ul_jax.bench import profile as P

HLO = """HloModule jit_step, entry_computation_layout={()->()}

%fused_computation.9 (param_0.14: f32[32,8,8,32], param_1.14: f32[8,8,32,32]) -> f32[32,3,3,32] {
  %param_0.14 = f32[32,8,8,32]{3,2,1,0} parameter(0)
  %param_1.14 = f32[8,8,32,32]{3,2,1,0} parameter(1)
  ROOT %convolution.10 = f32[32,3,3,32]{3,2,1,0} convolution(%param_0.14, %param_1.14), window={size=8x8 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
}

%fused_computation.47 (p: f32[32,8,8,32], q: f32[3,3,32,32]) -> f32[32,8,8,32] {
  %p = f32[32,8,8,32]{3,2,1,0} parameter(0)
  %q = f32[3,3,32,32]{3,2,1,0} parameter(1)
  ROOT %convolution.3 = f32[32,8,8,32]{3,2,1,0} convolution(%p, %q), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(step)/jvp(Classifier)/trunk/BasicBlock_2/Conv_0/conv_general_dilated"}
}

%fused_computation.34 (p: f32[32,8,8,32], q: f32[3,3,32,32]) -> f32[32,8,8,32] {
  %p.1 = f32[32,8,8,32]{3,2,1,0} parameter(0)
  %q.1 = f32[3,3,32,32]{3,2,1,0} parameter(1)
  ROOT %convolution.4 = f32[32,8,8,32]{3,2,1,0} convolution(%p.1, %q.1), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f, metadata={op_name="jit(step)/transpose(jvp(Classifier))/trunk/BasicBlock_0/Conv_1/conv_general_dilated"}
}

ENTRY %main (x: f32[32,8,8,32]) -> f32[] {
  %state_params__trunk____BasicBlock_1____BatchNorm_0____bias__.1 = f32[32]{0} parameter(0)
  %transpose_copy_fusion.10 = f32[32,8,8,32]{3,2,1,0} fusion(%state_params__trunk____BasicBlock_1____BatchNorm_0____bias__.1), kind=kLoop, calls=%fused_computation.355
  %ynn_fusion.9 = f32[32,3,3,32]{3,2,1,0} fusion(%transpose_copy_fusion.10, %transpose_copy_fusion.10), kind=kCustom, calls=%fused_computation.9
  %ynn_fusion.47 = f32[32,8,8,32]{3,2,1,0} fusion(%transpose_copy_fusion.10, %transpose_copy_fusion.10), kind=kCustom, calls=%fused_computation.47, metadata={op_name="jit(step)/jvp(Classifier)/trunk/BasicBlock_2/Conv_0/conv_general_dilated"}
  %ynn_fusion.34 = f32[32,8,8,32]{3,2,1,0} fusion(%ynn_fusion.47, %ynn_fusion.47), kind=kCustom, calls=%fused_computation.34
  %ynn_fusion.11 = f32[32]{0} fusion(%ynn_fusion.34), kind=kCustom, calls=%fused_computation.11, metadata={op_name="jit(step)/transpose(jvp(Classifier))/trunk/bn_init/reduce_sum"}
  %wrapped_scatter = f32[32,10]{1,0} fusion(%ynn_fusion.11), kind=kLoop, calls=%c, metadata={op_name="jit(step)/transpose(jvp(jit(take_along_axis)))/scatter-add"}
  ROOT %is-finite_reduce_fusion.74 = pred[] fusion(%wrapped_scatter), kind=kLoop, calls=%d, metadata={op_name="jit(step)/reduce_and"}
}
"""


def test_parse_and_classify_a_hand_written_module():
    instrs = P.parse_hlo(HLO)
    stages = (1, 1, 1)  # ResNet-8: BasicBlock_k is stage k + 1
    got = {n: P.classify(n, instrs[n], stages) for n in instrs if not n.startswith(("param", "p"))}
    # no metadata, window 8x8 = the activation: a filter gradient; its stage from an operand's
    # parameter name (BasicBlock_1 → stage 2)
    assert got["ynn_fusion.9"] == ("conv filter-grad", "stage 2")
    assert got["ynn_fusion.47"] == ("conv forward", "stage 3")
    # the op_name lives only in the called computation: found there, under transpose(): input grad
    assert instrs["ynn_fusion.34"]["op_name"].endswith("BasicBlock_0/Conv_1/conv_general_dilated")
    assert got["ynn_fusion.34"] == ("conv input-grad", "stage 1")
    assert got["ynn_fusion.11"] == ("BatchNorm backward", "stem")
    assert got["transpose_copy_fusion.10"][0] == "layout transposes / copies"
    assert got["wrapped_scatter"] == ("head + loss", "-")
    assert got["is-finite_reduce_fusion.74"] == ("non-finite guard", "-")


def test_profile_of_a_tiny_step_finds_every_part(tmp_path):
    from helpers import tiny_config

    # 16 px: the last stage is 4×4, so its filter-gradient window (16) is larger than a 3×3 kernel
    c = tiny_config("ul_pal", **{"batch_size": 16, "data.image_size": 16})
    p = P.step_profile(c, steps=1)
    kinds = {(r["kind"], r["stage"]) for r in p["rows"]}
    for stage in ("stage 1", "stage 2", "stage 3"):
        for kind in ("conv forward", "conv input-grad", "conv filter-grad"):
            assert (kind, stage) in kinds, (kind, stage, sorted(kinds))
    assert ("conv forward", "stem") in kinds and ("conv filter-grad", "stem") in kinds
    assert {k for k, _ in kinds} >= {"BatchNorm forward", "BatchNorm backward"}
    assert ("conv (no metadata)", "-") not in kinds
    assert p["op_ms_per_step"] == pytest.approx(sum(r["ms"] for r in p["rows"]))
    assert 0 < p["op_ms_per_step"] and 0 < p["wall_ms_per_step"]
    md = tmp_path / "PROFILE.md"
    md.write_text("# Profile\n\nkept\n\n<!-- BEGIN profile -->\nold\n<!-- END profile -->\ntail\n")
    P.write_markdown(md, [p], "python -m launch.bench profile --models resnet8:0.25")
    text = md.read_text()
    assert "kept" in text and "tail" in text and "old" not in text
    assert "| conv filter-grad (stage 1) |" in text and "**sum of op times**" in text


@pytest.mark.parametrize("arch", ["resnet8", "resnet18"])
def test_torch_baseline_is_the_same_model(arch):
    pytest.importorskip("torch")
    import jax

    from configs import common
    from ul_jax import train as T
    from ul_jax.bench.torch_baseline import torch_train_benchmark

    c = common.apply_variant(common.base_config(), "ul_pal_efr")
    c.model.arch, c.batch_size = arch, 8
    model = T.build_model_from_config(c, 10)
    shapes = jax.eval_shape(
        lambda k: model.init(k, jax.numpy.zeros((1, 32, 32, 3))), jax.random.key(0)
    )
    n = sum(x.size for x in jax.tree.leaves(shapes["params"]))
    r = torch_train_benchmark(c, steps=1, flax_param_count=n)  # raises if the counts differ
    assert r["params"] == n and r["finite"] and r["train_images_per_sec"] > 0


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("objective.loss", "mse", "objective.loss='mse'"),
        ("objective.loss", "hinge", "objective.loss='hinge'"),
        ("head.kind", "fnpal", "heads pal and linear"),
        ("objective.rlr", True, "no RLR"),
        ("model.dtype", "bfloat16", "float32 only"),
    ],
)
def test_torch_baseline_refuses_what_it_cannot_mirror(field, value, match):
    """Checked before PyTorch is imported: a loss, head or option the baseline does not have
    is refused, never silently replaced (it used to benchmark CE for any loss but 'ul')."""
    from configs import digits
    from ul_jax.bench.torch_baseline import check_mirrorable
    from ul_jax.config import set_field

    c = digits.get_config("ce")
    check_mirrorable(c)
    set_field(c, field, value)
    with pytest.raises(ValueError, match=match):
        check_mirrorable(c)
