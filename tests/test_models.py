"""ResNet trunks and classifier heads."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ul_jax.models import build_model, count_params, feature_dim
from ul_jax.prototypes import is_simplex_etf


@pytest.mark.parametrize(
    "arch,stem,num_classes,size,expected",
    [
        ("resnet18", "cifar", 10, 32, 11_173_962),  # torchvision-style CIFAR ResNet-18: 11.17 M
        ("resnet50", "imagenet", 1000, 224, 25_557_032),  # torchvision resnet50: 25,557,032
        ("resnet20", "cifar", 10, 32, 272_474),  # He et al. ResNet-20: 0.27 M
    ],
)
def test_parameter_counts(arch, stem, num_classes, size, expected):
    model = build_model(arch, num_classes, stem=stem)
    variables = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False)
    )
    assert count_params(variables["params"]) == expected


def _tiny(head, **kw):
    model = build_model("resnet8", 5, head=head, width_multiplier=0.5, **kw)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 3))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    return model, variables, x


@pytest.mark.parametrize("head", ["linear", "pal", "fnpal"])
def test_outputs_shapes_and_feature_dim(head):
    model, variables, x = _tiny(head)
    logits, feats = model.apply(variables, x, train=False)
    chex.assert_shape(logits, (4, 5))
    chex.assert_shape(feats, (4, feature_dim("resnet8", 0.5)))
    chex.assert_tree_all_finite((logits, feats))


def test_final_relu_toggle():
    _, v_relu, x = _tiny("pal", final_relu=True)
    model, v_norelu, _ = _tiny("pal", final_relu=False)
    f_relu = build_model("resnet8", 5, head="pal", width_multiplier=0.5).apply(
        v_relu, x, train=False
    )[1]
    f_norelu = model.apply(v_norelu, x * 3.0, train=True, mutable=["batch_stats"])[0][1]
    assert np.all(np.asarray(f_relu) >= 0)  # pooled ReLU outputs
    assert np.any(np.asarray(f_norelu) < 0)  # without the last ReLU, features can be negative


def test_pal_prototypes_are_a_fixed_etf_and_get_no_update():
    model, variables, x = _tiny("pal", head_scale=3.0)
    protos = variables["prototypes"]["head"]["kernel"]
    assert "kernel" not in variables["params"]["head"]
    assert is_simplex_etf(protos, atol=1e-4, scale=3.0)
    labels = jnp.arange(4) % 5

    def loss_fn(params):
        (logits, _), _ = model.apply(
            {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    opt = optax.sgd(0.5, momentum=0.9)
    params, state = variables["params"], opt.init(variables["params"])
    for _ in range(3):
        g = jax.grad(loss_fn)(params)
        updates, state = opt.update(g, state, params)
        params = optax.apply_updates(params, updates)
    # the trunk moved, the prototypes are not parameters at all and are unchanged
    assert not np.allclose(
        params["trunk"]["conv_init"]["kernel"], variables["params"]["trunk"]["conv_init"]["kernel"]
    )
    np.testing.assert_array_equal(variables["prototypes"]["head"]["kernel"], protos)


def test_fnpal_logits_are_scaled_cosines():
    model, variables, x = _tiny("fnpal", head_scale=7.0)
    logits, feats = model.apply(variables, x, train=False)
    w = variables["prototypes"]["head"]["kernel"]
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1.0, atol=1e-5)
    h = np.asarray(feats) / np.linalg.norm(feats, axis=1, keepdims=True)
    np.testing.assert_allclose(logits, 7.0 * h @ np.asarray(w), rtol=1e-5, atol=1e-5)
    assert np.max(np.abs(logits)) <= 7.0 + 1e-5


def test_linear_head_etf_init():
    _, variables, _ = _tiny("linear", head_init="etf", head_scale=2.0)
    assert is_simplex_etf(variables["params"]["head"]["kernel"], atol=1e-4, scale=2.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(arch="resnet99"), "arch='resnet99'"),
        (dict(head="cosine"), "head kind"),
        (dict(stem="tiny"), "stem='tiny'"),
        (dict(head="pal", width_multiplier=0.01), "feature dim"),
        (dict(num_classes=1), "num_classes=1"),
    ],
)
def test_bad_model_config(kwargs, match):
    args = dict(arch="resnet8", num_classes=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        model = build_model(args.pop("arch"), args.pop("num_classes"), **args)
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)), train=False)
